"""NCN / NCNC (lossviz.papers.ncnc): the link BCE and its weights against loops, the completion
calibration against the official formula, the graph maths against brute force (common neighbours,
GCN normalisation, target-link removal), the NCN scorer against a dense reference, the synthetic
graph and its splits, bad input, and the panels driven without a browser."""

import math

import numpy as np
import pytest
import torch

from lossviz.papers import ncnc as N

pytestmark = pytest.mark.usefixtures("one_thread")


def small_graph(seed=0, n=12, p=0.35):
    g = torch.Generator().manual_seed(seed)
    A = (torch.rand(n, n, generator=g) < p).float().triu(1)
    A = A + A.T
    return A, g


# ------------------------------------------------------------------------------------------------
# The loss, its weights, the completion calibration
# ------------------------------------------------------------------------------------------------

def loop_bce(pos, neg):
    """From the formula: -mean log sigma(f) over positives - mean log sigma(-f) over negatives."""
    lp = sum(-torch.log(1 / (1 + torch.exp(-f))) for f in pos) / len(pos)
    ln = sum(-torch.log(1 / (1 + torch.exp(f))) for f in neg) / len(neg)
    return lp + ln


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_link_bce_and_gradients_match_the_loop(seed):
    g = torch.Generator().manual_seed(seed)
    pos = (3 * torch.randn(7, generator=g, dtype=torch.float64)).requires_grad_(True)
    neg = (3 * torch.randn(11, generator=g, dtype=torch.float64)).requires_grad_(True)
    pos2, neg2 = pos.detach().clone().requires_grad_(True), neg.detach().clone().requires_grad_(True)
    ours, ref = N.link_bce_loss(pos, neg), loop_bce(pos2, neg2)
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, atol=1e-12)
    assert torch.allclose(pos.grad, pos2.grad, atol=1e-12) and torch.allclose(neg.grad, neg2.grad, atol=1e-12)
    # the weights: |dL/df| times the number of links on each side
    wp, wn = N.link_weights(pos, neg)
    assert torch.allclose(wp, pos.grad.abs() * 7, atol=1e-12) and torch.allclose(wn, neg.grad.abs() * 11, atol=1e-12)


def test_link_bce_is_stable_for_large_logits():
    pos = torch.tensor([-200.0, 50.0], requires_grad=True)
    neg = torch.tensor([300.0, -40.0], requires_grad=True)
    value = N.link_bce_loss(pos, neg)
    value.backward()
    assert torch.isfinite(value) and abs(float(value.detach()) - (200 / 2 + 300 / 2)) < 1e-3
    assert bool(torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all())


def clampprob(f, scale, offset, pt, alpha):
    """The official NCNC recipe, written as in the paper."""
    p0 = 1 / (1 + torch.exp(-scale * (f - offset)))
    return alpha * pt * p0 / (pt * p0 + 1 - p0)


@pytest.mark.parametrize("knobs", [dict(scale=4.3, offset=2.8, pt=0.75, alpha=1.0),
                                   dict(scale=1.0, offset=0.0, pt=0.3, alpha=0.5),
                                   dict(scale=0.2, offset=-3.0, pt=1.0, alpha=0.9)])
def test_completion_prob_is_the_official_formula(knobs):
    f = torch.linspace(-8, 8, 101, dtype=torch.float64, requires_grad=True)
    f2 = f.detach().clone().requires_grad_(True)
    ours, ref = N.completion_prob(f, **knobs), clampprob(f2, **knobs)
    assert torch.allclose(ours, ref, atol=1e-12)
    ours.sum().backward()
    ref.sum().backward()
    assert torch.allclose(f.grad, f2.grad, atol=1e-12)
    # pt is an offset in disguise: p = alpha sigmoid(scale (f - offset) + log pt)
    shifted = knobs["alpha"] * torch.sigmoid(knobs["scale"] * (f.detach() - knobs["offset"]) + math.log(knobs["pt"]))
    assert torch.allclose(ours.detach(), shifted, atol=1e-12)
    assert bool((ours <= knobs["alpha"]).all())                           # never above alpha ...
    assert bool(torch.isfinite(N.completion_prob(torch.tensor([-1e30, 1e30]), **knobs)).all())   # ... nor NaN


# ------------------------------------------------------------------------------------------------
# Graph maths
# ------------------------------------------------------------------------------------------------

def test_common_neighbours_and_counts_against_loops():
    A, _ = small_graph(1)
    n = len(A)
    edges = torch.tensor([[i, j] for i in range(n) for j in range(n) if i != j])
    C = N.common_neighbors(A, edges)
    for row, (i, j) in enumerate(edges.tolist()):
        want = [float(A[i, u] == 1 and A[u, j] == 1) for u in range(n)]
        assert C[row].tolist() == want
    assert torch.equal(N.cn_counts(A, edges), C.sum(1))
    rows, us = N.cn_pairs(A, edges)                       # the sparse route gives the same non-zeros
    dense = torch.zeros_like(C)
    dense[rows, us] = 1
    assert torch.equal(dense, C)


def test_gcn_normalisation_against_the_formula():
    A, g = small_graph(2)
    n = len(A)
    An = N.gcn_norm(A.double())
    d = A.sum(1) + 1
    for i in range(n):
        for j in range(n):
            want = (float(A[i, j]) + (i == j)) / math.sqrt(d[i] * d[j])
            assert abs(float(An[i, j]) - want) < 1e-12
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(N.propagate(A.double(), x), An @ x, atol=1e-12)


def test_target_link_removal_keeps_the_count_and_moves_the_embedding():
    """The identity of the notebook: A_ij never enters |N(i) ∩ N(j)|, but it enters h_i."""
    A, g = small_graph(3, n=20, p=0.3)
    edges = A.triu(1).nonzero()
    torch.manual_seed(0)
    model = N.LinkPredictor(5, 8, "ncn").double()
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    shift = N.own_edge_shift(model, x, A.double(), edges)
    for k, (i, j) in enumerate(edges.tolist()):
        A_wo = N.remove_links(A, edges[k:k + 1])
        assert A_wo[i, j] == 0 and A_wo[j, i] == 0 and float(A_wo.sum()) == float(A.sum()) - 2
        assert float(N.cn_counts(A_wo, edges[k:k + 1])) == float(N.cn_counts(A, edges[k:k + 1]))
        with torch.no_grad():
            pre = model.pre_activation(x, A.double())[i] - model.pre_activation(x, A_wo.double())[i]
            h = model.embed(x, A.double())[i] - model.embed(x, A_wo.double())[i]
        assert abs(float(pre.norm()) - float(shift["dpre"][k])) < 1e-10
        assert abs(float(h.norm()) - float(shift["dh"][k])) < 1e-10
    assert torch.equal(shift["cn_with"], shift["cn_without"]) and bool((shift["dpre"] > 0).all())


def test_ncn_and_gae_scores_against_a_dense_reference():
    A, g = small_graph(4, n=15, p=0.4)
    x = torch.randn(15, 4, generator=g, dtype=torch.float64)
    edges = torch.tensor([[0, 1], [2, 7], [3, 3], [14, 5], [6, 9]])
    for kind in N.KINDS:
        torch.manual_seed(1)
        m = N.LinkPredictor(4, 6, kind).double()
        f = m(x, A.double(), edges)
        h = torch.relu(N.gcn_norm(A.double()) @ x @ m.gcn.weight.T + m.gcn.bias)
        z = m.xij(h[edges[:, 0]] * h[edges[:, 1]])
        if kind == "ncn":
            z = z + m.beta * m.cn(N.common_neighbors(A.double(), edges) @ h)
        ref = m.out(z)[:, 0]
        assert torch.allclose(f, ref, atol=1e-12)
        ga = torch.autograd.grad(f.sum(), list(m.parameters()))
        gb = torch.autograd.grad(ref.sum(), list(m.parameters()))
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(ga, gb))
    # soft common neighbours enter the sum with their weights
    m = N.LinkPredictor(4, 6, "ncn").double()
    h = m.embed(x, A.double())
    extra = (torch.tensor([0, 0, 3]), torch.tensor([4, 8, 2]), torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64))
    W = N.common_neighbors(A.double(), edges)
    W[extra[0], extra[1]] += extra[2]
    ref = m.out(m.xij(h[edges[:, 0]] * h[edges[:, 1]]) + m.beta * m.cn(W @ h))[:, 0]
    assert torch.allclose(m.score(h, A.double(), edges, extra=extra), ref, atol=1e-12)


def test_completion_candidates_against_a_loop():
    A, _ = small_graph(5, n=14, p=0.35)
    links = torch.tensor([[0, 1], [2, 3], [4, 9], [5, 11]])
    link, u, other = N.completion_candidates(A, links)
    got = sorted(zip(link.tolist(), u.tolist(), other.tolist()))
    want = []
    for k, (i, j) in enumerate(links.tolist()):
        for uu in range(14):
            if uu in (i, j):
                continue
            if A[i, uu] and not A[j, uu]:
                want.append((k, uu, j))
            if A[j, uu] and not A[i, uu]:
                want.append((k, uu, i))
    assert got == sorted(want)


# ------------------------------------------------------------------------------------------------
# The synthetic graph and its splits
# ------------------------------------------------------------------------------------------------

def test_graph_is_seeded_symmetric_and_its_closure_edges_close_wedges():
    g1, g2 = N.sbm_triadic_graph(200, seed=3), N.sbm_triadic_graph(200, seed=3)
    assert torch.equal(g1.A, g2.A) and torch.equal(g1.x, g2.x)
    A = g1.A
    assert torch.equal(A, A.T) and float(A.diagonal().abs().sum()) == 0 and g1.x.shape == (200, 16)
    assert int(A.sum()) == 2 * len(g1.edges) and bool((g1.edges[:, 0] < g1.edges[:, 1]).all())
    A0 = torch.zeros_like(A)
    e0 = g1.edges[torch.from_numpy(g1.born == 0)]
    A0[e0[:, 0], e0[:, 1]] = A0[e0[:, 1], e0[:, 0]] = 1
    e1 = g1.edges[torch.from_numpy(g1.born == 1)]
    assert len(e1) > 0 and bool((N.cn_counts(A0, e1) >= 1).all())      # every closure edge closed a wedge
    assert (N.sbm_triadic_graph(200, closure=0.0, seed=3).born == 0).all()


@pytest.mark.parametrize("split", N.SPLITS)
def test_split_partitions_the_edges(split):
    g = N.sbm_triadic_graph(200, seed=1)
    s = N.split_edges(g, split, seed=1)
    parts = [s.train, s.valid, s.test_pos]
    key = lambda e: set(map(tuple, e.tolist()))        # noqa: E731
    assert sum(len(p) for p in parts) == len(g.edges)
    assert key(s.train) | key(s.valid) | key(s.test_pos) == key(g.edges)
    assert len(s.test_neg) == 5 * len(s.test_pos)
    assert float(g.A[s.test_neg[:, 0], s.test_neg[:, 1]].sum()) == 0 and bool((s.test_neg[:, 0] != s.test_neg[:, 1]).all())
    assert int(s.A_train.sum()) == 2 * len(s.train) and torch.equal(s.A_train, s.A_train.T)
    if split == "temporal":                                # the held-out edges are the newest
        born = dict(zip(map(tuple, g.edges.tolist()), g.born))
        assert min(born[e] for e in key(s.test_pos)) >= max(born[e] for e in key(s.train))


# ------------------------------------------------------------------------------------------------
# Training, completion, panels
# ------------------------------------------------------------------------------------------------

def test_training_completion_and_the_cache():
    run = N.train_link("ncn", epochs=2, progress=False)
    assert len(run.history["loss"]) == 10 and len(run.evals["auc"]) == 3 and 0 <= run.scores["auc"] <= 1
    assert np.isfinite(run.history["loss"]).all() and run.history["loss"][-1] < run.history["loss"][0]
    assert N.train_link("ncn", epochs=2, progress=False) is run                         # cached by parameters
    comp = N.completion_study(run)
    s = N.make_split(seed=0)
    assert len(comp.cn) == len(s.test_pos) + len(s.test_neg) and int(comp.is_pos.sum()) == len(s.test_pos)
    total, mass = comp.completed(scale=4.3, offset=2.8, pt=0.75, alpha=1.0)
    p = N.completion_prob(comp.logits)
    k = 3                                                  # one link by hand
    assert abs(float(mass[k]) - float(p[comp.link == k].sum())) < 1e-5 and torch.allclose(total, comp.cn + mass)
    assert float(comp.completed(alpha=0.0)[1].abs().max()) == 0.0                       # alpha 0: no completion
    res = N.completion_auc(comp)
    assert set(res) == {"auc_cn", "auc_completed", "mass_pos", "mass_neg"}
    assert 0 <= N.ncn_completed_auc(run, comp) <= 1
    with pytest.raises(ValueError, match="trained NCN"):
        N.completion_study(N.train_link("gae", epochs=1, progress=False))


def test_bad_input():
    with pytest.raises(ValueError, match="NaN or Inf"):
        N.link_bce_loss(torch.tensor([1.0, math.nan]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="1 dimensions"):
        N.link_bce_loss(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        N.link_bce_loss(torch.zeros(0), torch.zeros(2))
    with pytest.raises(ValueError, match="floating-point"):
        N.link_bce_loss(torch.tensor([1, 2]), torch.zeros(2))
    with pytest.raises(ValueError, match="scale"):
        N.completion_prob(torch.zeros(3), scale=0.0)
    with pytest.raises(ValueError, match="pt"):
        N.completion_prob(torch.zeros(3), pt=0.0)
    with pytest.raises(ValueError, match="pt"):
        N.completion_prob(torch.zeros(3), pt=1.5)
    with pytest.raises(ValueError, match="alpha"):
        N.completion_prob(torch.zeros(3), alpha=-1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        N.completion_prob(torch.tensor([math.inf]))
    A, _ = small_graph(0)
    with pytest.raises(ValueError, match="integer node ids"):
        N.cn_counts(A, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="m x 2"):
        N.cn_counts(A, torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"node ids in \[0, 12\)"):
        N.cn_counts(A, torch.tensor([[0, 12]]))
    with pytest.raises(ValueError, match="square"):
        N.gcn_norm(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="unknown kind 'gcn'"):
        N.train_link("gcn")
    with pytest.raises(ValueError, match="unknown split"):
        N.split_edges(N.sbm_triadic_graph(50), "by_degree")
    with pytest.raises(ValueError, match="sum to 1"):
        N.split_edges(N.sbm_triadic_graph(50), fractions=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="negatives must be an integer"):
        N.train_link("ncn", negatives=0)
    with pytest.raises(ValueError, match="at least two seeds"):
        N.paired_study([0])


def test_split_panel_without_a_browser():
    panel = N.split_panel()
    st = panel.state["stats"]
    assert st["test_pos_train"] < 0.8 * st["test_pos_full"]            # incompleteness, random split
    heights = [r.get_height() for r in panel.fig.axes[0].patches[:9]]
    assert abs(sum(heights) - 1) < 1e-9                                 # the training positives' histogram
    panel.controls["split"].value = "temporal"
    assert panel.state["split"].split == "temporal" and panel.state["stats"] != st
    panel.controls["closure"].value = 0.0
    assert len(panel.state["split"].graph.edges) < len(N.make_split(seed=0).graph.edges)


def test_completion_and_training_panels_without_a_browser():
    run = N.train_link("ncn", epochs=2, progress=False)
    panel = N.completion_panel(N.completion_study(run))
    cora = panel.state["mass_pos"]
    curve = panel.fig.axes[0].lines[0]
    panel.controls["offset"].value = 0.0
    panel.controls["scale"].value = 1.0
    assert panel.state["mass_pos"] > cora and panel.fig.axes[0].lines[0] is curve      # updated in place
    panel.controls["alpha"].value = 0.0
    assert panel.state["mass_pos"] == 0 and panel.state["auc_completed"] == panel.state["auc_cn"]
    tp = N.training_panel(autorun=False, epochs=5)
    assert "press <b>Train</b>" in tp.status.value
    tp.controls["kind"].value = "gae"
    result = tp.train()
    assert result.params["kind"] == "gae" and "LinkRun(gae" in tp.status.value and 0 < tp.state["auc_cn"] < 1
