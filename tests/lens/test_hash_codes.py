"""Neural codes as hash codes (He et al. 2021): each function against a brute-force or exact form."""
import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import dynamics, hash_codes


def _random_codes(n: int, u: int, seed: int) -> torch.Tensor:
    return torch.rand(n, u, generator=torch.Generator().manual_seed(seed)) < 0.5


def test_redundancy_and_unique_fraction_count_shared_codes():
    a, b, c, d = ([1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1])
    codes = torch.tensor([a, a, b, c, c, c, d], dtype=torch.bool)
    assert hash_codes.redundancy_ratio(codes) == pytest.approx(3 / 7, abs=1e-15)  # 7 examples, 4 codes
    assert hash_codes.unique_fraction(codes) == pytest.approx(2 / 7, abs=1e-15)  # b and d have their own


def test_hamming_distances_count_differing_bits():
    a, b = _random_codes(9, 37, 0), _random_codes(5, 37, 1)
    brute = torch.tensor([[float((x != y).sum()) for y in b] for x in a], dtype=torch.float64)
    assert torch.equal(hash_codes.hamming_distances(a, b), brute)


def _knn_brute(train: torch.Tensor, y: torch.Tensor, queries: torch.Tensor, k: int) -> list[int]:
    out = []
    for q in queries:
        dists = [int((q != t).sum()) for t in train]
        order = sorted(range(len(train)), key=lambda i: (dists[i], i))[:k]
        votes: dict[int, int] = {}
        for i in order:
            votes[int(y[i])] = votes.get(int(y[i]), 0) + 1
        best = max(votes.values())
        out.append(next(int(y[i]) for i in order if votes[int(y[i])] == best))
    return out


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_knn_predict_matches_brute_force_with_its_tie_rule(k):
    train, queries = _random_codes(40, 12, 2), _random_codes(25, 12, 3)
    y = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(4))
    got = hash_codes.knn_predict(train, y, queries, k=k)
    assert got.tolist() == _knn_brute(train, y, queries, k)


def _planted(n_per: int, flips: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    protos = torch.zeros(4, 64, dtype=torch.bool)
    for j in range(4):
        protos[j, 16 * j:16 * (j + 1)] = True  # prototypes 32 bits apart
    rows, labels = [], []
    for j in range(4):
        for _ in range(n_per):
            row = protos[j].clone()
            idx = torch.randperm(64, generator=g)[:flips]
            row[idx] = ~row[idx]
            rows.append(row)
            labels.append(j)
    return torch.stack(rows), torch.tensor(labels)


def test_kmeans_is_a_lloyd_fixed_point_and_recovers_planted_groups():
    codes, labels = _planted(30, 3, 5)
    centers, assign = hash_codes.kmeans(codes, 4, generator=torch.Generator().manual_seed(6))
    x = codes.double()
    for j in range(4):  # each center is the mean of its members ...
        assert torch.allclose(centers[j], x[assign == j].mean(0), atol=1e-12)
    assert torch.equal(torch.cdist(x, centers).argmin(1), assign)  # ... and each point sits at its nearest
    # the four planted groups are the four clusters (up to relabelling)
    assert all(len(set(assign[labels == j].tolist())) == 1 for j in range(4))
    assert len(set(assign.tolist())) == 4
    pred = hash_codes.kmeans_predict(centers, assign, labels, codes)
    assert torch.equal(pred, labels)


def test_logistic_regression_reaches_the_stationary_point_of_its_objective():
    codes = _random_codes(40, 8, 7).double()
    y = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(8))
    W, b = hash_codes.logistic_regression(codes, y, lam=1e-2)
    W, b = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
    gW, gb = torch.autograd.grad(hash_codes.logistic_objective(W, b, codes, y, 1e-2), (W, b))
    assert float(torch.cat([gW.flatten(), gb]).abs().max()) < 1e-7  # strictly convex: the global minimum


def test_logistic_regression_separates_separable_codes():
    codes, labels = _planted(20, 2, 9)
    W, b = hash_codes.logistic_regression(codes, labels, lam=1e-1)
    assert torch.equal((codes.double() @ W.T + b).argmax(1), labels)


def test_code_categorization_on_a_relu_net_is_side_effect_free_and_consistent():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    net.train()
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(80, 6, generator=g), torch.randn(30, 6, generator=g)
    y, yt = (x[:, 0] > 0).long() + (x[:, 1] > 0).long(), (xt[:, 0] > 0).long() + (xt[:, 1] > 0).long()
    before = [p.detach().clone() for p in net.parameters()]
    state = torch.random.get_rng_state()
    out = hash_codes.code_categorization(net, (x, y), (xt, yt), k=1, lam=1e-1)
    assert net.training and torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))
    codes = dynamics.activation_bits(net, x)
    assert out["units"] == 64 and codes.shape == (80, 64)
    assert out["redundancy_ratio"] == pytest.approx(hash_codes.redundancy_ratio(codes), abs=0)
    # leave-one-out 1-NN on the training codes, by brute force
    loo = []
    for i in range(80):
        d = [(int((codes[i] != codes[j]).sum()), j) for j in range(80) if j != i]
        loo.append(int(y[min(d)[1]]) == int(y[i]))
    assert out["knn_train"] == pytest.approx(sum(loo) / 80, abs=1e-15)
    tests = hash_codes.knn_predict(codes, y, dynamics.activation_bits(net, xt), 1)
    assert out["knn_test"] == pytest.approx(float((tests == yt).double().mean()), abs=1e-15)


def test_bad_input_names_the_problem():
    with pytest.raises(ShapeError, match=r"\(N, U\)"):
        hash_codes.redundancy_ratio(torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="k <= 3"):
        hash_codes.knn_predict(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), torch.zeros(1, 4), k=5)
    with pytest.raises(ShapeError, match="integer class indices"):
        hash_codes.knn_predict(torch.zeros(3, 4), torch.zeros(3), torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="lam > 0"):
        hash_codes.logistic_regression(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), lam=0.0)
