"""Character LM: windows, contiguous disjoint splits, bpc, and the corpus loader (no network)."""
from __future__ import annotations

import hashlib
import math
import random
import shutil
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from layerlab.errors import ConfigError, DataError
from layerlab.tasks import build_task
from layerlab.tasks import text as text_module
from layerlab.tasks.text import CORPUS_FILE, CORPUS_SHA256, load_text

from .helpers import ConstantModel


@pytest.fixture(scope="module")
def corpus(shakespeare_path: Path) -> str:
    return shakespeare_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def task(shakespeare_path: Path):
    return build_task("text", path=str(shakespeare_path), length=64, eval_tokens=640)


@dataclass
class Offline:
    cache: Path  # the (empty) cache directory
    calls: list[str]  # the URLs a download was tried for


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Offline:
    """An empty cache, no LAYERLAB_DATA_DIR, and a download that fails without touching the network."""
    env = Offline(tmp_path / "cache", [])
    monkeypatch.setenv("LAYERLAB_CACHE", str(env.cache))
    monkeypatch.delenv("LAYERLAB_DATA_DIR", raising=False)

    def no_network(url: str, timeout: float) -> bytes:
        env.calls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(text_module, "_download", no_network)
    return env


def test_shapes_and_dtypes(task) -> None:
    b = task.train_batch(8, torch.Generator().manual_seed(0))
    assert b.inputs.shape == b.targets.shape == b.mask.shape == (8, 64)
    assert b.inputs.dtype == b.targets.dtype == torch.int64 and b.mask.dtype == torch.bool
    assert b.mask.all()
    for split in ("val", "test"):
        e = task.eval_set(split)
        assert e.inputs.shape == e.targets.shape == e.mask.shape == (10, 64)  # 640 tokens / 64
        assert e.mask.all()
    assert task.max_length == 64 and task.eval_splits == ("val", "test")


def test_vocabulary(task, corpus: str) -> None:
    assert task.chars == "".join(sorted(set(corpus)))
    assert task.vocab_size == task.n_outputs == 65
    assert task.chance == pytest.approx(math.log2(65))
    assert task.decode(task.encode("To be, or not")) == "To be, or not"
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        task.encode("é")


def test_contiguous_disjoint_ranges(task, corpus: str) -> None:
    (a0, a1), (b0, b1), (c0, c1) = (task.split_range(s) for s in ("train", "val", "test"))
    assert a0 == 0 and a1 == b0 and b1 == c0 and c1 == len(corpus)
    assert a1 == int(0.9 * len(corpus)) and b1 - b0 == int(0.05 * len(corpus))


def test_train_windows_lie_in_the_train_part(task, corpus: str) -> None:
    train_text = corpus[: task.split_range("train")[1]]
    b = task.train_batch(32, torch.Generator().manual_seed(0))
    assert torch.equal(b.targets[:, :-1], b.inputs[:, 1:])  # targets are the next characters
    for x, y in zip(b.inputs, b.targets):
        window = task.decode(x) + task.decode(y[-1:])
        assert window in train_text


def test_train_windows_never_cross_into_val(tmp_path: Path) -> None:
    # a random text of 1000 characters: every 17-character window occurs once, so its offset is known
    rng = random.Random(0)
    text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1000))
    f = tmp_path / "random.txt"
    f.write_text(text, encoding="utf-8")
    t = build_task("text", path=str(f), length=16, split=[0.8, 0.1, 0.1], eval_tokens=32)
    _, n_train = t.split_range("train")
    b = t.train_batch(12000, torch.Generator().manual_seed(0))
    starts = set()
    for x, y in zip(b.inputs, b.targets):
        window = t.decode(x) + t.decode(y[-1:])
        start = text.find(window)
        assert 0 <= start and start + 17 <= n_train
        starts.add(start)
    assert starts == set(range(n_train - 16))  # every training window is drawn


def test_eval_windows_are_fixed_non_overlapping_runs(task, corpus: str) -> None:
    for split in ("val", "test"):
        start, stop = task.split_range(split)
        e = task.eval_set(split)
        for i in range(len(e)):
            s = start + i * 64
            assert task.decode(e.inputs[i]) == corpus[s: s + 64]
            assert task.decode(e.targets[i]) == corpus[s + 1: s + 65]
            assert s + 65 <= stop


def test_eval_tokens_caps_and_split_limits(shakespeare_path: Path) -> None:
    big = build_task("text", path=str(shakespeare_path), length=1024, eval_tokens=10**9)
    for split in ("val", "test"):
        start, stop = big.split_range(split)
        e = big.eval_set(split)
        assert len(e) == (stop - start - 1) // 1024  # as many windows as fit in the part
        last_target_end = start + (len(e) - 1) * 1024 + 1025
        assert last_target_end <= stop
    default = build_task("text", path=str(shakespeare_path))
    assert len(default.eval_set("val")) == 16384 // 128


def test_determinism(task, shakespeare_path: Path) -> None:
    a = task.train_batch(16, torch.Generator().manual_seed(7))
    b = task.train_batch(16, torch.Generator().manual_seed(7))
    c = task.train_batch(16, torch.Generator().manual_seed(8))
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    other = build_task("text", path=str(shakespeare_path), length=64, eval_tokens=640)
    assert torch.equal(task.eval_set("test").inputs, other.eval_set("test").inputs)
    assert task.checksum() == other.checksum() == hashlib.sha256(shakespeare_path.read_bytes()).hexdigest()


def test_uniform_model_scores_chance(task) -> None:
    metrics = task.evaluate(ConstantModel(task.vocab_size), "val", batch_size=4)
    assert abs(metrics["bpc"] - math.log2(task.vocab_size)) < 1e-6
    assert metrics["loss"] == pytest.approx(math.log(task.vocab_size), rel=1e-6)
    assert task.metric == "bpc" and task.higher_is_better is False
    assert task.better(1.5, 2.0) and task.reached(1.4, 1.5) and not task.reached(1.6, 1.5)


def test_metrics_do_not_depend_on_the_eval_batch_size(task) -> None:
    with torch.random.fork_rng():  # seeded weights without touching the global RNG state
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(task.vocab_size, 16), torch.nn.Linear(16, task.vocab_size))
    small = task.evaluate(model, "test", batch_size=3)
    large = task.evaluate(model, "test", batch_size=256)
    assert small["bpc"] == pytest.approx(large["bpc"], abs=1e-9)
    assert small["accuracy"] == large["accuracy"]


def test_no_oracle(task) -> None:
    with pytest.raises(NotImplementedError, match="without an oracle"):
        task.oracle(task.eval_set("val"))


def test_own_text_file(tmp_path: Path) -> None:
    f = tmp_path / "tiny.txt"
    f.write_text("abcab" * 200, encoding="utf-8")  # 1000 characters
    t = build_task("text", path=str(f), length=16, split=[0.8, 0.1, 0.1], eval_tokens=32)
    assert t.chars == "abc" and t.vocab_size == 3
    assert t.split == (0.8, 0.1, 0.1)
    assert len(t.eval_set("val")) == 2
    assert t.checksum() == hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match="fewer than length"):
        build_task("text", path=str(f), length=200)


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(split=[0.9, 0.1]), ["split", "three"]),
        (dict(split=[0.9, 0.1, 0.1]), ["summing to 1"]),
        (dict(split=[1.0, 0.0, 0.0]), ["positive"]),
        (dict(eval_tokens=10), ["eval_tokens"]),
        (dict(length=0), ["length"]),
        (dict(context=128), ["'context'", "valid keys"]),
    ],
)
def test_bad_parameters(shakespeare_path: Path, params: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_task("text", path=str(shakespeare_path), **params)
    for w in words:
        assert w in str(info.value)


# --- the loader ---------------------------------------------------------------------

def test_explicit_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="nope.txt") as info:
        load_text(str(missing))
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataError, match="nope.txt"):
        build_task("text", path=str(missing))


def test_missing_corpus_says_where_to_put_it(offline: Offline) -> None:
    with pytest.raises(DataError) as info:
        load_text()
    msg = str(info.value)
    assert str(offline.cache / CORPUS_FILE) in msg
    assert "network disabled in tests" in msg  # why the download failed
    assert "LAYERLAB_DATA_DIR" in msg and "path=" in msg
    assert offline.calls == [text_module.CORPUS_URL]


def test_wrong_cached_file_fails_the_checksum(offline: Offline) -> None:
    offline.cache.mkdir(parents=True)
    (offline.cache / CORPUS_FILE).write_text("not shakespeare\n", encoding="utf-8")
    with pytest.raises(DataError, match="sha256") as info:
        load_text()
    assert str(offline.cache / CORPUS_FILE) in str(info.value)
    assert offline.calls == []


def test_wrong_file_in_data_dir_fails_the_checksum(offline: Offline, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / CORPUS_FILE).write_text("also not shakespeare\n", encoding="utf-8")
    monkeypatch.setenv("LAYERLAB_DATA_DIR", str(data_dir))
    with pytest.raises(DataError, match="sha256"):
        load_text()


def test_data_dir_then_cache(offline: Offline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             shakespeare_path: Path, corpus: str) -> None:
    monkeypatch.setenv("LAYERLAB_DATA_DIR", str(shakespeare_path.parent))
    assert load_text() == corpus
    task = build_task("text", length=64, eval_tokens=640)  # the default corpus
    assert task.checksum() == CORPUS_SHA256
    # a data dir without the file falls through to the cache
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LAYERLAB_DATA_DIR", str(empty))
    offline.cache.mkdir(parents=True)
    shutil.copy(shakespeare_path, offline.cache / CORPUS_FILE)
    assert load_text() == corpus
    assert offline.calls == []


def test_download_is_checked_and_cached_atomically(offline: Offline, monkeypatch: pytest.MonkeyPatch,
                                                   shakespeare_path: Path, corpus: str) -> None:
    monkeypatch.setattr(text_module, "_download", lambda url, timeout: b"tampered")
    with pytest.raises(DataError, match="sha256"):
        load_text()
    assert not offline.cache.exists() or not any(offline.cache.iterdir())  # nothing written

    good = shakespeare_path.read_bytes()
    monkeypatch.setattr(text_module, "_download", lambda url, timeout: good)
    assert load_text() == corpus
    assert (offline.cache / CORPUS_FILE).read_bytes() == good
    assert [p.name for p in offline.cache.iterdir()] == [CORPUS_FILE]  # no temporary file left

    def fail(url: str, timeout: float) -> bytes:
        raise AssertionError("downloaded again although the cache holds the file")

    monkeypatch.setattr(text_module, "_download", fail)
    assert load_text() == corpus


def test_texts_are_read_once_per_process(shakespeare_path: Path) -> None:
    assert load_text(str(shakespeare_path)) is load_text(str(shakespeare_path))
