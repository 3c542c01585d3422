"""Fixtures shared by the whole test suite."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

# Tests have no network: suites that use the text task find the corpus beside the project.
# (Tests of the loader's own search order set or clear this variable themselves.)
os.environ.setdefault("LAYERLAB_DATA_DIR", str(SHAKESPEARE.parent))


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    """The tinyshakespeare corpus that lies beside the project (no network in tests)."""
    if not SHAKESPEARE.is_file():
        pytest.fail(
            f"test corpus missing: expected tinyshakespeare at {SHAKESPEARE} "
            "(the shared data directory beside the repository)",
            pytrace=False,
        )
    return SHAKESPEARE


@pytest.fixture
def one_thread():
    """Tiny matrices: run on one thread (on a loaded shared machine two threads made such tests many
    times slower); the thread count is restored afterwards. A test module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from layerlab.claims.measures._fit import one_thread as single_thread

    with single_thread():
        yield


def skip_without_compiler(what: str) -> None:
    """Skip a test of a compiled kernel where this machine has no C++ compiler (its PyTorch fallback
    is tested either way); with LAYERLAB_REQUIRE_EXTENSIONS=1 (set by `make test`, so CI runs every
    kernel test) a missing compiler is a failure instead."""
    import os
    import shutil

    if shutil.which("c++") is not None or shutil.which("g++") is not None:
        return
    message = f"no C++ compiler on this machine: {what} cannot be built (its fallback is tested)"
    if os.environ.get("LAYERLAB_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        pytest.fail(message + "; LAYERLAB_REQUIRE_EXTENSIONS=1 requires it")
    pytest.skip(reason=message)  # says why: no compiler here, and the PyTorch fallback is tested either way


def kill_and_resume(spec, checkpoint: Path, *, kill_at: int):
    """Train `spec` with checkpoints at `checkpoint`, kill it (an exception from the progress
    callback) when it reports step `kill_at`, then resume it to the end into the same recorder.
    Returns the recorder (both attempts) and the checkpoint the kill left behind."""
    import torch

    from layerlab.train import MemoryRecorder, Trainer

    class Killed(Exception):
        pass

    def die(step, total):
        if step == kill_at:
            raise Killed

    rec = MemoryRecorder()
    with pytest.raises(Killed):
        Trainer(spec, recorder=rec, checkpoint_path=checkpoint, on_progress=die).fit()
    saved = torch.load(checkpoint, weights_only=False)
    Trainer(spec, recorder=rec, checkpoint_path=checkpoint).fit()
    return rec, saved
