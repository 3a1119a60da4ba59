"""MEOW / AdaMEOW (lossviz.papers.meow): loop references in float64, reductions to NT-Xent, weight
properties, k-means, ProtoNCE, panels and bad input."""

import math

import pytest
import torch

import lossviz as lv
from lossviz.papers import meow as M
from _util import drawn_artists, same_artists

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(seed, n=10, n_classes=4, two_view=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(n // 2).repeat(2) if two_view else torch.randint(0, n_classes, (n,), generator=g)
    return lv.similarity(x), labels, g


def loop_loss(S, labels, w, tau):
    """From the formula: for each positive pair (i, p), -log e^{S_ip/t} / (w_ip e^{S_ip/t} + sum_n w_in e^{S_in/t})."""
    total, pairs = 0.0, 0
    n = len(labels)
    for i in range(n):
        for p in range(n):
            if p == i or labels[p] != labels[i]:
                continue
            den = w[i, p] * torch.exp(S[i, p] / tau)
            for k in range(n):
                if labels[k] != labels[i]:
                    den = den + w[i, k] * torch.exp(S[i, k] / tau)
            total = total - torch.log(torch.exp(S[i, p] / tau) / den)
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tau", [0.1, 0.4, 1.0])
def test_loss_and_gradients_match_the_loop(seed, tau):
    S, labels, g = batch(seed, two_view=seed == 0)
    w = torch.rand(S.shape, generator=g, dtype=torch.float64)
    w[w < 0.2] = 0.0                                 # some terms out of the denominator
    w[torch.arange(len(S)), torch.arange(len(S))] = 1.0
    pos, _ = lv.pair_masks(labels)
    w[pos] = torch.rand(int(pos.sum()), generator=g, dtype=torch.float64) + 0.1
    S1, w1 = S.clone().requires_grad_(True), w.clone().requires_grad_(True)
    S2, w2 = S.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ours = M.weighted_info_nce_loss(S1, labels, weights=w1, tau=tau)
    ref = loop_loss(S2, labels, w2, tau)
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, atol=1e-12)
    assert torch.allclose(S1.grad, S2.grad, atol=1e-12)
    live = w > 0                                     # at w = 0 exactly the term is dropped: no gradient
    assert torch.allclose(w1.grad[live], w2.grad[live], atol=1e-12) and bool((w1.grad[~live] == 0).all())


def test_positive_out_of_the_denominator_matches_the_loop():
    S, labels, g = batch(3, n=12, two_view=True)
    w = M.cluster_weights(torch.randint(0, 3, (2, 6), generator=g)[:, torch.arange(6).repeat(2)], floor=0.1).double()
    pos, _ = lv.pair_masks(labels)
    assert torch.allclose(w[pos], torch.tensor(0.1, dtype=torch.float64))
    w[pos] = 0.0                                       # MEOW: the positive leaves the denominator
    assert torch.allclose(M.weighted_info_nce_loss(S, labels, weights=w, tau=0.3), loop_loss(S, labels, w, 0.3),
                          atol=1e-12)


@pytest.mark.parametrize("two_view", [True, False])
def test_uniform_weights_give_nt_xent(two_view):
    S, labels, _ = batch(4, n=12, two_view=two_view)
    ones = torch.ones_like(S)
    for tau in (0.05, 0.4):
        assert torch.allclose(M.weighted_info_nce_loss(S, labels, weights=ones, tau=tau),
                              lv.nt_xent_loss(S, labels, tau=tau), atol=1e-12)
        W0 = lv.pair_weights(M.weighted_info_nce_loss, S, labels, weights=ones, tau=tau)
        assert torch.allclose(W0, lv.pair_weights(lv.nt_xent_loss, S, labels, tau=tau), atol=1e-12)
    # floor = 1 in cluster_weights is the same thing
    w = M.cluster_weights(torch.randint(0, 3, (2, 12)), floor=1.0)
    assert bool((w == 1).all())


def test_scaling_the_weights_only_shifts_the_loss():
    """The official weights are M times ours: loss + log M (positive out), same gradients."""
    S, labels, g = batch(5, n=12, two_view=True)
    assign = torch.randint(0, 4, (3, 6), generator=g)[:, torch.arange(6).repeat(2)]
    w = M.cluster_weights(assign).double()
    l1 = M.weighted_info_nce_loss(S, labels, weights=w, tau=0.4)
    l3 = M.weighted_info_nce_loss(S, labels, weights=3 * w, tau=0.4)
    assert abs(float(l3 - l1) - math.log(3)) < 1e-12
    G1 = lv.pair_weights(M.weighted_info_nce_loss, S, labels, weights=w, tau=0.4)
    G3 = lv.pair_weights(M.weighted_info_nce_loss, S, labels, weights=3 * w, tau=0.4)
    assert torch.allclose(G1, G3, atol=1e-12)


def test_stable_at_small_tau_in_float32():
    S, labels, _ = batch(6, n=12, two_view=True)
    S = S.float().requires_grad_(True)
    w = torch.full(S.shape, 1e-20)
    value = M.weighted_info_nce_loss(S, labels, weights=w, tau=0.005)
    value.backward()
    assert torch.isfinite(value) and bool(torch.isfinite(S.grad).all())


def test_cluster_weights_against_a_loop():
    g = torch.Generator().manual_seed(7)
    assign = torch.randint(0, 3, (3, 9), generator=g)
    for floor in (0.0, 0.3):
        w = M.cluster_weights(assign, floor=floor)
        for i in range(9):
            for j in range(9):
                agree = sum(int(assign[m, i] == assign[m, j]) for m in range(3))
                assert abs(float(w[i, j]) - max(1 - agree / 3, floor)) < 1e-6
        assert torch.equal(w, w.T) and bool((w.diagonal() == floor).all())
    assert torch.equal(M.cluster_weights(assign[0]), M.cluster_weights(assign[:1]))


def test_kmeans_is_seeded_and_finds_separated_blobs():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    y = torch.arange(3).repeat_interleave(20)
    z = centres[y] + 0.3 * torch.randn(60, 2, generator=g)
    a1, c1 = M.kmeans(z, 3, seed=1)
    a2, c2 = M.kmeans(z, 3, seed=1)
    assert torch.equal(a1, a2) and torch.equal(c1, c2)
    assert torch.equal(a1, torch.cdist(z, c1).argmin(1))               # every point at its nearest centroid
    same_true, same_found = y[:, None] == y[None], a1[:, None] == a1[None]
    assert torch.equal(same_true, same_found)                           # the blobs are recovered


def test_clusterings_density_and_proto_nce_loop():
    g = torch.Generator().manual_seed(8)
    z = torch.nn.functional.normalize(torch.randn(40, 6, generator=g, dtype=torch.float64), dim=1)
    c = M.clusterings(z, (3, 5), tau=0.4, seed=2)
    assert c.assign.shape == (2, 40) and [len(x) for x in c.centroids] == [3, 5]
    for phi in c.density:
        assert abs(float(phi.mean()) - 0.4) < 1e-9 and bool((phi > 0).all())
    zq = torch.nn.functional.normalize(torch.randn(6, 6, generator=g, dtype=torch.float64), dim=1)
    items = torch.tensor([0, 5, 9, 0, 5, 9])
    total = 0.0
    for a, cent, phi in zip(c.assign, c.centroids, c.density):
        terms = []
        for r, i in enumerate(items):
            num = torch.exp(zq[r] @ cent[a[i]] / phi[a[i]])
            den = sum(torch.exp(zq[r] @ cent[k] / phi[k]) for k in range(len(cent)))
            terms.append(-torch.log(num / den))
        total = total + sum(terms) / len(terms)
    assert torch.allclose(M.proto_nce_loss(zq, c, items), total / 2, atol=1e-12)


def test_ada_weights_and_the_degenerate_direction():
    torch.manual_seed(0)
    S, labels, g = batch(9, n=12, two_view=True)
    z = torch.nn.functional.normalize(torch.randn(12, 8, generator=g, dtype=torch.float64), dim=1)
    ada = M.AdaWeights(8).double()
    w = ada(z)
    assert w.shape == (12, 12) and bool(((w > 0) & (w < 1)).all()) and torch.allclose(w, w.T)
    leaf = w.detach().requires_grad_(True)
    M.weighted_info_nce_loss(S, labels, weights=leaf, tau=1.0).backward()
    pos, neg = lv.pair_masks(labels)
    assert bool((leaf.grad[pos | neg] > 0).all())          # dL/dw > 0 on every term of the denominator
    assert bool((leaf.grad.diagonal() == 0).all())


def test_false_negative_share():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    classes = torch.tensor([0, 0, 1, 0, 0, 1])
    W = torch.zeros(6, 6)
    W[0, 1], W[0, 2], W[0, 3] = 3.0, 1.0, -5.0             # (0, 1) false negative, (0, 2) true, (0, 3) positive
    assert abs(M.false_negative_share(W, labels, classes) - 0.75) < 1e-7
    assert M.false_negative_share(torch.zeros(6, 6), labels, classes) == 0.0


def test_bad_input():
    S, labels, _ = batch(10, n=8, two_view=True)
    ones = torch.ones_like(S)
    with pytest.raises(ValueError, match="shape of S"):
        M.weighted_info_nce_loss(S, labels, weights=torch.ones(3, 3), tau=0.4)
    with pytest.raises(ValueError, match=">= 0"):
        M.weighted_info_nce_loss(S, labels, weights=-ones, tau=0.4)
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.weighted_info_nce_loss(S, labels, weights=ones * math.nan, tau=0.4)
    with pytest.raises(ValueError, match="tau"):
        M.weighted_info_nce_loss(S, labels, weights=ones, tau=0)
    with pytest.raises(ValueError, match="integer class ids"):
        M.weighted_info_nce_loss(S, labels.float(), weights=ones, tau=0.4)
    with pytest.raises(ValueError, match="empty denominator"):
        M.weighted_info_nce_loss(S, labels, weights=torch.zeros_like(S), tau=0.4)
    with pytest.raises(ValueError, match="integer cluster ids"):
        M.cluster_weights(torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"floor .* \[0, 1\]"):
        M.cluster_weights(torch.zeros(2, 5, dtype=torch.long), floor=2)
    with pytest.raises(ValueError, match="<= the number of points"):
        M.kmeans(torch.randn(4, 2), 5)
    with pytest.raises(ValueError, match="integer >= 1"):
        M.kmeans(torch.randn(4, 2), 0)
    with pytest.raises(ValueError, match="unknown mode 'supcon'"):
        M.train_meow("supcon")
    with pytest.raises(ValueError, match="epochs must be an integer"):
        M.train_meow("meow", epochs=0)


def test_weights_panel_without_a_browser():
    g = torch.Generator().manual_seed(0)
    pool = torch.nn.functional.normalize(torch.randn(60, 4, generator=g), dim=1)
    classes_pool = (pool[:, 0] > 0).long()
    idx = torch.arange(0, 60, 4)
    items = idx.repeat(2)
    views = pool[items] + 0.05 * torch.randn(30, 4, generator=g)
    labels = torch.arange(15).repeat(2)
    panel = M.weights_panel(lv.similarity(views), labels, classes_pool[items], items, pool, K=4, M=2)
    plain, weighted = panel.state["shares"]
    drawn = drawn_artists(panel.fig)
    assert weighted < plain and panel.state["Ks"] == (4, 12)
    panel.controls["floor"].value = 1.0                   # every weight 1: plain InfoNCE
    assert bool((panel.state["w"] == 1).all())
    assert abs(panel.state["shares"][0] - panel.state["shares"][1]) < 1e-9
    panel.controls["M"].value = 1
    assert panel.state["Ks"] == (4,)
    panel.controls["tau"].value = 0.2
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_run_and_panel():
    run = M.train_meow("meow", epochs=1, batch_size=64, progress=False)
    h = run.history
    assert len(h["loss"]) == 14 and np_finite(h["loss"]) and bool((h["w_false"] < h["w_true"]).all())
    assert set(run.scores) == {"knn", "probe", "nmi"} and 0 < run.scores["knn"] <= 1
    assert M.train_meow("meow", epochs=1, batch_size=64, progress=False) is run      # cached by parameters
    ada = M.train_meow("ada", epochs=1, batch_size=64, progress=False)
    assert ada.history["w_neg"][-1] < ada.history["w_neg"][0]                       # the drift towards 0
    panel = M.training_panel(autorun=False, epochs=5)
    assert "press <b>Train</b>" in panel.status.value
    panel.controls["mode"].value = "infonce"
    result = panel.train()
    assert result.params["mode"] == "infonce" and bool((result.history["w_neg"] == 1).all())
    assert "MeowRun(infonce" in panel.status.value


def np_finite(a):
    return bool(torch.isfinite(torch.as_tensor(a)).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cluster_weights_follow_the_dtype_asked_for(dtype):
    """float64 in, float64 out: a dtype, or a tensor (the similarity matrix) whose dtype to follow;
    the values are the same multiples of 1/M in either precision."""
    assign = torch.randint(0, 4, (3, 10), generator=torch.Generator().manual_seed(0))
    S = torch.zeros(10, 10, dtype=dtype)
    for spec in (dtype, S):
        w = M.cluster_weights(assign, floor=0.1, dtype=spec)
        assert w.dtype == dtype
        torch.testing.assert_close(w.double(), M.cluster_weights(assign, floor=0.1, dtype=torch.float64),
                                   rtol=0, atol=1e-7)
    assert M.cluster_weights(assign).dtype == torch.get_default_dtype()
    with pytest.raises(ValueError):
        M.cluster_weights(assign, dtype=torch.long)


def test_oracle_weights_switch_off_exactly_the_same_class_pairs():
    y = torch.tensor([0, 1, 0, 2, 1])
    w = M.cluster_weights(y, dtype=torch.float64)
    assert torch.equal(w, (y[:, None] != y[None, :]).double())


def test_paired_runs_share_the_cache_and_pair_by_seed():
    out = M.paired_runs([0, 1], taus=(0.4,), modes=("infonce", M.ORACLE), epochs=1)
    assert set(out) == {0.4} and set(out[0.4]) == {"infonce", M.ORACLE}
    assert out[0.4]["infonce"][1] is M.train_meow("infonce", epochs=1, seed=1, progress=False)   # the same cached run
    assert [r.params["seed"] for r in out[0.4][M.ORACLE]] == [0, 1]
    assert all(0 < r.scores["probe"] <= 1 for runs in out[0.4].values() for r in runs)
    with pytest.raises(ValueError, match="unknown mode"):
        M.paired_runs([0], modes=("simclr",), epochs=1)
    with pytest.raises(ValueError, match="at least one seed"):
        M.paired_runs([], epochs=1)
