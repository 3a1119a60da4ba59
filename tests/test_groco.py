"""lossviz.papers.groco: the relaxed sorting networks and the GroCo loss against loops written from the
formulas (values and gradients, float64), their limits, the training run and the panels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _util import value_and_grad

import lossviz as lv
from lossviz.papers import groco as SO
from lossviz.train import Run

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# Loop references, written from the paper's formulas (one scalar at a time)
# ------------------------------------------------------------------------------------------------

def loop_cdf(v, interpolation):
    if interpolation == "cauchy":
        return torch.atan(v) / math.pi + 0.5
    return 1 / (1 + torch.exp(-v))


def loop_soft_sort(x, steepness, interpolation="cauchy"):
    """The odd-even network on one row: n layers; layer t compares wires (i, i+1), i = t mod 2, ...
    Returns the sorted values (list) and P (list of lists, P[item][wire])."""
    n = len(x)
    vals = list(x)
    P = [[torch.tensor(1.0 if i == w else 0.0, dtype=torch.float64) for w in range(n)] for i in range(n)]
    for t in range(n):
        for i in range(t % 2, n - 1, 2):
            a, b = vals[i], vals[i + 1]
            alpha = loop_cdf(steepness * (b - a), interpolation)
            vals[i], vals[i + 1] = alpha * a + (1 - alpha) * b, (1 - alpha) * a + alpha * b
            for row in P:
                pa, pb = row[i], row[i + 1]
                row[i], row[i + 1] = alpha * pa + (1 - alpha) * pb, (1 - alpha) * pa + alpha * pb
    return vals, P


def loop_bce(p, y):
    """torch.nn.BCELoss for one item: the logs clamped at -100."""
    log_p = torch.clamp(torch.log(p), min=-100)
    log_q = torch.clamp(torch.log(1 - p), min=-100)
    return -(y * log_p + (1 - y) * log_q)


def loop_group_loss(x, k, steepness, interpolation="cauchy"):
    """One anchor's loss: x = [k negatives ascending, P positives ascending]."""
    n = len(x)
    _, P = loop_soft_sort(x, steepness, interpolation)
    total = 0
    for i in range(n):
        p_pos = torch.clamp(sum(P[i][r] for r in range(k, n)), 0, 1)
        p_neg = torch.clamp(sum(P[i][r] for r in range(k)), 0, 1)
        y = 1.0 if i >= k else 0.0
        total = total + loop_bce(p_pos, y) + loop_bce(p_neg, 1 - y)
    return total / (2 * n)


def loop_groco(S, B, V, k, steepness, interpolation="cauchy", negatives="same_view"):
    """The official code's recipe on an S of V views x B items (sample v*B + b): for each view as
    anchors, each anchor's positives (its other views, ascending) and its top-k negatives (ascending),
    the group loss averaged over anchors; then the mean over views."""
    per_view = []
    for v in range(V):
        losses = []
        for b in range(B):
            i = v * B + b
            pos = sorted((S[i, w * B + b] for w in range(V) if w != v), key=lambda s: float(s.detach()))
            cols = ([v * B + c for c in range(B) if c != b] if negatives == "same_view"
                    else [w * B + c for w in range(V) for c in range(B) if c != b])
            neg = sorted((S[i, j] for j in cols), key=lambda s: float(s.detach()))[-k:]
            losses.append(loop_group_loss(neg + pos, k, steepness, interpolation))
        per_view.append(sum(losses) / B)
    return sum(per_view) / V


def views_batch(B, V, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(V * B, dim, generator=g, dtype=torch.float64), dim=1)
    return z @ z.T, torch.arange(B).repeat(V)


# ------------------------------------------------------------------------------------------------
# The networks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("network", SO.NETWORKS)
def test_networks_sort_every_zero_one_input(network):
    """The 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input."""
    for n in range(1, 11):
        layers = SO.sorting_network(n, network)
        for code in range(2 ** n):
            v = [(code >> i) & 1 for i in range(n)]
            for layer in layers:
                for lo, hi in layer:
                    v[lo], v[hi] = min(v[lo], v[hi]), max(v[lo], v[hi])
            assert v == sorted(v), (network, n, code)


def test_network_shapes():
    assert SO.odd_even_network(5) == (((0, 1), (2, 3)), ((1, 2), (3, 4))) * 2 + (((0, 1), (2, 3)),)
    for n in (2, 5, 8, 13, 16):
        assert len(SO.odd_even_network(n)) == n
        m = math.ceil(math.log2(n))
        assert len(SO.bitonic_network(n)) == m * (m + 1) // 2
        for layer in SO.sorting_network(n, "bitonic"):         # each wire in at most one comparator
            wires = [w for c in layer for w in c]
            assert len(wires) == len(set(wires))


def test_soft_sort_equals_the_loop_reference_with_gradients():
    g = torch.Generator().manual_seed(1)
    for n, steepness, interpolation in ((2, 0.7, "cauchy"), (5, 3.0, "cauchy"), (8, 1.0, "logistic"),
                                        (9, 20.0, "cauchy")):
        x = torch.randn(2, n, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(2, n, n, generator=g, dtype=torch.float64)
        vals, P = SO.soft_sort(x, steepness=steepness, interpolation=interpolation)
        (gx,) = torch.autograd.grad((P * w).sum() + vals.sum(), x)
        for a in range(2):
            xa = x[a].detach().clone().requires_grad_(True)
            ref_vals, ref_P = loop_soft_sort(list(xa), steepness, interpolation)
            ref_P = torch.stack([torch.stack(row) for row in ref_P])
            torch.testing.assert_close(vals[a], torch.stack(ref_vals), atol=1e-12, rtol=0)
            torch.testing.assert_close(P[a], ref_P, atol=1e-12, rtol=0)
            (ref_g,) = torch.autograd.grad((ref_P * w[a]).sum() + sum(ref_vals), xa)
            torch.testing.assert_close(gx[a], ref_g, atol=1e-10, rtol=0)


@pytest.mark.parametrize("network", SO.NETWORKS)
@pytest.mark.parametrize("interpolation", SO.INTERPOLATIONS)
def test_soft_permutation_is_doubly_stochastic_and_sorts_x(network, interpolation):
    x = torch.randn(20, 13, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for steepness in (0.1, 1.0, 10.0, 1e3):
        vals, P = SO.soft_sort(x, steepness=steepness, interpolation=interpolation, network=network)
        assert (P >= 0).all()
        torch.testing.assert_close(P.sum(1), torch.ones(20, 13, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(P.sum(2), torch.ones(20, 13, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(vals, torch.einsum("ai,air->ar", x, P), atol=1e-12, rtol=0)


@pytest.mark.parametrize("network", SO.NETWORKS)
@pytest.mark.parametrize("interpolation", SO.INTERPOLATIONS)
def test_soft_sort_converges_to_the_hard_sort(network, interpolation):
    x = torch.randn(30, 11, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hard = SO.hard_permutation(x)
    gaps = [float((SO.soft_sort(x, steepness=s, interpolation=interpolation, network=network)[1] - hard).abs().max())
            for s in (1.0, 10.0, 100.0, 1e4, 1e7)]
    assert all(b < a for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[0] > 0.1 and gaps[-1] < 1e-3                  # the Cauchy's heavy tail converges slowest
    vals, _ = SO.soft_sort(x, steepness=1e7, interpolation=interpolation, network=network)
    torch.testing.assert_close(vals, x.sort(1).values, atol=1e-5, rtol=0)


def test_hard_permutation_and_one_row_trace():
    x = torch.tensor([0.3, -1.0, 2.0])
    P = SO.hard_permutation(x)
    assert torch.equal(P, torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]))
    trace = SO.permutation_trace(x.double(), steepness=5.0)
    assert trace.shape == (4, 3, 3) and torch.equal(trace[0], torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(trace[-1], SO.soft_sort(x.double(), steepness=5.0)[1])


def test_soft_step_is_a_symmetric_cdf():
    v = torch.linspace(-50, 50, 101, dtype=torch.float64)
    for interpolation in SO.INTERPOLATIONS:
        a = SO.soft_step(v, interpolation)
        torch.testing.assert_close(a + SO.soft_step(-v, interpolation), torch.ones_like(v))
        assert (a.diff() >= 0).all() and (a[40:61].diff() > 0).all()
        assert float(SO.soft_step(torch.tensor(0.0), interpolation)) == 0.5
    # the Cauchy tail is heavy: ~1/(pi v); the logistic one is ~e^-v
    v100 = torch.tensor(100.0, dtype=torch.float64)
    assert float(1 - SO.soft_step(v100)) == pytest.approx(1 / (100 * math.pi), rel=1e-3)
    assert float(1 - SO.soft_step(v100, "logistic")) < 1e-40


def test_soft_sort_equals_diffsort():
    """The reference implementation of Petersen et al. (diffsort, in the test extras)."""
    import diffsort

    x = torch.randn(6, 11, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for network in SO.NETWORKS:
        for steepness in (1.0, 5.0):
            vals, P = diffsort.DiffSortNet(network, 11, steepness=steepness, interpolation_type="cauchy")(x)
            ours = SO.soft_sort(x, steepness=steepness, network=network)
            torch.testing.assert_close(ours[0], vals, atol=1e-6, rtol=0)
            torch.testing.assert_close(ours[1], P, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# The GroCo loss
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("B, V, k, steepness, interpolation, negatives", [
    (6, 2, 4, 1.0, "cauchy", "same_view"),
    (5, 3, 3, 5.0, "cauchy", "same_view"),
    (4, 4, 2, 20.0, "logistic", "same_view"),
    (4, 2, 5, 2.0, "cauchy", "all"),
])
def test_groco_loss_equals_the_loop_reference(B, V, k, steepness, interpolation, negatives):
    for seed in (0, 1):
        S, y = views_batch(B, V, seed=seed)
        value, grad = value_and_grad(SO.groco_loss, S, y, steepness=steepness, topk_neg=k,
                                     interpolation=interpolation, negatives=negatives)
        leaf = S.clone().requires_grad_(True)
        ref = loop_groco(leaf, B, V, k, steepness, interpolation, negatives)
        (ref_grad,) = torch.autograd.grad(ref, leaf)
        # rtol: a probability near 0 inside a log (logistic, steepness 20) amplifies the rounding of
        # the two (equally exact) mixing formulas: ~1e-10 relative in the value, ~1e-8 in a gradient
        torch.testing.assert_close(value, ref.detach(), atol=1e-12, rtol=1e-9)
        torch.testing.assert_close(grad, ref_grad, atol=1e-12, rtol=1e-6)
        torch.testing.assert_close(lv.pair_weights(SO.groco_loss, S, y, signed=True, steepness=steepness, topk_neg=k,
                                                   interpolation=interpolation, negatives=negatives), grad)


def test_pair_weights_sit_on_the_positives_and_the_top_k_same_view_negatives():
    B, k = 8, 3
    S, y = views_batch(B, 2, seed=5)
    W = lv.pair_weights(SO.groco_loss, S, y, topk_neg=k)
    pos, neg = lv.pair_masks(y)
    view = SO.view_index(y)
    same_view_neg = neg & (view[:, None] == view[None, :])
    top = torch.zeros_like(pos)
    top.scatter_(1, S.masked_fill(~same_view_neg, -2).topk(k, dim=1).indices, True)
    assert not (W[~(pos | top)] != 0).any()                  # no weight outside positives + top-k
    assert (W[pos] > 0).all()
    # the loss depends on differences only, so each anchor's signed gradients sum to 0: pull = push
    G = lv.pair_weights(SO.groco_loss, S, y, signed=True, topk_neg=k, steepness=5.0)
    torch.testing.assert_close(G.sum(1), torch.zeros(2 * B, dtype=torch.float64), atol=1e-15, rtol=0)


def test_loss_is_zero_exactly_when_positives_outrank_negatives():
    neg = torch.linspace(-0.2, 0.4, 10, dtype=torch.float64)
    x_ok = torch.cat([neg, torch.tensor([0.5, 0.7], dtype=torch.float64)])[None]     # both positives on top
    x_bad = torch.cat([neg[:-1], torch.tensor([0.6, 0.5, 0.7], dtype=torch.float64)])[None]
    x_bad = torch.cat([x_bad[:, :10].sort(1).values, x_bad[:, 10:]], 1)               # a negative above a positive
    for interpolation in SO.INTERPOLATIONS:
        assert float(SO.group_ordering_loss(x_ok, 10, steepness=1e4, interpolation=interpolation)) < 1e-3
        assert float(SO.group_ordering_loss(x_bad, 10, steepness=1e4, interpolation=interpolation)) > 1
    # random rows at a large steepness: small loss <=> the ordering holds
    g = torch.Generator().manual_seed(6)
    x = torch.randn(200, 12, generator=g, dtype=torch.float64)
    x = torch.cat([x[:, :10].sort(1).values, x[:, 10:].sort(1).values], 1)
    ok = x[:, 10] > x[:, 9]
    loss = SO.group_ordering_loss(x, 10, steepness=1e4, reduction="none")
    assert ok.any() and (~ok).any()
    assert bool((loss[ok] < 1e-2).all()) and bool((loss[~ok] > 0.1).all())


def test_gradient_locality_and_the_pull_grows_with_steepness():
    """Steepness 5, a positive at 0.5, ten negatives over [-0.2, 0.9]: negatives more than 0.3 below
    the positive get < 10 % of the largest push; the pull grows with the steepness."""
    neg = torch.linspace(-0.2, 0.9, 10, dtype=torch.float64)
    _, g_neg = SO.anchor_groco_weights([0.5], neg, steepness=5.0)
    far = neg < 0.5 - 0.3
    assert far.any() and float(g_neg[far].abs().max()) < 0.1 * float(g_neg.abs().max())
    pulls = [float(-SO.anchor_groco_weights([0.5], neg, steepness=s)[0]) for s in (1.0, 5.0, 20.0)]
    assert pulls == pytest.approx([0.0217, 0.186, 0.427], abs=2e-3)
    assert float(SO.anchor_groco_weights([0.5], neg, steepness=20.0)[1].min()) < 0   # a push that became a pull
    # a negative outside the top k gets nothing
    _, g = SO.anchor_groco_weights([0.5], neg, topk_neg=4, steepness=5.0)
    assert (g[:6] == 0).all() and (g[6:] != 0).all()


def test_view_index_ordering_accuracy_and_stop_grad_similarity():
    assert SO.view_index(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    S, y = views_batch(6, 2, seed=7)
    S = S.clone()
    S[0, 6] = 0.999                          # anchor 0's positive beats everything
    expected = np.mean([bool(min(S[i, j] for j in range(12) if y[j] == y[i] and j != i)
                             > max(S[i, j] for j in range(12) if y[j] != y[i] and j // 6 == i // 6))
                        for i in range(12)])
    assert SO.ordering_accuracy(S, y) == pytest.approx(expected) and SO.ordering_accuracy(S, y) > 0
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    S_sg = SO.anchor_similarity(z)
    torch.testing.assert_close(S_sg, lv.similarity(z))
    (g,) = torch.autograd.grad(S_sg[0].sum(), z)             # row 0 moves only the anchor z_0
    assert (g[0] != 0).any() and (g[1:] == 0).all()


def test_half_precision_and_bad_input():
    S, y = views_batch(6, 2, seed=8)
    half = SO.groco_loss(S.half(), y, topk_neg=3)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert float(half) == pytest.approx(float(SO.groco_loss(S, y, topk_neg=3)), abs=1e-3)
    with pytest.raises(ValueError, match="steepness .* must be > 0"):
        SO.groco_loss(S, y, steepness=0)
    with pytest.raises(ValueError, match="unknown interpolation 'gauss'"):
        SO.soft_sort(torch.zeros(3), interpolation="gauss")
    with pytest.raises(ValueError, match="unknown network"):
        SO.groco_loss(S, y, network="bubble")
    with pytest.raises(ValueError, match="unknown negatives"):
        SO.groco_loss(S, y, negatives="other_view")
    with pytest.raises(ValueError, match="topk_neg=6 but an anchor has only 5 negatives"):
        SO.groco_loss(S, y, topk_neg=6)
    with pytest.raises(ValueError, match="topk_neg .* must be an integer >= 1"):
        SO.groco_loss(S, y, topk_neg=0)
    with pytest.raises(ValueError, match="same number of times"):
        SO.groco_loss(S[:11, :11], y[:11])
    with pytest.raises(ValueError, match="no positive pair"):
        SO.groco_loss(S[:6, :6], y[:6])
    with pytest.raises(ValueError, match="labels must hold integer class ids"):
        SO.groco_loss(S, y.float())
    with pytest.raises(ValueError, match="NaN or Inf"):
        SO.groco_loss(torch.full_like(S, math.nan), y)
    with pytest.raises(ValueError, match="must be square"):
        SO.groco_loss(S[:4], y)
    with pytest.raises(ValueError, match=r"k \(the number of negatives in each row\) must be an integer in \[1, 2\]"):
        SO.group_ordering_loss(torch.zeros(2, 3), 3)
    with pytest.raises(ValueError, match="one row x"):
        SO.permutation_trace(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        SO.anchor_groco_weights([], [0.1])
    with pytest.raises(ValueError, match="n \\(the number of wires\\) must be an integer >= 1"):
        SO.sorting_network(0)


# ------------------------------------------------------------------------------------------------
# The official control (NT-Xent over the top-k negatives, stop-grad) and the weighted k-NN
# ------------------------------------------------------------------------------------------------

def loop_topk_nt_xent(S, labels, tau, k):
    """For each positive pair (i, p): -log e^{S_ip/tau} / (e^{S_ip/tau} + sum over i's k most similar
    negatives of e^{S_in/tau}), averaged over the pairs (one scalar at a time)."""
    n, terms = len(labels), []
    for i in range(n):
        negs = sorted((S[i, j] for j in range(n) if labels[j] != labels[i]), key=lambda s: float(s.detach()))[-k:]
        for p in range(n):
            if p != i and labels[p] == labels[i]:
                den = torch.exp(S[i, p] / tau) + sum(torch.exp(s / tau) for s in negs)
                terms.append(-torch.log(torch.exp(S[i, p] / tau) / den))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("B, V, k, tau", [(6, 2, 3, 0.5), (5, 2, 1, 0.1), (4, 3, 5, 0.5), (4, 2, 6, 0.2)])
def test_topk_nt_xent_equals_the_loop_reference(B, V, k, tau):
    S, y = views_batch(B, V, seed=10)
    value, grad = value_and_grad(SO.topk_nt_xent_loss, S, y, tau=tau, topk_neg=k)
    leaf = S.clone().requires_grad_(True)
    ref = loop_topk_nt_xent(leaf, y.tolist(), tau, k)
    (ref_grad,) = torch.autograd.grad(ref, leaf)
    torch.testing.assert_close(value, ref.detach(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(grad, ref_grad, atol=1e-12, rtol=1e-10)


def test_topk_nt_xent_is_the_official_recipe_and_nt_xent_with_every_negative():
    """The official NT_Xent(topk_neg=k): per anchor the row [positive, top-k of the other 2N - 2],
    cross-entropy with target 0, summed and divided by 2N."""
    B, k, tau = 8, 3, 0.5
    S, y = views_batch(B, 2, seed=11)
    keep = ~torch.eye(2 * B, dtype=torch.bool)
    is_pos = (y[:, None] == y[None, :])[keep].view(2 * B, -1)
    sim = (S / tau)[keep].view(2 * B, -1)
    logits = torch.cat([sim[is_pos].view(2 * B, 1), sim[~is_pos].view(2 * B, -1).topk(k, dim=1).values], 1)
    official = F.cross_entropy(logits, torch.zeros(2 * B, dtype=torch.long), reduction="sum") / (2 * B)
    torch.testing.assert_close(SO.topk_nt_xent_loss(S, y, tau=tau, topk_neg=k), official, atol=1e-12, rtol=0)
    value, grad = value_and_grad(SO.topk_nt_xent_loss, S, y, tau=0.1, topk_neg=2 * B - 2)   # every negative kept
    ref, ref_grad = value_and_grad(lv.nt_xent_loss, S, y, tau=0.1)
    torch.testing.assert_close(value, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad, ref_grad, atol=1e-12, rtol=0)


def test_topk_nt_xent_weights_sit_on_the_positives_and_the_top_k_of_all_views():
    B, k = 8, 4
    S, y = views_batch(B, 2, seed=12)
    W = lv.pair_weights(SO.topk_nt_xent_loss, S, y, signed=True, topk_neg=k)
    pos, neg = lv.pair_masks(y)
    top = torch.zeros_like(pos).scatter_(1, S.masked_fill(~neg, -2).topk(k, dim=1).indices, True)
    assert not (W[~(pos | top)] != 0).any() and (W[pos] < 0).all() and (W[top] > 0).all()
    view = SO.view_index(y)
    assert (top & (view[:, None] != view[None, :])).any()          # negatives from the other view count too
    with pytest.raises(ValueError, match="topk_neg=15 but an anchor has only 14 negatives"):
        SO.topk_nt_xent_loss(S, y, topk_neg=15)
    with pytest.raises(ValueError, match="topk_neg .* must be an integer >= 1"):
        SO.topk_nt_xent_loss(S, y, topk_neg=0)
    with pytest.raises(ValueError, match="tau"):
        SO.topk_nt_xent_loss(S, y, tau=0.0)


def loop_weighted_knn(f_train, y_train, f_test, y_test, k, T):
    f_train, f_test = F.normalize(f_train, dim=1), F.normalize(f_test, dim=1)
    correct = 0
    for x, c in zip(f_test, y_test.tolist()):
        s = f_train @ x
        scores = {}
        for j in s.argsort(descending=True)[:k].tolist():
            scores[int(y_train[j])] = scores.get(int(y_train[j]), 0.0) + math.exp(float(s[j]) / T)
        best = max(scores.values())
        correct += min(label for label, v in scores.items() if v == best) == c
    return correct / len(y_test)


def test_weighted_knn_equals_the_loop_and_is_not_a_majority_vote():
    g = torch.Generator().manual_seed(13)
    f = torch.randn(300, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (300,), generator=g) * 3 + 1                  # class ids that are not 0..C-1
    for k, T in ((20, 0.07), (5, 0.5), (1, 0.07)):
        assert SO.weighted_knn_accuracy(f[:200], y[:200], f[200:], y[200:], k=k, T=T) == pytest.approx(
            loop_weighted_knn(f[:200], y[:200], f[200:], y[200:], k, T))
    # two close neighbours of class 0 outvote three farther ones of class 1; the majority vote does not
    angles = torch.tensor([0.01, 0.02, 0.3, 0.31, 0.32], dtype=torch.float64)
    train = torch.stack([angles.cos(), angles.sin()], 1)
    y_tr, test, y_te = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([0])
    assert SO.weighted_knn_accuracy(train, y_tr, test, y_te, k=5) == 1.0
    assert lv.metrics.knn_accuracy(train, y_tr, test, y_te, k=5) == 0.0
    # a very large T is the majority vote (two classes and an odd k: no ties)
    y2 = y % 2
    assert SO.weighted_knn_accuracy(f[:200], y2[:200], f[200:], y2[200:], k=7, T=1e9) == pytest.approx(
        lv.metrics.knn_accuracy(f[:200], y2[:200], f[200:], y2[200:], k=7))
    with pytest.raises(ValueError, match="T .* must be > 0"):
        SO.weighted_knn_accuracy(f[:200], y[:200], f[200:], y[200:], T=0)


# ------------------------------------------------------------------------------------------------
# Training and panels
# ------------------------------------------------------------------------------------------------

def test_short_runs_record_history_evals_and_are_cached():
    run = SO.train_groco("groco", epochs=1, batch_size=64, eval_every=1, progress=False)
    assert len(run.history["loss"]) == 898 // 64 and np.isfinite(run.history["loss"]).all()
    assert set(run.evals) == {"iter", "map_at_r", "recall_at_1", "map_at_r_h", "knn"}
    assert run.evals["iter"].tolist() == [0, 14] and 0 < run.final("map_at_r") < 1
    assert isinstance(run, Run) and run.final("loss") == run.history["loss"][-1] and not run.model.training
    assert ((0 <= run.history["order_acc"]) & (run.history["order_acc"] <= 1)).all()
    assert run.z_test.shape == (899, 32) and run.params["stop_grad"] is True and "GroCo" in repr(run)
    assert SO.train_groco("groco", epochs=1, batch_size=64, eval_every=1, progress=False) is run
    assert SO.train_groco("groco", epochs=1, batch_size=64, eval_every=1, tau=0.3, progress=False) is run  # unread knob
    nce = SO.train_groco("nt_xent", views=3, epochs=1, batch_size=64, progress=False)
    assert nce.params["stop_grad"] is False and nce.history["loss"][0] > 1 and "NT-Xent" in repr(nce)
    assert nce.params["tau"] == 0.1
    control = SO.train_groco("topk_nt_xent", epochs=1, batch_size=64, eval_every=1, progress=False)
    assert control.params["stop_grad"] is True and control.params["tau"] == 0.5 and control.params["topk_neg"] == 10
    assert "τ=0.5, k=10" in repr(control) and control.final("map_at_r") > control.evals["map_at_r"][0]
    with pytest.raises(ValueError, match="unknown loss"):
        SO.train_groco("triplet")
    with pytest.raises(ValueError, match="views must be an integer >= 2"):
        SO.train_groco(views=1)
    with pytest.raises(ValueError, match=r"topk_neg must be an integer in \[1, 63\]"):
        SO.train_groco(topk_neg=64, batch_size=64)
    with pytest.raises(ValueError, match=r"topk_neg must be an integer in \[1, 126\]"):
        SO.train_groco("topk_nt_xent", topk_neg=127, batch_size=64)


def drawn(fig) -> list:
    """The artists in a panel's axes: a pure-maths panel moves these on a change, never replaces them."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]


def test_sorting_panel_redraws_without_a_browser():
    panel = SO.sorting_panel([0.5, 0.65, 0.35], torch.linspace(-0.6, 0.9, 32, dtype=torch.float64))
    artists = drawn(panel.fig)
    soft = panel.state["P"]
    assert soft.shape == (11, 11) and "loss" in panel.state["status"]
    panel.controls["steepness"].value = 1000
    assert float(panel.state["P"].max()) > 0.9 and float(soft.max()) < 0.5
    panel.controls["views"].value = 4
    panel.controls["topk_neg"].value = 5
    assert panel.state["P"].shape == (8, 8) and len(panel.state["g_pos"]) == 3
    torch.testing.assert_close(panel.state["g_pos"].sum() + panel.state["g_neg"].sum(),
                               torch.tensor(0.0, dtype=torch.float64), atol=1e-12, rtol=0)
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt
    assert panel.fig.axes[0].images[0].get_array().shape == (8, 8)


def test_training_panel_trains_and_flags_stale_settings():
    panel = SO.training_panel(epochs=5, reference_runs=None)
    first = panel.state["result"]
    assert first.params["epochs"] == 5 and first.params["loss"] == "groco" and not panel.state["stale"]
    panel.controls["loss"].value = "nt_xent"
    assert panel.state["stale"] and panel.state["result"] is first
    assert panel.train().params["loss"] == "nt_xent" and not panel.state["stale"]
    panel.controls["loss"].value = "topk_nt_xent"                 # the control's official temperature
    assert panel.controls["tau"].value == pytest.approx(0.5)
