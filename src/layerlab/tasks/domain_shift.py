"""Domain shift: labelled source digits, unlabelled transformed target digits, scored on the target.

The unsupervised domain adaptation setting of Ganin et al., "Domain-Adversarial Training of Neural
Networks" (2016, arXiv:1505.07818, Sec. 3): a labelled source sample S = {(x_i, y_i)} ~ D_S and an
unlabelled target sample T = {x_i} ~ D_T^X; the goal is a low risk on the target domain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import Batch, split_generator
from .digits import Digits, _load_digits
from .registry import register_task

IGNORE = -100  # the target rows' label in a training batch: F.cross_entropy's ignore_index


def _digits() -> tuple[Tensor, Tensor]:
    """All 1797 images (N, 64) in [0, 1] and their labels (a seam the tests replace)."""
    return _load_digits()


def transform_images(x: Tensor, *, rotation: float, shift: int, invert: bool) -> Tensor:
    """The target domain's map of 8x8 images (N, 64): rotate by `rotation` degrees about the
    centre (bilinear, zero outside), then translate `shift` pixels right and down (zero fill),
    then invert intensities (x -> 1 - x) if `invert`."""
    img = x.reshape(-1, 1, 8, 8)
    if rotation:
        a = math.radians(rotation)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                             dtype=img.dtype).expand(len(img), 2, 3)
        grid = F.affine_grid(theta, list(img.shape), align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if shift:
        s = int(shift)
        out = torch.zeros_like(img)
        out[..., s:, s:] = img[..., : 8 - s, : 8 - s]
        img = out
    if invert:
        img = 1.0 - img
    return img.reshape(-1, 64).clamp(0.0, 1.0).contiguous()


@lru_cache(maxsize=8)
def _target_images(rotation: float, shift: int, invert: bool) -> Tensor:
    x, _ = _load_digits()
    return transform_images(x, rotation=rotation, shift=shift, invert=invert)


@register_task("domain_shift")
@dataclass
class DomainShift(Digits):
    r"""Unsupervised domain adaptation on scikit-learn's 8x8 digits: source = the images as they
    are, target = the same kind of images transformed (rotated by ``rotation`` degrees, shifted by
    ``shift`` pixels, inverted if ``invert``; ``transform_images``).

    Rows: the digits split of ``Digits(data_seed)`` (70 / 15 / 15 stratified). The training rows
    are divided at random (``data_seed``) into two disjoint halves: the *source* half, seen
    untransformed with its labels, and the *target* half, seen only transformed and without its
    labels. Validation and test are the val/test rows, transformed: both score the target domain.

    How a method sees the target inputs: a training batch of size B carries 2B rows, the first B
    labelled source rows and then B unlabelled target rows (each half drawn uniformly with
    replacement from its half of the training rows), with ``mask`` True on the source rows and
    False on the target rows. The target rows' ``targets`` are ``IGNORE`` (-100): their labels are
    never looked up (tested by corrupting them). The task's loss is the cross-entropy over the
    masked (source) rows, so a model trained with no method is source-only training; a
    domain-adaptation method (``dann``) reads ``batch.mask`` to tell the domains apart. Batch size
    <= 0 gives every source and every target training row, in a fixed order.

    Evaluation sets have no mask (every row is a labelled target example). Metric: target
    accuracy. Chance: 0.1. ``source_accuracy`` is not reported by the splits; the source domain
    is what training fits.
    """

    name: ClassVar[str] = "domain_shift"
    input_kind: ClassVar[str] = "vector"
    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    rotation: float = 0.0
    shift: int = 2
    invert: bool = False
    data_seed: int = 0

    def validate(self) -> None:
        super().validate()  # data_seed
        if not math.isfinite(self.rotation) or abs(self.rotation) > 180:
            raise ConfigError(f"task {self.name!r}: rotation must be degrees in [-180, 180], got {self.rotation}")
        if not 0 <= self.shift <= 4:
            raise ConfigError(f"task {self.name!r}: shift must be 0..4 pixels (the images are 8x8), got {self.shift}")
        if self.rotation == 0 and self.shift == 0 and not self.invert:
            raise ConfigError(f"task {self.name!r}: the target domain equals the source (rotation 0, shift 0, "
                              "invert false); set at least one of them")

    # ---- the rows of each role -------------------------------------------------------------
    def role_indices(self, role: str) -> Tensor:
        """Row indices (into the 1797 images) of "source" / "target" (the two halves of the training
        rows), "val" or "test"."""
        if role in ("val", "test"):
            return self.split_indices(role)
        if role not in ("source", "target"):
            raise ConfigError(f"task {self.name!r}: no role {role!r}; roles: source, target, val, test")
        train = self.split_indices("train")
        order = torch.randperm(len(train), generator=split_generator(self.name, "halves", self.data_seed))
        half = len(train) // 2
        return train[order[:half]] if role == "source" else train[order[half:]]

    def _target_inputs(self, index: Tensor) -> Tensor:
        return _target_images(float(self.rotation), int(self.shift), bool(self.invert))[index]

    # ---- data ------------------------------------------------------------------------------
    def train_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        src, tgt = self.role_indices("source"), self.role_indices("target")
        if batch_size <= 0:
            pick_s, pick_t = src, tgt
        else:
            pick_s = src[torch.randint(0, len(src), (batch_size,), generator=generator)]
            pick_t = tgt[torch.randint(0, len(tgt), (batch_size,), generator=generator)]
        x, y = _digits()
        inputs = torch.cat([x[pick_s], self._target_inputs(pick_t)])
        targets = torch.cat([y[pick_s], torch.full((len(pick_t),), IGNORE, dtype=torch.long)])
        mask = torch.cat([torch.ones(len(pick_s), dtype=torch.bool), torch.zeros(len(pick_t), dtype=torch.bool)])
        return Batch(inputs, targets, mask)

    def _make_eval_set(self, split: str) -> Batch:
        index = self.role_indices(split)
        _, y = _digits()
        return Batch(self._target_inputs(index), y[index])

    def source_set(self, split: str) -> Batch:
        """The val/test rows untransformed: the source domain's view of the same images (to
        measure how much the shift costs)."""
        index = self.role_indices(split)
        x, y = _digits()
        return Batch(x[index], y[index])

    def oracle(self, batch: Batch) -> Tensor:
        raise NotImplementedError("domain_shift is learned from digits: it has no oracle")
