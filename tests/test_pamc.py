"""lossviz.papers.pamc (notebook 14, PamC): the exact, size-weighted and PamC negative terms and the
positive term against slow loops written from the formulas (values and gradients, float64), the two
cases where the approximation is exact, the k-NN graph and DEC head, short training runs, the panels, and
bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz import contrastive as C
from lossviz.papers import pamc as M
from _util import drawn_artists, same_artists

pytestmark = pytest.mark.usefixtures("one_thread")

SCALES = (0.5, 1.0, 5.0)


# ------------------------------------------------------------------------------------------------
# Loop references, straight from the formulas (one node / one meta-node at a time)
# ------------------------------------------------------------------------------------------------

def cos(a, b):
    return (a @ b) / (a.norm() * b.norm())


def ref_row_logs(n, sim, s, dtype):
    """log(1 + sum_{k != i} e^{s sim(i, k)}) for each row i of n: the self term is e^0 = 1."""
    logs = []
    for i in range(n):
        total = torch.ones((), dtype=dtype)
        for k in range(n):
            if k != i:
                total = total + torch.exp(s * sim(i, k))
        logs.append(torch.log(total))
    return torch.stack(logs)


def ref_negative(z, s):
    """(1/N) sum_i log(1 + sum_{k != i} e^{s cos(z_i, z_k)})."""
    return ref_row_logs(len(z), lambda i, k: cos(z[i], z[k]), s, z.dtype).mean()


def ref_meta(z, assign):
    """Meta-nodes as sums of their members, in order of the sorted cluster ids, and each node's row."""
    ids = sorted(set(assign.tolist()))
    c = [sum(z[i] for i in range(len(z)) if int(assign[i]) == l) for l in ids]
    return c, [ids.index(int(l)) for l in assign]


def ref_approx(z, assign, s):
    """Each node against every other node, the pair's cosine replaced by its meta-nodes' cosine."""
    c, row = ref_meta(z, assign)
    return ref_row_logs(len(z), lambda i, k: cos(c[row[i]], c[row[k]]), s, z.dtype).mean()


def ref_pamc(z, assign, s):
    """(1/K) sum_l log(1 + sum_{l' != l} e^{s cos(c_l, c_l')}), the official code's term."""
    c, _ = ref_meta(z, assign)
    return ref_row_logs(len(c), lambda a, b: cos(c[a], c[b]), s, z.dtype).mean()


def ref_positive(z, edges, s, weights=None):
    """-(1/N) sum_i log sum_{(i, j) in E} w_ij e^{s s_ij}, with s_ii = 0 on a self-loop (w = 1 without weights)."""
    n = len(z)
    terms = []
    for i in range(n):
        total = torch.zeros((), dtype=z.dtype)
        for e, (a, b) in enumerate(edges.T.tolist()):
            if a == i:
                w = 1.0 if weights is None else float(weights[e])
                total = total + w * torch.exp(s * (torch.zeros((), dtype=z.dtype) if a == b else cos(z[a], z[b])))
        terms.append(torch.log(total))
    return -torch.stack(terms).mean()


def ref_walk(x, k, r):
    """The official code's A^r, one entry at a time: P_ij = 1/deg(i) on the symmetrised k-NN graph with
    self-loops (deg counts the self-loop), and (P^r)_ij = sum over every r-step path i -> j of the
    product of its steps' probabilities."""
    n = len(x)
    near = [sorted(range(n), key=lambda j, i=i: (float((x[i] - x[j]).norm()) if j != i else math.inf))[:k]
            for i in range(n)]
    nbrs = [{i} | set(near[i]) | {j for j in range(n) if i in near[j]} for i in range(n)]

    def walk(i, steps):                       # {j: probability that a walk of `steps` steps from i ends at j}
        if steps == 0:
            return {i: 1.0}
        out = {}
        for j in nbrs[i]:
            for end, p in walk(j, steps - 1).items():
                out[end] = out.get(end, 0.0) + p / len(nbrs[i])
        return out

    return [walk(i, r) for i in range(n)]


def value_and_grad(fn, z, *args, **kw):
    leaf = z.detach().clone().requires_grad_(True)
    value = fn(leaf, *args, **kw)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


def batches():
    """Random float64 embeddings and assignments: singletons, an unused id (empty cluster), unsorted ids."""
    g = torch.Generator().manual_seed(0)
    for n, d, ids in ((7, 3, [0, 0, 1, 1, 1, 2, 2]), (9, 4, [5, 0, 5, 2, 0, 5, 9, 2, 2]), (6, 5, [3, 1, 4, 1, 5, 9])):
        yield torch.randn(n, d, generator=g, dtype=torch.float64), torch.tensor(ids)


# ------------------------------------------------------------------------------------------------
# The three negative terms and the positive term against the loops
# ------------------------------------------------------------------------------------------------

def test_exact_negative_term_matches_loop_in_value_and_gradient():
    for z, _ in batches():
        for s in SCALES:
            got, g_got = value_and_grad(M.negative_term, z, s=s)
            ref, g_ref = value_and_grad(ref_negative, z, s)
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
            torch.testing.assert_close(g_got, g_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["approx", "pamc"])
def test_meta_node_terms_match_loops_in_value_and_gradient(name):
    fn, ref = {"approx": (M.approx_negative_term, ref_approx), "pamc": (M.pamc_negative_term, ref_pamc)}[name]
    for z, assign in batches():
        for s in SCALES:
            got, g_got = value_and_grad(fn, z, assign, s=s)
            want, g_want = value_and_grad(ref, z, assign, s)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
            torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-12)


def test_positive_term_matches_loop_in_value_and_gradient():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 3, generator=g, dtype=torch.float64)
    pairs = [(i, i) for i in range(8)] + [(0, 3), (3, 0), (1, 2), (2, 1), (5, 7), (7, 5), (4, 6), (0, 6)]
    edges = torch.tensor(pairs).T[:, torch.randperm(len(pairs), generator=g)]      # any order
    for s in SCALES:
        got, g_got = value_and_grad(M.positive_term, z, edges, s=s)
        want, g_want = value_and_grad(ref_positive, z, edges, s)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-12)
    # a large inverse temperature: no overflow, still the loop's value (float64 loop is fine there)
    torch.testing.assert_close(M.positive_term(z, edges, s=300.0), ref_positive(z, edges, 300.0))


def test_fused_exact_term_equals_the_loss_on_the_similarity_matrix():
    """negative_term's hand-written backward against autograd through node_negative_loss(similarity(z))."""
    for z, _ in batches():
        for s in SCALES:
            got, g_got = value_and_grad(M.negative_term, z, s=s)
            want, g_want = value_and_grad(lambda v, t=s: M.node_negative_loss(lv.similarity(v), s=t), z)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
            torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-12)
    z32 = torch.randn(50, 4, generator=torch.Generator().manual_seed(5)) * 100          # float32, long rows
    value, grad = value_and_grad(M.negative_term, z32, s=80.0)                       # a sharp push: no overflow
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value.double(), M.negative_term(z32.double(), s=80.0), rtol=1e-5, atol=1e-4)


def test_positive_term_with_edge_weights_matches_loop_in_value_and_gradient():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(8, 3, generator=g, dtype=torch.float64)
    pairs = [(i, i) for i in range(8)] + [(0, 3), (3, 0), (1, 2), (2, 1), (5, 7), (7, 5), (4, 6), (0, 6)]
    edges = torch.tensor(pairs).T
    w = 0.05 + torch.rand(len(pairs), generator=g, dtype=torch.float64)
    for s in SCALES:
        got, g_got = value_and_grad(M.positive_term, z, edges, w, s=s)
        want, g_want = value_and_grad(ref_positive, z, edges, s, w)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-12)
    torch.testing.assert_close(M.positive_term(z, edges, torch.ones(len(pairs)), s=2.0),
                               M.positive_term(z, edges, s=2.0))


@pytest.mark.parametrize("r", [1, 2, 3])
def test_knn_graph_random_walk_weights_match_a_loop_over_paths(r):
    """The official code (SDCN's load_graph, then A^r): row-normalise A + I, then take its r-th power."""
    x = torch.randn(14, 3, generator=torch.Generator().manual_seed(r), dtype=torch.float64)
    edges, w = M.knn_graph(x, k=2, r=r)
    ref = ref_walk(x, 2, r)
    assert len(w) == sum(len(row) for row in ref)
    for (i, j), wij in zip(edges.T.tolist(), w.tolist()):
        assert wij == pytest.approx(ref[i][j], rel=1e-12)
    rows = torch.zeros(14, dtype=torch.float64).index_add(0, edges[0], w)
    torch.testing.assert_close(rows, torch.ones(14, dtype=torch.float64))        # a probability per row
    edges_b, w_b = M.knn_graph(x, k=2, r=r, walk=False)
    assert torch.equal(edges_b, edges) and (w_b == 1).all()                      # same pattern, binary


def test_positive_plus_exact_negative_is_the_official_ncontrast():
    """L+ + L- = -(1/N) sum_i log(sum_j (A^r)_ij e^{s s_ij} / sum_k e^{s s_ik}) with s_ii = 0: the code's
    NcontrastCC with its dense A^r = P^r (get_A_r_flex), P the row-normalised A + I (Graph-MLP's Ncontrast)."""
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    A = torch.zeros(30, 30, dtype=torch.float64)
    e1, _ = M.knn_graph(x, k=3, r=1, walk=False)
    A[e1[0], e1[1]] = 1
    P = A / A.sum(1, keepdim=True)
    f = torch.nn.functional.normalize(x, dim=1)
    e = torch.exp(1.5 * (f @ f.T).fill_diagonal_(0))
    for walk, A_r in ((True, P @ P), (False, ((A @ A) > 0).double())):
        edges, w = M.knn_graph(x, k=3, r=2, walk=walk)
        ncontrast = -torch.log((e * A_r).sum(1) / e.sum(1)).mean()
        total = M.positive_term(x, edges, w, s=1.5) + M.negative_term(x, s=1.5)
        torch.testing.assert_close(total, ncontrast, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# When the approximation is exact, and how it relates to the block picture
# ------------------------------------------------------------------------------------------------

def test_every_node_its_own_meta_node_is_exact():
    for z, _ in batches():
        own = torch.arange(len(z))
        for s in SCALES:
            exact, g_exact = value_and_grad(M.negative_term, z, s=s)
            for fn in (M.approx_negative_term, M.pamc_negative_term):
                got, g_got = value_and_grad(fn, z, own, s=s)
                torch.testing.assert_close(got, exact, rtol=0, atol=1e-12)
                torch.testing.assert_close(g_got, g_exact, rtol=0, atol=1e-12)
            assert M.approximation_error(z, own, s=s) < 1e-12


def tight_clusters(sizes, d=4, spread=0.0, seed=0):
    """Members of cluster l are positive multiples of one direction (plus noise of scale ``spread``)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(len(sizes), d, generator=g, dtype=torch.float64)
    assign = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    s = 0.5 + torch.rand(len(assign), 1, generator=g, dtype=torch.float64)
    z = dirs[assign] * s + spread * torch.randn(len(assign), d, generator=g, dtype=torch.float64)
    return z, assign


def test_tight_clusters_make_the_size_weighted_term_exact_but_not_pamc():
    z, assign = tight_clusters([1, 4, 2, 6])
    for s in SCALES:
        exact, g_exact = value_and_grad(M.negative_term, z, s=s)
        approx, g_approx = value_and_grad(M.approx_negative_term, z, assign, s=s)
        torch.testing.assert_close(approx, exact, rtol=0, atol=1e-12)
        # equal values, not equal gradients: a member moves its meta-node (a sum) less than itself
        assert float((g_approx - g_exact).abs().max()) > 1e-3 * float(g_exact.abs().max())
        # PamC counts each meta-node once and averages over clusters: a different number
        assert abs(float(M.pamc_negative_term(z, assign, s=s) - exact)) > 0.1
    # nearly tight: the error shrinks with the spread of the clusters
    errors = [M.approximation_error(*tight_clusters([3, 5, 2, 6], spread=s, seed=3), s=2.0)
              for s in (0.3, 0.03, 0.003)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4


def test_approx_is_the_node_term_of_the_block_similarity():
    for z, assign in batches():
        S = M.block_similarity(z, assign)
        assert torch.equal(S.diagonal(), torch.zeros(len(z), dtype=z.dtype))
        assert torch.allclose(S, S.T)
        same = assign[:, None] == assign[None, :]
        off = ~torch.eye(len(z), dtype=torch.bool)
        torch.testing.assert_close(S[same & off], torch.ones_like(S[same & off]))      # cluster-mates: cosine 1
        for s in SCALES:
            torch.testing.assert_close(M.approx_negative_term(z, assign, s=s),
                                       M.node_negative_loss(S, s=s), rtol=0, atol=1e-12)


def test_sum_and_mean_meta_nodes_agree_under_cosine_not_under_dot():
    for z, assign in batches():
        torch.testing.assert_close(M.pamc_negative_term(z, assign, mode="sum"),
                                   M.pamc_negative_term(z, assign, mode="mean"), rtol=0, atol=1e-12)
    z, assign = tight_clusters([1, 8, 3])
    dot_sum = M.pamc_negative_term(z, assign, mode="sum", sim="dot")
    dot_mean = M.pamc_negative_term(z, assign, mode="mean", sim="dot")
    assert abs(float(dot_sum - dot_mean)) > 0.1


def test_meta_nodes_drop_empty_clusters_and_sum_members():
    z = torch.arange(12, dtype=torch.float64).reshape(6, 2) + 1
    c, sizes, cluster = M.meta_nodes(z, torch.tensor([4, 0, 4, 4, 7, 0]))
    assert sizes.tolist() == [2, 3, 1] and cluster.tolist() == [1, 0, 1, 1, 2, 0]
    torch.testing.assert_close(c[1], z[[0, 2, 3]].sum(0))
    c_mean, _, _ = M.meta_nodes(z, torch.tensor([4, 0, 4, 4, 7, 0]), mode="mean")
    torch.testing.assert_close(c_mean[1], z[[0, 2, 3]].mean(0))


# ------------------------------------------------------------------------------------------------
# Weights: the engine's weight view, and the push per node
# ------------------------------------------------------------------------------------------------

def test_pair_weights_of_the_node_term_are_the_engine_relative_penalty():
    z, _ = next(batches())
    n, s = len(z), 2.0
    S = lv.similarity(z)
    W = lv.pair_weights(M.node_negative_loss, S, None, s=s)
    assert torch.equal(W.diagonal(), torch.zeros(n, dtype=z.dtype))                 # the self term has no weight
    r = M.push_shares(z, s=s)
    torch.testing.assert_close(r, C.relative_penalty(S, torch.arange(n), tau=1 / s))
    # w_ik = (s / N) (1 - self share_i) r_ik, the self share being e^0 / sum_k e^{s s_ik}
    self_share = 1 / (1 + (torch.exp(s * S) * ~torch.eye(n, dtype=torch.bool)).sum(1, keepdim=True))
    torch.testing.assert_close(W, s / n * (1 - self_share) * r, rtol=0, atol=1e-12)


def test_approximate_shares_are_equal_within_a_meta_node_and_exact_at_k_equals_n():
    z, assign = next(batches())
    r = M.push_shares(z, assign, s=3.0)
    torch.testing.assert_close(r.sum(1), torch.ones(len(z), dtype=z.dtype))
    row = r[0]
    for l in assign.unique():
        members = (assign == l) & (torch.arange(len(z)) != 0)
        assert torch.allclose(row[members], row[members][0].expand(int(members.sum())))
    torch.testing.assert_close(M.push_shares(z, torch.arange(len(z)), s=3.0), M.push_shares(z, s=3.0))
    H = M.node_push_entropy(z, assign, s=3.0)
    torch.testing.assert_close(H, C.negative_weight_entropy(M.block_similarity(z, assign), torch.arange(len(z)),
                                                            tau=1 / 3.0, normalized=True))
    assert ((H >= 0) & (H <= 1)).all()


def test_pamc_gives_every_member_of_a_meta_node_the_same_push():
    z, assign = next(batches())
    mass = M.push_mass(z, assign, s=2.0, kind="pamc")
    for l in assign.unique():
        m = mass[assign == l]
        torch.testing.assert_close(m, m[0].expand(len(m)))
    exact = M.push_mass(z, s=2.0)
    assert float(exact[assign == 1].std()) > 1e-3                   # the exact push differs within a cluster
    assert M.push_mass(z, assign, kind="approx").shape == (len(z),)


# ------------------------------------------------------------------------------------------------
# The graph and the DEC clustering head (k-means and the scores: tests/test_cluster.py)
# ------------------------------------------------------------------------------------------------

def test_knn_graph_is_symmetric_with_self_loops_and_the_power_grows_it():
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
    (e1, w1), (e2, w2) = M.knn_graph(x, k=3, r=1), M.knn_graph(x, k=3, r=2)
    A1 = torch.zeros(40, 40, dtype=torch.bool)
    A1[e1[0], e1[1]] = True
    A2 = torch.zeros(40, 40, dtype=torch.bool)
    A2[e2[0], e2[1]] = True
    assert torch.equal(A1, A1.T) and A1.diagonal().all() and (A1.sum(1) >= 4).all()
    assert torch.equal(A2, (A1.double() @ A1.double()) > 0) and (A2 | A1).equal(A2)
    assert w1.dtype == torch.float64 and (w1 > 0).all() and (w2 > 0).all()


def test_dec_head_matches_loops():
    g = torch.Generator().manual_seed(4)
    z, mu = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    q = M.soft_assign(z, mu)
    for i in range(6):
        row = torch.stack([1 / (1 + (z[i] - mu[k]).pow(2).sum()) for k in range(4)])
        torch.testing.assert_close(q[i], row / row.sum())
    p = M.target_distribution(q)
    f = q.sum(0)
    for i in range(6):
        row = torch.stack([q[i, k] ** 2 / f[k] for k in range(4)])
        torch.testing.assert_close(p[i], row / row.sum())
    kl = sum(float(p[i, k] * math.log(p[i, k] / q[i, k])) for i in range(6) for k in range(4)) / 6
    assert float(M.kl_clustering_loss(q, p)) == pytest.approx(kl, abs=1e-12)


def test_cost_curve_memory_is_quadratic_for_nodes_and_linear_for_meta_nodes():
    cost = M.cost_curve((100, 200, 400), repeats=1)
    assert set(cost) == {"n", "node_s", "meta_s", "node_saved", "meta_saved"}
    assert (cost["node_s"] > 0).all() and (cost["meta_s"] > 0).all()
    assert M.loglog_slope(cost["n"], cost["node_saved"]) > 1.8
    assert M.loglog_slope(cost["n"], cost["meta_saved"]) < 1.1
    assert M.saved_elements(lambda v: (v * v).sum(), torch.ones(5, requires_grad=True)) == 5


# ------------------------------------------------------------------------------------------------
# Training runs and panels
# ------------------------------------------------------------------------------------------------

def test_short_runs_record_history_and_are_cached():
    runs = {m: M.train_clustering(m, epochs=3, eval_every=2, progress=False) for m in M.METHODS}
    for m, run in runs.items():
        h, e = run.history, run.evals
        assert len(h["loss"]) == len(h["ms"]) == 3 and np.isfinite(h["loss"]).all()
        assert e["iter"].tolist() == [0, 2, 3] and ((0 <= e["nmi"]) & (e["nmi"] <= 1)).all()
        assert run.nmi == e["nmi"][-1] and run.best_nmi == e["nmi"][1:].max() and run.best_epoch in (2, 3)
        assert run.nmi_at(3) == run.nmi and run.nmi_at(2) == e["nmi"][1] and run.nmi_at(2, best=True) == e["nmi"][1]
        assert run.nmi_at(3, best=True) == run.best_nmi
        with pytest.raises(ValueError, match="was not evaluated"):
            run.nmi_at(1)
        assert run.z.shape == (1797, 10) and run.assign.shape == (1797,) and 0 < run.init["nmi"] < 1
        assert m in repr(run)
    assert runs["nc"].init == runs["pamc"].init                       # same seed, same k-means start
    assert runs["pamc"].params["walk"] is True                        # the official code's random-walk weights
    binary = M.train_clustering("pamc", epochs=3, eval_every=2, walk=False, progress=False)
    assert binary is not runs["pamc"] and binary.params["walk"] is False
    assert not np.allclose(binary.history["pos"], runs["pamc"].history["pos"])
    assert M.train_clustering("pamc", epochs=3, eval_every=2, progress=False) is runs["pamc"]
    other = M.train_clustering("pamc", epochs=3, eval_every=2, seed=1, progress=False)
    assert other is not runs["pamc"] and not np.array_equal(other.z, runs["pamc"].z)
    longer = M.train_clustering("pamc", epochs=4, eval_every=1, progress=False)      # passes through the same states
    assert longer.nmi_at(2) == runs["pamc"].nmi_at(2) and longer.nmi_at(3) == runs["pamc"].nmi
    small = M.train_clustering("pamc", epochs=2, nodes=100, progress=False)           # the first 100 digits
    assert small.z.shape == (100, 10) and small.params["nodes"] == 100


def test_approximation_panel_redraws_on_k_scale_and_anchor():
    z = M.blobs(60, centers=4, dim=5, seed=1)[0].double()
    panel = M.approximation_panel(z, ks=(2, 4, 8), s=1.0)
    assert panel.controls["K"].options == (2, 4, 8, 60)
    drawn = drawn_artists(panel.fig)
    assert panel.state["error"] >= 0 and "costs 8² instead of 60² pairs" in panel.state["status"]
    panel.controls["K"].value = 60                                     # every node its own meta-node
    assert panel.state["error"] < 1e-6 and abs(panel.state["pamc"] - panel.state["exact"]) < 1e-6
    assert "instead of" not in panel.state["status"] and "the exact sum, 60² pairs" in panel.state["status"]
    exact_1 = panel.state["exact"]
    panel.controls["s"].value = 5.0
    assert panel.state["exact"] > exact_1
    panel.controls["anchor"].value = 7
    r = panel.state["shares"]["exact"]
    assert r[7] == 0 and float(r.sum()) == pytest.approx(1.0)
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_trains_and_flags_changed_controls():
    panel = M.training_panel(method="pamc", epochs=20)
    run = panel.state["result"]
    assert run.params["method"] == "pamc" and run.params["epochs"] == 20
    assert panel.state["nmi"] == run.nmi and not panel.state["stale"]
    panel.controls["s"].value = 2.0
    assert panel.state["stale"]


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_with_clear_messages():
    z, assign = next(batches())
    with pytest.raises(ValueError, match="inverse temperature"):
        M.negative_term(z, s=0)
    with pytest.raises(ValueError, match="inverse temperature"):
        M.pamc_negative_term(z, assign, s=-1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.negative_term(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="all-zero row"):
        M.approx_negative_term(torch.zeros(3, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="2 dimensions"):
        M.negative_term(torch.ones(4))
    with pytest.raises(ValueError, match="at least 2 nodes"):
        M.negative_term(torch.ones(1, 3))
    with pytest.raises(ValueError, match="integer class ids"):
        M.pamc_negative_term(z, assign.double())
    with pytest.raises(ValueError, match="shape"):
        M.approx_negative_term(z, assign[:-1])
    with pytest.raises(ValueError, match="cluster ids >= 0"):
        M.approx_negative_term(z, assign - 1)
    with pytest.raises(ValueError, match="unknown mode"):
        M.pamc_negative_term(z, assign, mode="max")
    with pytest.raises(ValueError, match="unknown sim"):
        M.pamc_negative_term(z, assign, sim="l2")
    with pytest.raises(ValueError, match="unknown kind"):
        M.approximation_error(z, assign, kind="exact")
    with pytest.raises(ValueError, match="needs the cluster assignment"):
        M.push_mass(z, kind="pamc")
    with pytest.raises(ValueError, match="zero vector"):                 # the members cancel out
        M.pamc_negative_term(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0, 1]))


def test_bad_graphs_clusters_and_runs_are_refused():
    z = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="no edge"):
        M.positive_term(z, torch.tensor([[0, 1, 2], [1, 0, 2]]))
    with pytest.raises(ValueError, match="shape \\(2, E\\)"):
        M.positive_term(z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="integer node ids"):
        M.positive_term(z, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"node ids in \[0, 4\)"):
        M.positive_term(z, torch.tensor([[0, 1, 2, 3], [1, 0, 2, 4]]))
    with pytest.raises(ValueError, match="one number per edge"):
        M.positive_term(z, torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]]), torch.ones(3))
    with pytest.raises(ValueError, match="edge weight must be > 0"):
        M.positive_term(z, torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]]), torch.tensor([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="k \\(neighbours\\) must be <"):
        M.knn_graph(z, k=4)
    with pytest.raises(ValueError, match="r \\(the adjacency power\\) must be an integer >= 1"):
        M.knn_graph(z, k=1, r=0)
    with pytest.raises(ValueError, match="unknown method"):
        M.train_clustering("infonce")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        M.train_clustering(epochs=0)
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 2"):
        M.train_clustering(n_clusters=1)
    with pytest.raises(ValueError, match="nodes must be an integer in \\[6, 1797\\]"):
        M.train_clustering(nodes=2000)
    with pytest.raises(ValueError, match="mu must have 2 columns"):
        M.soft_assign(z, torch.zeros(3, 5))
