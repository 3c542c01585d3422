"""Specs are plain data: their run ids are stable, and building one loads no instrument."""
import json
import subprocess
import sys

import pytest

from layerlab.errors import ConfigError, UnknownNameError
from layerlab.spec import ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec

# run ids computed before ModelSpec moved into spec.py and the probe check left ProbeSpec
KNOWN_RUN_IDS = [
    (RunSpec(task=TaskSpec("mqar", {"pairs": 8}),
             model=ModelSpec(mixer="attention", channel="mlp", d_model=64, mixer_options={"n_heads": 4}),
             train=TrainSpec(steps=500)), "e9da8ec53f15c1eb"),
    (RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", d_model=32, n_layers=1), seed=3),
     "c4d3e1d850c06e86"),
    (RunSpec(task=TaskSpec("modular", {"p": 97}), model=ModelSpec(mixer="deltanet"),
             optim=OptimSpec(lr=3e-3, weight_decay=0.1),
             probes=ProbeSpec(names=("weights", "hessian"), points=10, options={"hessian": {"k": 3}})),
     "92f75515da1a8a88"),
    (RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier"),
             probes=ProbeSpec(names=("spectra", "hessian"), stride={"hessian": 5})), "5deecd8c15fa89e8"),
]


@pytest.mark.parametrize("spec, run_id", KNOWN_RUN_IDS, ids=lambda x: x if isinstance(x, str) else "")
def test_run_ids_are_unchanged(spec, run_id):
    assert spec.run_id == run_id
    assert RunSpec.from_dict(json.loads(spec.to_json())).run_id == run_id


def test_model_spec_checks_its_own_fields():
    with pytest.raises(UnknownNameError, match="did you mean 'classifier'"):
        ModelSpec(backbone="clasifier")
    with pytest.raises(UnknownNameError, match="norm placement"):
        ModelSpec(norm_place="middle")
    with pytest.raises(ConfigError, match="d_model"):
        ModelSpec(d_model=0)
    assert ModelSpec(mixer_options={"n_heads": 4}).width_multiple == 4


def test_specs_load_no_instrument():
    """A spec with probes is plain data: building it imports nothing of the lens (floor 4)."""
    code = ("import sys; from layerlab.spec import ProbeSpec, RunSpec, TaskSpec; "
            "s = RunSpec(task=TaskSpec('digits'), probes=ProbeSpec(names=('no_such_probe',))); s.run_id; "
            "print(sorted(m for m in sys.modules if m.startswith('layerlab.lens')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
