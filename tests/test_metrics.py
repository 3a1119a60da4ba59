"""Recall@K and MAP@R against brute-force loops, and on tiny examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz import metrics

# ------------------------------------------------------------------------------------------------
# Brute-force references: one query at a time, the query left out of its own gallery.
# ------------------------------------------------------------------------------------------------

def cosine(u, v) -> float:
    return float(u @ v) / (float(u.norm()) * float(v.norm()))


def ranked_gallery(emb, q):
    """Gallery indices (all but q) sorted by decreasing cosine similarity to query q."""
    others = [j for j in range(len(emb)) if j != q]
    return sorted(others, key=lambda j: -cosine(emb[q], emb[j]))


def recall_at_k_loop(emb, labels, k):
    labels = [int(t) for t in labels]
    hits = 0
    for q in range(len(emb)):
        top = ranked_gallery(emb, q)[:k]
        hits += any(labels[j] == labels[q] for j in top)
    return hits / len(emb)


def map_at_r_loop(emb, labels):
    """AP@R of a query = 1/R sum_{i <= R} P@i [i-th item relevant], R = its same-class gallery
    items; the mean over queries with R >= 1."""
    labels = [int(t) for t in labels]
    aps = []
    for q in range(len(emb)):
        R = sum(labels[j] == labels[q] for j in range(len(emb)) if j != q)
        if R == 0:
            continue
        ranked = ranked_gallery(emb, q)[:R]
        relevant_so_far, ap = 0, 0.0
        for i, j in enumerate(ranked, start=1):
            if labels[j] == labels[q]:
                relevant_so_far += 1
                ap += relevant_so_far / i
        aps.append(ap / R)
    return sum(aps) / len(aps)


def random_embeddings(seed, n, dim, n_classes, spread):
    """Noisy class centres in general position: cosine ties have probability zero."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    x = torch.randn(n_classes, dim, generator=g, dtype=torch.float64)[y]
    x = x + spread * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, y


RANDOM = [(seed, n, dim, c, spread) for seed, (n, dim, c, spread) in enumerate(
    [(20, 2, 3, 0.5), (30, 4, 5, 1.0), (25, 8, 2, 2.0), (40, 3, 8, 0.3), (15, 16, 4, 3.0)])]


@pytest.mark.parametrize("seed,n,dim,c,spread", RANDOM)
def test_recall_at_k_matches_loop(seed, n, dim, c, spread):
    x, y = random_embeddings(seed, n, dim, c, spread)
    for k in [1, 2, 4, 8, n - 1]:
        assert lv.recall_at_k(x, y, k) == pytest.approx(recall_at_k_loop(x, y, k), abs=1e-12)


@pytest.mark.parametrize("seed,n,dim,c,spread", RANDOM)
def test_map_at_r_matches_loop(seed, n, dim, c, spread):
    x, y = random_embeddings(seed, n, dim, c, spread)
    assert lv.map_at_r(x, y) == pytest.approx(map_at_r_loop(x, y), abs=1e-12)


def test_random_cases_are_not_trivial():
    values = [lv.map_at_r(*random_embeddings(*case)) for case in RANDOM]
    assert all(0.05 < v < 0.999 for v in values)


def test_map_at_r_skips_queries_without_relevant_items():
    """A singleton class (R = 0) is not a query of MAP@R, but it stays in everyone's gallery."""
    x, y = random_embeddings(3, 12, 3, 3, 0.8)
    y = y.clone()
    y[0] = 99
    assert lv.map_at_r(x, y) == pytest.approx(map_at_r_loop(x, y), abs=1e-12)


def test_metrics_accept_any_integer_class_ids():
    x, y = random_embeddings(4, 16, 3, 4, 0.8)
    relabelled = torch.tensor([-7, 3, 1000, 12])[y]
    assert lv.map_at_r(x, relabelled) == lv.map_at_r(x, y)
    assert lv.recall_at_k(x, relabelled, 3) == lv.recall_at_k(x, y, 3)


def test_metrics_use_cosine_so_scale_does_not_matter():
    x, y = random_embeddings(5, 16, 3, 4, 0.8)
    g = torch.Generator().manual_seed(0)
    scaled = x * (0.1 + 10 * torch.rand(16, 1, generator=g, dtype=torch.float64))
    assert lv.map_at_r(scaled, y) == lv.map_at_r(x, y)
    assert lv.recall_at_k(scaled, y, 1) == lv.recall_at_k(x, y, 1)


# ------------------------------------------------------------------------------------------------
# Tiny examples computed by hand
# ------------------------------------------------------------------------------------------------

def on_circle(degrees):
    """Unit vectors at the given angles: cosine ranking = ranking by angular distance."""
    t = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([t.cos(), t.sin()], dim=1)


def test_hand_computed_five_points_on_a_circle():
    """Points at 0, 10, 25, 45, 100 degrees with labels A B A A B.

    query  gallery by angular distance        R   top-R       AP@R
    0 (A)  10 B, 25 A, 45 A, 100 B            2   B A         (0 + 1/2) / 2 = 1/4
    10 (B) 0 A, 25 A, 45 A, 100 B             1   A           0
    25 (A) 10 B (15), 45 A (20), 0 A (25)     2   B A         1/4
    45 (A) 25 A (20), 10 B (35), 0 A (45)     2   A B         (1 + 0) / 2 = 1/2
    100 (B) 45 A (55), 25 A (75), 10 B (90)   1   A           0

    MAP@R = (1/4 + 0 + 1/4 + 1/2 + 0) / 5 = 1/5.
    Recall@1: only query 45 (its nearest, 25, is A) -> 1/5.
    Recall@2: queries 0, 25, 45 -> 3/5.  Recall@3: also 100 (10 B is third) -> 4/5.
    Recall@4: also 10 (100 B is last) -> 1.
    """
    x = on_circle([0, 10, 25, 45, 100])
    y = torch.tensor([0, 1, 0, 0, 1])
    assert lv.map_at_r(x, y) == 1 / 5
    assert [lv.recall_at_k(x, y, k) for k in (1, 2, 3, 4)] == [1 / 5, 3 / 5, 4 / 5, 1.0]
    assert map_at_r_loop(x, y) == 1 / 5  # the loop agrees with the hand computation too


def test_hand_computed_four_points():
    """Points at 0, 20, 30, 90 degrees with labels A B A B.

    query   gallery by angular distance   R  top-1  AP@R
    0 (A)   20 B, 30 A, 90 B              1  B      0
    20 (B)  30 A (10), 0 A (20), 90 B     1  A      0
    30 (A)  20 B (10), 0 A (30), 90 B     1  B      0
    90 (B)  30 A (60), 20 B (70), 0 A     1  A      0

    A badly ordered embedding: MAP@R = 0 and Recall@1 = 0; Recall@2 = 3/4 (only query 20 misses:
    its two nearest are both A); Recall@3 = 1.
    """
    x = on_circle([0, 20, 30, 90])
    y = torch.tensor([0, 1, 0, 1])
    assert lv.map_at_r(x, y) == 0.0
    assert [lv.recall_at_k(x, y, k) for k in (1, 2, 3)] == [0.0, 3 / 4, 1.0]


def test_perfect_clusters_score_one():
    x = on_circle([0, 1, 2, 120, 121, 122, 240, 241])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    assert lv.map_at_r(x, y) == 1.0
    assert lv.recall_at_k(x, y, 1) == 1.0


def test_hand_computed_six_points_with_r_equal_3():
    """Points at 0, 10, 22, 35, 80, 200 degrees with labels A A B A A B (no distance ties).

    query    gallery by angular distance                  R  top-R    AP@R
    0 (A)    10 A, 22 B, 35 A, 80 A, 200 B                3  A B A    (1 + 2/3) / 3 = 5/9
    10 (A)   0 A (10), 22 B (12), 35 A (25), ...          3  A B A    5/9
    22 (B)   10 A (12), 35 A (13), 0 A (22), ...          1  A        0
    35 (A)   22 B (13), 10 A (25), 0 A (35), 80 A (45)    3  B A A    (0 + 1/2 + 2/3) / 3 = 7/18
    80 (A)   35 A (45), 22 B (58), 10 A (70), 0 A (80)    3  A B A    5/9
    200 (B)  80 A (120), 0 A (160), 35 A (165), 10 A, 22 B 1  A        0

    MAP@R = (3 * 5/9 + 7/18) / 6 = 37/108.
    Recall@1 = 3/6 (queries 0, 10, 80); Recall@2..4 = 4/6 (query 35 joins);
    Recall@5 = 1 (22 and 200 find each other last).
    """
    x = on_circle([0, 10, 22, 35, 80, 200])
    y = torch.tensor([0, 0, 1, 0, 0, 1])
    assert lv.map_at_r(x, y) == pytest.approx(37 / 108, rel=1e-15)  # 2/3 is not a binary fraction
    assert [lv.recall_at_k(x, y, k) for k in (1, 2, 3, 4, 5)] == [1 / 2, 2 / 3, 2 / 3, 2 / 3, 1.0]
    assert map_at_r_loop(x, y) == pytest.approx(37 / 108, rel=1e-15)


def test_chunked_ranking_equals_one_block():
    """Ranking a few queries at a time (as for SOP's 60k test images) changes nothing."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(60, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 6, (60,), generator=g)
    small = lv.metrics.retrieval_scores(emb, labels, ks=(1, 2, 4, 8), chunk_elems=7 * 60)  # 7 per block
    whole = lv.metrics.retrieval_scores(emb, labels, ks=(1, 2, 4, 8))
    assert small == whole
    for k in (1, 2, 4, 8):
        assert whole[f"recall_at_{k}"] == lv.recall_at_k(emb, labels, k)
    assert whole["map_at_r"] == lv.map_at_r(emb, labels)


def test_effective_rank_known_cases():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(50, 1, generator=g, dtype=torch.float64), torch.randn(1, 8, generator=g, dtype=torch.float64)
    assert metrics.effective_rank(u @ v) == pytest.approx(1.0, abs=1e-6)                   # rank 1
    Q, _ = torch.linalg.qr(torch.randn(40, 8, generator=g, dtype=torch.float64))
    assert metrics.effective_rank(3 * Q) == pytest.approx(8.0, abs=1e-9)                    # isotropic: all sigma equal
    Q3 = Q.clone()
    Q3[:, 3:] = 0
    assert metrics.effective_rank(Q3) == pytest.approx(3.0, abs=1e-9)                       # k equal, rest 0
    x = torch.randn(200, 8, generator=g, dtype=torch.float64)
    assert 1 < metrics.effective_rank(x) < 8
    assert metrics.effective_rank(5 * x) == pytest.approx(metrics.effective_rank(x), rel=1e-12)    # scale-free
    offset = torch.randn(200, 4, generator=g, dtype=torch.float64) * 0.01 + 10         # a shared offset
    assert metrics.effective_rank(offset) < 1.1 < metrics.effective_rank(offset, center=True)
    sigma = torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    p = sigma / sigma.sum()
    assert metrics.effective_rank(torch.diag(sigma)) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-12)
    with pytest.raises(ValueError, match="must have 2 dimensions"):
        metrics.effective_rank(torch.ones(5))
    with pytest.raises(ValueError, match="all zeros"):
        metrics.effective_rank(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        metrics.effective_rank(torch.tensor([[1.0, math.inf]]))


def test_knn_accuracy_against_loop():
    g = torch.Generator().manual_seed(0)
    f_tr, f_te = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(15, 3, generator=g, dtype=torch.float64)
    y_tr, y_te = torch.randint(0, 3, (40,), generator=g), torch.randint(0, 3, (15,), generator=g)
    ntr, nte = (torch.nn.functional.normalize(f, dim=1) for f in (f_tr, f_te))
    hits = 0
    for q in range(15):
        near = sorted(range(40), key=lambda j: -float(nte[q] @ ntr[j]))[:5]
        counts = [sum(int(y_tr[j]) == c for j in near) for c in range(3)]
        hits += counts.index(max(counts)) == int(y_te[q])
    assert metrics.knn_accuracy(f_tr, y_tr, f_te, y_te, k=5) == pytest.approx(hits / 15)


def test_roc_auc_against_sklearn_and_a_loop():
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc_curve

    rng = np.random.default_rng(0)
    for _ in range(5):
        neg, pos = rng.normal(size=40).round(1), rng.normal(0.7, size=25).round(1)  # rounding makes ties
        ours = metrics.roc_auc(neg, pos)
        y = np.r_[np.zeros(40), np.ones(25)]
        assert ours == pytest.approx(roc_auc_score(y, np.r_[neg, pos]), abs=1e-12)
        loop = np.mean([[1.0 if p > n else 0.5 if p == n else 0.0 for n in neg] for p in pos])
        assert ours == pytest.approx(loop, abs=1e-12)
        fpr, tpr = metrics.roc_curve(neg, pos)
        sk_fpr, sk_tpr, _ = sk_roc_curve(y, np.r_[neg, pos], drop_intermediate=False)
        assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
        assert np.trapezoid(tpr, fpr) == pytest.approx(ours, abs=1e-12)
    assert metrics.roc_auc([0.1, 0.2], [0.3, 0.4]) == 1.0 and metrics.roc_auc([0.5], [0.5]) == 0.5


@pytest.mark.parametrize("seed,n,dim,c,spread", RANDOM)
def test_recall_at_1_and_map_at_r_equal_pytorch_metric_learning(seed, n, dim, c, spread):
    """PML's AccuracyCalculator (cosine kNN, the query left out of its own gallery)."""
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    x, y = random_embeddings(seed, n, dim, c, spread)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count",
                              knn_func=CustomKNN(CosineSimilarity()))
    theirs = calc.get_accuracy(x, y, x, y, ref_includes_query=True)
    assert lv.recall_at_k(x, y, 1) == pytest.approx(theirs["precision_at_1"], abs=1e-12)
    assert lv.map_at_r(x, y) == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_tar_at_far_is_the_roc_curve_of_scikit_learn_just_below_each_far(seed):
    """TAR@FAR = the true positive rate of scikit-learn's ROC curve (over all pairs, cosine scores) at
    the largest false positive rate strictly below ``far`` (continuous scores: no ties)."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    x, y = random_embeddings(seed, 120, 6, 12, 1.0)
    f = x / x.norm(dim=1, keepdim=True)
    i, j = np.triu_indices(len(x), k=1)
    scores, same = (f @ f.T).numpy()[i, j], (y[:, None] == y[None, :]).numpy()[i, j]
    fpr, tpr, _ = sk_roc_curve(same, scores, drop_intermediate=False)
    fars = (1e-3, 1e-2, 0.05, 0.1)
    ours = metrics.tar_at_fars(x, y, fars)
    for far in fars:
        assert ours[far] == pytest.approx(tpr[fpr < far].max(), abs=1e-12)


def test_knn_accuracy_checks_k_and_copes_with_any_class_ids():
    x, y = random_embeddings(0, 30, 4, 3, 1.0)
    base = metrics.knn_accuracy(x[:20], y[:20], x[20:], y[20:], k=3)
    big = metrics.knn_accuracy(x[:20], y[:20] * 10**12, x[20:], y[20:] * 10**12, k=3)  # no 10^12-wide one-hot
    assert big == base
    for bad in (0, 21, 2.5):
        with pytest.raises(ValueError, match="k \\(neighbours\\) must be an integer in \\[1, 20\\]"):
            metrics.knn_accuracy(x[:20], y[:20], x[20:], y[20:], k=bad)
    with pytest.raises(ValueError, match="same dimension"):
        metrics.knn_accuracy(x[:20], y[:20], x[20:, :2], y[20:], k=3)


def test_paired_difference_verdicts():
    a = np.array([0.30, 0.25, 0.28, 0.22, 0.24, 0.20, 0.24, 0.26])
    d = np.array([0.02, -0.01, 0.03, -0.02, 0.01, 0.0, -0.03, 0.01])
    tie = metrics.paired_difference(a + d, a)
    assert tie.verdict == "a tie" and tie.wins == 4 and tie.n == 8
    assert tie.mean == pytest.approx(d.mean()) and tie.se == pytest.approx(d.std(ddof=1) / math.sqrt(8))
    assert metrics.paired_difference(a + 0.05 + d / 10, a).verdict == "ahead"
    assert metrics.paired_difference(a, a + 0.05 + d / 10).verdict == "behind"
    hand = metrics.paired_difference(a, 0.20)                                 # a method without a seed: one number
    assert hand.verdict == "ahead" and hand.mean == pytest.approx(a.mean() - 0.20) and "of 8: ahead" in str(hand)
    with pytest.raises(ValueError, match="one number per seed"):
        metrics.paired_difference([0.3], 0.2)


def test_knn_accuracy_weighted_votes():
    """Weighted votes (exp(s/T)) against a loop, the majority-vote limit, and a case where they differ."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(260, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (260,), generator=g)
    tr, te = torch.nn.functional.normalize(f[:200], dim=1), torch.nn.functional.normalize(f[200:], dim=1)
    s = te @ tr.T
    hits = 0
    for i in range(len(te)):
        top = s[i].topk(9).indices
        score = [sum(math.exp(float(s[i, j]) / 0.1) for j in top if y[j] == c) for c in range(4)]
        hits += int(max(range(4), key=lambda c: (score[c], -c)) == y[200 + i])
    assert metrics.knn_accuracy(f[:200], y[:200], f[200:], y[200:], k=9, T=0.1) == pytest.approx(hits / len(te))
    y2 = y % 2                                  # two classes, 9 votes: no ties, so the limit is exact
    assert metrics.knn_accuracy(f[:200], y2[:200], f[200:], y2[200:], k=9, T=1e9) == metrics.knn_accuracy(
        f[:200], y2[:200], f[200:], y2[200:], k=9)
    # one close neighbour of class 1 outweighs two far ones of class 0 (weighted), not the majority
    train = torch.tensor([[1.0, 0.05], [0.6, 0.8], [0.6, -0.8]])
    assert metrics.knn_accuracy(train, torch.tensor([1, 0, 0]), torch.tensor([[1.0, 0.0]]), torch.tensor([1]), k=3, T=0.07) == 1.0
    assert metrics.knn_accuracy(train, torch.tensor([1, 0, 0]), torch.tensor([[1.0, 0.0]]), torch.tensor([1]), k=3) == 0.0
    with pytest.raises(ValueError, match="temperature"):
        metrics.knn_accuracy(train, torch.tensor([1, 0, 0]), train, torch.tensor([1, 0, 0]), k=3, T=0)
