"""The InfoNCE family (NT-Xent, SupCon) against their slow references (values and gradients w.r.t.
S), against pytorch-metric-learning 2.8.1 (values and gradients w.r.t. the embeddings), and the
edge cases: bad temperatures and inputs, blocks of anchors, small temperatures in low precision,
torch.compile."""

from __future__ import annotations

import math

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
