"""`layerlab ...`: list blocks, run suites, show leaderboards, export and plot results, check claims,
compress finished runs.

Errors and user-supplied text (names, labels, claims, paths) are printed literally: never read as
rich markup (a message such as ``has no [[models]]`` reaches the terminal intact).

Bad input (an unknown command, flag, suite key, block, run id; a store path that is not a store) ends
in one line ``error: ...`` on standard error that names the problem, exit status 2, and leaves the
store as it was: a command opens (or creates) its store only after its input is validated, and
reading commands never create one. Anything else that goes wrong is a bug: one line saying so,
exit status 1 (``LAYERLAB_DEBUG=1`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sqlite3
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .errors import ConfigError, LayerlabError, unknown_name
from .registry import KINDS as REGISTRY_KINDS

DEFAULT_STORE = "layerlab-runs"
RUN_STATUSES = ("pending", "running", "done", "diverged", "interrupted", "failed")
_OPENED: list = []  # stores this invocation opened: closed when main returns


def _say(console: Console, text: str, style: str | None = None) -> None:
    """Print `text` literally: no markup, no highlighting."""
    console.print(Text(text, style=style or ""), soft_wrap=True)


# ---- the store: opened only after the input is validated; reading commands never create one ----
def _store_problem(root: Path) -> str | None:
    """Why `root` cannot hold a store (None: it can, or may be created)."""
    try:
        if root.exists() and not root.is_dir():
            return "it is a file, not a directory"
        db = root / "store.sqlite"
        if db.exists() and not db.is_file():
            return f"{str(db)!r} is not a file"
        for parent in root.parents:  # the first existing ancestor must be a directory
            if parent.exists():
                return None if parent.is_dir() else f"{str(parent)!r} is a file, not a directory"
    except OSError as e:
        return e.strerror or str(e)
    return None


def _bad_store(root: Path, why: str) -> ConfigError:
    return ConfigError(f"cannot use {str(root)!r} as a store: {why}; give --store a directory "
                       f"(default ./{DEFAULT_STORE})")


def _open(root: Path):
    from .arena.store import Store

    why = _store_problem(root)
    if why:
        raise _bad_store(root, why)
    try:
        store = Store(root)
    except sqlite3.DatabaseError as e:
        raise _bad_store(root, f"{str(root / 'store.sqlite')!r} is not a layerlab store ({e})") from None
    except (OSError, sqlite3.Error) as e:
        raise _bad_store(root, getattr(e, "strerror", None) or str(e)) from None
    _OPENED.append(store)
    return store


class _LazyStore:
    """The store at `root`, created on first use: a command whose input turns out to be bad (found
    while the suite is expanded, before anything is written) leaves no store behind. A store that
    exists is opened (checked) at once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        why = _store_problem(self.root)
        if why:
            raise _bad_store(self.root, why)
        self._store = _open(self.root) if (self.root / "store.sqlite").exists() else None

    def __getattr__(self, name: str):
        if self._store is None:
            self._store = _open(self.root)
        return getattr(self._store, name)


def _store(args: argparse.Namespace):
    """The store at --store for a command that writes (created when first written to)."""
    return _LazyStore(args.store)


def _existing_store(args: argparse.Namespace):
    """The store at --store if one exists there (reading commands never create one), else None."""
    root = Path(args.store)
    why = _store_problem(root)
    if why:
        raise _bad_store(root, why)
    return _open(root) if (root / "store.sqlite").exists() else None


_RUN_ID = re.compile(r"[0-9a-f]+")


def _find_run(store, run_id: str, root: str) -> dict:
    """The run `run_id` (or a unique prefix of one) names; ConfigError naming the problem otherwise."""
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"{run_id!r} is not a run id: run ids are hexadecimal, e.g. 3f2a9c1e "
                          f"(`layerlab runs` lists them)")
    if store is None:
        raise ConfigError(f"no run {run_id!r}: there is no store at {root!r} yet "
                          f"(`layerlab run SUITE --store {root}` makes one)")
    try:
        return store.run(run_id)
    except KeyError as e:
        raise ConfigError(str(e.args[0] if e.args else e) + "; `layerlab runs` lists the runs") from None


def _check_output(path: str | Path, what: str, *, makes_folders: bool = False) -> None:
    """ConfigError (before anything is written) when the file `path` cannot be written; `makes_folders`:
    the writer creates missing folders (then the nearest existing one must be a folder)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"cannot write the {what} to {str(path)!r}: it is a directory; give a file name")
        parent = p.parent
        if makes_folders:
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise ConfigError(f"cannot write the {what} to {str(path)!r}: {str(parent)!r} is not a directory")
        elif not parent.is_dir():
            raise ConfigError(f"cannot write the {what} to {str(path)!r}: the directory {str(parent)!r} does not "
                              f"exist")
    except OSError as e:
        raise ConfigError(f"cannot write the {what} to {str(path)!r}: {e.strerror or e}") from None


def _writable(path: str | Path, what: str):
    """Open `path` for writing; ConfigError (not a traceback) when it cannot be."""
    _check_output(path, what)
    try:
        return open(path, "w", newline="")
    except OSError as e:
        raise ConfigError(f"cannot write the {what} to {str(path)!r}: {e.strerror or e}") from None


def _check_workers(n: int | None) -> None:
    if n is not None and n < 1:
        raise ConfigError(f"--workers must be >= 1 (1: train in this process), got {n}")


def _check_threads(n: int | None) -> None:
    if n is not None and n < 1:
        raise ConfigError(f"--threads must be >= 1 (threads per worker; default: cores // workers), got {n}")


def _executor(args: argparse.Namespace):
    if args.executor == "ray":
        from .arena.ray_executor import RayExecutor

        return RayExecutor(args.address, args.workers, args.threads or 1, checkpoint_dir=args.checkpoint_dir,
                           vmap_seeds=args.vmap_seeds, lease_ttl_s=args.lease_ttl)
    for option in ("address", "checkpoint_dir"):
        if getattr(args, option) is not None:
            raise ConfigError(f"--{option.replace('_', '-')} is an option of --executor ray; the local executor "
                              "keeps checkpoints in the store")
    from .arena.executor import LocalExecutor

    return LocalExecutor(args.workers or 1, args.threads, vmap_seeds=args.vmap_seeds, lease_ttl_s=args.lease_ttl)


def _check_device(device: str) -> None:
    """Refuse a device that cannot run here before anything is written."""
    import torch

    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown --device {device!r}: write cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device!r}: no CUDA device is available here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"numbered from 0")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {device!r}: MPS is not available here; use --device cpu (or auto)")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {device!r} is not supported: write cpu, cuda, cuda:N, mps or auto")


def cmd_blocks(args: argparse.Namespace, console: Console) -> int:
    from .models import count_parameters
    from .registry import build, entries

    t = Table(title="registered blocks (params at d_model = 64)", title_justify="left")
    for col in ("kind", "name", "paper", "params", "file"):
        t.add_column(col, justify="right" if col == "params" else "left")
    for e in entries():
        if args.kind and e.kind != args.kind:
            continue
        if e.kind == "method":  # a training method has no width and no parameters of its own
            params = "—"
        else:
            try:
                params = f"{count_parameters(build(e.kind, e.name, 64)):,}"
            except LayerlabError as err:
                params = f"({err})"
        t.add_row(escape(e.kind), escape(e.name), escape(e.paper.cite()) if e.paper else "—", escape(params),
                  escape(_source_file(e)))
    console.print(t)
    return 0


def _source_file(entry) -> str:
    """The file defining a registered block (relative to the layerlab package where possible)."""
    found = getattr(entry, "source_file", None)
    if found:
        return found
    import inspect
    from pathlib import Path

    try:
        path = Path(inspect.getsourcefile(entry.cls) or "")
    except TypeError:
        return "—"
    parts = path.parts
    return "/".join(parts[parts.index("layerlab") + 1:]) if "layerlab" in parts else str(path)


def cmd_suites(args: argparse.Namespace, console: Console) -> int:
    from .arena.suite import builtin_suites, load_suite

    for name in builtin_suites():
        s = load_suite(name)
        console.print(f"[b]{escape(name)}[/b]: {escape(s.description)}", highlight=False)
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from .arena.runner import run_suite
    from .arena.suite import load_suite

    _check_workers(args.workers)
    _check_threads(args.threads)
    _check_device(args.device)
    executor = _executor(args)
    store = _store(args)
    suite = load_suite(args.suite)
    # run_suite expands (validates) the whole suite before its first write: a bad suite leaves no store
    counts = run_suite(suite, store, executor=executor, device=args.device, console=console)
    return 0 if counts.get("failed", 0) == 0 else 1


def cmd_board(args: argparse.Namespace, console: Console) -> int:
    from .arena.leaderboard import board, render

    store = _existing_store(args)
    have = store.suites() if store is not None else []
    if args.suite and args.suite not in have:
        raise unknown_name("suite in the store", args.suite, have)
    if not have:
        _say(console, f"the store {args.store} has no suite runs yet: try `layerlab run quick`")
        return 1
    suites = [args.suite] if args.suite else have
    if args.baseline:
        labels = {r["model"] for s in suites for r in store.suite_rows(s)}
        if args.baseline not in labels:
            raise unknown_name("baseline model label", args.baseline, labels)
    for s in suites:
        for table in render(board(store, s, args.baseline or _suite_baseline(s)), s):
            console.print(table)
    return 0


def _suite_baseline(name: str) -> str | None:
    """The baseline a built-in suite names (a suite run from a file: pass --baseline)."""
    from .arena.suite import builtin_suites, load_suite

    return load_suite(name).baseline if name in builtin_suites() else None


def _export_rows(store) -> list[dict]:
    rows: list[dict] = []
    if store is None:
        return rows
    for r in store.runs():
        row = {k: r[k] for k in ("run_id", "status", "step", "total_steps", "git_revision", "device",
                                 "data_checksum", "n_params", "train_time_s", "wall_time_s", "stop_reason",
                                 "diverged_step", "created", "started", "finished")}
        row["spec"] = json.loads(r["spec_json"])
        row["versions"] = json.loads(r["versions_json"]) if r["versions_json"] else {}
        row["results"] = store.results(r["run_id"])
        row["suites"] = [s for s in store.suites() if any(x["run_id"] == r["run_id"] for x in store.suite_rows(s))]
        row["derived"] = store.derivation(r["run_id"])  # None for a trained run; parent, technique, level, ...
        rows.append(row)
    return rows


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    if args.format in EXPORT_TOOLS:
        return _export_to_tool(args, console)
    for flag, given in (("--to", args.to), ("--experiment", args.experiment), ("--no-plots", args.no_plots)):
        if given:
            raise ConfigError(f"{flag} is for --format mlflow or tensorboard; --format {args.format} writes to "
                              f"--output FILE (default: standard output)")
    if args.output:
        _check_output(args.output, "export")
    store = _existing_store(args)
    if args.suite:
        from .arena.exports import check_suite

        check_suite(store, args.suite)
    rows = [r for r in _export_rows(store) if args.suite is None or args.suite in r["suites"]]
    out = _writable(args.output, "export") if args.output else sys.stdout
    try:
        if args.format == "json":
            json.dump(rows, out, indent=2)
            out.write("\n")
        else:
            flat = [_flatten(r) for r in rows]
            fields = sorted({k for r in flat for k in r})
            w = csv.DictWriter(out, fieldnames=fields)
            w.writeheader()
            w.writerows(flat)
    finally:
        if args.output:
            out.close()
    return 0


EXPORT_TOOLS = {"mlflow": "mlflow ui --backend-store-uri {uri}", "tensorboard": "tensorboard --logdir {uri}"}
# MLflow 3 opens a file store (what a directory becomes) only when this is set
_FILE_STORE_UI = "MLFLOW_ALLOW_FILE_STORE=true "


def _export_to_tool(args: argparse.Namespace, console: Console) -> int:
    """`export --format mlflow|tensorboard --to DIR|URI`: every run (of --suite) written into the tool's store."""
    tool = args.format
    if args.output:
        raise ConfigError(f"--output is for --format csv or json; --format {tool} writes to --to "
                          f"{'DIR|URI' if tool == 'mlflow' else 'DIR'}")
    if not args.to:
        raise ConfigError(f"--format {tool} needs --to: " + ("a directory (an MLflow file store, e.g. --to mlruns) "
                          "or a tracking URI (--to http://HOST:5000)" if tool == "mlflow" else
                          "a log directory, e.g. --to tb-logs"))
    if tool == "tensorboard" and args.experiment:
        raise ConfigError("--experiment is for --format mlflow (TensorBoard has no experiments: one folder per run)")
    if tool == "tensorboard" and args.no_plots:
        raise ConfigError("--no-plots is for --format mlflow (the TensorBoard export draws no plots)")
    store = _existing_store(args)
    if store is None:
        raise ConfigError(f"there is no store at {args.store!r}: nothing to export "
                          f"(`layerlab run SUITE --store {args.store}` makes one)")
    if tool == "mlflow":
        from .arena.export_mlflow import DEFAULT_EXPERIMENT, export_mlflow

        summary = export_mlflow(store, args.to, suite=args.suite, experiment=args.experiment or DEFAULT_EXPERIMENT,
                                plots=not args.no_plots)
    else:
        from .arena.export_tensorboard import export_tensorboard

        summary = export_tensorboard(store, args.to, suite=args.suite)
    _say(console, f"exported to {tool} at {summary.target}: {summary.line()}")
    if summary.missing_arrays:
        _say(console, f"warning: {len(summary.missing_arrays)} probe arrays indexed in the store are missing from its "
                      f"artifacts folder and were not exported (first: {summary.missing_arrays[0]})")
    opener = _FILE_STORE_UI if summary.target.startswith("file:") else ""
    _say(console, "browse: " + opener + EXPORT_TOOLS[tool].format(uri=summary.target))
    return 0


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    store = _existing_store(args)
    if args.status and args.status not in RUN_STATUSES:
        raise unknown_name("run status", args.status, RUN_STATUSES)
    if args.suite and args.suite not in (store.suites() if store is not None else []):
        raise unknown_name("suite in the store", args.suite, store.suites() if store is not None else [])
    t = Table(title=escape(f"runs in {args.store}"), title_justify="left")
    derived = {d["run_id"]: d for d in store.derived_runs()} if store is not None else {}
    for col in ("run", "task", "model", "lr", "seed", "status", "step", "params") + (("derived from",) if derived else ()):
        t.add_column(col)
    for r in store.runs(suite=args.suite, status=args.status) if store is not None else []:
        spec = json.loads(r["spec_json"])
        cells = [escape(r["run_id"]), escape(spec["task"]["name"]), escape(f"{spec['model']['backbone']}:{spec['model']['mixer']}+"
                 f"{spec['model']['channel']} d={spec['model']['d_model']}"), f"{spec['optim']['lr']:g}",
                 str(spec["seed"]), escape(r["status"]), f"{r['step']}/{r['total_steps']}", f"{r['n_params'] or '—'}"]
        if derived:  # a derived run's params are its nonzero parameters
            d = derived.get(r["run_id"])
            cells.append(escape(f"{d['parent_id']} · {d['technique']} {d['level']:g}" + (f" · seed {d['seed']}" if d["seed"] else ""))
                         if d else "")
        t.add_row(*cells)
    console.print(t)
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    store = _existing_store(args)
    r = _find_run(store, args.run_id, args.store)
    console.print_json(json.dumps({**{k: v for k, v in r.items() if k not in ("spec_json", "versions_json")},
                                   "spec": json.loads(r["spec_json"]),
                                   "versions": json.loads(r["versions_json"] or "{}"),
                                   "results": store.results(r["run_id"]),
                                   "events": store.events(r["run_id"]),
                                   **({"derived": d} if (d := store.derivation(r["run_id"])) else {})}))
    return 0


def cmd_plot(args: argparse.Namespace, console: Console) -> int:
    from .arena.plots import plot_compression, plot_run

    if args.output and Path(args.output).suffix.lower() not in PLOT_FORMATS:
        raise ConfigError(f"cannot plot to {args.output!r}: the file name must end in "
                          f"{' or '.join(PLOT_FORMATS)}")
    if args.output:
        _check_output(args.output, "plot")
    store = _existing_store(args)
    run_id = _find_run(store, args.run_id, args.store)["run_id"]
    derivation = store.derivation(run_id)
    if args.compression or derivation is not None:  # a derived run has no learning curve: its parent's sweep
        parent = derivation["parent_id"] if derivation is not None else run_id
        if derivation is not None and not args.compression:
            _say(console, f"run {run_id} is derived from run {parent} ({derivation['technique']}): plotting the "
                          f"quality-vs-saving curves of {parent}'s derived runs")
        if not any(r["status"] == "done" for r in store.derived_runs(parent)):
            raise ConfigError(f"run {parent} has no finished derived runs yet: `layerlab compress {parent} "
                              f"--technique NAME --levels L1,L2` makes some (`layerlab compress --list`)")
        _say(console, f"wrote {_plot_written(lambda: plot_compression(store, parent, args.output), args.output or parent)}")
        return 0
    if not store.metrics(run_id):
        raise ConfigError(f"run {run_id} has no recorded metrics yet (status {store.run(run_id)['status']}): "
                          f"nothing to plot")
    _say(console, f"wrote {_plot_written(lambda: plot_run(store, run_id, args.output), args.output or run_id)}")
    return 0


def _plot_written(plot, target: str | Path):
    """The path ``plot()`` wrote; a ConfigError naming ``target`` when it cannot be written."""
    try:
        return plot()
    except OSError as e:
        raise ConfigError(f"cannot write the plot to {str(target)!r}: {e.strerror or e}") from None


PLOT_FORMATS = (".png", ".svg", ".pdf")


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from .report import write_report

    if args.output:
        _check_output(args.output, "report", makes_folders=True)
    try:
        path = write_report(_open(Path(args.store)), args.output)
    except OSError as e:
        raise ConfigError(f"cannot write the report: {e.strerror or e} ({e.filename or args.output})") from None
    _say(console, f"report: {path.resolve()}")
    return 0


def cmd_lens(args: argparse.Namespace, console: Console) -> int:
    from .arena.inspect_run import probe_checkpoint
    from .lens.probes import check_probes

    if args.summary:
        return _lens_summary(args, console)
    if args.format != "table":
        raise ConfigError(f"--format {args.format} applies to --summary; probes print a table")
    if not args.probe:
        raise ConfigError("give --probe NAMES (e.g. hessian,spectra) or --summary (the weight-spectra table)")
    names = tuple(n.strip() for n in args.probe.split(",") if n.strip())
    if not names:
        raise ConfigError(f"--probe {args.probe!r} names no probe: give comma-separated names, e.g. hessian,spectra")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1 (validation examples the probes look at), got {args.batch_size}")
    _check_device(args.device)
    options: dict[str, dict] = {}
    for item in args.option or []:
        key, _, value = item.partition("=")
        probe, _, opt = key.partition(".")
        if not value or not opt or not probe:
            raise ConfigError(f"--option {item!r}: write PROBE.OPTION=VALUE, e.g. hessian.k=3")
        if probe not in names:
            raise ConfigError(f"--option {item!r} sets an option of probe {probe!r}, which --probe does not name "
                              f"({', '.join(names)})")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare word: a string option
        options.setdefault(probe, {})[opt] = parsed
    check_probes(names, options)
    store = _existing_store(args)
    run_id = _find_run(store, args.run_id, args.store)["run_id"]
    step, out = probe_checkpoint(store, run_id, names, options=options, batch_size=args.batch_size,
                                 device=args.device)
    t = Table(title=escape(f"run {run_id} at step {step}: probes {', '.join(names)}"), title_justify="left")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in out.scalars.items():
        t.add_row(escape(k), f"{v:.6g}")
    console.print(t)
    if out.arrays:
        _say(console, f"{len(out.arrays)} arrays stored under {store.artifact_dir(run_id)}/{step}/")
    return 0


def _lens_summary(args: argparse.Namespace, console: Console) -> int:
    """`layerlab lens RUN_ID --summary`: WeightWatcher's analyze() table of the checkpoint's weights."""
    from .arena.inspect_run import checkpoint_model
    from .lens.spectra import model_summary

    if args.probe or args.option:
        raise ConfigError("--summary prints the weight-spectra table; run --probe/--option separately")
    _check_device(args.device)
    store = _existing_store(args)
    run_id = _find_run(store, args.run_id, args.store)["run_id"]
    state, _, model = checkpoint_model(store, run_id, args.device)
    summary = model_summary(model, method=args.fit, fix_fingers=args.fix_fingers, randomize=args.randomize)
    if args.format == "json":
        print(json.dumps({"run_id": run_id, "step": int(state["step"]), "layers": summary.layers,
                          "average": summary.average}, indent=1))
        return 0
    keys = list(dict.fromkeys(k for row in summary.layers for k in row))
    if args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(summary.layers)
        writer.writerow({"name": "average", **summary.average})
        return 0
    keys = [k for k in ("name", "N", "M", "alpha", "ks_distance", "log_norm", "log_spectral_norm", "alpha_weighted",
                        "log_alpha_norm", "stable_rank", "n_fingers", "num_traps", "warning") if k in keys]
    t = Table(title=escape(f"run {run_id} at step {state['step']}: weight spectra ({args.fit} fit; all columns: "
                           "--format json or csv)"), title_justify="left")
    for k in keys:
        t.add_column(k, justify="left" if k in ("name", "warning") else "right", overflow="fold")
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    for row in summary.layers:
        t.add_row(*(escape(fmt(row.get(k, ""))) for k in keys))
    t.add_row(*("average" if k == "name" else fmt(summary.average[k]) if k in summary.average else "" for k in keys))
    console.print(t)
    return 0


# ---- compression -----------------------------------------------------------------------------
def _levels_arg(text: str) -> list[float]:
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        levels = []
    if not levels:
        raise ConfigError(f"--levels {text!r}: write comma-separated numbers, e.g. 0.5,0.7,0.9 (or 8,4 bits)")
    return levels


def _technique_options_arg(items: list[str] | None) -> dict:
    options: dict = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value:
            raise ConfigError(f"--option {item!r}: write NAME=VALUE, e.g. bias=true "
                              f"(`layerlab compress --list` shows each technique's options)")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:  # a bare word: a string, or Python's spelling of a boolean
            parsed = {"True": True, "False": False, "None": None}.get(value, value)
        options[key.strip()] = parsed
    return options


def _list_techniques(console: Console) -> int:
    from .compress import TECHNIQUES, technique_options

    t = Table(title=f"{len(TECHNIQUES)} compression techniques (`layerlab compress RUN_ID --technique NAME "
                    f"--levels ...`)", title_justify="left")
    for col in ("technique", "level kind", "default levels", "options", "paper", "file"):
        t.add_column(col, no_wrap=col == "technique", overflow="fold")
    for e in TECHNIQUES.entries():
        opts = ", ".join(f"{k}={v!r}" for k, v in technique_options(e.name).items()) or "—"
        t.add_row(escape(e.name), escape(str(e.meta.get("level_kind", ""))),
                  escape(",".join(f"{v:g}" for v in e.meta.get("levels", ())) or "—"), escape(opts),
                  escape(e.paper.cite()) if e.paper else "—", escape(e.source_file or "—"))
    console.print(t)
    return 0


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:g}"


def compress_table(store, parent_id: str, technique: str, outcomes: list) -> Table:
    """Level, status, val/test metric (and the change of test against the parent), and each measured
    saving with its ratio against the dense parent, for the outcomes of one `layerlab compress`."""
    from .tasks import build_task

    spec = store.spec(parent_id)
    task = build_task(spec.task.name, **spec.task.params)
    metric = task.metric
    parent = store.results(parent_id)
    from rich import box

    t = Table(title=escape(f"{technique} on run {parent_id} ({spec.task.name}, {spec.model.label()}): {metric} and "
                           f"savings (× the dense parent, measured in the same call)"), title_justify="left",
              box=box.SIMPLE_HEAD)
    for col in ("level", "status", "val", "test", "Δ test", "nonzero params", "bits", "time / forward", "memory", "run"):
        t.add_column(escape(col), justify="left" if col in ("status", "run") else "right", no_wrap=True)

    def value(results: dict, split: str) -> str:
        v = results.get(split, {}).get(metric)
        return "—" if v is None else f"{v:.4f}" if abs(v) < 10 else f"{v:.4g}"

    dense = next((o.results["savings"] for o in outcomes if "savings" in o.results), None)
    if dense is not None:
        t.add_row("dense", "parent", value(parent, "val"), value(parent, "test"), "", f"{dense['dense_nonzero_params']:,.0f}",
                  _bytes(dense["dense_bits"] / 8), f"{1e3 * dense['dense_time_s']:.3g} ms",
                  _bytes(dense["dense_memory_bytes"]), escape(parent_id))
    for o in outcomes:
        sv = o.results.get("savings")
        test, base = o.results.get("test", {}).get(metric), parent.get("test", {}).get(metric)
        delta = "—" if test is None or base is None else f"{test - base:+.4f}" if abs(test - base) < 10 else f"{test - base:+.4g}"
        if sv is None:
            cells = ["—"] * 4
        else:
            cells = [f"{sv['nonzero_params']:,.0f} ({sv['nonzero_ratio']:.3g}×)", f"{_bytes(sv['bits'] / 8)} "
                     f"({sv['bits_ratio']:.3g}×)", f"{1e3 * sv['time_s']:.3g} ms ({sv['time_ratio']:.2f}×)",
                     f"{_bytes(sv['memory_bytes'])} ({sv['memory_ratio']:.3g}×)"]
        status = {"skipped": "kept"}.get(o.status, o.status)  # done by an earlier call
        t.add_row(f"{o.level:g}", escape(status), value(o.results, "val"), value(o.results, "test"), delta, *cells,
                  escape(o.run_id))
    return t


def cmd_compress(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .compress import TECHNIQUES
    from .compress.derived import compress_run, plan_compress

    if args.list:
        given = [f for f, v in (("RUN_ID", args.run_id), ("--technique", args.technique), ("--level", args.level),
                                ("--levels", args.levels), ("--option", args.option)) if v is not None]
        if given:
            raise ConfigError(f"--list lists the techniques and takes nothing else; drop {', '.join(given)}")
        return _list_techniques(console)
    if not args.run_id:
        raise ConfigError("give RUN_ID (`layerlab runs` lists them) and --technique NAME, or --list")
    if not args.technique:
        raise ConfigError("give --technique NAME (`layerlab compress --list` lists the techniques)")
    entry = TECHNIQUES.entry(args.technique)  # an unknown name: the closest ones suggested
    if args.level is not None and args.levels is not None:
        raise ConfigError("give --level L or --levels L1,L2,..., not both")
    if args.level is not None:
        levels = [args.level]
    elif args.levels is not None:
        levels = _levels_arg(args.levels)
    else:
        levels = list(entry.meta.get("levels", ()))
        if not levels:
            raise ConfigError(f"technique {args.technique!r} has no default levels: give --level L or --levels L1,L2,...")
    options = _technique_options_arg(args.option)
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1 (interleaved timings of each model), got {args.repeats}")
    _check_device(args.device)
    store = _existing_store(args)
    run_id = _find_run(store, args.run_id, args.store)["run_id"]
    plan = plan_compress(store, run_id, args.technique, levels, options=options, seed=args.seed,
                         calibration=args.calibration)  # everything checked before the first write
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=len(plan.levels) < 2) as progress:
        bar = progress.add_task(escape(f"{args.technique} on {run_id}"), total=len(plan.levels))
        outcomes = compress_run(
            store, run_id, args.technique, plan.levels, plan=plan, device=args.device, repeats=args.repeats,
            on_start=lambda level, rid: progress.update(bar, description=escape(f"{args.technique} level {level:g}")),
            on_done=lambda o: progress.advance(bar))
    console.print(compress_table(store, run_id, args.technique, outcomes))
    for o in outcomes:
        if o.status == "failed":
            _say(console, f"level {o.level:g} failed: {o.error.splitlines()[0] if o.error else ''} "
                          f"(`layerlab show {o.run_id}`; run the same command again to retry)", style="red")
    skipped = sum(o.status == "skipped" for o in outcomes)
    if skipped:
        _say(console, f"{skipped} of {len(outcomes)} level(s) were done before: kept, not recomputed")
    return 0 if all(o.status != "failed" for o in outcomes) else 1


# ---- claims ----------------------------------------------------------------------------------
def _cards_of_kind(cards: list, kind: str | None) -> list:
    """Cards whose claim kind (comparative, ...) or whose paper's catalogue kind (training, ...) is
    `kind`; an unknown kind is an error that lists both."""
    from .claims.card import KINDS
    from .claims.catalogue import KINDS as PAPER_KINDS, paper_kinds

    if not kind:
        return cards
    if kind in KINDS:
        return [c for c in cards if c.kind == kind]
    if kind in PAPER_KINDS:  # "training" also takes every card whose suite applies a training method
        of = paper_kinds(c.paper for c in cards)
        return [c for c in cards if of[c.paper] == kind or (kind == "training" and c.methods)]
    raise unknown_name("claim or paper kind", kind, KINDS + PAPER_KINDS)


def _selected_cards(args: argparse.Namespace) -> list:
    from .claims.card import load_card, load_cards

    if args.all and args.cards:
        raise ConfigError("give card ids or files, or --all, not both")
    if not args.all and not args.cards:
        raise ConfigError("give card ids or files (`layerlab cards` lists them), or --all")
    _cards_of_kind([], args.kind)  # an unknown kind fails before any card is read
    cards = load_cards() if args.all else [load_card(c) for c in args.cards]  # all parsed before anything runs
    cards = _cards_of_kind(cards, args.kind)
    if not cards:
        raise ConfigError(f"no card of kind {args.kind!r} among the cards given")
    return cards


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    import time

    from .claims.check import check_cards, verdict_table

    _check_workers(args.workers)
    _check_threads(args.threads)
    _check_device(args.device)
    executor = _executor(args)
    store = _store(args)
    cards = _selected_cards(args)
    t0 = time.time()
    # check_cards plans (validates) every card before the first one trains or writes
    results = check_cards(cards, store, executor=executor, device=args.device,
                          console=console, show_board=args.board)
    if len(results) > 1:
        counts = {v: sum(r.outcome.verdict == v for r in results) for v in ("supported", "contradicted", "inconclusive")}
        console.print(verdict_table([r.record for r in results],
                                    title=f"{len(results)} cards checked in {time.time() - t0:.0f} s: "
                                          + ", ".join(f"{n} {v}" for v, n in counts.items() if n)))
    return 0


def cmd_verdicts(args: argparse.Namespace, console: Console) -> int:
    from .claims.check import model_table, verdict_table

    store = _existing_store(args)
    rows = store.verdicts(args.card, latest=not args.all) if store is not None else []
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        where = f"for card {args.card!r} " if args.card else ""
        console.print(f"no verdicts {escape(where)}in the store {escape(str(args.store))} yet: "
                      f"try `layerlab check --all`", highlight=False)
        return 1
    title = f"{'all' if args.all else 'latest'} verdicts in {escape(str(args.store))}"
    console.print(verdict_table(rows, title=title))
    if args.card:
        console.print(model_table(rows[-1]))
    return 0


def _setting(card) -> str:
    if card.measure is not None:
        return f"measure {card.measure.name}"
    if card.suite is not None:
        return f"suite {card.suite}"
    data = card.suite_data or {}
    return f"inline suite: {len(data.get('tasks', []))} task(s) × {len(data.get('models', []))} model(s)"


def cmd_cards(args: argparse.Namespace, console: Console) -> int:
    from .claims.card import load_cards
    from .claims.rules import describe

    cards = _cards_of_kind(load_cards(), args.kind)
    if args.format == "json":
        print(json.dumps([{**c.to_dict(), "hash": c.hash, "path": str(c.path)} for c in cards], indent=2))
        return 0
    t = Table(title=f"{len(cards)} claim cards", title_justify="left")
    for col in ("card", "kind", "paper", "setting", "rule", "hash"):
        t.add_column(col, no_wrap=col in ("card", "hash"))
    for c in cards:
        t.add_row(escape(c.id), escape(c.kind), escape(c.paper), escape(_setting(c)), escape(describe(c.rule)),
                  c.hash[:8])
    console.print(t)
    return 0


def cmd_papers(args: argparse.Namespace, console: Console) -> int:
    from .claims.catalogue import STATUSES, find_paper, load_catalogue

    if args.status and args.status not in STATUSES:
        raise unknown_name("paper status", args.status, STATUSES)
    store = _existing_store(args)
    if args.query:
        paper = find_paper(" ".join(args.query), store)
        if args.format == "json":
            print(json.dumps(paper.as_dict(), indent=2))
            return 0
        _print_paper(paper, console)
        return 0
    papers = [p for p in load_catalogue(store) if (not args.kind or p.kind == args.kind)
              and (not args.status or p.status == args.status)]
    if args.format == "json":
        print(json.dumps([p.as_dict() for p in papers], indent=2))
        return 0
    t = Table(title=f"{len(papers)} papers", title_justify="left")
    for col in ("paper", "kind", "year", "status", "systems or why not", "cards", "title"):
        t.add_column(col, no_wrap=col in ("paper", "status"), min_width=30 if col == "title" else None,
                     max_width=36 if col == "systems or why not" else None)
    for p in papers:
        t.add_row(escape(p.slug), escape(p.kind), str(p.year), escape(p.status),
                  escape(", ".join(s.name for s in p.systems) or (p.note or "—")),
                  escape(", ".join(p.cards) or "—"), escape(p.title))
    console.print(t)
    return 0


def _print_paper(p, console: Console) -> None:
    from .claims.card import load_cards
    from .claims.check import verdict_table
    from .claims.rules import describe

    arxiv = f", arXiv:{p.arxiv}" if p.arxiv else ""
    console.print(Text(f"{p.title} ({p.year}{arxiv})", style="bold"))
    console.print(Text(f"slug {p.slug} · kind {p.kind} · status {p.status}"))
    for label, text in (("partial", p.partial), ("note", p.note)):
        if text:
            console.print(Text(f"{label}: {text}"))
    t = Table(title="systems", title_justify="left")
    for col in ("kind", "name", "file", "tests"):
        t.add_column(col)
    for s in p.systems:
        t.add_row(escape(s.kind), escape(s.name), escape(s.file), escape("\n".join(s.tests) or "—"))
    console.print(t if p.systems else Text("systems: none"))
    cards = {c.id: c for c in load_cards()}
    if p.cards:
        ct = Table(title="claim cards", title_justify="left")
        for col in ("card", "kind", "claim", "rule"):
            ct.add_column(col)
        for cid in p.cards:
            c = cards.get(cid)
            ct.add_row(escape(cid), escape(c.kind if c else "?"), escape(c.claim if c else ""),
                       escape(describe(c.rule) if c else ""))
        console.print(ct)
    else:
        console.print(Text("claim cards: none"))
    if p.verdicts:
        console.print(verdict_table(list(p.verdicts), title="verdicts (latest per card, for its current hash)"))
    elif p.cards:
        console.print(Text("verdicts: none yet (`layerlab check " + " ".join(p.cards) + "`)"))


class UsageError(Exception):
    """A command line argparse cannot parse (unknown command or flag, missing or malformed value)."""


_CHOICE = re.compile(r"^argument (?P<arg>\S+): invalid choice: (?P<value>.+?) \(choose from (?P<choices>.*)\)$")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised (one line, then exit status 2 from `main`) instead of printed
    after a usage block; no abbreviated flags (``--sto`` is an unknown flag, not ``--store``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D102  (argparse's hook)
        m = _CHOICE.match(message)
        if m:  # argparse lists the choices; say which one was meant, as the rest of layerlab does
            from .errors import close_matches

            choices = [c.strip().strip("'") for c in m["choices"].split(",")]
            value = m["value"].strip("'")
            what = "command" if m["arg"] == "command" else f"value for {m['arg']}"
            near = close_matches(value, choices, n=2)
            did = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
            message = f"unknown {what} {m['value']} ({did}valid: {', '.join(choices)})"
        raise UsageError(f"{self.prog}: {message} (`{self.prog} --help` shows the usage)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="layerlab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_store(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--store", default=DEFAULT_STORE, help=f"store directory (default ./{DEFAULT_STORE})")
        return sp

    b = sub.add_parser("blocks", help="every registered block and method: kind, name, paper, params at d=64, file")
    b.add_argument("--kind", choices=REGISTRY_KINDS)
    b.set_defaults(fn=cmd_blocks)
    sub.add_parser("suites", help="the built-in suites").set_defaults(fn=cmd_suites)
    r = with_store(sub.add_parser("run", help="run a suite (built-in name or TOML path); skips finished runs"))
    r.add_argument("suite")
    r.add_argument("--workers", type=int, help="worker processes (default 1: in this process); with "
                    "--executor ray, tasks in flight (default: the cluster's CPUs // threads)")
    r.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local processes (default), or Ray tasks on a cluster (pip install 'layerlab[ray]')")
    r.add_argument("--address", help="--executor ray: a running cluster ('auto' or HOST:PORT); default: "
                    "start a local Ray runtime")
    r.add_argument("--checkpoint-dir", help="--executor ray: where workers keep checkpoints, a path every "
                    "node can reach (default: the store's checkpoints/)")
    r.add_argument("--threads", type=int, help="torch threads per worker (default: cores // workers)")
    r.add_argument("--vmap-seeds", action="store_true",
                   help="train the seeds of each (task, model, lr) cell as one vmapped model (same runs and ids)")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    r.add_argument("--lease-ttl", type=float, default=30.0, metavar="SECONDS",
                    help="a run this driver trains is leased in the store; another driver takes it over "
                         "when no heartbeat came for this long (default 30)")
    r.set_defaults(fn=cmd_run)
    bd = with_store(sub.add_parser("board", help="leaderboard: test metric, mean ± 95%% CI over seeds"))
    bd.add_argument("--suite")
    bd.add_argument("--baseline", help="model label to compare against (CI-separated better/worse); "
                                       "default: the suite's own baseline")
    bd.set_defaults(fn=cmd_board)
    e = with_store(sub.add_parser("export", help="every run: spec, provenance, final metrics (csv, json), or "
                                                 "everything recorded, into MLflow or TensorBoard"))
    e.add_argument("--format", choices=("csv", "json", "mlflow", "tensorboard"), default="json")
    e.add_argument("--output", "-o", help="csv, json: file to write (default: standard output)")
    e.add_argument("--to", metavar="DIR|URI", help="mlflow: a directory (MLflow file store) or tracking URI; "
                                                   "tensorboard: a log directory (one folder per run)")
    e.add_argument("--suite", help="only the runs of this suite")
    e.add_argument("--experiment", help="mlflow: the experiment to write into (default layerlab)")
    e.add_argument("--no-plots", action="store_true", help="mlflow: skip the learning-curve figure of each run")
    e.set_defaults(fn=cmd_export)
    ru = with_store(sub.add_parser("runs", help="list runs"))
    ru.add_argument("--suite")
    ru.add_argument("--status")
    ru.set_defaults(fn=cmd_runs)
    s = with_store(sub.add_parser("show", help="one run: spec, provenance, results, events"))
    s.add_argument("run_id", help="a run id or a unique prefix of one")
    s.set_defaults(fn=cmd_show)
    ln = with_store(sub.add_parser("lens", help="run instruments (probes) on a stored run's checkpoint"))
    ln.add_argument("run_id", help="a run id or a unique prefix of one")
    ln.add_argument("--probe", help="comma-separated probe names, e.g. hessian,spectra")
    ln.add_argument("--summary", action="store_true",
                    help="instead of probes: the weight-spectra table per layer and averaged (WeightWatcher's analyze())")
    ln.add_argument("--format", choices=("table", "json", "csv"), default="table", help="--summary's output")
    ln.add_argument("--fit", choices=("weightwatcher", "csn"), default="weightwatcher",
                    help="--summary's power-law fit (lens.spectra.power_law's method)")
    ln.add_argument("--fix-fingers", choices=("clip_xmax", "xmin_peak"), help="--summary: WeightWatcher's fix_fingers")
    ln.add_argument("--randomize", action="store_true", help="--summary: count correlation traps (num_traps)")
    ln.add_argument("--option", action="append", help="probe option PROBE.OPTION=VALUE (repeatable), e.g. hessian.k=3")
    ln.add_argument("--batch-size", type=int, default=256, help="validation examples the probes look at")
    ln.add_argument("--device", default="cpu")
    ln.set_defaults(fn=cmd_lens)
    pl = with_store(sub.add_parser("plot", help="learning curves of a run, or its quality-vs-saving curves (PNG or SVG)"))
    pl.add_argument("run_id")
    pl.add_argument("--output", "-o", help="file (.png or .svg; default RUN_ID.png)")
    pl.add_argument("--compression", action="store_true",
                    help="the test metric of the run's derived runs (`layerlab compress`) against each measured saving")
    pl.set_defaults(fn=cmd_plot)
    cp = with_store(sub.add_parser("compress", help="apply a compression technique to a finished run: derived runs "
                                                    "with their measured savings"))
    cp.add_argument("run_id", nargs="?", metavar="RUN_ID", help="a finished run (or a unique prefix of its id)")
    cp.add_argument("--technique", help="a technique name (`layerlab compress --list`)")
    cp.add_argument("--level", type=float, help="one level: fraction removed (sparsity), bits, or rank fraction kept")
    cp.add_argument("--levels", help="comma-separated levels, e.g. 0.5,0.7,0.9 (default: the technique's own sweep)")
    cp.add_argument("--option", action="append", help="technique option NAME=VALUE (repeatable), e.g. bias=true")
    cp.add_argument("--seed", type=int, default=0, help="seed of the calibration batch and the technique (default 0)")
    cp.add_argument("--calibration", type=int, default=256,
                    help="training-split examples in the calibration batch (default 256)")
    cp.add_argument("--repeats", type=int, default=15, help="interleaved timings of each model (default 15)")
    cp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    cp.add_argument("--list", action="store_true", help="list the techniques: level kind, default levels, options, paper")
    cp.set_defaults(fn=cmd_compress)
    ck = with_store(sub.add_parser("check", help="check claim cards: run, apply the rule, record the verdict"))
    ck.add_argument("cards", nargs="*", metavar="CARD", help="card ids (`layerlab cards`) or card TOML files")
    ck.add_argument("--all", action="store_true", help="every built-in card")
    ck.add_argument("--kind", help="only cards of this claim kind (comparative, absolute, closed-form, scaling, "
                    "qualitative) or paper kind (block, training, theory, instrument, efficiency)")
    ck.add_argument("--workers", type=int, help="worker processes (default 1: in this process); with "
                    "--executor ray, tasks in flight (default: the cluster's CPUs // threads)")
    ck.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local processes (default), or Ray tasks on a cluster (pip install 'layerlab[ray]')")
    ck.add_argument("--address", help="--executor ray: a running cluster ('auto' or HOST:PORT); default: "
                    "start a local Ray runtime")
    ck.add_argument("--checkpoint-dir", help="--executor ray: where workers keep checkpoints, a path every "
                    "node can reach (default: the store's checkpoints/)")
    ck.add_argument("--threads", type=int, help="torch threads per worker (default: cores // workers)")
    ck.add_argument("--vmap-seeds", action="store_true",
                    help="train the seeds of each (task, model, lr) cell as one vmapped model (same runs and ids)")
    ck.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    ck.add_argument("--lease-ttl", type=float, default=30.0, metavar="SECONDS",
                    help="a run this driver trains is leased in the store; another driver takes it over "
                         "when no heartbeat came for this long (default 30)")
    ck.add_argument("--board", action="store_true", help="also print each card's leaderboard")
    ck.set_defaults(fn=cmd_check)
    vd = with_store(sub.add_parser("verdicts", help="recorded verdicts: the latest per card (--all: every check)"))
    vd.add_argument("--card", help="one card id")
    vd.add_argument("--all", action="store_true", help="every recorded check, oldest first")
    vd.add_argument("--format", choices=("table", "json"), default="table")
    vd.set_defaults(fn=cmd_verdicts)
    cd = sub.add_parser("cards", help="the built-in claim cards")
    cd.add_argument("--kind", help="only cards of this claim kind or paper kind (e.g. closed-form, training)")
    cd.add_argument("--format", choices=("table", "json"), default="table")
    cd.set_defaults(fn=cmd_cards)
    pp = with_store(sub.add_parser("papers", help="the paper catalogue, or one paper (QUERY: slug, arXiv id, title words)"))
    pp.add_argument("query", nargs="*", metavar="QUERY")
    pp.add_argument("--kind", choices=("block", "training", "theory", "instrument", "efficiency"))
    pp.add_argument("--status", help="checked, implemented, partial or missing")
    pp.add_argument("--format", choices=("table", "json"), default="table")
    pp.set_defaults(fn=cmd_papers)
    rp = with_store(sub.add_parser("report", help="one self-contained HTML page: catalogue, verdicts, leaderboards"))
    rp.add_argument("--output", "-o", help="file to write (default: report.html in the store)")
    rp.set_defaults(fn=cmd_report)
    return p


def _error(message: str) -> None:
    """One error line on standard error, printed literally (no markup, no highlighting, no wrapping)."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(Text("error: ", style="red") + Text(line))


def main(argv: list[str] | None = None) -> int:
    """`layerlab ...`: 0 on success, 1 when runs failed (or nothing to show), 2 on bad input (one error line,
    nothing written), 1 with one line on a bug in layerlab (LAYERLAB_DEBUG=1: the traceback), 130 on Ctrl-C."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        _error(str(e))
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    # piped output (logs, CI) gets a width that fits the leaderboard instead of rich's 80 columns
    console = Console() if sys.stdout.isatty() else Console(width=140)
    try:
        return args.fn(args, console)
    except LayerlabError as e:
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        _say(console, "interrupted: run the same command again to resume where it stopped")
        return 130
    except Exception as e:  # a bug: one line, not a traceback, unless asked for
        if os.environ.get("LAYERLAB_DEBUG", "") not in ("", "0"):
            raise
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        _error(f"internal error ({what}). This is a bug in layerlab, not in your input: please report it with "
               f"the command you ran; LAYERLAB_DEBUG=1 shows the traceback.")
        return 1
    finally:
        while _OPENED:
            _OPENED.pop().close()


if __name__ == "__main__":
    sys.exit(main())
