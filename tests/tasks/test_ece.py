"""Expected calibration error of the classification tasks: the definition, additivity, direction."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from layerlab.claims.check import _direction
from layerlab.tasks import build_task
from layerlab.tasks.base import ECE_BINS, Batch, Task


def ece_direct(logits: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """Σ_b (n_b/n) |acc_b − conf_b| over equal-width bins ((b−1)/M, b/M], one example at a time."""
    probs = torch.softmax(logits.double(), -1)
    members: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for p, y in zip(probs, targets):
        k = int(p.argmax())
        conf = float(p[k])
        b = next(b for b in range(bins) if b / bins < conf <= (b + 1) / bins)
        members[b].append((conf, float(k == int(y))))
    n = len(targets)
    total = 0.0
    for m in members:
        if m:
            acc = sum(h for _, h in m) / len(m)
            conf = sum(c for c, _ in m) / len(m)
            total += len(m) / n * abs(acc - conf)
    return total


def summarize(task: Task, chunks: list[Batch], logits: list[torch.Tensor]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for b, z in zip(chunks, logits):
        for k, v in task._sums(z, b).items():
            totals[k] = totals.get(k, 0.0) + v
    return task.summarize(totals)


def test_ece_of_a_hand_computed_case():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bins 14 and 9 of 15
    # ECE = 2/3 |1/2 - 0.9| + 1/3 |1 - 0.6| = 0.4
    p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]], dtype=torch.float64)
    logits, targets = p.log(), torch.tensor([0, 1, 1])
    task = build_task("digits")
    out = summarize(task, [Batch(torch.zeros(3, 64), targets)], [logits])
    assert out["ece"] == pytest.approx(0.4, abs=1e-12)
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_ece_equals_the_direct_computation_and_does_not_depend_on_chunking():
    gen = torch.Generator().manual_seed(0)
    n, c = 301, 10
    logits = torch.randn(n, c, generator=gen, dtype=torch.float64) * 3
    targets = torch.where(torch.rand(n, generator=gen) < 0.7, logits.argmax(-1), torch.randint(0, c, (n,), generator=gen))
    task = build_task("digits")
    expected = ece_direct(logits, targets)
    assert expected > 0.01  # a case with something to measure
    batch = Batch(torch.zeros(n, 64), targets)
    whole = summarize(task, [batch], [logits])
    assert whole["ece"] == pytest.approx(expected, rel=1e-10)
    for size in (1, 7, 64, 300):
        starts = range(0, n, size)
        chunked = summarize(task, [batch.slice(s, s + size) for s in starts], [logits[s:s + size] for s in starts])
        assert chunked["ece"] == pytest.approx(expected, rel=1e-10), size
        assert chunked["accuracy"] == whole["accuracy"] and chunked["loss"] == pytest.approx(whole["loss"], rel=1e-12)


def test_masked_token_ece_counts_only_scored_positions():
    gen = torch.Generator().manual_seed(1)
    b, length, c = 9, 13, 7
    logits = torch.randn(b, length, c, generator=gen, dtype=torch.float64) * 2
    targets = torch.randint(0, c, (b, length), generator=gen)
    mask = torch.rand(b, length, generator=gen) < 0.4
    task = build_task("modular", p=11, train_fraction=0.6)
    assert task.input_kind == "tokens"
    expected = ece_direct(logits[mask], targets[mask])
    batch = Batch(torch.zeros(b, length, dtype=torch.long), targets, mask)
    assert summarize(task, [batch], [logits])["ece"] == pytest.approx(expected, rel=1e-10)
    chunks = [batch.slice(s, s + 2) for s in range(0, b, 2)]
    assert summarize(task, chunks, [logits[s:s + 2] for s in range(0, b, 2)])["ece"] == pytest.approx(expected, rel=1e-10)
    # scrambling the logits of unscored positions changes nothing
    noisy = torch.where(mask.unsqueeze(-1), logits, torch.randn(b, length, c, generator=gen, dtype=torch.float64) * 9)
    assert summarize(task, [batch], [noisy])["ece"] == pytest.approx(expected, rel=1e-12)


def test_evaluate_reports_ece_independent_of_the_eval_batch_size():
    task = build_task("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    data = task.eval_set("val")
    with torch.no_grad():
        expected = ece_direct(model(data.inputs.double()), data.targets)
    values = [task.evaluate(model, "val", batch_size=bs)["ece"] for bs in (5, 64, 10_000)]
    for v in values:
        assert v == pytest.approx(expected, rel=1e-10)
    assert "ece" in task.metric_names and ECE_BINS == 15


def test_ece_is_zero_for_a_perfectly_calibrated_bin_and_at_most_one():
    # every prediction at confidence 1 (to float64) and right: ECE 0; all wrong: ECE 1
    logits = torch.tensor([[60.0, 0.0], [0.0, 60.0]], dtype=torch.float64)
    task = build_task("digits")
    b = Batch(torch.zeros(2, 64), torch.tensor([0, 1]))
    assert summarize(task, [b], [logits])["ece"] == pytest.approx(0.0, abs=1e-12)
    wrong = Batch(torch.zeros(2, 64), torch.tensor([1, 0]))
    assert summarize(task, [wrong], [logits])["ece"] == pytest.approx(1.0, abs=1e-12)


def test_ece_is_lower_is_better_where_a_card_infers_direction():
    card = SimpleNamespace(id="c", metric=SimpleNamespace(higher_is_better=None))
    assert _direction(card, "ece", "accuracy", True) is False
    assert _direction(card, "accuracy", "accuracy", True) is True
