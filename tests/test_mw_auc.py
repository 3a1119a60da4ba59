"""The MW (AUC) loss for retrieval (lossviz.papers.mw_auc): loop references in float64 for values and
gradients, the shift identities, the AoC bound, the AUC helpers against scipy's ranks, panels and
bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz.metrics import roc_auc
from lossviz.papers import mw_auc as M

pytestmark = pytest.mark.usefixtures("one_thread")


def scores(seed, Q=6, D=None, signal=1.0):
    g = torch.Generator().manual_seed(seed)
    D = D or Q
    S = torch.randn(Q, D, generator=g, dtype=torch.float64)
    S[:, :Q] += signal * torch.eye(Q, dtype=torch.float64)
    return S, g


def masks(Q, D, labels=None):
    if labels is None:
        return [[q == d for d in range(D)] for q in range(Q)]
    return [[bool(labels[q] == labels[d]) for d in range(D)] for q in range(Q)]


def loop_mw(S, tau, labels=None, scope="global"):
    """From the formula: the mean of log(1 + exp(-(S_p - S_n)/tau)) over (positive, negative) pairs."""
    Q, D = S.shape
    pos = masks(Q, D, labels)
    P = [(q, d) for q in range(Q) for d in range(D) if pos[q][d]]
    N = [(q, d) for q in range(Q) for d in range(D) if not pos[q][d]]
    terms = [torch.log(1 + torch.exp(-(S[p] - S[n]) / tau)) for p in P for n in N
             if scope == "global" or p[0] == n[0]]
    return sum(terms) / len(terms)


def loop_info_nce(S, tau, labels=None):
    """-log e^{S_qp/t} / (e^{S_qp/t} + sum_{n in N_q} e^{S_qn/t}), averaged over positive pairs."""
    Q, D = S.shape
    pos = masks(Q, D, labels)
    total, pairs = 0.0, 0
    for q in range(Q):
        for p in range(D):
            if not pos[q][p]:
                continue
            den = torch.exp(S[q, p] / tau) + sum(torch.exp(S[q, n] / tau) for n in range(D) if not pos[q][n])
            total = total - torch.log(torch.exp(S[q, p] / tau) / den)
            pairs += 1
    return total / pairs


def loop_auc(S, labels=None, per_query=False):
    Q, D = S.shape
    pos = masks(Q, D, labels)
    if per_query:
        return float(np.mean([_row_auc(S[q], pos[q]) for q in range(Q)]))
    P = [float(S[q, d]) for q in range(Q) for d in range(D) if pos[q][d]]
    N = [float(S[q, d]) for q in range(Q) for d in range(D) if not pos[q][d]]
    return sum((p > n) + 0.5 * (p == n) for p in P for n in N) / (len(P) * len(N))


def _row_auc(row, pos_row):
    P = [float(row[d]) for d in range(len(row)) if pos_row[d]]
    N = [float(row[d]) for d in range(len(row)) if not pos_row[d]]
    return sum((p > n) + 0.5 * (p == n) for p in P for n in N) / (len(P) * len(N))


def value_and_grad(fn, S, **kw):
    leaf = S.detach().clone().requires_grad_(True)
    value = fn(leaf, **kw)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad


CASES = [dict(seed=0, Q=5), dict(seed=1, Q=4, D=7), dict(seed=2, Q=6, labels=torch.tensor([0, 1, 0, 2, 1, 3]))]


@pytest.mark.parametrize("case", CASES, ids=["square", "hard-negatives", "labels"])
@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_losses_and_gradients_match_the_loops(case, tau):
    S, _ = scores(case["seed"], case["Q"], case.get("D"))
    labels = case.get("labels")
    for ours, ref in ((lambda X: M.mw_loss(X, labels, tau=tau), lambda X: loop_mw(X, tau, labels)),
                      (lambda X: M.mw_loss(X, labels, tau=tau, scope="query"),
                       lambda X: loop_mw(X, tau, labels, "query")),
                      (lambda X: M.info_nce_loss(X, labels, tau=tau), lambda X: loop_info_nce(X, tau, labels))):
        v1, g1 = value_and_grad(ours, S)
        v2, g2 = value_and_grad(ref, S)
        torch.testing.assert_close(v1, v2, rtol=0, atol=1e-12)
        torch.testing.assert_close(g1, g2, rtol=0, atol=1e-12)


def test_info_nce_is_cross_entropy_on_the_rows_and_mw_weights_are_closed_form():
    S, _ = scores(3, 8, 11)
    for tau in (0.1, 1.0):
        torch.testing.assert_close(M.info_nce_loss(S, tau=tau), F.cross_entropy(S / tau, torch.arange(8)),
                                   rtol=0, atol=1e-12)
        G = lv.pair_weights(M.mw_loss, S, None, signed=True, tau=tau)
        torch.testing.assert_close(G, M.mw_weights(S, tau=tau), rtol=0, atol=1e-14)
    assert bool((G[:, :8].diagonal() < 0).all()) and bool((G[~torch.eye(8, 11, dtype=torch.bool)] > 0).all())


def test_a_per_query_shift_leaves_info_nce_and_within_query_mw_unchanged_but_not_global_mw():
    """Property of the losses: InfoNCE(S + c 1^T) = InfoNCE(S); the global MW loss and AUC move."""
    S, c = M.demo_scores(32, seed=0)
    S2 = M.shift_rows(S, 2.0 * c)
    for tau in (0.1, 1.0, 3.0):
        assert abs(float(M.info_nce_loss(S2, tau=tau) - M.info_nce_loss(S, tau=tau))) < 1e-12
        assert abs(float(M.mw_loss(S2, tau=tau, scope="query") - M.mw_loss(S, tau=tau, scope="query"))) < 1e-12
        assert float(M.mw_loss(S2, tau=tau)) > float(M.mw_loss(S, tau=tau)) + 0.05
    assert M.query_auc(S2) == M.query_auc(S) and M.global_auc(S2) < M.global_auc(S) - 0.05
    assert M.row_recall_at_1(S2) == M.row_recall_at_1(S)
    # the zero-gradient fact: each row of InfoNCE's dL/dS sums to 0, so dL/dc = 0 for a per-query offset
    c_leaf = torch.zeros(32, dtype=torch.float64, requires_grad=True)
    M.info_nce_loss(S + c_leaf[:, None]).backward()
    assert float(c_leaf.grad.abs().max()) < 1e-15
    c_leaf.grad = None
    M.mw_loss(S + c_leaf[:, None]).backward()
    assert float(c_leaf.grad.abs().max()) > 1e-3


def test_a_bias_head_gets_no_gradient_from_info_nce():
    torch.manual_seed(0)
    x = torch.randn(16, 64, dtype=torch.float64)
    f, g, b = (torch.nn.Linear(64, 8).double(), torch.nn.Linear(64, 8).double(), torch.nn.Linear(64, 1).double())
    for loss, zero in ((M.info_nce_loss, True), (M.mw_loss, False)):
        for m in (f, g, b):
            m.zero_grad()
        loss(f(x) @ g(x + 0.1).T + b(x)).backward()
        biggest = max(float(p.grad.abs().max()) for p in b.parameters())
        assert (biggest < 1e-14) if zero else (biggest > 1e-4)


@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0, 4.0])
def test_aoc_is_bounded_by_mw_over_ln2_for_any_tau(tau):
    """Property of the loss: 1[x <= 0] <= softplus(-x / tau) / ln 2 for every x and tau > 0."""
    bound, aoc = M.bound_points(60, tau=tau, seed=1)
    assert bool((aoc <= bound + 1e-12).all())
    S = torch.zeros(4, 4, dtype=torch.float64)                 # all ties: AUC 1/2, the bound is tight (1)
    assert M.global_auc(S) == 0.5 and abs(M.aoc_bound(S, tau=tau) - 1.0) < 1e-12


def test_auc_helpers_match_scipy_ranks_and_the_loops():
    S, _ = scores(4, 7, 9)
    S[0, 3] = S[0, 0]                                           # a tie
    eye = torch.eye(7, 9, dtype=torch.bool)
    assert abs(M.global_auc(S) - roc_auc(S[~eye].numpy(), S[eye].numpy())) < 1e-12
    assert abs(M.global_auc(S) - loop_auc(S)) < 1e-12
    assert abs(M.query_auc(S) - loop_auc(S, per_query=True)) < 1e-12
    labels = torch.tensor([0, 1, 0, 2, 1, 3, 3])
    Sq = S[:, :7]
    assert abs(M.global_auc(Sq, labels) - loop_auc(Sq, labels)) < 1e-12
    pos = torch.tensor(masks(7, 7, labels))
    assert abs(M.query_auc(Sq, labels) - np.mean([_row_auc(Sq[q], pos[q].tolist()) for q in range(7)])) < 1e-12
    assert M.row_recall_at_1(torch.eye(3)) == 1.0 and M.row_recall_at_1(torch.eye(3).flip(0)) == pytest.approx(1 / 3)


def test_offset_spread_and_centering():
    S, c = M.demo_scores(20, seed=2)
    assert M.offset_spread(M.shift_rows(S, 5 * c)) > M.offset_spread(S) * 3
    torch.testing.assert_close(M.centered(M.shift_rows(S, 5 * c)), M.centered(S))
    assert M.offset_spread(M.centered(S)) < 1e-12


def test_stable_in_float32_at_small_tau():
    S, _ = scores(5, 8)
    S = (30 * S).float().requires_grad_(True)
    for fn in (M.mw_loss, M.info_nce_loss):
        value = fn(S, tau=0.01)
        (grad,) = torch.autograd.grad(value, S)
        assert torch.isfinite(value) and bool(torch.isfinite(grad).all())


def test_bad_input():
    S, _ = scores(6, 4)
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.mw_loss(S * math.nan)
    with pytest.raises(ValueError, match="2 dimensions"):
        M.mw_loss(S[0])
    with pytest.raises(ValueError, match="at least as many columns"):
        M.info_nce_loss(S[:, :3])
    with pytest.raises(ValueError, match="tau"):
        M.mw_loss(S, tau=0)
    with pytest.raises(ValueError, match="tau"):
        M.info_nce_loss(S, tau=-1.0)
    with pytest.raises(ValueError, match="integer class ids"):
        M.mw_loss(S, torch.arange(4).float())
    with pytest.raises(ValueError, match="square"):
        M.mw_loss(torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="positive and one negative"):
        M.mw_loss(S, torch.zeros(4, dtype=torch.long))        # every document relevant: no negative
    with pytest.raises(ValueError, match="unknown scope"):
        M.mw_loss(S, scope="row")
    with pytest.raises(ValueError, match="one offset per query"):
        M.shift_rows(S, torch.zeros(3))
    with pytest.raises(ValueError, match="unknown loss 'triplet'"):
        M.train_retrieval("triplet")
    with pytest.raises(ValueError, match="unknown head"):
        M.train_retrieval("mw", head="l2")
    with pytest.raises(ValueError, match="epochs must be an integer"):
        M.train_retrieval("mw", epochs=0)


def test_shift_panel_without_a_browser():
    S, c = M.demo_scores(16, seed=0)
    panel = M.shift_panel(S, c, offset=0.0, loss="infonce")
    auc0, v0 = panel.state["auc"], panel.state["values"]
    assert panel.state["row_sum"] < 1e-14                      # InfoNCE: every row of dL/dS sums to 0
    panel.controls["offset"].value = 3.0
    st = panel.state
    assert st["values"]["infonce"] == pytest.approx(v0["infonce"], abs=1e-12) and st["auc"] < auc0
    assert st["values"]["mw"] > v0["mw"] and st["values"]["mw_query"] == pytest.approx(v0["mw_query"], abs=1e-12)
    curves = st["curves"]
    assert np.ptp(curves["infonce"]) < 1e-12 and np.ptp(curves["mw"]) > 0.1
    assert bool((curves["aoc"] <= curves["bound"]).all())
    panel.controls["loss"].value = "mw"
    assert panel.state["row_sum"] > 1e-4
    torch.testing.assert_close(panel.state["G"], M.mw_weights(panel.state["S"], tau=1.0))
    panel.controls["tau"].value = 0.5
    assert panel.state["values"]["mw"] != st["values"]["mw"] and "τ = 0.5" in panel.status.value


def test_training_run_paired_runs_and_panel():
    run = M.train_retrieval("mw", epochs=2, progress=False)
    assert len(run.history["loss"]) == 2 * (1200 // 64) and np.isfinite(run.history["loss"]).all()
    assert list(run.evals["iter"]) == [0, 36] and run.S_test.shape == (597, 597)
    assert set(run.scores) == {"auc", "r1", "auc_query", "auc_centered", "spread"}
    assert run.scores["auc"] > run.evals["auc"][0]                                 # it learns
    assert M.train_retrieval("mw", epochs=2, progress=False) is run                # cached by parameters
    pair = M.paired_runs([0], losses=("mw", "infonce"), epochs=2)
    assert pair["mw"][0] is run and pair["infonce"][0].params["loss"] == "infonce"
    biased = M.train_retrieval("infonce", epochs=1, bias_scale=10.0, progress=False)
    assert biased.scores["spread"] > pair["infonce"][0].scores["spread"]          # a big bias head: big offsets
    panel = M.training_panel(autorun=False, epochs=2)
    assert "press <b>Train</b>" in panel.status.value
    panel.controls["loss"].value = "infonce"
    result = panel.train()
    assert result is pair["infonce"][0] and "RetrievalRun(infonce" in panel.status.value   # from the cache
    panel.controls["tau"].value = 0.1
    assert panel.state["stale"] and "press Train" in panel.status.value
    with pytest.raises(ValueError, match="at least one seed"):
        M.paired_runs([])
