import textwrap
from pathlib import Path

import pytest

TINY_SUITE = """
name = "tiny"
description = "two tasks, two models, two seeds, two learning rates: seconds on a CPU"
seeds = [0, 1]
lr = [3e-3, 1e-2]

[train]
steps = 40
batch_size = 32
eval_every = 20
log_every = 5

[[tasks]]
name = "digits"
budget = 6000

[[tasks]]
name = "parity"
params = { length = 8, n_eval = 64 }
budget = 6000
train = { steps = 20 }
lr = [3e-3]

[[models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
n_layers = 1

[[models]]
label = "swiglu"
backbone = "classifier"
channel = "swiglu"
n_layers = 1

[[models]]
label = "attention"
backbone = "sequence"
mixer = "attention"
mixer_options = { n_heads = 2 }
n_layers = 1
"""


@pytest.fixture
def tiny_suite_path(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(textwrap.dedent(TINY_SUITE))
    return p
