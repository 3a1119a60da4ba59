"""General Pair Weighting: autograd pair weights equal the paper's closed forms, have the right
signs, and obey the identities of the spec (binomial limit, lifted limit, hard-pair limit, mining
symmetry, mining switching itself off)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz import reference as ref

F64 = torch.float64


def random_batch(seed: int, labels, dim: int = 3, spread: float = 0.55, asym: bool = False):
    """Float64 S of noisy class centres (shuffled labels), or a general matrix if ``asym``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels)
    y = y[torch.randperm(len(y), generator=g)]
    if asym:
        return torch.rand(len(y), len(y), generator=g, dtype=torch.float64) * 2 - 1, y
    centres = torch.randn(int(y.max()) + 1, dim, generator=g, dtype=torch.float64)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g, dtype=torch.float64)
    return lv.similarity(x), y


BATCHES = {
    "4x3": (1, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], False),
    "3x4": (2, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], False),
    "unbalanced": (3, [0, 0, 0, 0, 0, 1, 1, 2, 2, 2], False),
    "singleton": (4, [0, 0, 0, 1, 1, 1, 2, 3, 3], False),
    "asym": (5, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], True),
}


def batch(name):
    seed, labels, asym = BATCHES[name]
    return random_batch(seed, labels, asym=asym)


# (name, loss, closed form, knobs)
CLOSED_FORMS = [
    ("ms", lv.ms_loss, ref.ms_weights_closed_form, {}),
    ("ms-official", lv.ms_loss, ref.ms_weights_closed_form, lv.MS_PRESETS["official_code"]),
    ("ms-paper", lv.ms_loss, ref.ms_weights_closed_form, lv.MS_PRESETS["paper"]),
    ("ms-eps.4", lv.ms_loss, ref.ms_weights_closed_form,
     dict(alpha=1.0, beta=20.0, lam=0.2, eps=0.4)),
    ("ms-weight-only", lv.ms_loss, ref.ms_weights_closed_form, dict(mining=False, lam=0.7)),
    ("ms-mine-only", lv.ms_loss, ref.ms_weights_closed_form, dict(weighting=False)),
    ("contrastive", lv.contrastive_loss, ref.contrastive_weights_closed_form, {}),
    ("contrastive-lam.1", lv.contrastive_loss, ref.contrastive_weights_closed_form, dict(lam=0.1)),
    ("triplet", lv.triplet_loss, ref.triplet_weights_closed_form, {}),
    ("triplet-m.4", lv.triplet_loss, ref.triplet_weights_closed_form, dict(margin=0.4)),
    ("binomial", lv.binomial_deviance_loss, ref.binomial_weights_closed_form, {}),
    ("binomial-soft", lv.binomial_deviance_loss, ref.binomial_weights_closed_form,
     dict(alpha=1.0, beta=10.0, lam=0.2)),
    ("lifted", lv.lifted_structure_loss, ref.lifted_weights_closed_form, {}),
    ("lifted-lam-2.5", lv.lifted_structure_loss, ref.lifted_weights_closed_form, dict(lam=-2.5)),
    ("lifted-scale10", lv.lifted_structure_loss, ref.lifted_weights_closed_form, dict(scale=10.0, lam=0.5)),
    ("lifted-scale3-lam-4", lv.lifted_structure_loss, ref.lifted_weights_closed_form,
     dict(scale=3.0, lam=-4.0)),
]


@pytest.mark.parametrize("name", list(BATCHES))
@pytest.mark.parametrize("case", CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_pair_weights_equal_closed_form(case, name):
    _, loss_fn, closed_form, knobs = case
    S, y = batch(name)
    W = lv.pair_weights(loss_fn, S, y, **knobs)
    assert W.shape == S.shape and W.dtype == torch.float64
    torch.testing.assert_close(W, closed_form(S, y, **knobs), rtol=1e-8, atol=1e-8)


SIGNED = [
    ("ms", lv.ms_loss, {}), ("ms-weight-only", lv.ms_loss, dict(mining=False)),
    ("ms-mine-only", lv.ms_loss, dict(weighting=False)),
    ("contrastive", lv.contrastive_loss, {}), ("triplet", lv.triplet_loss, {}),
    ("triplet-semihard", lv.triplet_loss, dict(mining="semihard")),
    ("binomial", lv.binomial_deviance_loss, {}), ("lifted", lv.lifted_structure_loss, {}),
    ("lifted-scale10", lv.lifted_structure_loss, dict(scale=10.0, lam=0.5)),
]


@pytest.mark.parametrize("name", list(BATCHES))
@pytest.mark.parametrize("case", SIGNED, ids=[c[0] for c in SIGNED])
def test_sign_pattern(case, name):
    """dL/dS_ij <= 0 on positives (pull), >= 0 on negatives (push), exactly 0 on the diagonal."""
    _, loss_fn, knobs = case
    S, y = batch(name)
    G = lv.pair_weights(loss_fn, S, y, signed=True, **knobs)
    pos, neg = lv.pair_masks(y)
    assert (G[pos] <= 0).all() and (G[neg] >= 0).all()
    assert (G.diagonal() == 0).all()
    assert (G[pos] < 0).any() and (G[neg] > 0).any()  # not trivially zero
    torch.testing.assert_close(G.abs(), lv.pair_weights(loss_fn, S, y, **knobs), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# Identities of the spec
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mining", [False, True])
@pytest.mark.parametrize("beta,lam", [(50.0, 0.5), (10.0, 0.0), (2.0, -0.3)])
def test_identity_1_single_negative_gives_sigmoid(beta, lam, mining):
    """|N_i| = 1: B * w-_ij = 1 / (e^{beta (lam - S_ij)} + 1) = sigmoid(beta (S_ij - lam))."""
    g = torch.Generator().manual_seed(21)
    y = torch.tensor([0, 0, 0, 0, 0, 1])  # anchors 0..4 have the single negative 5
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    x[5] = x[0] + 0.3 * torch.randn(3, generator=g, dtype=torch.float64)  # a hard negative
    S = lv.similarity(x)
    eps = 1.0  # keeps that one negative for every anchor (asserted below) when mining is on
    W = lv.pair_weights(lv.ms_loss, S, y, beta=beta, lam=lam, eps=eps, mining=mining)
    if mining:
        assert lv.ms_mining(S, y, eps=eps)[1][:5, 5].all()
    B = len(y)
    expected = torch.sigmoid(beta * (S[:5, 5] - lam))
    torch.testing.assert_close(B * W[:5, 5], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta", [1.0, 2.0, 10.0, 50.0])
@pytest.mark.parametrize("name", ["4x3", "unbalanced", "asym"])
def test_identity_2_lam_to_minus_infinity_gives_softmax_over_negatives(name, beta):
    """lam = -30: anchor i's MS negative weights, normalised, are softmax over N_i of beta * S."""
    S, y = batch(name)
    W = lv.pair_weights(lv.ms_loss, S, y, beta=beta, lam=-30.0, mining=False)
    _, neg = lv.pair_masks(y)
    for i in range(len(y)):
        w = W[i, neg[i]]
        softmax = torch.softmax(beta * S[i, neg[i]], dim=0)
        torch.testing.assert_close(w / w.sum(), softmax, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 2.0, 10.0])
def test_identity_2_lam_to_plus_infinity_gives_softmax_over_positives(alpha):
    """The positive half goes the other way: lam = +30 gives softmax over P_i of -alpha * S."""
    S, y = batch("3x4")
    W = lv.pair_weights(lv.ms_loss, S, y, alpha=alpha, lam=30.0, mining=False)
    pos, _ = lv.pair_masks(y)
    for i in range(len(y)):
        w = W[i, pos[i]]
        softmax = torch.softmax(-alpha * S[i, pos[i]], dim=0)
        torch.testing.assert_close(w / w.sum(), softmax, rtol=1e-6, atol=1e-9)


def test_identity_2_ms_at_beta_1_has_lifted_negative_weights():
    """At beta = 1 and lam -> -inf, MS's normalised negative weights are lifted structure's
    (temperature 1): both are softmax over N_i of S."""
    S, y = batch("4x3")
    W_ms = lv.pair_weights(lv.ms_loss, S, y, beta=1.0, lam=-30.0, mining=False)
    W_lifted = ref.lifted_weights_closed_form(S, y)
    _, neg = lv.pair_masks(y)
    for i in range(len(y)):
        if W_lifted[i].sum() == 0:
            continue
        a, b = W_ms[i, neg[i]], W_lifted[i, neg[i]]
        torch.testing.assert_close(a / a.sum(), b / b.sum(), rtol=1e-6, atol=1e-9)



@pytest.mark.parametrize("beta", [4.0, 40.0])
def test_identity_2_ms_negative_weights_are_lifted_at_scale_beta(beta):
    """The same limit at any beta: MS's normalised negative weights at lam -> -inf are those of
    lifted structure with ``scale = beta`` (both a softmax over N_i of beta S)."""
    S, y = batch("4x3")
    W_ms = lv.pair_weights(lv.ms_loss, S, y, beta=beta, lam=-30.0, mining=False)
    W_lifted = ref.lifted_weights_closed_form(S, y, scale=beta)
    _, neg = lv.pair_masks(y)
    checked = 0
    for i in range(len(y)):
        if W_lifted[i].sum() == 0:
            continue
        a, b = W_ms[i, neg[i]], W_lifted[i, neg[i]]
        torch.testing.assert_close(a / a.sum(), b / b.sum(), rtol=1e-6, atol=1e-9)
        checked += 1
    assert checked > 0

def hinge_terms(S, y, lam, sets):
    """Per-anchor [max_{P_i} (lam - S_ik)]_+ + [max_{N_i} (S_ik - lam)]_+ and the gap bound
    log(1 + |P_i|) / alpha + log(1 + |N_i|) / beta as functions of the scales."""
    pos, neg = sets
    hinges, sizes = [], []
    for i in range(len(y)):
        h_pos = max([lam - float(S[i, k]) for k in torch.nonzero(pos[i]).flatten()] + [0.0])
        h_neg = max([float(S[i, k]) - lam for k in torch.nonzero(neg[i]).flatten()] + [0.0])
        hinges.append(h_pos + h_neg)
        sizes.append((int(pos[i].sum()), int(neg[i].sum())))
    return hinges, sizes


@pytest.mark.parametrize("scale", [200.0, 2000.0])
@pytest.mark.parametrize("mining", [False, True])
@pytest.mark.parametrize("lam", [0.5, 0.0])
def test_identity_3_large_scales_give_hinge_on_hardest_pair(lam, mining, scale):
    """alpha, beta -> inf: each per-anchor term tends to the hinge on its hardest pair, from above,
    within log(1 + |P_i|) / alpha + log(1 + |N_i|) / beta (soft maximum vs maximum)."""
    S, y = batch("4x3")
    sets = lv.ms_mining(S, y, eps=0.1) if mining else lv.pair_masks(y)
    hinges, sizes = hinge_terms(S, y, lam, sets)
    bounds = [math.log1p(p) / scale + math.log1p(n) / scale for p, n in sizes]
    B = len(y)
    loss = float(lv.ms_loss(S, y, alpha=scale, beta=scale, lam=lam, mining=mining))
    assert sum(hinges) / B - 1e-12 <= loss <= sum(hinges) / B + sum(bounds) / B  # 1e-12: rounding
    assert sum(hinges) > 0  # a non-trivial limit
    if scale == 200.0:  # the naive reference stays in float64 range here: check every anchor
        terms = ref.ms_anchor_terms_ref(S, y, alpha=scale, beta=scale, lam=lam, mining=mining)
        for (t_pos, t_neg), h, bound in zip(terms, hinges, bounds, strict=True):
            assert h - 1e-12 <= float(t_pos + t_neg) <= h + bound


def test_identity_4_mining_is_symmetric_per_anchor():
    """On many random batches: an anchor has a mined positive iff it has a mined negative, and then
    its hardest positive and hardest negative are both mined.  Also: fast mining == reference."""
    g = torch.Generator().manual_seed(4)
    both = neither = 0
    for trial in range(150):
        B = int(torch.randint(4, 17, (1,), generator=g))
        C = int(torch.randint(2, max(3, B // 2) + 1, (1,), generator=g))
        y = torch.randint(0, C, (B,), generator=g)
        dim = int(torch.randint(2, 6, (1,), generator=g))
        spread = float(torch.rand(1, generator=g)) * 1.5
        eps = [0.0, 0.05, 0.1, 0.3, 0.7][trial % 5]
        x = torch.randn(C, dim, generator=g, dtype=F64)[y]
        x = x + spread * torch.randn(B, dim, generator=g, dtype=F64)
        S = lv.similarity(x)
        with lv.validation(False):  # some random batches have no positive pair at all
            mpos, mneg = lv.ms_mining(S, y, eps=eps)
        rpos, rneg = ref.ms_mining_ref(S, y, eps=eps)
        assert torch.equal(mpos, rpos) and torch.equal(mneg, rneg)
        assert torch.equal(mpos.any(1), mneg.any(1))
        pos, neg = lv.pair_masks(y)
        for i in torch.nonzero(mpos.any(1)).flatten():
            hardest_pos = torch.where(pos[i], S[i], math.inf).argmin()
            hardest_neg = torch.where(neg[i], S[i], -math.inf).argmax()
            assert mpos[i, hardest_pos] and mneg[i, hardest_neg]
        both += int(mpos.any(1).sum())
        neither += int((~mpos.any(1)).sum())
    assert both > 100 and neither > 100  # both situations were seen many times


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_identity_5_mining_switches_itself_off(eps):
    """min_pos - max_neg >= eps for every anchor: the loss is exactly 0 and so is every weight."""
    g = torch.Generator().manual_seed(8)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
    x = torch.eye(4, dtype=F64)[y] + 0.05 * torch.randn(12, 4, generator=g, dtype=F64)
    S = lv.similarity(x)
    pos, neg = lv.pair_masks(y)
    min_pos = torch.where(pos, S, math.inf).amin(1)
    max_neg = torch.where(neg, S, -math.inf).amax(1)
    assert (min_pos - max_neg >= eps).all()
    for knobs in [dict(eps=eps), dict(eps=eps, weighting=False),
                  dict(eps=eps, beta=200.0, alpha=20.0)]:
        assert lv.ms_loss(S, y, **knobs).item() == 0.0
        W = lv.pair_weights(lv.ms_loss, S, y, signed=True, **knobs)
        assert (W == 0).all()
        assert lv.active_fraction(W.abs(), y) == (0.0, 0.0)


def test_identity_5_boundary_just_inside_eps_mines_again():
    """The switch-off is sharp: widen eps past the anchor's gap and its pairs come back."""
    S, y = random_batch(8, [0, 1, 2, 3] * 3, dim=4, spread=0.05)
    pos, neg = lv.pair_masks(y)
    gap = (torch.where(pos, S, math.inf).amin(1) - torch.where(neg, S, -math.inf).amax(1))
    i = int(gap.argmin())
    assert gap[i] > 0.05  # well separated clusters
    assert lv.ms_loss(S, y, eps=float(gap[i]) * 0.999).item() == 0.0
    mpos, mneg = lv.ms_mining(S, y, eps=float(gap[i]) * 1.001)
    assert mpos[i].any() and mneg[i].any()
    assert lv.ms_loss(S, y, eps=float(gap[i]) * 1.001).item() > 0


def test_a_loss_that_ignores_S_weighs_no_pair_and_active_fraction_wants_a_matrix():
    S, y = torch.eye(4), torch.tensor([0, 0, 1, 1])
    for fn in (lambda S, labels: torch.tensor(1.0), lambda S, labels: S.detach().sum()):
        W = lv.pair_weights(fn, S, y)
        assert W.shape == (4, 4) and not W.any()
    with pytest.raises(ValueError, match=r"weights \(B x B pair weights\) must have 2 dimensions"):
        lv.active_fraction(torch.ones(4), y)
    with pytest.raises(ValueError, match="weights must be B x B"):
        lv.active_fraction(torch.ones(4, 3), y)
    assert lv.active_fraction(torch.ones(4, 4), y) == (1.0, 1.0)


# --- the per-sample weight view of a classification loss -------------------------------------------

def _comp_sum(z, y, tau):
    """The comp-sum loss written from its formula, one sample at a time: ((1+u)^(1-tau) - 1)/(1 - tau),
    u = sum_{k != y} exp(z_k - z_y); log(1 + u) at tau = 1."""
    out = []
    for zi, yi in zip(z, y):
        u = sum(torch.exp(zi[k] - zi[yi]) for k in range(len(zi)) if k != yi)
        out.append(torch.log1p(u) if tau == 1 else ((1 + u) ** (1 - tau) - 1) / (1 - tau))
    return torch.stack(out)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(3)
    return torch.randn(7, 5, generator=g, dtype=torch.float64) * 2, torch.tensor([0, 1, 2, 3, 4, 0, 2])


def test_cross_entropy_pulls_each_sample_by_one_minus_p_y(logits):
    z, y = logits
    p = z.softmax(dim=1)
    G = lv.logit_weights(lambda a, b: F.cross_entropy(a, b, reduction="none"), z, y)
    expected = p.clone()
    expected[torch.arange(7), y] -= 1  # dCE/dz = softmax - e_y
    assert torch.allclose(G, expected, atol=1e-12)
    w = lv.sample_weights(lambda a, b: F.cross_entropy(a, b, reduction="none"), z, y)
    assert torch.allclose(w, 1 - p[torch.arange(7), y], atol=1e-12)
    mean = lv.logit_weights(F.cross_entropy, z, y)  # a scalar mean: the weights carry its 1/B
    assert torch.allclose(mean * 7, expected, atol=1e-12)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.7, 2.0])
def test_a_comp_sum_loss_is_cross_entropy_weighted_by_p_y_to_the_tau_minus_one(logits, tau):
    z, y = logits
    p_y = z.softmax(dim=1)[torch.arange(7), y]
    w = lv.sample_weights(_comp_sum, z, y, relative_to_ce=True, tau=tau)
    assert torch.allclose(w, p_y ** (tau - 1), rtol=1e-10)
    pull = lv.sample_weights(_comp_sum, z, y, tau=tau)
    assert torch.allclose(pull, p_y ** (tau - 1) * (1 - p_y), rtol=1e-10)  # MAE at tau = 2: p_y (1 - p_y)


def test_sample_weights_errors_say_what_is_wrong(logits):
    z, y = logits
    ce = lambda a, b: F.cross_entropy(a, b, reduction="none")  # noqa: E731
    with pytest.raises(ValueError, match="integer class ids"):
        lv.sample_weights(ce, z, y.float())
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\]"):
        lv.sample_weights(ce, z, torch.tensor([0, 1, 2, 3, 4, 5, 0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        lv.sample_weights(ce, torch.full((7, 5), float("nan")), y)
    with pytest.raises(ValueError, match="2 dimensions"):
        lv.sample_weights(ce, z[0], y[:1])
    with pytest.raises(ValueError, match="one loss per sample"):
        lv.logit_weights(lambda a, b: a, z, y)


def test_a_sample_cross_entropy_no_longer_moves_gets_weight_zero_not_nan():
    z = torch.tensor([[1000.0, -1000.0], [100.0, -100.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0])  # p_y = 1 to the last bit, 1 - 1e-87, 1/2
    w = lv.sample_weights(lambda a, b: F.cross_entropy(a, b, reduction="none"), z, y, relative_to_ce=True)
    assert torch.isfinite(w).all() and w[0] == 0 and w[1:].tolist() == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("name", ["ms", "contrastive", "triplet", "binomial", "lifted"])
@pytest.mark.parametrize("vary", ["neg", "pos"])
def test_weight_curve_in_one_call_equals_one_batch_per_grid_value(name, vary):
    """The fast path (one row per grid value, ``anchors=``) against the loop of one-anchor batches
    that a loss without ``anchors=`` (here a wrapper) takes."""
    fn = lv.PAIR_LOSSES[name] if hasattr(lv, "PAIR_LOSSES") else __import__("lossviz.pairs").pairs.PAIR_LOSSES[name]
    grid = torch.linspace(-1, 1, 41, dtype=torch.float64)
    pos, neg = [0.55, 0.7] if vary == "pos" else [0.55, 0.7, 0.8], [0.1, 0.3, 0.45]
    fast = lv.weights.weight_curve(fn, grid, pos, neg, vary=vary)
    slow = lv.weights.weight_curve(lambda S, y: fn(S, y), grid, pos, neg, vary=vary)
    assert torch.allclose(fast, slow, atol=1e-12)
