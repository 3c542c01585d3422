"""Character-level language modelling, on tinyshakespeare by default.

``load_text`` finds the default corpus without network where it can:

1. an explicit ``path`` (a missing file is a DataError naming it);
2. ``$LAYERLAB_DATA_DIR/tinyshakespeare.txt`` when that variable is set and the file exists;
3. ``$LAYERLAB_CACHE/tinyshakespeare.txt`` (default cache ``~/.cache/layerlab/``);
4. otherwise it downloads the corpus, checks its sha256 and writes it atomically to the cache.

The default corpus is always checked against its sha256, wherever it was found.
"""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .registry import register_task
from .base import LN2, Batch, Task

CORPUS_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
CORPUS_FILE = "tinyshakespeare.txt"
DOWNLOAD_TIMEOUT_S = 30.0


def cache_dir() -> Path:
    """Where downloaded data lives: ``$LAYERLAB_CACHE`` or ``~/.cache/layerlab``."""
    env = os.environ.get("LAYERLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "layerlab"


def _download(url: str, timeout: float) -> bytes:
    """The bytes at `url` (tests replace this function so no network is touched)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


# resolved file path -> (text, sha256 of the file's bytes): each file is read once per process
_TEXTS: dict[str, tuple[str, str]] = {}


def _checksum_error(where: str, got: str) -> DataError:
    return DataError(
        f"{where} is not the expected tinyshakespeare corpus: its sha256 is {got}, expected "
        f"{CORPUS_SHA256}. Delete or replace it with the file from {CORPUS_URL}"
    )


def _read(path: Path, expect_sha256: str | None) -> tuple[str, str, str]:
    """(text, sha256, key) of a file, read once per process; checked if `expect_sha256`."""
    key = str(path.resolve())
    if key not in _TEXTS:
        raw = path.read_bytes()
        sha = hashlib.sha256(raw).hexdigest()
        if expect_sha256 is not None and sha != expect_sha256:
            raise _checksum_error(f"the file {path}", sha)
        try:
            _TEXTS[key] = (raw.decode("utf-8"), sha)
        except UnicodeDecodeError as e:
            raise DataError(f"text file {path} is not UTF-8: {e}") from None
    text, sha = _TEXTS[key]
    if expect_sha256 is not None and sha != expect_sha256:
        raise _checksum_error(f"the file {path}", sha)
    return text, sha, key


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: str | None) -> tuple[str, str, str]:
    """(text, sha256 of the file, identity key) of `path`, or of the default corpus."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"text file {str(path)!r} not found")
        return _read(p, None)

    data_dir = os.environ.get("LAYERLAB_DATA_DIR")
    if data_dir:
        candidate = Path(data_dir).expanduser() / CORPUS_FILE
        if candidate.is_file():
            return _read(candidate, CORPUS_SHA256)

    cached = cache_dir() / CORPUS_FILE
    if cached.is_file():
        return _read(cached, CORPUS_SHA256)

    try:
        raw = _download(CORPUS_URL, DOWNLOAD_TIMEOUT_S)
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
        reason = getattr(e, "reason", None) or e
        looked = f"LAYERLAB_DATA_DIR={data_dir} and " if data_dir else ""
        raise DataError(
            f"the tinyshakespeare corpus was not found (looked in {looked}the cache {cached}) and "
            f"downloading it from {CORPUS_URL} failed: {reason}. Put the file at {cached}, or set "
            f"LAYERLAB_DATA_DIR to a directory holding {CORPUS_FILE}, or pass path=... to the task"
        ) from None
    sha = hashlib.sha256(raw).hexdigest()
    if sha != CORPUS_SHA256:
        raise _checksum_error(f"the file downloaded from {CORPUS_URL}", sha)
    try:
        _write_atomic(cached, raw)
    except OSError as e:  # the data is good; only the cache could not be written
        warnings.warn(f"could not cache the tinyshakespeare corpus at {cached}: {e}", stacklevel=3)
    key = str(cached.resolve())
    _TEXTS[key] = (raw.decode("utf-8"), sha)
    return _TEXTS[key][0], sha, key


def load_text(path: str | None = None) -> str:
    """The text of `path`, or of the tinyshakespeare corpus when `path` is None.

    Raises DataError when the file is missing (with where to put it), when the download fails,
    or when the default corpus does not match its sha256.
    """
    return _load(path)[0]


@dataclass(frozen=True)
class _Corpus:
    chars: str  # the vocabulary: sorted distinct characters
    data: Tensor  # (N,) int64 token ids of the whole text
    sha256: str


_CORPORA: dict[str, _Corpus] = {}


def _corpus(path: str | None) -> _Corpus:
    text, sha, key = _load(path)
    if key not in _CORPORA or _CORPORA[key].sha256 != sha:
        chars = "".join(sorted(set(text)))
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        table = np.array([ord(c) for c in chars], dtype=np.uint32)
        data = torch.from_numpy(np.searchsorted(table, codes).astype(np.int64))
        _CORPORA[key] = _Corpus(chars, data, sha)
    return _CORPORA[key]


@register_task("text")
@dataclass
class CharLM(Task):
    """Character-level language modelling: predict every next character of a text
    (tinyshakespeare, from Karpathy 2015, "The Unreasonable Effectiveness of Recurrent Neural
    Networks" / char-rnn, unless ``path`` names another UTF-8 file).

    The vocabulary is the sorted set of the file's characters. The character stream is cut
    contiguously into train / val / test by ``split`` (train first). A training example is a
    random window of ``length + 1`` characters from the train part: the first ``length`` are
    the inputs, the last ``length`` the targets. Each evaluation split is a fixed run of
    non-overlapping windows from its own part, as many as fit up to ``eval_tokens`` scored
    characters. Every position is scored (the mask is all True). ``data_seed`` does not change
    anything (the splits and evaluation windows are fixed); it is accepted like every task's.

    Metric: bits per character (``bpc``, mean cross-entropy / ln 2), lower is better.
    Chance: ``log2(vocab_size)``, the bpc of a uniform guess.
    ``checksum()`` is the sha256 of the file's contents.
    """

    name: ClassVar[str] = "text"
    input_kind: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "bpc"
    higher_is_better: ClassVar[bool] = False

    path: str | None = None
    length: int = 128
    split: tuple[float, ...] = (0.9, 0.05, 0.05)
    eval_tokens: int = 16384
    data_seed: int = 0

    def __post_init__(self) -> None:
        self.split = tuple(self.split)
        super().__post_init__()
        self._corpus = _corpus(self.path)
        for name in ("train", "val", "test"):
            start, stop = self.split_range(name)
            if stop - start < self.length + 1:
                raise ConfigError(
                    f"task {self.name!r}: the {name} part has {stop - start} characters, fewer than "
                    f"length + 1 = {self.length + 1}; use a longer text, a shorter length or another split"
                )

    def validate(self) -> None:
        where = f"task {self.name!r}"
        if self.length < 1:
            raise ConfigError(f"{where}: length must be >= 1, got {self.length}")
        if (len(self.split) != 3 or not all(math.isfinite(x) and x > 0 for x in self.split)  # NaN compares False
                or abs(sum(self.split) - 1.0) > 1e-6):
            raise ConfigError(
                f"{where}: split must be three positive fractions (train, val, test) summing to 1, "
                f"got {self.split}"
            )
        if self.eval_tokens < self.length:
            raise ConfigError(
                f"{where}: eval_tokens ({self.eval_tokens}) must be >= length ({self.length}): "
                "an evaluation window scores `length` characters"
            )

    # --- sizes ----------------------------------------------------------------------
    @property
    def chars(self) -> str:
        """The vocabulary: token id i is the character ``chars[i]``."""
        return self._corpus.chars

    @property
    def vocab_size(self) -> int:
        return len(self._corpus.chars)

    @property
    def n_outputs(self) -> int:
        return self.vocab_size

    @property
    def max_length(self) -> int:
        return self.length

    @property
    def chance(self) -> float:
        return math.log2(self.vocab_size)

    def split_range(self, split: str) -> tuple[int, int]:
        """``[start, stop)`` character offsets of "train", "val" or "test" in the text."""
        n = len(self._corpus.data)
        n_train = int(n * self.split[0])
        n_val = int(n * self.split[1])
        ranges = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
        if split not in ranges:
            raise ConfigError(f"task {self.name!r} has no split {split!r}; splits: train, val, test")
        return ranges[split]

    def encode(self, text: str) -> Tensor:
        """Token ids (int64) of `text`; every character must be in the vocabulary."""
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return torch.tensor([index[c] for c in text], dtype=torch.long)
        except KeyError as e:
            raise ConfigError(f"task {self.name!r}: character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, tokens: Tensor) -> str:
        """The text of a 1-D tensor of token ids."""
        return "".join(self.chars[i] for i in tokens.tolist())

    # --- data -----------------------------------------------------------------------
    def _windows(self, starts: Tensor) -> Batch:
        idx = starts[:, None] + torch.arange(self.length + 1)
        w = self._corpus.data[idx]
        return Batch(w[:, :-1], w[:, 1:], torch.ones(len(starts), self.length, dtype=torch.bool))

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size <= 0:
            raise ConfigError(f"task {self.name!r} draws fresh examples and has no finite training set: "
                              f"batch_size must be >= 1, got {batch_size}")

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_batch_size(batch_size)
        _, stop = self.split_range("train")
        return self._windows(torch.randint(0, stop - self.length, (batch_size,), generator=generator))

    def _make_eval_set(self, split: str) -> Batch:
        start, stop = self.split_range(split)
        n = min((stop - start - 1) // self.length, self.eval_tokens // self.length)
        return self._windows(start + torch.arange(n) * self.length)

    def oracle(self, batch: Batch) -> Tensor:
        raise NotImplementedError("text has no rule for the next character: it is a learned task without an oracle")

    def checksum(self) -> str:
        """sha256 of the text file's contents."""
        return self._corpus.sha256

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        out = super().summarize(sums)
        out["bpc"] = out["loss"] / LN2
        return out
