"""The InfoNCE family (NT-Xent, SupCon) against their slow references (values and gradients w.r.t.
S), against pytorch-metric-learning 2.8.1 (values and gradients w.r.t. the embeddings), and the
edge cases: bad temperatures and inputs, blocks of anchors, small temperatures in low precision,
torch.compile."""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch

import lossviz as lv
from lossviz import reference as ref
from _util import value_and_grad

F64 = torch.float64

LABELS = {
    "4x3": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "simclr": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],         # every label twice: SimCLR's two views
    "unbalanced": [0, 0, 0, 0, 0, 1, 1, 2, 2, 2],
    "singleton": [0, 0, 0, 1, 1, 1, 2, 3, 3],         # class 2 has one sample: no positive for it
    "asym": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],     # S is a general matrix, not a Gram matrix
}
BATCHES = list(LABELS)
EMBEDDING_BATCHES = [b for b in BATCHES if b != "asym"]
TAUS = [0.05, 0.1, 0.5, 1.0]

CASES = [
    ("nt_xent", lv.nt_xent_loss, ref.nt_xent_loss_ref),
    ("supcon", lv.supcon_loss, ref.supcon_loss_ref),
]
LOSSES = [c[1] for c in CASES]
LOSS_IDS = [c[0] for c in CASES]

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def make_embeddings(name: str, dim: int = 3):
    """Seeded embeddings and shuffled labels: noisy class centres in a low dimension."""
    g = torch.Generator().manual_seed(BATCHES.index(name) + 1)
    y = torch.tensor(LABELS[name])
    y = y[torch.randperm(len(y), generator=g)]  # classes not contiguous: catches index mix-ups
    centres = torch.randn(int(y.max()) + 1, dim, generator=g, dtype=F64)
    x = centres[y] + 0.55 * torch.randn(len(y), dim, generator=g, dtype=F64)
    return x, y


def make_S(name: str):
    x, y = make_embeddings(name)
    if name == "asym":
        g = torch.Generator().manual_seed(99)
        return torch.rand(len(y), len(y), generator=g, dtype=F64) * 2 - 1, y
    return lv.similarity(x), y


# ------------------------------------------------------------------------------------------------
# Against the loop references
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", CASES, ids=LOSS_IDS)
def test_loss_matches_reference(case, batch, tau, dtype):
    _, fast, slow = case
    S, y = make_S(batch)
    S = S.to(dtype)
    value, grad = value_and_grad(fast, S, y, tau=tau)
    ref_value, ref_grad = value_and_grad(slow, S, y, tau=tau)
    assert value.dtype == dtype and grad.dtype == dtype
    assert float(value) > 0
    torch.testing.assert_close(value.double(), ref_value.double(), **TOL[dtype])
    torch.testing.assert_close(grad.double(), ref_grad.double(), **TOL[dtype])


def test_simclr_batch_is_the_textbook_formula():
    """Every label twice: one positive per anchor, so NT-Xent is the mean over the B anchors of
    -log softmax over {p} ∪ N_i, i.e. over every k != i: SupCon and NT-Xent coincide."""
    S, y = make_S("simclr")
    tau = 0.2
    B = len(y)
    total = 0.0
    for i in range(B):
        p = next(j for j in range(B) if j != i and y[j] == y[i])
        others = [k for k in range(B) if k != i]
        total += -math.log(math.exp(S[i, p] / tau) / sum(math.exp(S[i, k] / tau) for k in others))
    assert math.isclose(float(lv.nt_xent_loss(S, y, tau=tau)), total / B, rel_tol=1e-12)
    assert math.isclose(float(lv.supcon_loss(S, y, tau=tau)), total / B, rel_tol=1e-12)


def test_reductions_mean_over_pairs_and_over_anchors_with_a_positive():
    """NT-Xent: the mean over positive pairs; SupCon: the mean over anchors that have a positive
    (the singleton class's anchor is left out, not counted as 0)."""
    S, y = make_S("singleton")
    tau = 0.3
    B = len(y)
    pos, neg = lv.pair_masks(y)
    z = S / tau
    pair_terms, anchor_terms = [], []
    for i in range(B):
        P = torch.nonzero(pos[i]).flatten().tolist()
        lse_neg = torch.logsumexp(z[i][neg[i]], 0)
        lse_all = torch.logsumexp(torch.cat([z[i, :i], z[i, i + 1:]]), 0)
        pair_terms += [float(torch.logaddexp(z[i, p], lse_neg) - z[i, p]) for p in P]
        if P:
            anchor_terms.append(sum(float(lse_all - z[i, p]) for p in P) / len(P))
    assert len(pair_terms) == int(pos.sum()) == 14 and len(anchor_terms) == B - 1
    assert math.isclose(float(lv.nt_xent_loss(S, y, tau=tau)), sum(pair_terms) / 14, rel_tol=1e-12)
    assert math.isclose(float(lv.supcon_loss(S, y, tau=tau)), sum(anchor_terms) / (B - 1), rel_tol=1e-12)


def test_gradient_is_the_softmax_pair_weight():
    """The docstrings' pair weights: for NT-Xent, dL/dS_in = sum_p q_n / tau / |P| on a negative
    and -(1 - q_p) / tau / |P| on a positive (q the softmax over {p} ∪ N_i); for SupCon,
    (q_k - [k in P_i] / |P_i|) / tau / |I+|."""
    S, y = make_S("unbalanced")
    tau = 0.25
    B = len(y)
    pos, neg = lv.pair_masks(y)
    _, g_nt = value_and_grad(lv.nt_xent_loss, S, y, tau=tau)
    _, g_sc = value_and_grad(lv.supcon_loss, S, y, tau=tau)
    W_nt = torch.zeros(B, B, dtype=F64)
    W_sc = torch.zeros(B, B, dtype=F64)
    n_pairs = int(pos.sum())
    for i in range(B):
        P = torch.nonzero(pos[i]).flatten()
        N = torch.nonzero(neg[i]).flatten()
        for p in P:
            q = torch.softmax(S[i, torch.cat([p[None], N])] / tau, 0)
            W_nt[i, p] -= (1 - q[0]) / tau / n_pairs
            W_nt[i, N] += q[1:] / tau / n_pairs
        others = torch.tensor([k for k in range(B) if k != i])
        q = torch.softmax(S[i, others] / tau, 0)
        W_sc[i, others] = (q - pos[i, others].double() / len(P)) / tau / B
    torch.testing.assert_close(g_nt, W_nt, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_sc, W_sc, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Against pytorch-metric-learning 2.8.1
# ------------------------------------------------------------------------------------------------

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")

PML = {"nt_xent": lambda tau: pml_losses.NTXentLoss(temperature=tau),
       "supcon": lambda tau: pml_losses.SupConLoss(temperature=tau)}


def grad_wrt_x(fn, x):
    leaf = x.detach().clone().requires_grad_(True)
    loss = fn(leaf)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
@pytest.mark.parametrize("batch", EMBEDDING_BATCHES)
@pytest.mark.parametrize("case", CASES, ids=LOSS_IDS)
def test_matches_pml(case, batch, tau, dtype):
    name, fast, _ = case
    x, y = make_embeddings(batch, dim=4)
    x = x.to(dtype)
    pml = PML[name](tau)
    ours, ours_grad = grad_wrt_x(lambda e: fast(lv.similarity(e), y, tau=tau), x)
    theirs, theirs_grad = grad_wrt_x(lambda e: pml(e, y), x)
    assert float(theirs) > 0
    torch.testing.assert_close(ours, theirs.to(dtype), **TOL[dtype])
    torch.testing.assert_close(ours_grad, theirs_grad, **TOL[dtype])


@pytest.mark.parametrize("case", CASES, ids=LOSS_IDS)
def test_matches_pml_on_a_large_batch(case):
    name, fast, _ = case
    g = torch.Generator().manual_seed(7)
    y = torch.arange(16).repeat_interleave(6)   # PML's NT-Xent is O(pairs x negatives): keep it small
    x = torch.randn(96, 16, generator=g, dtype=F64)
    ours, ours_grad = grad_wrt_x(lambda e: fast(lv.similarity(e), y, tau=0.1), x)
    theirs, theirs_grad = grad_wrt_x(lambda e: PML[name](0.1)(e, y), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-10, atol=1e-10)


def test_one_class_batch_pml_supcon_returns_zero_lossviz_the_formula():
    """The known difference: on a batch of one class (no negative anywhere) PML's SupConLoss returns
    0 (its ``pos_mask.any() and neg_mask.any()`` guard); the formula, and lossviz, give
    -1/|P_i| sum_p log(e^{S_ip/tau} / sum_{k != i} e^{S_ik/tau}) > 0 once a class has 3+ samples.
    NT-Xent agrees there: every term is -log 1 = 0, and PML's guard also returns 0."""
    x, _ = make_embeddings("4x3")
    x = x[:5]
    y = torch.zeros(5, dtype=torch.long)
    S = lv.similarity(x)
    tau = 0.1
    assert float(pml_losses.SupConLoss(temperature=tau)(x, y)) == 0.0
    ours = lv.supcon_loss(S, y, tau=tau)
    assert float(ours) > 0.1
    torch.testing.assert_close(ours, ref.supcon_loss_ref(S, y, tau=tau), rtol=1e-12, atol=0)
    assert float(pml_losses.NTXentLoss(temperature=tau)(x, y)) == 0.0
    value, grad = value_and_grad(lv.nt_xent_loss, S, y, tau=tau)
    assert float(value) == 0.0 and (grad == 0).all()


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", LOSSES, ids=LOSS_IDS)
def test_bad_temperatures_are_refused(fn):
    S, y = make_S("4x3")
    with pytest.raises(ValueError, match="a temperature of 0"):
        fn(S, y, tau=0)
    with pytest.raises(ValueError, match="a temperature of 0"):
        fn(S, y, tau=0.0)
    with pytest.raises(ValueError, match=r"tau .* must be > 0"):
        fn(S, y, tau=-0.1)
    with pytest.raises(ValueError, match=r"tau .* must be finite"):
        fn(S, y, tau=math.nan)
    with pytest.raises(ValueError, match=r"tau .* must be finite"):
        fn(S, y, tau=math.inf)
    with pytest.raises(ValueError, match=r"tau .* must be a number"):
        fn(S, y, tau="0.1")


@pytest.mark.parametrize("fn", LOSSES, ids=LOSS_IDS)
def test_bad_batches_are_refused(fn):
    S, y = make_S("4x3")
    with pytest.raises(ValueError, match="no positive pair"):
        fn(S, torch.arange(len(y)))
    with pytest.raises(ValueError, match="integer class ids"):
        fn(S, y.float())
    with pytest.raises(ValueError, match="square"):
        fn(S[:5], y)
    with pytest.raises(ValueError, match="NaN"):
        fn(torch.full_like(S, math.nan), y)
    with pytest.raises(ValueError, match="shape"):
        fn(S, y[:5])


# ------------------------------------------------------------------------------------------------
# Blocks of anchors (anchors=)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", ["4x3", "unbalanced", "singleton"])
@pytest.mark.parametrize("case", CASES, ids=LOSS_IDS)
def test_blocks_of_anchors_recombine_into_the_full_loss(case, batch):
    """The reductions are means over positive pairs (NT-Xent) or over anchors with a positive
    (SupCon), not over all anchors, so a block's loss is the mean over *its* pairs (anchors):
    weighting each block by its share of them gives back the full loss, value and gradient."""
    name, fast, _ = case
    S, y = make_S(batch)
    B = len(y)
    tau = 0.2
    pos, _ = lv.pair_masks(y)
    count = pos.sum(dim=1) if name == "nt_xent" else (pos.sum(dim=1) > 0).long()
    full_value, full_grad = value_and_grad(fast, S, y, tau=tau)
    leaf = S.detach().clone().requires_grad_(True)
    total = 0.0
    for rows in (torch.arange(0, 4), torch.arange(4, 7), torch.arange(7, B)):
        block = fast(leaf[rows], y, tau=tau, anchors=rows)
        total = total + block * count[rows].sum() / count.sum()
    (grad,) = torch.autograd.grad(total, leaf)
    torch.testing.assert_close(total, full_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, full_grad, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Small temperatures in low precision; torch.compile
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("case", CASES, ids=LOSS_IDS)
def test_small_temperature_in_low_precision_is_finite_and_right(case, dtype):
    """tau = 0.01 puts e^{S/tau} at e^100, past float32's range, in a naive softmax."""
    _, fast, slow = case
    S, y = make_S("singleton")
    S = S.to(dtype)
    value, grad = value_and_grad(fast, S, y, tau=0.01)
    assert value.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(value) and float(value) > 0 and torch.isfinite(grad).all()
    ref_value, ref_grad = value_and_grad(slow, S.double(), y, tau=0.01)
    torch.testing.assert_close(value.double(), ref_value, rtol=1e-5, atol=1e-4)
    grad_tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad.double(), ref_grad, **grad_tol)


@pytest.mark.parametrize("case", CASES, ids=LOSS_IDS)
def test_autocast_bfloat16_embeddings_small_temperature(case):
    _, fast, _ = case
    x, y = make_embeddings("4x3")
    layer = torch.nn.Linear(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = layer(x.float())
        loss = fast(lv.similarity(emb), y, tau=0.01)
    assert emb.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("case", CASES, ids=LOSS_IDS)
def test_traces_without_graph_breaks(case):
    _, fast, _ = case
    g = torch.Generator().manual_seed(0)
    S = lv.similarity(torch.randn(32, 8, generator=g))
    y = torch.arange(8).repeat_interleave(4)
    with lv.validation(False):
        traced = torch.compile(fast, fullgraph=True, backend="aot_eager")
        leaf = S.clone().requires_grad_(True)
        value = traced(leaf, y, tau=0.1)
        value.backward()
    eager_value, eager_grad = value_and_grad(fast, S, y, tau=0.1)
    torch.testing.assert_close(value.detach(), eager_value, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(leaf.grad, eager_grad, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# The per-negative weight view (Wang & Liu 2021): relative penalty, entropy, closed-form weights
# ------------------------------------------------------------------------------------------------

from lossviz import contrastive as C  # noqa: E402


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("batch", BATCHES)
def test_closed_form_weights_are_the_autograd_weights(batch, tau):
    """GPW by autograd == the closed form, up to the loss's 1/tau and its mean over positive pairs;
    and the closed form == its loop reference."""
    S, y = make_S(batch)
    W = C.nt_xent_weights(S, y, tau=tau)
    n_pairs = int(lv.pair_masks(y)[0].sum())
    torch.testing.assert_close(lv.pair_weights(lv.nt_xent_loss, S, y, tau=tau), W / (tau * n_pairs),
                               rtol=1e-10, atol=1e-12)
    signed = lv.pair_weights(lv.nt_xent_loss, S, y, tau=tau, signed=True)
    torch.testing.assert_close(signed, C.nt_xent_weights(S, y, tau=tau, signed=True) / (tau * n_pairs),
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(W, ref.nt_xent_weights_closed_form(S, y, tau=tau), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("batch", BATCHES)
def test_relative_penalty_and_entropy_match_the_loops(batch, tau):
    S, y = make_S(batch)
    r = C.relative_penalty(S, y, tau=tau)
    torch.testing.assert_close(r, ref.relative_penalty_ref(S, y, tau=tau), rtol=1e-10, atol=1e-12)
    _, neg = lv.pair_masks(y)
    torch.testing.assert_close(r.sum(1), neg.any(1).double())         # a distribution over N_i
    H = C.negative_weight_entropy(S, y, tau=tau)
    torch.testing.assert_close(H, ref.negative_weight_entropy_ref(S, y, tau=tau), rtol=1e-9, atol=1e-12)
    Hn = C.negative_weight_entropy(S, y, tau=tau, normalized=True)
    torch.testing.assert_close(Hn, H / neg.sum(1).double().log())
    assert bool((Hn > 0).all()) and bool((Hn <= 1).all())


def test_push_is_shared_by_the_relative_penalty_and_equals_the_pull():
    """Per anchor: the total push on the negatives equals the total pull on the positives, and the
    push on each negative is that total times r (for any labels, several positives included)."""
    S, y = make_S("unbalanced")
    pos, neg = lv.pair_masks(y)
    W = C.nt_xent_weights(S, y, tau=0.3)
    pull, push = (W * pos).sum(1), (W * neg).sum(1)
    torch.testing.assert_close(pull, push)
    torch.testing.assert_close(W * neg, C.relative_penalty(S, y, tau=0.3) * pull[:, None])
    assert bool((pull > 0).all())


def test_entropy_rises_and_the_largest_share_falls_with_tau():
    g = torch.Generator().manual_seed(3)
    S = lv.similarity(torch.randn(40, 8, generator=g, dtype=F64))
    y = torch.arange(20).repeat(2)
    taus = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 100.0]
    H = torch.stack([C.negative_weight_entropy(S, y, tau=t) for t in taus])
    top = torch.stack([C.relative_penalty(S, y, tau=t).max(1).values for t in taus])
    assert bool((H.diff(dim=0) > 0).all()) and bool((top.diff(dim=0) < 0).all())
    assert float(H[0].median()) < 0.1                                  # about one-hot at tau = 0.01
    torch.testing.assert_close(H[-1], torch.full((40,), math.log(38), dtype=F64), rtol=1e-3, atol=0)


def test_one_anchor_weights():
    s_neg = torch.tensor([0.9, 0.3, -0.2, 0.5], dtype=F64)
    tau = 0.2
    w_pos, w_neg = C.anchor_nt_xent_weights(0.7, s_neg, tau=tau)
    q = torch.softmax(torch.cat([torch.tensor([0.7], dtype=F64), s_neg]) / tau, 0)
    torch.testing.assert_close(w_pos, 1 - q[0])
    torch.testing.assert_close(w_neg, q[1:])
    torch.testing.assert_close(w_neg / w_pos, torch.softmax(s_neg / tau, 0))
    with pytest.raises(ValueError, match="at least one negative"):
        C.anchor_nt_xent_weights(0.7, [], tau=tau)
    with pytest.raises(ValueError, match="s_pos .* must be finite"):
        C.anchor_nt_xent_weights(math.nan, s_neg, tau=tau)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_weight_view_at_tiny_temperature_is_finite(dtype):
    """tau = 0.005 puts S/tau at 200: every exponential would overflow float32 if it were formed."""
    S, y = make_S("singleton")
    S = S.to(dtype)
    for out in (C.relative_penalty(S, y, tau=0.005), C.negative_weight_entropy(S, y, tau=0.005),
                C.nt_xent_weights(S, y, tau=0.005)):
        assert torch.isfinite(out).all()
    torch.testing.assert_close(C.relative_penalty(S, y, tau=0.005).double(),
                               ref.relative_penalty_ref(S.double(), y, tau=0.005), rtol=1e-2, atol=1e-3)


def test_rows_without_negatives_get_zero_weight():
    S, _ = make_S("4x3")
    y = torch.zeros(12, dtype=torch.long)
    assert (C.relative_penalty(S, y, tau=0.1) == 0).all()
    assert (C.negative_weight_entropy(S, y, tau=0.1) == 0).all()
    assert (C.nt_xent_weights(S, y, tau=0.1) == 0).all()


def test_blocks_of_anchors_give_the_rows_of_the_full_view():
    S, y = make_S("4x3")
    rows = torch.arange(3, 8)
    for fn in (C.relative_penalty, C.nt_xent_weights):
        torch.testing.assert_close(fn(S[rows], y, tau=0.2, anchors=rows), fn(S, y, tau=0.2)[rows])
    torch.testing.assert_close(C.negative_weight_entropy(S[rows], y, tau=0.2, anchors=rows),
                               C.negative_weight_entropy(S, y, tau=0.2)[rows])


def test_weight_view_refuses_bad_input():
    S, y = make_S("4x3")
    for fn in (C.relative_penalty, C.negative_weight_entropy, C.nt_xent_weights):
        with pytest.raises(ValueError, match="a temperature of 0"):
            fn(S, y, tau=0)
        with pytest.raises(ValueError, match="integer class ids"):
            fn(S, y.float())
        with pytest.raises(ValueError, match="NaN"):
            fn(torch.full_like(S, math.nan), y)
    with pytest.raises(ValueError, match="no positive pair"):
        C.nt_xent_weights(S, torch.arange(12))
    assert C.relative_penalty(S, torch.arange(12), tau=0.1).sum(1).allclose(torch.ones(12, dtype=F64))


def test_weight_plots_draw():
    from lossviz import plots

    fig, axes = plots.new_figure(2)
    s_neg = torch.tensor([0.9, 0.3, -0.2, 0.5], dtype=F64)
    w_pos, w_neg = C.anchor_nt_xent_weights(0.7, s_neg, tau=0.2)
    plots.anchor_weights_view(axes[0, 0], 0.7, s_neg, w_pos, w_neg)
    lines = plots.temperature_curves(axes[0, 1], s_neg, [0.05, 0.5])
    assert len(lines) == 2 and np.allclose(lines[0].get_ydata(), torch.softmax(s_neg.sort().values / 0.05, 0))
    assert "total" in axes[0, 0].get_legend().get_texts()[0].get_text()


# ------------------------------------------------------------------------------------------------
# Uniformity, alignment (Wang & Isola 2020) and tolerance (Wang & Liu 2021)
# ------------------------------------------------------------------------------------------------

from lossviz import metrics  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometry_metrics_match_the_loops(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 5, generator=g, dtype=F64) * 3
    x2 = x + 0.4 * torch.randn(30, 5, generator=g, dtype=F64)
    y = torch.randint(0, 4, (30,), generator=g)
    for t in (0.5, 2.0, 5.0):
        assert math.isclose(metrics.uniformity(x, t=t), ref.uniformity_ref(x, t=t), rel_tol=1e-10)
    for a in (1.0, 2.0):
        assert math.isclose(metrics.alignment(x, x2, alpha=a), ref.alignment_ref(x, x2, alpha=a), rel_tol=1e-10)
    assert math.isclose(metrics.tolerance(x, y), ref.tolerance_ref(x, y), rel_tol=1e-10)


def test_geometry_metrics_limits():
    g = torch.Generator().manual_seed(0)
    same = torch.ones(10, 3)
    assert metrics.uniformity(same) == pytest.approx(0.0, abs=1e-12)      # collapsed: exp(0) = 1
    assert metrics.alignment(same, 2 * same) == pytest.approx(0.0, abs=1e-12)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert metrics.uniformity(opposite) == pytest.approx(-8.0)           # ||f_i - f_j||^2 = 4
    assert metrics.alignment(opposite, -opposite) == pytest.approx(4.0)
    spread = torch.randn(2000, 16, generator=g)
    assert -4.0 < metrics.uniformity(spread) < -3.5                       # near the sphere's optimum
    y = torch.arange(10).repeat(3)
    assert metrics.tolerance(torch.eye(10)[y] + 0.0, y) == pytest.approx(1.0)
    assert metrics.tolerance(torch.eye(30), y) == pytest.approx(0.0)


def test_geometry_metrics_refuse_bad_input():
    x = torch.randn(6, 3)
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        metrics.uniformity(x[:1])
    with pytest.raises(ValueError, match=r"t .* must be > 0"):
        metrics.uniformity(x, t=0)
    with pytest.raises(ValueError, match="all-zero row"):
        metrics.uniformity(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="same shape"):
        metrics.alignment(x, x[:5])
    with pytest.raises(ValueError, match="two or more samples"):
        metrics.tolerance(x, torch.arange(6))
    with pytest.raises(ValueError, match="integer class ids"):
        metrics.tolerance(x, torch.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        metrics.alignment(x, torch.full_like(x, math.nan))


# ------------------------------------------------------------------------------------------------
# Wang & Liu's comparison losses: simple (uniform negative weights) and hard NT-Xent
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", BATCHES)
def test_comparison_losses_match_their_loops(batch):
    S, y = make_S(batch)
    for lam in (0.0, 0.01, 0.5):
        value, grad = value_and_grad(C.simple_contrastive_loss, S, y, lam=lam)
        ref_value, ref_grad = value_and_grad(ref.simple_contrastive_loss_ref, S, y, lam=lam)
        torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    for tau, frac in ((0.1, 0.1), (0.5, 0.3), (0.05, 0.5), (1.0, 1e-3)):
        value, grad = value_and_grad(C.hard_nt_xent_loss, S, y, tau=tau, frac=frac)
        ref_value, ref_grad = value_and_grad(ref.hard_nt_xent_loss_ref, S, y, tau=tau, frac=frac)
        torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(C.hard_nt_xent_loss(S, y, tau=0.2, frac=1.0), lv.nt_xent_loss(S, y, tau=0.2))


def test_hard_loss_weights_only_the_hardest_negatives_and_simple_weights_all_equally():
    g = torch.Generator().manual_seed(5)
    S = lv.similarity(torch.randn(40, 6, generator=g, dtype=F64))
    y = torch.arange(20).repeat(2)
    _, neg = lv.pair_masks(y)
    W = lv.pair_weights(C.hard_nt_xent_loss, S, y, tau=0.5, frac=0.1)
    kept = (W > 0) & neg
    assert bool((kept.sum(1) == 4).all())                                # ceil(0.1 * 38) per anchor
    hardest = S.masked_fill(~neg, -2).topk(4, dim=1).indices
    assert bool(kept.gather(1, hardest).all())
    Ws = lv.pair_weights(C.simple_contrastive_loss, S, y, lam=0.05, signed=True)
    torch.testing.assert_close(Ws[neg], torch.full_like(Ws[neg], 0.05 / 40))
    # NT-Xent's large-temperature limit: the weights become the simple loss's with lam = 1/|N_i|
    big = C.nt_xent_weights(S, y, tau=1e4, signed=True)
    simple = lv.pair_weights(C.simple_contrastive_loss, S, y, lam=1 / 38, signed=True) * 40
    torch.testing.assert_close(big * 39 / 38, simple, rtol=1e-3, atol=1e-6)


def test_comparison_losses_refuse_bad_knobs():
    S, y = make_S("simclr")
    with pytest.raises(ValueError, match=r"frac .* must be in \(0, 1\]"):
        C.hard_nt_xent_loss(S, y, frac=1.5)
    with pytest.raises(ValueError, match=r"frac .* must be > 0"):
        C.hard_nt_xent_loss(S, y, frac=0)
    with pytest.raises(ValueError, match=r"lam .* must be >= 0"):
        C.simple_contrastive_loss(S, y, lam=-1)
    with pytest.raises(ValueError, match="no positive pair"):
        C.simple_contrastive_loss(S, torch.arange(len(y)))
