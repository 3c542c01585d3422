"""Claim cards: one paper's claim as a check fixed before its runs (TOML, parsed strictly).

A card lives in ``src/layerlab/claims/cards/<card-id>.toml`` (or anywhere, passed by path). A
complete example, the negative-eigenvalue parity claim on a small inline suite::

    id = "parity-negative-eigenvalues-mamba"      # optional: defaults to the file's stem
    paper = "2411.12537"                          # arXiv id, or the catalogue's slug of the paper
    claim = "Linear RNNs whose diagonal transitions have eigenvalues only in [0, 1] cannot solve parity; [-1, 1] lets them."
    where = "abstract; Theorem 1"                 # where the claim stands: abstract, section, table
    kind = "comparative"                          # comparative | absolute | closed-form | scaling | qualitative
    deviations = "1-layer Mamba, 8.2k parameters; trained on length 16, scored on 64 (paper: 256); 300 steps, lr 3e-3, 3 seeds"

    [suite]                                       # an inline suite: the keys of a suite TOML (layerlab.arena.suite);
    seeds = [0, 1, 2]                             # or, instead of this table, suite = "state-tracking" (built-in)
    lr = [3e-3]
    train = { steps = 300, batch_size = 32 }
    [[suite.tasks]]
    name = "parity"
    params = { length = 16, n_eval = 256, extrapolate = [4] }   # adds the split "test@64"
    budget = 8_000
    [[suite.models]]
    label = "mamba[-1,1]"
    mixer = "mamba"
    mixer_options = { negative_eigenvalues = true }
    n_layers = 1
    positions = "none"
    [[suite.models]]
    label = "mamba[0,1]"
    mixer = "mamba"
    n_layers = 1
    positions = "none"

    [metric]                                      # optional
    name = "accuracy"                             # default: the task's metric
    split = "test@64"                             # default "test"; or an extra test split of the task
    direction = "higher"                          # default: the task's (higher | lower)

    [rule]                                        # every rule: layerlab.claims.rules
    type = "difference"
    task = "parity"                               # a task label of the suite (optional with one task)
    model = "mamba[-1,1]"                         # model labels of the suite
    baseline = "mamba[0,1]"
    margin = 0.0

A closed-form claim measures instead of training (see ``cards/selu-fixed-point.toml``)::

    [measure]
    name = "selu_fixed_point"                     # a registered measurement (layerlab.claims.measures)
    options = { width = 512, depth = 32 }
    seeds = [0, 1, 2, 3, 4]
    [rule]
    type = "tolerance"
    tol = 0.05

Keys. ``id`` (optional: the file's stem; lowercase letters, digits, ``.``, ``_``, ``-``); ``paper``,
``claim``, ``where``, ``kind``, ``deviations`` (required, text; ``deviations`` says what differs from
the paper's setting: scale, data, steps, and the budget tried); exactly one setting:

- ``suite = "name"``: a built-in suite (``layerlab suites``); a check trains only the tasks and models
  its rule names, so a card may point at a big suite and pay only for its part;
- ``[suite]``: an inline suite table, parsed by ``layerlab.arena.suite.parse_suite`` (``name``
  defaults to the card id);
- ``[measure]``: a registered measurement for closed-form claims that need no training (``name``,
  ``options`` table, ``seeds``, default ``[0, 1, 2]``; see ``layerlab.claims.measures``);

``[metric]`` (``name``, ``split``, ``direction``) and ``[rule]`` (``type`` = ``difference`` |
``noninferiority`` | ``threshold`` | ``tolerance`` | ``all`` | ``any``, with that rule's keys; ``all``
and ``any`` take ``[[rule.rules]]`` tables). Arena rules name ``task`` and ``model`` labels of the
suite; measure cards name neither. The metric is read at the learning rate the leaderboard chose on
the validation split; ``split`` must be ``test`` or one of the task's extra test splits (the
state-tracking tasks' ``extrapolate = [4]`` at ``length = 16`` adds ``test@64``).

Strictness: an unknown key anywhere (card, suite, metric, measure, rule) is a ConfigError naming the
key and the valid ones; unknown suites, measurements, rule types, task or model labels fail with
suggestions, before anything runs.

The card's hash (``Card.hash``) is the sha256 (first 16 hex) of the canonical JSON of the parsed card
with its defaults filled in: every text field, the whole setting (the inline suite table, or the
built-in suite's own TOML content, or the measurement and its options), the metric and the rule.
Editing any of them gives a new hash, and its verdicts never mix with the old card's.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..arena.suite import Suite, builtin_suites, check_seeds, parse_suite, read_toml_text
from ..config import check_keys, check_option_types, config_hash
from ..errors import ConfigError, unknown_name
from .measures import get_measure
from .rules import Rule, parse_rule, rule_to_dict

KINDS = ("comparative", "absolute", "closed-form", "scaling", "qualitative")
CARD_KEYS = ("id", "paper", "claim", "where", "kind", "deviations", "suite", "measure", "metric", "rule")
METRIC_KEYS = ("name", "split", "direction")
MEASURE_KEYS = ("name", "options", "seeds")
DIRECTIONS = ("higher", "lower")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_ARXIV = re.compile(r"^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Metric:
    name: str | None = None  # None: the task's metric
    split: str = "test"
    direction: str | None = None  # None: the task's (or the measurement's)

    @property
    def higher_is_better(self) -> bool | None:
        return None if self.direction is None else self.direction == "higher"


@dataclass(frozen=True)
class Measure:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class Card:
    id: str
    paper: str
    claim: str
    where: str
    kind: str
    deviations: str
    rule: Rule
    metric: Metric = Metric()
    suite: str | None = None  # a built-in suite's name
    suite_data: dict[str, Any] | None = None  # the suite's TOML table (inline, or the built-in's content)
    measure: Measure | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def setting(self) -> str | dict[str, Any] | Measure:
        """The built-in suite's name, the inline suite table, or the measurement."""
        if self.measure is not None:
            return self.measure
        return self.suite if self.suite is not None else dict(self.suite_data or {})

    def resolve_suite(self) -> Suite:
        """The card's suite (built-in or inline), parsed; ConfigError for a measure card."""
        if self.suite_data is None:
            raise ConfigError(f"card {self.id!r} has no suite: it is a [measure] card")
        return parse_suite(self.suite_data, default_name=self.suite or self.id)

    @property
    def methods(self) -> tuple[str, ...]:
        """The training methods its suite applies (model rows' ``methods`` and a ``[[methods]]``
        dimension), sorted; () for a measure card."""
        found: set[str] = set()

        def walk(node: Any, under_methods: bool = False) -> None:
            if isinstance(node, dict):
                if under_methods and isinstance(node.get("name"), str):
                    found.add(node["name"])
                for k, v in node.items():
                    walk(v, under_methods or k == "methods")
            elif isinstance(node, list):
                for v in node:
                    if under_methods and isinstance(v, str):
                        found.add(v)
                    walk(v, under_methods)

        walk(self.suite_data or {})
        return tuple(sorted(found))

    def to_dict(self) -> dict[str, Any]:
        """The canonical plain form (defaults filled in), which the hash covers."""
        setting: dict[str, Any]
        if self.measure is not None:
            setting = {"measure": {"name": self.measure.name, "options": self.measure.options,
                                   "seeds": list(self.measure.seeds)}}
        elif self.suite is not None:
            setting = {"suite": self.suite, "suite_content": self.suite_data}
        else:
            setting = {"suite": self.suite_data}
        return {"id": self.id, "paper": self.paper, "claim": self.claim, "where": self.where, "kind": self.kind,
                "deviations": self.deviations, "setting": setting,
                "metric": {"name": self.metric.name, "split": self.metric.split, "direction": self.metric.direction},
                "rule": rule_to_dict(self.rule)}

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())


# ---- parsing ------------------------------------------------------------------------------
def _text(data: dict[str, Any], key: str, where: str) -> str:
    if key not in data:
        raise ConfigError(f"{where} needs `{key}` ({_HELP[key]})")
    v = data[key]
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: `{key}` must be non-empty text ({_HELP[key]}), got {v!r}")
    return v.strip()


_HELP = {"paper": "an arXiv id such as \"2411.12537\" or the catalogue's slug of the paper",
         "claim": "a short quote or a faithful paraphrase", "where": "abstract, section or table",
         "kind": " | ".join(KINDS), "deviations": "how the setting differs from the paper's: scale, data, steps, budget",
         "id": "lowercase letters, digits, '.', '_', '-'"}


def _builtin_suite_data(name: str) -> dict[str, Any]:
    if name not in builtin_suites():
        raise unknown_name("built-in suite", name, builtin_suites())
    text = (resources.files("layerlab.arena") / "suites" / f"{name}.toml").read_text()
    data = tomllib.loads(text)
    data.setdefault("name", name)
    return data


def _task_labels(suite: Suite) -> list[str]:
    return [t.label or t.name for t in suite.tasks]


def _check_names(suite: Suite) -> None:
    """Unknown tasks and blocks fail when the card is read (cheap: nothing is built or sized)."""
    from ..tasks import get_task_class

    for t in suite.tasks:
        get_task_class(t.name)
    for m in suite.models:
        m.spec.width_multiple  # looks up every block of the model by name  # noqa: B018


def _check_refs(rule: Rule, suite: Suite | None, where: str) -> Rule:
    """Resolve an omitted task (one-task suites) and check that every label exists; returns the rule
    with tasks filled in."""
    import dataclasses

    from .rules import All

    if isinstance(rule, All):
        return dataclasses.replace(rule, rules=tuple(_check_refs(r, suite, where) for r in rule.rules))
    task, model = getattr(rule, "task", None), getattr(rule, "model", None)
    if suite is None:  # a measurement: no labels
        if task is not None or model is not None:
            raise ConfigError(f"{where}: a [measure] card's rule names no task or model "
                              f"(got task={task!r}, model={model!r})")
        return rule
    labels = _task_labels(suite)
    if task is None:
        if len(labels) != 1:
            raise ConfigError(f"{where}: the suite has {len(labels)} tasks ({', '.join(labels)}); "
                              f"the rule must name one with `task`")
        task = labels[0]
        rule = dataclasses.replace(rule, task=task)
    if task not in labels:
        raise unknown_name(f"task label in {where}", task, labels)
    entry = suite.tasks[labels.index(task)]
    allowed = list(entry.models) if entry.models else [m.label for m in suite.models]
    for key in ("model", "baseline"):
        lab = getattr(rule, key, None)
        if key == "model" and lab is None:
            raise ConfigError(f"{where}: an arena card's rule names its `model` (a model label of the suite)")
        if lab is not None and lab not in allowed:
            raise unknown_name(f"model label (`{key}`) for task {task!r} in {where}", lab, allowed)
    return rule


def parse_card(data: dict[str, Any], *, default_id: str | None = None, path: Path | None = None) -> Card:
    """A Card from its TOML table, strictly."""
    if not isinstance(data, dict):
        raise ConfigError(f"card {str(path) if path else default_id or '?'!r}: expected a table, got {data!r}")
    where = f"card {str(path) if path else (data.get('id') or default_id or '?')!r}"
    check_keys(data, CARD_KEYS, where)
    card_id = data.get("id", default_id)
    if card_id is None:
        raise ConfigError(f"{where} needs an `id` ({_HELP['id']})")
    if not isinstance(card_id, str) or not _ID.fullmatch(card_id):
        raise ConfigError(f"{where}: `id` must be {_HELP['id']}, starting with a letter or digit; got {card_id!r}")
    where = f"card {card_id!r}"
    paper = _text(data, "paper", where)
    if not (_ARXIV.fullmatch(paper) or _SLUG.fullmatch(paper)):
        raise ConfigError(f"{where}: `paper` must be {_HELP['paper']}; got {paper!r}")
    claim, place, deviations = (_text(data, k, where) for k in ("claim", "where", "deviations"))
    kind = _text(data, "kind", where)
    if kind not in KINDS:
        raise unknown_name(f"claim kind in {where}", kind, KINDS)

    # the setting: exactly one of suite (name or table) and measure
    given = [k for k in ("suite", "measure") if k in data]
    if len(given) != 1:
        raise ConfigError(f"{where} needs exactly one setting: `suite = \"name\"` (a built-in suite), an inline "
                          f"[suite] table, or a [measure] table; got {', '.join(given) or 'none'}")
    suite_name, suite_data, measure, suite = None, None, None, None
    if "suite" in data:
        if isinstance(data["suite"], str):
            suite_name = data["suite"]
            suite_data = _builtin_suite_data(suite_name)
        elif isinstance(data["suite"], dict):
            suite_data = dict(data["suite"])
        else:
            raise ConfigError(f"{where}: `suite` must be a built-in suite's name or a [suite] table, "
                              f"got {data['suite']!r}")
        try:
            suite = parse_suite(suite_data, default_name=suite_name or card_id)
            _check_names(suite)
        except ConfigError as e:
            raise ConfigError(f"{where} [suite]: {e}") from None
    else:
        m = data["measure"]
        if not isinstance(m, dict):
            raise ConfigError(f"{where}: [measure] must be a table with {', '.join(MEASURE_KEYS)}")
        check_keys(m, MEASURE_KEYS, f"{where} [measure]")
        if "name" not in m:
            raise ConfigError(f"{where} [measure] needs `name` (a registered measurement)")
        if not isinstance(m["name"], str):
            raise ConfigError(f"{where} [measure].name must be a measurement's name, got {m['name']!r}")
        fn = get_measure(m["name"])
        options = m.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where} [measure].options must be a table, got {options!r}")
        fn.check_options(options, f"{where} [measure]")
        check_option_types(options, fn.fn, f"{where} [measure].options")
        seeds = check_seeds(m.get("seeds", [0, 1, 2]), f"{where} [measure].seeds")
        measure = Measure(m["name"], dict(options), seeds)

    met = data.get("metric", {})
    if not isinstance(met, dict):
        raise ConfigError(f"{where}: [metric] must be a table with {', '.join(METRIC_KEYS)}")
    check_keys(met, METRIC_KEYS, f"{where} [metric]")
    for key in ("name", "split"):
        if key in met and (not isinstance(met[key], str) or not met[key]):
            raise ConfigError(f"{where} [metric].{key} must be non-empty text, got {met[key]!r}")
    split = met.get("split", "test")
    if measure is None and not (split == "test" or split.startswith("test@")):
        raise ConfigError(f"{where} [metric].split must be \"test\" or an extra test split such as \"test@4L\" "
                          f"(learning rates are chosen on validation; the test split decides), got {split!r}")
    if "direction" in met and met["direction"] not in DIRECTIONS:
        raise unknown_name(f"metric direction in {where}", str(met["direction"]), DIRECTIONS)
    metric = Metric(met.get("name"), split, met.get("direction"))

    if "rule" not in data:
        raise ConfigError(f"{where} needs a [rule] table (type = difference | noninferiority | threshold | "
                          f"tolerance | all | any)")
    rule = _check_refs(parse_rule(data["rule"], f"{where} [rule]"), suite, f"{where} [rule]")
    return Card(id=card_id, paper=paper, claim=claim, where=place, kind=kind, deviations=deviations, rule=rule,
                metric=metric, suite=suite_name, suite_data=suite_data, measure=measure, path=path)


def read_card(path: str | Path) -> Card:
    """A card from a TOML file (its id defaults to the file's stem)."""
    path = Path(path)
    text = read_toml_text(path, "card file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"card {str(path)!r}: invalid TOML: {e}") from None
    return parse_card(data, default_id=path.stem, path=path)


def card_dir() -> Path:
    """The folder of the built-in cards."""
    return Path(__file__).resolve().parent / "cards"


def load_cards(paths: list[str | Path] | None = None) -> list[Card]:
    """Cards from files, or every built-in card (sorted by id; ids must be unique)."""
    files = [Path(p) for p in paths] if paths is not None else sorted(card_dir().glob("*.toml"))
    cards = [read_card(p) for p in files]
    seen: dict[str, Path | None] = {}
    for c in cards:
        if c.id in seen:
            raise ConfigError(f"two cards have the id {c.id!r}: {seen[c.id]} and {c.path}")
        seen[c.id] = c.path
    return sorted(cards, key=lambda c: c.id)


def load_card(id_or_path: str | Path) -> Card:
    """A built-in card by id, or a card file by path."""
    p = Path(id_or_path)
    try:
        is_file = p.suffix == ".toml" or p.exists()
    except OSError:  # a name too long to be a path: an id
        is_file = False
    if is_file:
        return read_card(p)
    direct = card_dir() / f"{id_or_path}.toml"  # a card's id is its file's stem unless it says otherwise
    if direct.is_file():
        card = read_card(direct)
        if card.id == str(id_or_path):
            return card
    cards = {c.id: c for c in load_cards()}
    if str(id_or_path) not in cards:
        raise unknown_name("card", str(id_or_path), cards)
    return cards[str(id_or_path)]
