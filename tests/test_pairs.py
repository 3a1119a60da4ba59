"""Every pair loss against its slow reference (values and gradients w.r.t. S), MS against
pytorch-metric-learning 2.8.1, and the edge cases: empty mining, large scales in low precision,
autocast, large batches."""

from __future__ import annotations

import math

import pytest
import torch

import lossviz as lv
from lossviz import reference as ref
from _util import value_and_grad

F64 = torch.float64

# ------------------------------------------------------------------------------------------------
# Batches: P x K, unbalanced, a class with a single sample, and a general (non-symmetric) S.
# ------------------------------------------------------------------------------------------------

LABELS = {
    "4x3": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "3x4": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],
    "unbalanced": [0, 0, 0, 0, 0, 1, 1, 2, 2, 2],
    "singleton": [0, 0, 0, 1, 1, 1, 2, 3, 3],  # class 2 has one sample: no positive for it
    "asym": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],  # S is a general matrix, not a Gram matrix
}
BATCHES = list(LABELS)
EMBEDDING_BATCHES = [b for b in BATCHES if b != "asym"]


def make_embeddings(name: str, dim: int = 3):
    """Seeded embeddings and shuffled labels: noisy class centres in a low dimension, so that
    similarities spread over [-1, 1] and some anchors are already separated (mining keeps nothing
    for them) while others are not."""
    g = torch.Generator().manual_seed(BATCHES.index(name) + 1)
    y = torch.tensor(LABELS[name])
    y = y[torch.randperm(len(y), generator=g)]  # classes not contiguous: catches index mix-ups
    centres = torch.randn(int(y.max()) + 1, dim, generator=g, dtype=torch.float64)
    x = centres[y] + 0.55 * torch.randn(len(y), dim, generator=g, dtype=torch.float64)
    return x, y


def make_S(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 similarity matrix and labels for batch ``name``."""
    x, y = make_embeddings(name)
    if name == "asym":
        g = torch.Generator().manual_seed(99)
        return torch.rand(len(y), len(y), generator=g, dtype=torch.float64) * 2 - 1, y
    return lv.similarity(x), y


# (name, fast, reference, knobs): the knobs move every branch (mining on/off, weighting on/off,
# hinges active or not, semi-hard found or not).
CASES = [
    ("ms-default", lv.ms_loss, ref.ms_loss_ref, {}),
    ("ms-soft", lv.ms_loss, ref.ms_loss_ref, dict(alpha=0.5, beta=10.0, lam=0.3, eps=0.3)),
    ("ms-sharp-eps0", lv.ms_loss, ref.ms_loss_ref, dict(alpha=5.0, beta=80.0, lam=0.7, eps=0.0)),
    ("ms-wide-eps", lv.ms_loss, ref.ms_loss_ref, dict(alpha=1.0, beta=20.0, lam=-0.2, eps=0.6)),
    ("ms-weight-only", lv.ms_loss, ref.ms_loss_ref, dict(mining=False)),
    ("ms-mine-only", lv.ms_loss, ref.ms_loss_ref, dict(weighting=False)),
    ("ms-neither", lv.ms_loss, ref.ms_loss_ref, dict(mining=False, weighting=False, lam=0.2)),
    ("ms-formula-default", lv.ms_loss_formula, ref.ms_loss_ref, {}),
    ("ms-formula-sharp-eps0", lv.ms_loss_formula, ref.ms_loss_ref,
     dict(alpha=5.0, beta=80.0, lam=0.7, eps=0.0)),
    ("ms-formula-wide-eps", lv.ms_loss_formula, ref.ms_loss_ref,
     dict(alpha=1.0, beta=20.0, lam=-0.2, eps=0.6)),
    ("contrastive-default", lv.contrastive_loss, ref.contrastive_loss_ref, {}),
    ("contrastive-lam0", lv.contrastive_loss, ref.contrastive_loss_ref, dict(lam=0.0)),
    ("contrastive-lam.8", lv.contrastive_loss, ref.contrastive_loss_ref, dict(lam=0.8)),
    ("contrastive-lam-.3", lv.contrastive_loss, ref.contrastive_loss_ref, dict(lam=-0.3)),
    ("triplet-all", lv.triplet_loss, ref.triplet_loss_ref, {}),
    ("triplet-all-m0", lv.triplet_loss, ref.triplet_loss_ref, dict(margin=0.0)),
    ("triplet-all-m.5", lv.triplet_loss, ref.triplet_loss_ref, dict(margin=0.5)),
    ("triplet-semihard", lv.triplet_loss, ref.triplet_loss_ref, dict(mining="semihard")),
    ("triplet-semihard-m0", lv.triplet_loss, ref.triplet_loss_ref,
     dict(mining="semihard", margin=0.0)),
    ("triplet-semihard-m.3", lv.triplet_loss, ref.triplet_loss_ref,
     dict(mining="semihard", margin=0.3)),
    ("binomial-default", lv.binomial_deviance_loss, ref.binomial_deviance_loss_ref, {}),
    ("binomial-soft", lv.binomial_deviance_loss, ref.binomial_deviance_loss_ref,
     dict(alpha=1.0, beta=10.0, lam=0.2)),
    ("binomial-sharp", lv.binomial_deviance_loss, ref.binomial_deviance_loss_ref,
     dict(alpha=8.0, beta=60.0, lam=0.7)),
    ("lifted-default", lv.lifted_structure_loss, ref.lifted_structure_loss_ref, {}),
    ("lifted-lam0", lv.lifted_structure_loss, ref.lifted_structure_loss_ref, dict(lam=0.0)),
    ("lifted-lam.5", lv.lifted_structure_loss, ref.lifted_structure_loss_ref, dict(lam=0.5)),
    # lam = -2.5 switches some anchors' hinges off
    ("lifted-lam-2.5", lv.lifted_structure_loss, ref.lifted_structure_loss_ref, dict(lam=-2.5)),
    # the scaled form used on cosines (notebook 01; some hinges off), and one where most are off
    ("lifted-scale10-lam.5", lv.lifted_structure_loss, ref.lifted_structure_loss_ref,
     dict(scale=10.0, lam=0.5)),
    ("lifted-scale3-lam-4", lv.lifted_structure_loss, ref.lifted_structure_loss_ref,
     dict(scale=3.0, lam=-4.0)),
]

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_loss_matches_reference(case, batch, dtype):
    _, fast, slow, knobs = case
    S, y = make_S(batch)
    S = S.to(dtype)
    value, grad = value_and_grad(fast, S, y, **knobs)
    ref_value, ref_grad = value_and_grad(slow, S, y, **knobs)
    assert value.dtype == dtype and grad.dtype == dtype
    torch.testing.assert_close(value.double(), ref_value.double(), **TOL[dtype])
    torch.testing.assert_close(grad.double(), ref_grad.double(), **TOL[dtype])


def test_reference_batches_exercise_every_branch():
    """The comparisons above are only as good as the branches the batches reach."""
    mined_some = mined_all = anchor_without_mining = False
    semihard_found = semihard_fallback = triplet_on = triplet_off = lifted_on = lifted_off = False
    for batch in BATCHES:
        S, y = make_S(batch)
        pos, neg = lv.pair_masks(y)
        mpos, mneg = lv.ms_mining(S, y, eps=0.1)
        mined_some |= bool(mpos.any()) and bool(mneg.any())
        mined_all |= bool((mpos == pos).all() and (mneg == neg).all())
        anchor_without_mining |= bool((~mpos.any(1) & pos.any(1)).any())
        for a in range(len(y)):
            for p in torch.nonzero(pos[a]).flatten().tolist():
                negs = torch.nonzero(neg[a]).flatten()
                below = S[a, negs] < S[a, p]
                semihard_found |= bool(below.any())
                semihard_fallback |= bool((~below).all())
                hinge = S[a, negs] - S[a, p] + 0.1
                triplet_on |= bool((hinge > 0).any())
                triplet_off |= bool((hinge <= 0).any())
        lifted = ref.lifted_weights_closed_form(S, y, lam=-2.5)
        has_both = pos.any(1) & neg.any(1)
        lifted_on |= bool((lifted.sum(1) > 0).any())
        lifted_off |= bool(((lifted.sum(1) == 0) & has_both).any())
    assert mined_some and not mined_all and anchor_without_mining
    assert semihard_found and semihard_fallback and triplet_on and triplet_off
    assert lifted_on and lifted_off


def test_ms_is_the_mean_over_all_anchors():
    """The divisor is B, counting anchors that contribute 0 (here the singleton, which has no
    positive, so mining keeps nothing for it)."""
    S, y = make_S("singleton")
    terms = ref.ms_anchor_terms_ref(S, y)
    lonely = [i for i in range(len(y)) if int((y == y[i]).sum()) == 1]
    assert len(lonely) == 1 and [float(t) for t in terms[lonely[0]]] == [0.0, 0.0]
    total = sum(float(p) + float(n) for p, n in terms)
    assert math.isclose(float(lv.ms_loss(S, y)), total / len(y), rel_tol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_ms_mining_boundary_is_strict(dtype):
    """Both mining conditions are strict inequalities.  Dyadic values and eps = 1/4 make the
    boundary cases exact in binary: S_ij - eps == max_neg or S_ij + eps == min_pos keeps nothing."""
    # anchor 0: pos .75 - .25 == max_neg .5, neg .5 + .25 == min_pos .75: nothing kept
    # anchor 1: the same, mirrored
    # anchor 2: pos .5 kept, neg .5 kept, but neg .25 + .25 == min_pos .5 is not kept
    # anchor 3: the same as anchor 2, mirrored
    S = torch.tensor([[1.0, 0.75, 0.5, 0.25],
                      [0.75, 1.0, 0.25, 0.5],
                      [0.5, 0.25, 1.0, 0.5],
                      [0.25, 0.5, 0.5, 1.0]], dtype=dtype)
    y = torch.tensor([0, 0, 1, 1])
    mpos, mneg = lv.ms_mining(S, y, eps=0.25)
    assert torch.nonzero(mpos).tolist() == [[2, 3], [3, 2]]
    assert torch.nonzero(mneg).tolist() == [[2, 0], [3, 1]]
    rpos, rneg = ref.ms_mining_ref(S, y, eps=0.25)
    assert torch.equal(mpos, rpos) and torch.equal(mneg, rneg)
    value, grad = value_and_grad(lv.ms_loss, S, y, eps=0.25)
    ref_value, ref_grad = value_and_grad(ref.ms_loss_ref, S, y, eps=0.25)
    torch.testing.assert_close(value.double(), ref_value, **TOL[dtype])
    torch.testing.assert_close(grad.double(), ref_grad.double(), **TOL[dtype])
    assert (grad[:2] == 0).all()  # anchors 0 and 1 sit exactly on the boundary: nothing mined


# ------------------------------------------------------------------------------------------------
# Multi-Similarity against pytorch-metric-learning 2.8.1
# ------------------------------------------------------------------------------------------------

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")

MS_KNOBS = [
    dict(alpha=2.0, beta=50.0, lam=0.5, eps=0.1),
    dict(alpha=1.0, beta=20.0, lam=0.3, eps=0.3),
    dict(alpha=5.0, beta=80.0, lam=0.7, eps=0.05),
    dict(alpha=2.0, beta=40.0, lam=0.0, eps=0.6),
]


def pml_ms(x, y, *, alpha, beta, lam, eps, mining=True):
    loss_fn = pml_losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=lam)
    if not mining:
        return loss_fn(x, y)
    return loss_fn(x, y, pml_miners.MultiSimilarityMiner(epsilon=eps)(x, y))


def grad_wrt_x(fn, x):
    leaf = x.detach().clone().requires_grad_(True)
    loss = fn(leaf)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


@pytest.mark.parametrize("mining", [True, False], ids=["with-miner", "weight-only"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("knobs", MS_KNOBS,
                         ids=lambda k: "a{alpha}-b{beta}-l{lam}-e{eps}".format(**k))
@pytest.mark.parametrize("batch", EMBEDDING_BATCHES)
def test_ms_matches_pml(batch, knobs, dtype, mining):
    x, y = make_embeddings(batch, dim=4)
    x = x.to(dtype)
    ours, ours_grad = grad_wrt_x(
        lambda e: lv.ms_loss(lv.similarity(e), y, mining=mining, **knobs), x)
    theirs, theirs_grad = grad_wrt_x(lambda e: pml_ms(e, y, mining=mining, **knobs), x)
    assert float(theirs) != 0.0  # not PML's one-pair shortcut: a real comparison
    torch.testing.assert_close(ours, theirs.to(dtype), **TOL[dtype])
    torch.testing.assert_close(ours_grad, theirs_grad, **TOL[dtype])


def test_ms_matches_pml_on_a_large_batch():
    g = torch.Generator().manual_seed(7)
    y = torch.arange(64).repeat_interleave(8)
    x = torch.randn(512, 16, generator=g, dtype=torch.float64)
    ours, ours_grad = grad_wrt_x(lambda e: lv.ms_loss(lv.similarity(e), y), x)
    theirs, theirs_grad = grad_wrt_x(lambda e: pml_ms(e, y, **MS_KNOBS[0]), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-10, atol=1e-10)


def one_pair_batch():
    """Four unit vectors on a circle (angles in degrees) where MS mining (eps 0.1) keeps exactly
    one positive pair (a, p) and one negative pair (a, n), all for anchor a:

    a = 0 deg (class 0), p = -35 (class 0), n = 40 (class 1), n2 = 60 (class 1).
    Anchor a: S_ap = cos 35 = .819 < max_neg + eps = cos 40 + .1 = .866 -> p kept;
              S_an = .766 > S_ap - eps = .719 -> n kept;  S_an2 = cos 60 = .5 -> dropped.
    Anchor p: S_pa = .819 >= max(S_pn = cos 75, S_pn2 = cos 95) + .1 -> nothing.
    Anchors n, n2: S_nn2 = cos 20 = .940 >= max(S_na = .766, S_np) + .1 -> nothing.
    """
    angles = torch.tensor([0.0, -35.0, 40.0, 60.0], dtype=torch.float64) * math.pi / 180
    x = torch.stack([angles.cos(), angles.sin()], dim=1)
    y = torch.tensor([0, 0, 1, 1])
    return x, y


def test_ms_one_mined_pair_each_pml_returns_zero_lossviz_the_true_loss():
    """The known difference: PML's GenericPairLoss returns 0 when every index list of the mined
    pairs has <= 1 entry; lossviz returns the loss of the formula (and so does the reference)."""
    x, y = one_pair_batch()
    alpha, beta, lam, eps = 2.0, 50.0, 0.5, 0.1
    S = lv.similarity(x)
    mpos, mneg = lv.ms_mining(S, y, eps=eps)
    assert torch.nonzero(mpos).tolist() == [[0, 1]] and torch.nonzero(mneg).tolist() == [[0, 2]]
    a1, p, a2, n = pml_miners.MultiSimilarityMiner(epsilon=eps)(x, y)
    assert (a1.tolist(), p.tolist(), a2.tolist(), n.tolist()) == ([0], [1], [0], [2])  # same pairs

    theirs = pml_ms(x, y, alpha=alpha, beta=beta, lam=lam, eps=eps)
    ours = lv.ms_loss(S, y, alpha=alpha, beta=beta, lam=lam, eps=eps)
    s_ap, s_an = math.cos(math.radians(35)), math.cos(math.radians(40))
    true_loss = (math.log1p(math.exp(-alpha * (s_ap - lam))) / alpha
                 + math.log1p(math.exp(beta * (s_an - lam))) / beta) / 4
    assert float(theirs) == 0.0
    assert float(ours) > 0.1
    assert math.isclose(float(ours), true_loss, rel_tol=1e-12)
    assert math.isclose(float(ref.ms_loss_ref(S, y, alpha=alpha, beta=beta, lam=lam, eps=eps)),
                        true_loss, rel_tol=1e-12)


# ------------------------------------------------------------------------------------------------
# Edge cases
# ------------------------------------------------------------------------------------------------

def separated_batch(dtype=torch.float64):
    """Three tight clusters on orthogonal axes: min_pos - max_neg >> eps for every anchor."""
    g = torch.Generator().manual_seed(3)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    x = torch.eye(3, dtype=F64)[y] + 0.01 * torch.randn(9, 3, generator=g, dtype=F64)
    return x.to(dtype), y


@pytest.mark.parametrize("knobs", [{}, dict(weighting=False), dict(eps=0.5, beta=200.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16],
                         ids=["f64", "f32", "bf16"])
def test_ms_nothing_mined_gives_exact_zero_and_zero_gradient(dtype, knobs):
    x, y = separated_batch(dtype)
    leaf = x.clone().requires_grad_(True)
    S = lv.similarity(leaf)
    mpos, mneg = lv.ms_mining(S, y, eps=knobs.get("eps", 0.1))
    assert not mpos.any() and not mneg.any()
    loss = lv.ms_loss(S, y, **knobs)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(leaf.grad).all() and (leaf.grad == 0).all()
    S_leaf = S.detach().requires_grad_(True)
    lv.ms_loss(S_leaf, y, **knobs).backward()
    assert (S_leaf.grad == 0).all()
    assert float(ref.ms_loss_ref(S.detach(), y, **knobs)) == 0.0


def high_similarity_batch():
    """2-D embeddings with a nearly identical negative pair (S ~ 0.999), so that beta = 200 puts
    exp(beta (S - 0.5)) ~ e^100 past float32's range (e^88.7) in a naive log-sum-exp."""
    g = torch.Generator().manual_seed(11)
    y = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1, 2])
    x = torch.randn(9, 2, generator=g, dtype=torch.float64)
    x[1] = x[0] + 0.01 * torch.randn(2, generator=g, dtype=torch.float64)
    return x, y


LARGE_SCALE = [
    ("ms", lv.ms_loss, ref.ms_loss_ref, dict(alpha=20.0, beta=200.0)),
    ("ms-weight-only", lv.ms_loss, ref.ms_loss_ref, dict(alpha=20.0, beta=200.0, mining=False)),
    ("binomial", lv.binomial_deviance_loss, ref.binomial_deviance_loss_ref,
     dict(alpha=20.0, beta=200.0)),
    ("contrastive", lv.contrastive_loss, ref.contrastive_loss_ref, {}),
    ("triplet", lv.triplet_loss, ref.triplet_loss_ref, {}),
    ("triplet-semihard", lv.triplet_loss, ref.triplet_loss_ref, dict(mining="semihard")),
    ("lifted", lv.lifted_structure_loss, ref.lifted_structure_loss_ref, {}),
    ("lifted-scale40", lv.lifted_structure_loss, ref.lifted_structure_loss_ref, dict(scale=40.0, lam=0.5)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("case", LARGE_SCALE, ids=[c[0] for c in LARGE_SCALE])
def test_large_scales_in_low_precision_are_finite_and_right(case, dtype):
    _, fast, slow, knobs = case
    x, y = high_similarity_batch()
    S = lv.similarity(x).to(dtype)
    neg = lv.pair_masks(y)[1]
    assert float(S.double()[neg].max()) > 0.95  # the naive form would overflow float32 here
    value, grad = value_and_grad(fast, S, y, **knobs)
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.isfinite(value) and float(value) > 0
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    # The fast code computes half inputs in float32: compare with float64 on the same S values.
    ref_value, ref_grad = value_and_grad(slow, S.double(), y, **knobs)
    torch.testing.assert_close(value.double(), ref_value, rtol=1e-4, atol=1e-5)
    grad_tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(grad.double(), ref_grad, **grad_tol)


@pytest.mark.parametrize("case", LARGE_SCALE, ids=[c[0] for c in LARGE_SCALE])
def test_autocast_bfloat16_embeddings(case):
    _, fast, _, knobs = case
    x, y = high_similarity_batch()
    layer = torch.nn.Linear(2, 4).double()
    with torch.no_grad():  # start from the identity-like map so the near-duplicate pair survives
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
        layer.bias.zero_()
    layer = layer.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = layer(x.float())
        S = lv.similarity(emb)
        loss = fast(S, y, **knobs)
    assert emb.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(lv.PAIR_LOSSES))
def test_large_batch_runs(name):
    """B = 512 (64 classes x 8): every loss, forward and backward, O(B^2) memory."""
    g = torch.Generator().manual_seed(5)
    y = torch.arange(64).repeat_interleave(8)
    x = torch.randn(512, 16, generator=g).requires_grad_(True)
    loss = lv.PAIR_LOSSES[name](lv.similarity(x), y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


# The lesson's MS (the paper's formula, autograd backward) is the training MS (hand-written backward).
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("preset", list(lv.MS_PRESETS))
def test_ms_formula_equals_the_fast_path(batch, preset):
    S, y = make_S(batch)
    knobs = lv.MS_PRESETS[preset]
    value, grad = value_and_grad(lv.ms_loss_formula, S, y, **knobs)
    fast_value, fast_grad = value_and_grad(lv.ms_loss, S, y, **knobs)
    assert torch.allclose(value, fast_value, rtol=0, atol=1e-12)
    assert torch.allclose(grad, fast_grad, rtol=0, atol=1e-12)


def test_ms_formula_nothing_mined_is_zero_with_zero_gradient():
    y = torch.tensor([0, 0, 1, 1])
    S = torch.tensor([[1.0, 0.9, -0.5, -0.6], [0.9, 1.0, -0.4, -0.5],
                      [-0.5, -0.4, 1.0, 0.8], [-0.6, -0.5, 0.8, 1.0]], dtype=F64)
    value, grad = value_and_grad(lv.ms_loss_formula, S, y, eps=0.1)
    assert value == 0 and torch.equal(grad, torch.zeros_like(grad))


# ------------------------------------------------------------------------------------------------
# Lifted structure's scale (an inverse temperature on the cosines)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", BATCHES)
def test_lifted_scale_is_the_loss_on_scaled_similarities(batch):
    """``scale=s`` means the loss sees ``s * S``: the same value as the unscaled loss on ``s S``, and
    (chain rule) ``s`` times its gradient there; ``scale=1`` is the default, unchanged."""
    S, y = make_S(batch)
    for s, lam in ((10.0, 0.5), (0.3, -1.0), (4.0, 2.0)):
        value, grad = value_and_grad(lv.lifted_structure_loss, S, y, scale=s, lam=lam)
        ref_value, ref_grad = value_and_grad(lv.lifted_structure_loss, s * S, y, lam=lam)
        torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, s * ref_grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lv.lifted_structure_loss(S, y, scale=1.0, lam=0.5),
                               lv.lifted_structure_loss(S, y, lam=0.5), rtol=0, atol=0)


@pytest.mark.parametrize("scale, match", [(0.0, "scale must be > 0"), (-10.0, "scale must be > 0"),
                                          (math.nan, "scale must be finite"), (math.inf, "scale must be finite")])
def test_lifted_scale_must_be_positive(scale, match):
    S, y = make_S("4x3")
    with pytest.raises(ValueError, match=match):
        lv.lifted_structure_loss(S, y, scale=scale)
