"""RevCol (arXiv:2212.11696): columns invert exactly, the recomputing backward equals plain autograd,
and the reversible form stores activations independent of the number of columns."""
import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models.revcol import RevCol


def _pair(columns=3, levels=3, seed=0):
    torch.manual_seed(seed)
    rev = RevCol(10, 8, 4, columns=columns, levels=levels, reversible=True, dtype=torch.float64)
    plain = RevCol(10, 8, 4, columns=columns, levels=levels, reversible=False, dtype=torch.float64)
    plain.load_state_dict(rev.state_dict())
    with torch.no_grad():  # break the symmetry of the default init
        for p in rev.parameters():
            p.add_(0.1 * torch.randn_like(p))
        plain.load_state_dict(rev.state_dict())
    return rev, plain


def test_column_inverse_is_exact():
    rev, _ = _pair(columns=4)
    x0 = rev.stem(torch.randn(16, 10, dtype=torch.float64))
    levels = [torch.zeros_like(x0) for _ in range(3)]
    history = [levels]
    with torch.no_grad():
        for col in rev.columns:
            levels = col(x0, levels)
            history.append(levels)
        for i in range(4):  # one column back, from the true next column
            scale = max(t.abs().max().item() for t in history[i + 1])
            for a, b in zip(rev.columns[i].inverse(x0, history[i + 1]), history[i]):
                assert (a - b).abs().max() <= 1e-10 * scale
        # all the way back to the zero levels: rounding is amplified by 1/|gamma| = 2 per column
        for i in reversed(range(4)):
            levels = rev.columns[i].inverse(x0, levels)
        assert max(t.abs().max().item() for t in levels) <= 1e-8


def test_reversible_backward_equals_plain_backward():
    rev, plain = _pair()
    x = torch.randn(12, 10, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_rev, y_plain = rev(x), plain(x2)
    assert torch.allclose(y_rev, y_plain, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(y_rev)
    (y_rev * w).sum().backward()
    (y_plain * w).sum().backward()
    # the recomputed activations carry the inverse's rounding (~1e-12 relative): compare each gradient
    # against the scale of all gradients
    scale = max(q.grad.abs().max().item() for q in plain.parameters())
    assert (x.grad - x2.grad).abs().max() <= 1e-10 * x2.grad.abs().max()
    for (name, p), q in zip(rev.named_parameters(), plain.parameters()):
        assert p.grad is not None, name
        assert (p.grad - q.grad).abs().max() <= 1e-10 * scale, name


def _saved_bytes(model, x):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return total


def test_reversible_stores_less_and_does_not_grow_with_columns():
    x = torch.randn(32, 10, dtype=torch.float64)
    saved = {}
    for n in (2, 4, 8):
        rev, plain = _pair(columns=n)
        saved[n] = (_saved_bytes(rev, x), _saved_bytes(plain, x))
    assert saved[2][0] == saved[4][0] == saved[8][0]  # reversible: only the last column and x_0
    assert saved[8][1] > 3 * saved[2][1]  # plain: grows with the columns
    assert saved[4][0] < saved[4][1] / 4


def test_strict_options():
    with pytest.raises(ConfigError, match="gamma_init"):
        RevCol(4, 4, 2, gamma_init=0.0)
    with pytest.raises(ConfigError, match="columns"):
        RevCol(4, 4, 2, columns=0)
    with pytest.raises(ShapeError, match="d_in"):
        RevCol(4, 4, 2)(torch.zeros(3, 5))
