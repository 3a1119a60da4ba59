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


def test_nmi_is_the_score_of_cluster_scores_and_of_scikit_learn():
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 10, 300), rng.integers(0, 7, 300)
    p[:150] = t[:150]
    assert C.nmi(t, p) == C.cluster_scores(t, p)["nmi"]
    assert C.nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-12)
    assert C.nmi(t, (t + 4) % 10) == pytest.approx(1.0)                          # renamed clusters
    assert C.nmi(np.zeros(6, int), np.arange(6) % 2) == normalized_mutual_info_score([0] * 6, np.arange(6) % 2)
    with pytest.raises(ValueError, match="non-empty"):
        C.nmi([], [])


def test_kmeans_refuses_bad_arguments():
    z = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_clusters must be <= the number of points"):
        C.kmeans(z, 5)
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 1"):
        C.kmeans(z, True)
    with pytest.raises(ValueError, match="n_init must be an integer >= 1"):
        C.kmeans(z, 2, n_init=0)


@pytest.mark.parametrize("seed", range(3))
def test_kmeans_reaches_the_inertia_of_scikit_learn(seed):
    """Same data, same number of restarts (k-means++ starts): an inertia as low as scikit-learn's KMeans."""
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 6, (300,), generator=g)
    x = (2.0 * torch.randn(6, 5, generator=g, dtype=torch.float64)[y]
         + torch.randn(300, 5, generator=g, dtype=torch.float64))                 # overlapping blobs
    assign, centres = C.kmeans(x, 6, n_init=10, seed=seed)
    ours = float(((x - centres[assign]) ** 2).sum())
    theirs = KMeans(6, n_init=10, random_state=seed).fit(x.numpy()).inertia_
    assert ours <= theirs * (1 + 1e-3)
