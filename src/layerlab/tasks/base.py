"""What every task provides: seeded data, disjoint splits, a loss, an explicit metric, chance level.

A task is a dataclass whose fields are its parameters (built strictly by ``build_task``).
Inputs, targets and the loss mask come from the task's own ``torch.Generator``:
- ``train_batch(batch_size, generator)`` draws a fresh training batch;
- ``eval_set(split)`` returns the fixed, cached evaluation set of a split ("val", "test", and
  extra splits such as "test@256" for length extrapolation); it depends only on the task's
  parameters (``data_seed`` included), so every run of a suite is scored on the same examples.
Train, validation and test examples never overlap (each task's test checks it).

Sequence tasks ("tokens") give inputs (B, L) int64, targets (B, L) int64 and a bool mask (B, L)
marking the positions that count in loss and metric. Vector tasks ("vector") give inputs (B, F)
float32, targets (B,) int64 and no mask. Set tasks ("set") give inputs (B, n, F) float32, n
elements of F features whose order carries no information, targets (B,) int64 and no mask.
Function tasks ("function") give inputs (B, m), an input function's values at the task's m
``sensors``, and targets (B, P), the output function at the task's P ``queries`` (float, no
mask); they are regressions with their own loss and metric.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

LN2 = math.log(2.0)
ECE_BINS = 15  # equal-width confidence bins of the expected calibration error
ECE_KEYS = tuple(f"ece_gap/{b}" for b in range(ECE_BINS))


@dataclass
class Batch:
    inputs: Tensor
    targets: Tensor
    mask: Tensor | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        mask = None if self.mask is None else self.mask.to(device, non_blocking=True)
        return Batch(self.inputs.to(device, non_blocking=True), self.targets.to(device, non_blocking=True), mask)

    def slice(self, start: int, stop: int) -> "Batch":
        mask = None if self.mask is None else self.mask[start:stop]
        return Batch(self.inputs[start:stop], self.targets[start:stop], mask)


class Task:
    """Base of all tasks: classification over tokens or vectors, scored by cross-entropy."""

    name: ClassVar[str] = "task"
    input_kind: ClassVar[str] = "tokens"  # "tokens", "vector", "set" or "function" (module docstring)
    metric: ClassVar[str] = "accuracy"  # the primary metric: the leaderboard's column
    higher_is_better: ClassVar[bool] = True

    # --- what a subclass provides -------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of distinct input tokens (token tasks)."""
        raise NotImplementedError

    @property
    def input_dim(self) -> int:
        """Feature count (vector tasks)."""
        raise NotImplementedError

    @property
    def n_outputs(self) -> int:
        """Number of classes the model predicts at each scored position."""
        raise NotImplementedError

    @property
    def max_length(self) -> int:
        """Longest sequence any split uses (sizes learned positions)."""
        raise NotImplementedError

    @property
    def chance(self) -> float:
        """The primary metric of a uniform random guess."""
        raise NotImplementedError

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return ("val", "test")

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def _make_eval_set(self, split: str) -> Batch:
        raise NotImplementedError

    def oracle(self, batch: Batch) -> Tensor:
        """The correct prediction at every position, computed from the inputs by the task's rule."""
        raise NotImplementedError

    # --- shared machinery ---------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError if the parameters are impossible. Subclasses extend."""

    def __post_init__(self) -> None:
        self._eval_cache: dict[str, Batch] = {}
        self.validate()

    def eval_set(self, split: str) -> Batch:
        if split not in self.eval_splits:
            raise ConfigError(f"task {self.name!r} has no split {split!r}; splits: {', '.join(self.eval_splits)}")
        if split not in self._eval_cache:
            self._eval_cache[split] = self._make_eval_set(split)
        return self._eval_cache[split]

    def checksum(self) -> str:
        """sha256 over the evaluation sets: identical data gives identical checksums."""
        h = hashlib.sha256(self.name.encode())
        for split in self.eval_splits:
            b = self.eval_set(split)
            for t in (b.inputs, b.targets, b.mask):
                if t is not None:
                    h.update(t.contiguous().cpu().numpy().tobytes())
        return h.hexdigest()

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """Mean cross-entropy over scored positions (nats)."""
        if batch.mask is None:
            return F.cross_entropy(logits, batch.targets)
        return F.cross_entropy(logits[batch.mask], batch.targets[batch.mask])

    def _sums(self, logits: Tensor, batch: Batch) -> dict[str, float]:
        """Additive statistics of one chunk; `summarize` turns their totals into metrics.

        Per-position cross-entropies are summed in float64, so a metric does not depend on the
        evaluation batch size beyond float64 rounding.
        """
        if batch.mask is None:
            ce = F.cross_entropy(logits.float(), batch.targets, reduction="none").double().sum()
            correct = (logits.argmax(-1) == batch.targets)
            return {"ce": ce.item(), "n": float(batch.targets.numel()), "correct": correct.sum().item(),
                    "seqs": float(len(batch)), "exact": correct.sum().item(),
                    **calibration_sums(logits, batch.targets)}
        mask = batch.mask
        ce = F.cross_entropy(logits[mask].float(), batch.targets[mask], reduction="none").double().sum()
        hit = (logits.argmax(-1) == batch.targets) | ~mask
        return {"ce": ce.item(), "n": mask.sum().item(), "correct": (hit & mask).sum().item(),
                "seqs": float(len(batch)), "exact": hit.all(dim=-1).sum().item(),
                **calibration_sums(logits[mask], batch.targets[mask])}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["n"], 1.0)
        out = {"loss": sums["ce"] / n, "accuracy": sums["correct"] / n}
        if all(k in sums for k in ECE_KEYS):  # a hand-made `sums` without the bins has no ECE
            out["ece"] = sum(abs(sums[k]) for k in ECE_KEYS) / n
        if self.input_kind == "tokens":
            out["exact_match"] = sums["exact"] / max(sums["seqs"], 1.0)
        return out

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, *, batch_size: int = 256,
                 device: torch.device | str | None = None) -> dict[str, float]:
        """Metrics of `model` on a fixed split. Restores the model's train/eval mode."""
        data = self.eval_set(split)
        param = next(model.parameters())
        device = device or param.device
        was_training = model.training
        model.eval()
        try:
            totals: dict[str, float] = {}
            for start in range(0, len(data), batch_size):
                chunk = data.slice(start, start + batch_size).to(device)
                inputs = chunk.inputs.to(param.dtype) if chunk.inputs.is_floating_point() else chunk.inputs
                for k, v in self._sums(model(inputs), chunk).items():
                    totals[k] = totals.get(k, 0.0) + v
        finally:
            model.train(was_training)
        return self.summarize(totals)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics ``evaluate`` reports on every split (what a claim card's metric may name)."""
        return tuple(self.summarize(_AnyKey(float)))

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ConfigError if training cannot draw batches of `batch_size`. A task with a finite
        training set takes ``batch_size <= 0`` as the whole of it; tasks that draw fresh examples refuse it."""

    def better(self, a: float, b: float) -> bool:
        """Is metric value `a` better than `b`?"""
        return a > b if self.higher_is_better else a < b

    def reached(self, value: float, target: float) -> bool:
        return value >= target if self.higher_is_better else value <= target



class _AnyKey(defaultdict):
    """Zero for every statistic, and claims to hold every one (what ``metric_names`` passes)."""

    def __contains__(self, key: object) -> bool:
        return True


def calibration_sums(logits: Tensor, targets: Tensor) -> dict[str, float]:
    """Additive per-bin statistics of the expected calibration error (Guo, Pleiss, Sun & Weinberger,
    "On Calibration of Modern Neural Networks", 2017, arXiv:1706.04599):

        ECE = Σ_b (n_b / n) |acc(B_b) − conf(B_b)| = (1/n) Σ_b |Σ_{i∈B_b} (1[ŷ_i = y_i] − p̂_i)|,

    with p̂_i the softmax probability of the predicted class ŷ_i = argmax (the accuracy's
    prediction) and B_b = {i : p̂_i ∈ ((b−1)/M, b/M]}, M = ``ECE_BINS`` equal-width bins. The
    right-hand form needs only the signed gap per bin, summed over chunks: ``ece_gap/<b>``
    (float64), so the metric does not depend on the evaluation batch size.
    """
    pred = logits.argmax(-1)
    conf = torch.softmax(logits.double(), dim=-1).gather(-1, pred.unsqueeze(-1)).squeeze(-1)
    hit = (pred == targets).double()
    index = (conf * ECE_BINS).ceil().long().clamp_(1, ECE_BINS) - 1
    gap = torch.zeros(ECE_BINS, dtype=torch.float64, device=logits.device).index_add_(0, index, hit - conf)
    return dict(zip(ECE_KEYS, gap.tolist()))


class GeneratedTask(Task):
    """A task that draws fresh examples: an endless training stream, hash-disjoint splits.

    Subclasses implement ``draw(n, generator, split)`` (``n`` candidate examples for ``split``;
    the split lets a task draw longer sequences for an extrapolation split such as "test@256")
    and have an ``n_eval`` and a ``data_seed`` parameter.
    """

    n_eval: int
    data_seed: int

    def draw(self, n: int, generator: torch.Generator, split: str) -> Batch:
        raise NotImplementedError

    def validate(self) -> None:
        if self.n_eval < 1:
            raise ConfigError(f"task {self.name!r}: n_eval must be >= 1, got {self.n_eval}")
        self._check_splits_can_be_drawn()

    def _check_splits_can_be_drawn(self) -> None:
        """Each distinct input belongs to one split (by its content hash), so a tiny input space (parity
        of length 1 has two inputs) can leave a split with no input at all: found here, when the task is
        built, not when a run first draws from that split."""
        for split in ("train", *self.eval_splits):
            try:
                with torch.device("cpu"):  # the arena may build tasks under a meta device
                    sample_split(lambda n, g: self.draw(n, g, split), split, 1,
                                 split_generator(self.name, split, self.data_seed))
            except SplitTooSmall:
                raise ConfigError(f"task {self.name!r}: no input of this size falls in the {split!r} split (each "
                                  f"distinct input belongs to one split, by a hash of its content); the input "
                                  f"space is too small: increase the length or the vocabulary") from None

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size <= 0:
            raise ConfigError(f"task {self.name!r} draws fresh examples and has no finite training set: "
                              f"batch_size must be >= 1, got {batch_size}")

    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_batch_size(batch_size)
        return sample_split(lambda n, g: self.draw(n, g, "train"), "train", batch_size, generator)

    def _make_eval_set(self, split: str) -> Batch:
        gen = split_generator(self.name, split, self.data_seed)
        return sample_split(lambda n, g: self.draw(n, g, split), split, self.n_eval, gen)

# ---- helpers for synthetic tasks: disjoint splits by content hash ------------------

SPLIT_BUCKETS = 20  # bucket 0 -> test, 1 -> val, the rest -> train (5% / 5% / 90% of the space)
_SPLIT_BUCKET = {"test": 0, "val": 1}


class SplitTooSmall(ConfigError):
    """A split cannot be drawn: too few distinct inputs of the task fall in it."""


def split_generator(task_name: str, split: str, data_seed: int) -> torch.Generator:
    """The generator that draws the fixed evaluation set `split` of a task.

    Seeded from the task's name, the split's name and ``data_seed`` (through sha256, so the
    seed does not depend on Python's hash randomisation): every split gets its own stream.
    """
    digest = hashlib.sha256(f"{task_name}/{split}/{data_seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def random_subsets(n: int, high: int, k: int, generator: torch.Generator) -> Tensor:
    """(n, k) int64: in each row, k distinct integers of ``[0, high)`` in random order.

    Each row is the top k of `high` uniform draws, taken in chunks of rows so that memory
    stays bounded for large `high` (a vocabulary of thousands, say).
    """
    chunk = max(1, (1 << 22) // max(high, 1))
    parts = [torch.rand(min(chunk, n - s), high, generator=generator).topk(k, dim=1).indices
             for s in range(0, n, chunk)]
    return torch.cat(parts) if parts else torch.empty(0, k, dtype=torch.long)


def content_bucket(tokens: Tensor) -> Tensor:
    """A deterministic hash bucket in [0, SPLIT_BUCKETS) of each row of an int tensor (N, L).

    Splitting by a hash of the content makes train/val/test disjoint as sets of sequences,
    whatever generator or seed drew them.
    """
    mod = 2_147_483_647  # 2^31 - 1
    x = tokens.long().reshape(tokens.shape[0], -1) + 1
    h = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
    for j in range(x.shape[1]):
        h = (h * 1_000_003 + x[:, j]) % mod
    h = (h * 2_654_435_761) % mod  # scramble so buckets do not follow the first token
    return h % SPLIT_BUCKETS


def in_split(tokens: Tensor, split: str) -> Tensor:
    """Bool (N,): which rows belong to `split` ("train", "val", "test", or "test@..."/"val@...")."""
    base = split.split("@")[0]
    bucket = content_bucket(tokens)
    if base == "train":
        return bucket >= 2
    return bucket == _SPLIT_BUCKET[base]


def sample_split(draw, split: str, n: int, generator: torch.Generator) -> Batch:
    """Draw `n` examples of `split` by rejection: `draw(m, generator) -> Batch` makes m candidates.

    The hash is taken over the inputs, so equal inputs always land in the same split.
    """
    keep: list[Batch] = []
    have = 0
    ratio = 1.0 if split == "train" else 1.0 / SPLIT_BUCKETS
    tries = 0
    while have < n:
        tries += 1
        if tries > 200:
            raise SplitTooSmall(
                f"could not draw {n} distinct-split examples for {split!r}: the task's input space "
                "is too small; increase its length or vocabulary, or lower n_eval"
            )
        m = max(16, int((n - have) / ratio * 1.3) + 8)
        cand = draw(m, generator)
        sel = in_split(cand.inputs, split)
        if sel.any():
            mask = None if cand.mask is None else cand.mask[sel]
            keep.append(Batch(cand.inputs[sel], cand.targets[sel], mask))
            have += int(sel.sum())
    inputs = torch.cat([b.inputs for b in keep])[:n]
    targets = torch.cat([b.targets for b in keep])[:n]
    mask = None if keep[0].mask is None else torch.cat([b.mask for b in keep])[:n]
    return Batch(inputs, targets, mask)
