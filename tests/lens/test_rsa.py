"""RSA (dissimilarity matrices and their comparison) against brute-force forms."""
import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import rsa


def test_rdms_match_their_definitions_entry_by_entry():
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eu, co = rsa.rdm(x), rsa.rdm(x, "correlation")
    for i in range(6):
        for j in range(6):
            assert eu[i, j] == pytest.approx(float((x[i] - x[j]).norm()), abs=1e-12)
            r = torch.corrcoef(torch.stack([x[i], x[j]]))[0, 1]
            assert co[i, j] == pytest.approx(1 - float(r) if i != j else 0.0, abs=1e-12)


def test_average_ranks_share_ties():
    assert rsa.average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def _spearman_brute(u: list[float], v: list[float]) -> float:
    def ranks(w):
        return [sum(1 for z in w if z < a) + (sum(1 for z in w if z == a) + 1) / 2 for a in w]
    ru, rv = ranks(u), ranks(v)
    mu, mv = sum(ru) / len(ru), sum(rv) / len(rv)
    num = sum((p - mu) * (q - mv) for p, q in zip(ru, rv))
    return num / math.sqrt(sum((p - mu) ** 2 for p in ru) * sum((q - mv) ** 2 for q in rv))


def test_rdm_similarity_is_the_correlation_of_upper_triangles():
    g = torch.Generator().manual_seed(1)
    a = rsa.rdm(torch.randn(7, 4, generator=g))
    b = rsa.rdm(torch.randn(7, 4, generator=g)).round(decimals=1)  # rounding makes ties
    iu = torch.triu_indices(7, 7, 1)
    u, v = a[iu[0], iu[1]].tolist(), b[iu[0], iu[1]].tolist()
    assert rsa.rdm_similarity(a, b, "spearman") == pytest.approx(_spearman_brute(u, v), abs=1e-12)
    pearson = float(torch.corrcoef(torch.tensor([u, v], dtype=torch.float64))[0, 1])
    assert rsa.rdm_similarity(a, b, "pearson") == pytest.approx(pearson, abs=1e-12)
    # a monotone transform of one RDM leaves Spearman at 1 but not Pearson
    assert rsa.rdm_similarity(a, a.pow(3), "spearman") == pytest.approx(1.0, abs=1e-12)
    assert rsa.rdm_similarity(a, a.pow(3), "pearson") < 1 - 1e-3


def test_bad_input_names_the_problem():
    with pytest.raises(ConfigError, match="metric"):
        rsa.rdm(torch.zeros(3, 2), "cosine")
    with pytest.raises(ConfigError, match="constant"):
        rsa.rdm(torch.ones(3, 2), "correlation")
    with pytest.raises(ShapeError, match="square"):
        rsa.rdm_similarity(torch.zeros(3, 3), torch.zeros(4, 4))
