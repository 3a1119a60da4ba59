"""lossviz.cluster: seeded k-means in torch and the clustering scores (NMI against scikit-learn,
accuracy under the best matching of cluster ids to classes)."""

import numpy as np
import pytest
import torch

from lossviz import cluster as C


def test_kmeans_is_seeded_and_recovers_separated_blobs():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(50)
    x = 10 * torch.eye(4, 3)[y] + 0.5 * torch.randn(200, 3, generator=g)          # four far-apart blobs
    a1, c1 = C.kmeans(x, 4, seed=5)
    a2, c2 = C.kmeans(x, 4, seed=5)
    assert torch.equal(a1, a2) and torch.equal(c1, c2)
    assert C.cluster_scores(y.numpy(), a1.numpy())["acc"] == 1.0
    single = [C.kmeans(x, 4, n_init=1, seed=s)[1] for s in range(4)]
    def inertia(c):
        return float(torch.cdist(x, c).amin(1).pow(2).sum())

    assert inertia(c1) <= min(inertia(c) for c in single) + 1e-4               # the best restart wins
    # a Lloyd fixed point: each point sits with its nearest centre, each centre is its cluster's mean
    assert torch.equal(torch.cdist(x, c1).argmin(1), a1)
    for l in range(4):
        torch.testing.assert_close(c1[l], x[a1 == l].mean(0))
    before = torch.get_rng_state()
    C.kmeans(x, 4, seed=1)
    assert torch.equal(torch.get_rng_state(), before)                          # the global RNG is untouched
    a_all, _ = C.kmeans(x[:12], 12)
    assert sorted(a_all.tolist()) == list(range(12))                           # K = N: every point alone


def test_cluster_scores_match_scikit_learn_and_ignore_cluster_names():
    from sklearn.metrics import normalized_mutual_info_score

    y = np.array([0, 0, 1, 1, 2, 2])
    assert C.cluster_scores(y, np.array([2, 2, 0, 0, 1, 1])) == {"nmi": pytest.approx(1.0), "acc": 1.0}
    assert C.cluster_scores(y, np.array([0, 0, 0, 1, 1, 1]))["acc"] == pytest.approx(4 / 6)
    rng = np.random.default_rng(0)
    for n_pred in (1, 3, 10, 25):
        t, p = rng.integers(0, 10, 500), rng.integers(3, 3 + n_pred, 500)      # cluster ids need not start at 0
        p[:250] = t[:250] + 3 if n_pred >= 10 else p[:250]
        want = normalized_mutual_info_score(t, p)
        assert C.cluster_scores(t, p)["nmi"] == pytest.approx(want, abs=1e-12)
    assert C.cluster_scores(np.zeros(5, int), np.ones(5, int))["nmi"] == normalized_mutual_info_score([0] * 5, [1] * 5)
    with pytest.raises(ValueError, match="same length"):
        C.cluster_scores(y, y[:-1])
