"""The registry: names per kind, strict options, close-match hints, papers on every block, and
the one ``Registry`` pattern that blocks, tasks and probes share."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import layerlab
from layerlab.errors import ConfigError, UnknownNameError
from layerlab.registry import BLOCKS, KINDS, Entry, Registry, entries, get

EXPECTED = {
    "mixer": {"attention"},
    "channel": {"mlp", "swiglu"},
    "norm": {"layernorm", "rmsnorm"},
    "activation": {"gelu", "relu", "silu"},
    "method": {"orthograd", "gradient_noise", "mixup"},  # training methods: contract in tests/methods
}
BLOCK_ENTRIES = [e for e in entries() if e.kind != "method"]


@pytest.mark.parametrize("kind", KINDS)
def test_names_lists_each_kind(kind):
    names = layerlab.names(kind)
    assert EXPECTED[kind] <= set(names)
    assert names == sorted(names)


def test_build_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError) as info:
        layerlab.build("mixer", "attention", 64, n_head=4)
    msg = str(info.value)
    assert "'n_head'" in msg and "n_heads=4" in msg and "dropout" in msg


def test_build_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError) as info:
        layerlab.build("mixer", "atention", 64)
    assert "did you mean 'attention'" in str(info.value)
    with pytest.raises(ConfigError, match="rmsnorm"):
        layerlab.build("norm", "rmsnrom", 64)


def test_unknown_kind_is_an_error():
    with pytest.raises(ConfigError, match="mixer"):
        layerlab.names("mixers")


def test_build_passes_options():
    m = layerlab.build("mixer", "attention", 24, n_heads=3, bias=True, dtype=torch.float64)
    assert m.n_heads == 3 and m.w_qkv.bias is not None and m.w_qkv.weight.dtype == torch.float64
    assert layerlab.build("channel", "mlp", 8, expansion=2.0).hidden == 16


@pytest.mark.parametrize("entry", BLOCK_ENTRIES, ids=lambda e: f"{e.kind}:{e.name}")
def test_every_block_carries_its_paper_and_documents_it(entry):
    assert isinstance(entry.paper, layerlab.Paper)
    assert entry.paper.title and 1900 < entry.paper.year < 2100
    doc = entry.cls.__doc__ or ""
    assert entry.paper.title.split(":")[0][:30] in " ".join(doc.split())
    if entry.paper.arxiv:
        assert entry.paper.arxiv in doc
    assert "Shape" in doc, "the docstring states the shape contract"
    assert get(entry.kind, entry.name).cls is entry.cls
    assert entry.cls.registry_name == entry.name and entry.cls.registry_kind == entry.kind
    assert entry.cls.paper is entry.paper


@pytest.mark.parametrize("entry", BLOCK_ENTRIES, ids=lambda e: f"{e.kind}:{e.name}")
def test_every_block_names_the_file_of_its_class(entry):
    package = Path(layerlab.__file__).resolve().parent
    assert entry.source_file == Path(sys.modules[entry.cls.__module__].__file__).resolve().relative_to(
        package).as_posix()
    assert entry.source_file.startswith("blocks/") and (package / entry.source_file).is_file()
    assert f"class {entry.cls.__name__}" in (package / entry.source_file).read_text()


def test_source_file_of_a_mixer_and_of_a_class_outside_the_package():
    assert get("mixer", "attention").source_file == "blocks/mixers/attention.py"
    assert get("norm", "rmsnorm").source_file == "blocks/norms.py"

    class Local:
        pass

    assert Entry("thing", "local", Local).source_file == str(Path(__file__).resolve())


def test_builtin_blocks_are_registered_by_any_import_of_layerlab():
    """The registry does not import the blocks; the facade does, and Python runs it first."""
    for code in ("import layerlab; print(len(layerlab.names('mixer')))",
                 "from layerlab.registry import names; print(len(names('mixer')))",
                 "from layerlab.errors import ConfigError; from layerlab.registry import get; "
                 "print(len([get('mixer', 'attention')] * len(__import__('layerlab').names('mixer'))))"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert int(out) == len(layerlab.names("mixer")) >= 10, code


# ---- the generic Registry ------------------------------------------------------------------
def test_registry_registers_finds_and_lists_by_name():
    reg = Registry("widget")

    def a():
        pass

    def b():
        pass

    entry = reg.add("beta", b, paper=layerlab.Paper("P", 2020), cost=3)
    reg.add("alpha", a)
    assert reg.names() == ["alpha", "beta"] and list(reg) == ["alpha", "beta"] and len(reg) == 2
    assert reg["beta"] is b and reg.entry("beta") is entry and "beta" in reg and "gamma" not in reg
    assert entry.kind == "widget" and entry.name == "beta" and entry.meta == {"cost": 3}
    assert entry.paper.year == 2020 and reg.entry("alpha").meta == {} and reg.entry("alpha").paper is None
    assert [e.name for e in reg.entries()] == ["alpha", "beta"]
    with pytest.raises(UnknownNameError, match=r"unknown widget 'betta'; did you mean 'beta'\? Valid: alpha, beta"):
        reg["betta"]
    with pytest.raises(KeyError):  # a Mapping: .get() and `in` work as for a dict
        reg.entry("gamma")
    assert reg.get("gamma") is None


def test_registry_rejects_a_second_object_under_one_name():
    reg = Registry("widget", what="widget type")

    def a():
        pass

    def other():
        pass

    reg.add("a", a)
    reg.add("a", a, note=1)  # the same object again (a module imported twice) is fine
    assert reg.entry("a").meta == {"note": 1}
    with pytest.raises(ConfigError, match=r"widget type 'a' is registered twice \(.*\.a, .*\.other\)"):
        reg.add("a", other)
    assert reg["a"] is a


def test_registry_item_assignment_only_swaps_an_existing_object():
    reg = Registry("widget")
    reg.add("a", len, cost=1)
    reg["a"] = abs
    assert reg["a"] is abs and reg.entry("a").meta == {"cost": 1}
    with pytest.raises(UnknownNameError, match="unknown widget 'b'"):
        reg["b"] = abs


def test_blocks_tasks_and_probes_share_the_registry_pattern():
    from layerlab.lens import probes
    from layerlab.tasks import TASKS

    assert set(BLOCKS) == set(KINDS) and all(isinstance(r, Registry) for r in BLOCKS.values())
    assert isinstance(TASKS, Registry) and isinstance(probes.PROBES, Registry)
    assert not hasattr(probes, "CAPTURES") and not hasattr(probes, "OPTION_CHECKS")  # a probe is declared once
    assert probes.probe_names() == probes.PROBES.names()
    readers = {n for n in probes.PROBES.names() if probes.PROBES.entry(n).meta["captures"] is not None}
    assert readers == {"collapse", "dynamics", "similarity", "information_plane", "diffusion_entropy", "variability", "degeneracy"}
    assert probes.PROBES.entry("hessian").meta["check"] is not None
    with pytest.raises(UnknownNameError, match="unknown probe 'hesian'; did you mean 'hessian'"):
        probes.check_probes(("hesian",), {})
