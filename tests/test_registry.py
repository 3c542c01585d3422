"""The registry: names per kind, strict options, close-match hints, papers on every block."""
import pytest
import torch

import layerlab
from layerlab.errors import ConfigError
from layerlab.registry import KINDS, entries, get

EXPECTED = {
    "mixer": {"attention"},
    "channel": {"mlp", "swiglu"},
    "norm": {"layernorm", "rmsnorm"},
    "activation": {"gelu", "relu", "silu"},
}


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


@pytest.mark.parametrize("entry", entries(), ids=lambda e: f"{e.kind}:{e.name}")
def test_every_block_carries_its_paper_and_documents_it(entry):
    assert isinstance(entry.paper, layerlab.Paper)
    assert entry.paper.title and 1900 < entry.paper.year < 2100
    doc = entry.cls.__doc__ or ""
    assert entry.paper.title.split(":")[0][:30] in " ".join(doc.split())
    if entry.paper.arxiv:
        assert entry.paper.arxiv in doc
    assert "Shape" in doc, "the docstring states the shape contract"
    assert get(entry.kind, entry.name).cls is entry.cls
    assert entry.cls.registry_name == entry.name
