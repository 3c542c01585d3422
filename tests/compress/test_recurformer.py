"""RecurFormer (2410.12850): recency score against an exact loop, level 0 = the original model, the
chosen heads are the most recency-biased ones, the cache shrinks by the replaced fraction (real tensors)."""
import pytest
import torch

from layerlab.compress import CompressContext, apply_technique
from layerlab.compress.recurformer import (RecurFormerAttention, attention_mixers, head_recency, kv_cache_scalars,
                                           recency_scores)
from layerlab.errors import ConfigError
from layerlab.models import SequenceModel
from layerlab.spec import ModelSpec
from layerlab.tasks.base import Batch
from layerlab.train.footprint import inference_state_size


def _exact_recency(probs, w):
    B, h, L, _ = probs.shape
    out = []
    for i in range(h):
        total, n = 0.0, 0
        for b in range(B):
            for t in range(w, L):
                total += sum(float(probs[b, i, t, s]) for s in range(t - w + 1, t + 1))
                n += 1
        out.append(total / n)
    return torch.tensor(out, dtype=torch.float64)


def test_recency_score_equals_exact_loop_on_constructed_map():
    g = torch.Generator().manual_seed(0)
    B, h, L = 2, 3, 7
    raw = torch.rand(B, h, L, L, generator=g, dtype=torch.float64).tril()
    probs = raw / raw.sum(-1, keepdim=True)
    probs[:, 0] = torch.eye(L, dtype=torch.float64)  # head 0 attends to itself only: score 1 at any window
    for w in (1, 2, 4):
        got = recency_scores(probs, w)
        assert torch.allclose(got, _exact_recency(probs, w), atol=1e-12, rtol=0)
        assert abs(float(got[0]) - 1.0) < 1e-12
    with pytest.raises(ConfigError, match="window"):
        recency_scores(probs, L)


class _Task:
    vocab_size = 11

    def train_batch(self, n, generator):
        x = torch.randint(0, 11, (n, 12), generator=generator)
        return Batch(x, x, None)


def _model(seed=0):
    torch.manual_seed(seed)
    spec = ModelSpec(d_model=16, n_layers=2, mixer_options={"n_heads": 4})
    return SequenceModel(spec, vocab_size=11, n_outputs=11, max_length=12).eval()


def _ctx(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 11, (8, 12), generator=g)
    loss = lambda m, b: torch.nn.functional.cross_entropy(m(b.inputs).flatten(0, 1), b.targets.flatten())
    return CompressContext(task=_Task(), calibration=Batch(x, x, None), generator=g, loss_fn=loss), x


def test_replacing_zero_heads_leaves_model_unchanged():
    model = _model()
    ctx, x = _ctx()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = apply_technique("recurformer", model, 0.0, ctx, finetune_steps=5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    with torch.no_grad():
        assert torch.equal(out(x), model(x))
    assert kv_cache_scalars(out, x) == kv_cache_scalars(model, x) == 2 * 2 * x.numel() * 16


def test_chosen_heads_are_the_most_recent_and_cache_shrinks_by_the_fraction():
    model = _model(1)
    ctx, x = _ctx(1)
    scores = head_recency(model, x, 2)
    out = apply_technique("recurformer", model, 0.5, ctx, finetune_steps=0)
    mixers = [m for m in out.modules() if isinstance(m, RecurFormerAttention)]
    chosen = [float(scores[n][i]) for (n, _), m in zip(attention_mixers(model), mixers) for i in m.replaced]
    others = [float(scores[n][i]) for (n, _), m in zip(attention_mixers(model), mixers) for i in m.kept]
    assert len(chosen) == 4 and min(chosen) >= max(others)
    # the measured cache: kept heads' K and V grow with L, each LRU holds d_state complex numbers (2 x 4 reals)
    L = 12
    dense, hybrid = kv_cache_scalars(model, x[:1]), kv_cache_scalars(out, x[:1])
    assert dense == 2 * 2 * L * 16 and hybrid == 2 * 2 * L * 8 + 4 * 2 * 4
    assert inference_state_size(out, L) == hybrid and inference_state_size(model, L) == dense
    # the replaced heads' outputs are the LRU's: changing an LRU changes the output, reference = fast form
    with torch.no_grad():
        m = mixers[0]
        h = torch.randn(2, 12, 16)
        assert torch.allclose(m(h, mode="sdpa"), m(h, mode="reference"), atol=1e-5)


def test_finetuning_lowers_the_training_loss_and_bad_options_fail():
    model = _model(2)
    ctx, x = _ctx(2)
    base = apply_technique("recurformer", model, 0.5, ctx, finetune_steps=0)
    tuned = apply_technique("recurformer", model, 0.5, _ctx(2)[0], finetune_steps=12, lr=1e-2)
    batch = Batch(x, x, None)
    with torch.no_grad():
        assert float(ctx.loss_fn(tuned, batch)) < float(ctx.loss_fn(base, batch))
    with pytest.raises(ConfigError, match="finetune_steps"):
        apply_technique("recurformer", model, 0.5, ctx, finetune_steps=-1)
