"""Hyp-OC's Poincaré-ball maths, losses, sampler, miniature data, AUC, training loop and panels.

References are slow loops written from the formulas (Ganea et al. 2018; Narayan & Patel 2024 and
their official code), known identities of the ball, and float64 ``gradcheck``."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossviz.papers import hyp_oc as H
from lossviz import metrics
from lossviz import train as T

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def in_ball(n, d, c, *, seed=0, max_frac=0.9):
    """``n`` random points of the ball of curvature ``c``, radii up to ``max_frac / sqrt(c)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D64)
    r = torch.rand(n, 1, generator=g, dtype=D64) * max_frac / math.sqrt(c)
    return F.normalize(x, dim=1) * r


# ---------------------------------------------------------------- slow references, from the formulas

def dot(x, y):
    return sum(a * b for a, b in zip(x, y))


def mobius_ref(x, y, c):
    x, y = x.tolist(), y.tolist()
    xy, x2, y2 = dot(x, y), dot(x, x), dot(y, y)
    num = [(1 + 2 * c * xy + c * y2) * a + (1 - c * x2) * b for a, b in zip(x, y)]
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return [v / den for v in num]


def norm(v):
    return math.sqrt(dot(v, v))


def mlr_ref(z, a, p, c):
    """Ganea et al. (2018), eq. 25, one sample and one class at a time."""
    out = []
    for zi in z:
        row = []
        for ak, pk in zip(a, p):
            w = mobius_ref(-pk, zi, c)
            an = norm(ak.tolist())
            lam = 2 / (1 - c * dot(pk.tolist(), pk.tolist()))
            arg = 2 * math.sqrt(c) * dot(w, ak.tolist()) / ((1 - c * dot(w, w)) * an)
            row.append(lam * an / math.sqrt(c) * math.asinh(arg))
        out.append(row)
    return torch.tensor(out, dtype=D64)


def hyp_pc_ref(z, c, form="arctan"):
    """The official TPC_loss_hyp loop: pair row i of the first half with row i of the second half."""
    B = len(z)
    f = math.atan if form == "arctan" else math.atanh
    total = 0.0
    for left, right in zip(z[: B // 2], z[B // 2:]):
        u = norm(mobius_ref(-left, right, c))
        total += 2 / math.sqrt(c) * f(math.sqrt(c) * u)
    return total / B


# ---------------------------------------------------------------- the ball

@pytest.mark.parametrize("c", [0.1, 1.0, 0.37])
def test_mobius_add_matches_the_formula_loop(c):
    x, y = in_ball(12, 5, c, seed=1), in_ball(12, 5, c, seed=2)
    fast = H.mobius_add(x, y, c)
    slow = torch.tensor([mobius_ref(a, b, c) for a, b in zip(x, y)], dtype=D64)
    assert torch.allclose(fast, slow, atol=1e-12)


def test_mobius_add_identities_and_euclidean_limit():
    c = 0.3
    x, y = in_ball(8, 4, c, seed=3), in_ball(8, 4, c, seed=4)
    assert torch.allclose(H.mobius_add(torch.zeros_like(y), y, c), y, atol=1e-14)
    assert torch.allclose(H.mobius_add(-x, x, c), torch.zeros_like(x), atol=1e-14)
    assert (H.mobius_add(x, y, c).norm(dim=1) < 1 / math.sqrt(c)).all()
    assert torch.allclose(H.mobius_add(x, y, 1e-10), x + y, atol=1e-8)
    # the official +1e-5 in the denominator shrinks sums of points at the projection margin
    edge = (1 - 1e-3) / math.sqrt(c)
    a = torch.tensor([[edge, 0.0]], dtype=D64)
    b = edge * torch.tensor([[math.cos(0.003), math.sin(0.003)]], dtype=D64)
    exact, official = H.mobius_add(-a, b, c), H.mobius_add(-a, b, c, eps=1e-5)
    assert float(official.norm()) < 0.7 * float(exact.norm())
    far = H.mobius_add(-a, -b, c, eps=1e-5)  # far apart the official eps changes nothing visible
    assert torch.allclose(far, H.mobius_add(-a, -b, c), rtol=1e-4)


def test_expmap0_distance_from_origin_and_bounds():
    c = 0.1
    u = torch.randn(20, 6, generator=torch.Generator().manual_seed(0), dtype=D64) * 2
    z = H.expmap0(u, c)
    assert (z.norm(dim=1) < 1 / math.sqrt(c)).all()
    assert torch.allclose(H.dist(torch.zeros_like(z), z, c), 2 * u.norm(dim=1), atol=1e-9)
    ref = torch.stack([math.tanh(math.sqrt(c) * float(v.norm())) * v / (math.sqrt(c) * float(v.norm())) for v in u])
    assert torch.allclose(z, ref, atol=1e-13)
    assert torch.equal(H.expmap0(torch.zeros(1, 3, dtype=D64), c), torch.zeros(1, 3, dtype=D64))
    assert torch.allclose(H.expmap0(u, 1e-10), u, atol=1e-8)


def test_expmap_at_a_base_point():
    c = 0.5
    x, u = in_ball(10, 3, c, seed=5, max_frac=0.7), torch.randn(10, 3, generator=torch.Generator().manual_seed(6), dtype=D64) * 0.4
    z = H.expmap(x, u, c)
    lam = 2 / (1 - c * (x * x).sum(1))
    assert torch.allclose(H.dist(x, z, c), lam * u.norm(dim=1), atol=1e-8)
    assert torch.allclose(H.expmap(torch.zeros_like(u), u, c), H.expmap0(u, c), atol=1e-14)


@pytest.mark.parametrize("c", [0.1, 1.0])
def test_distance_identities(c):
    x, y = in_ball(10, 4, c, seed=7), in_ball(10, 4, c, seed=8)
    d0 = H.dist(torch.zeros_like(x), x, c)
    assert torch.allclose(d0, 2 / math.sqrt(c) * torch.atanh(math.sqrt(c) * x.norm(dim=1)), atol=1e-12)
    assert torch.allclose(H.dist(x, y, c), H.dist(y, x, c), atol=1e-10)
    assert torch.allclose(H.dist(x, x, c), torch.zeros(10, dtype=D64), atol=1e-7)
    w = in_ball(10, 4, c, seed=9)
    assert (H.dist(x, y, c) <= H.dist(x, w, c) + H.dist(w, y, c) + 1e-10).all()
    assert torch.allclose(H.dist(x * 1e-3, y * 1e-3, 1e-10), 2 * (x - y).norm(dim=1) * 1e-3, rtol=1e-6)


def test_gradients_by_gradcheck():
    c = 0.4
    x = in_ball(4, 3, c, seed=10, max_frac=0.8).requires_grad_(True)
    y = in_ball(4, 3, c, seed=11, max_frac=0.8).requires_grad_(True)
    u = torch.randn(4, 3, generator=torch.Generator().manual_seed(12), dtype=D64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: H.mobius_add(a, b, c), (x, y))
    assert torch.autograd.gradcheck(lambda v: H.expmap0(v, c), (u,))
    assert torch.autograd.gradcheck(lambda a, v: H.expmap(a, v * 0.3, c), (x, u))
    assert torch.autograd.gradcheck(lambda a, b: H.dist(a, b, c), (x, y))
    assert torch.autograd.gradcheck(lambda v: H.clip_features(v * 2, 1.5), (u,))
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(13), dtype=D64).requires_grad_(True)
    p = in_ball(3, 3, c, seed=14, max_frac=0.6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z, aa, pp: H.mlr_logits(z, aa, pp, c), (x, a, p))
    z = in_ball(6, 3, c, seed=15, max_frac=0.8).requires_grad_(True)
    for form in H.PC_FORMS:
        assert torch.autograd.gradcheck(lambda zz: H.hyp_pc_loss(zz, c, form), (z,))


def test_project_and_clip_features():
    c = 0.1
    R = 1 / math.sqrt(c)
    z = torch.tensor([[0.5 * R, 0.0], [0.0, 0.99999 * R], [2 * R, 2 * R]], dtype=D64)
    out = H.project(z, c)
    assert torch.equal(out[0], z[0])
    assert torch.allclose(out[1:].norm(dim=1), torch.full((2,), (1 - 1e-3) * R, dtype=D64))
    u = torch.tensor([[0.3, 0.4], [30.0, 40.0]], dtype=D64)
    clipped = H.clip_features(u, 2.0)
    assert torch.allclose(clipped[0], u[0] * min(1, 2 / (0.5 + 1e-5)))
    assert torch.allclose(clipped[1].norm(), torch.tensor(2 * 50 / (50 + 1e-5), dtype=D64))


def test_clip_bound_is_exact_and_reached():
    c, r = 0.1, 2.0
    bound = H.clip_bound(c, r)
    assert bound == pytest.approx(math.tanh(math.sqrt(c) * r) / math.sqrt(c)) and bound == pytest.approx(1.7700, abs=1e-4)
    u = torch.randn(200, 8, generator=torch.Generator().manual_seed(0), dtype=D64) * torch.logspace(-1, 3, 200, dtype=D64)[:, None]
    z = H.expmap0(H.clip_features(u, r), c)
    assert float(z.norm(dim=1).max()) <= bound
    assert float(z.norm(dim=1).max()) > bound * (1 - 1e-5)


def test_to_poincare_keeps_the_bound_around_a_learnt_base_point():
    c, r = 0.1, 2.0
    layer = H.ToPoincare(c, 4, clip_r=r).double()
    with torch.no_grad():
        layer.xp.copy_(torch.tensor([0.8, -0.3, 0.2, 0.1]))
    u = torch.randn(100, 4, generator=torch.Generator().manual_seed(1), dtype=D64) * 10
    with torch.no_grad():
        z, xp = layer(u), layer.base()
    lam = 2 / (1 - c * float((xp ** 2).sum()))
    assert float(H.dist(xp.expand_as(z), z, c).max()) <= lam * r + 1e-9
    assert float(z.norm(dim=1).max()) > H.clip_bound(c, r)  # the bound around 0 no longer holds
    zero = H.ToPoincare(c, 4, clip_r=r, base_point=False).double()
    assert float(zero(u).norm(dim=1).max()) <= H.clip_bound(c, r)


def test_riemannian_gradient_rescales_and_keeps_its_own_curvature():
    z = in_ball(5, 3, 1.0, seed=2, max_frac=0.9).requires_grad_(True)
    (g1,) = torch.autograd.grad(H.riemannian_grad(z, 1.0).sum(), z)
    assert torch.allclose(g1, ((1 - (z * z).sum(1, keepdim=True)) ** 2 / 4).expand_as(z).detach())
    # two balls of different curvature in one graph: each rescales with its own c
    (g2,) = torch.autograd.grad(H.riemannian_grad(z, 1.0).sum() + H.riemannian_grad(z, 0.1).sum(), z)
    expected = (1 - (z * z).sum(1, keepdim=True)) ** 2 / 4 + (1 - 0.1 * (z * z).sum(1, keepdim=True)) ** 2 / 4
    assert torch.allclose(g2, expected.expand_as(z).detach())


# ---------------------------------------------------------------- MLR and losses

@pytest.mark.parametrize("c", [0.1, 1.0])
def test_mlr_logits_match_ganeas_formula(c):
    z, p = in_ball(7, 4, c, seed=20), in_ball(3, 4, c, seed=21, max_frac=0.6)
    a = torch.randn(3, 4, generator=torch.Generator().manual_seed(22), dtype=D64)
    assert torch.allclose(H.mlr_logits(z, a, p, c), mlr_ref(z, a, p, c), atol=1e-10)
    assert torch.equal(H.gyroplane_logits(z, a, p, c), H.mlr_logits(z, a, p, c))     # the printed formula


def test_mlr_euclidean_limit_and_gyroplane_sign():
    z, p = torch.randn(6, 3, dtype=D64) * 0.5, torch.randn(2, 3, dtype=D64) * 0.3
    a = torch.randn(2, 3, dtype=D64)
    c = 1e-9
    assert torch.allclose(H.mlr_logits(z, a, p, c), 4 * ((z[:, None] - p[None]) * a[None]).sum(-1), rtol=1e-6, atol=1e-8)
    c = 0.5
    zb, pb = in_ball(50, 3, c, seed=23), in_ball(2, 3, c, seed=24, max_frac=0.5)
    side = (H.mobius_add(-pb[None], zb[:, None], c) * a[None]).sum(-1)
    assert torch.equal(torch.sign(H.mlr_logits(zb, a, pb, c)), torch.sign(side))


def test_hyperbolic_mlr_module_and_hyp_ce():
    torch.manual_seed(0)
    c = 0.1
    layer = H.HyperbolicMLR(4, 2, c).double()
    z = in_ball(10, 4, c, seed=25)
    a, p = layer.gyroplanes()
    p_expected = H.expmap0(layer.p_vals, c)
    assert torch.allclose(p, p_expected) and torch.allclose(a, layer.a_vals * (1 - c * (p_expected ** 2).sum(1, keepdim=True)))
    assert torch.allclose(layer(z), H.mlr_logits(z, a, p, c))
    y = torch.tensor([0, 1] * 5)
    assert torch.allclose(H.hyp_ce_loss(z, y, a, p, c), F.cross_entropy(layer(z), y))
    W = H.logit_weights(layer(z), y)
    assert torch.allclose(W, (torch.softmax(layer(z), 1) - F.one_hot(y, 2)).detach() / 10)


@pytest.mark.parametrize("c,form", [(0.1, "arctan"), (1.0, "arctan"), (0.1, "artanh"), (0.5, "artanh")])
def test_hyp_pc_matches_the_official_loop(c, form):
    z = in_ball(8, 5, c, seed=30)
    assert float(H.hyp_pc_loss(z, c, form)) == pytest.approx(hyp_pc_ref(z, c, form), abs=1e-12)


def test_hyp_pc_artanh_is_the_geodesic_distance_and_both_tend_to_euclidean():
    c = 0.2
    z = in_ball(6, 3, c, seed=31)
    assert torch.allclose(H.hyp_pc_loss(z, c, "artanh"), H.dist(z[:3], z[3:], c).sum() / 6)
    small = z * 1e-4
    for form in H.PC_FORMS:
        assert float(H.hyp_pc_loss(small, 1e-9, form)) == pytest.approx(2 * float(H.euclidean_pc_loss(small)), rel=1e-6)
    assert float(H.hyp_pc_loss(z, c, "arctan")) < float(H.hyp_pc_loss(z, c, "artanh"))


def test_pair_term_weights_closed_forms_and_bounds():
    c, B = 0.1, 8
    R = 1 / math.sqrt(c)
    u = torch.linspace(0, 0.999, 50, dtype=D64) * R
    assert torch.allclose(H.pair_term_weights(u, c, "arctan", batch=B), (2 / B) / (1 + c * u ** 2), atol=1e-12)
    assert torch.allclose(H.pair_term_weights(u, c, "artanh", batch=B), (2 / B) / (1 - c * u ** 2), rtol=1e-9)
    w_atan = H.pair_term_weights(u, c, "arctan", batch=2) * 2
    assert float(w_atan.max()) <= 2 and float(H.pair_term_weights(u[-1:], c, "artanh", batch=2) * 2) > 100
    assert float(H.pair_term(torch.tensor([1e6 * R]), c, "arctan")) < math.pi / math.sqrt(c)


# ---------------------------------------------------------------- bad input

def test_bad_inputs_raise_clear_errors():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="c \\(the curvature"):
        H.mobius_add(x, x, 0.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        H.expmap0(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="same last dimension"):
        H.mobius_add(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="inside the Poincaré ball"):
        H.dist(torch.tensor([[4.0, 0.0]]), torch.zeros(1, 2), 0.1)
    with pytest.raises(ValueError, match="even batch"):
        H.hyp_pc_loss(torch.zeros(5, 2), 0.1)
    with pytest.raises(ValueError, match="unknown form 'arccos'"):
        H.hyp_pc_loss(torch.zeros(4, 2), 0.1, form="arccos")
    with pytest.raises(ValueError, match="integer class ids"):
        H.hyp_ce_loss(torch.zeros(2, 2), torch.tensor([0.0, 1.0]), torch.ones(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="class ids in \\[0, 2\\)"):
        H.hyp_ce_loss(torch.zeros(2, 2), torch.tensor([0, 3]), torch.ones(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="must agree"):
        H.mlr_logits(torch.zeros(2, 2), torch.ones(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="r \\(the clip radius\\)"):
        H.clip_features(x, -1)
    with pytest.raises(ValueError, match="alpha"):
        H.PseudoNegatives(alpha=1.0)
    with pytest.raises(ValueError, match="sigma"):
        H.PseudoNegatives(sigma=0)
    with pytest.raises(ValueError, match="unknown kind 'deepfake'"):
        H.attack(torch.zeros(1, 64), "deepfake")
    with pytest.raises(ValueError, match="8x8"):
        H.attack(torch.zeros(1, 10), "print")
    with pytest.raises(ValueError, match="at least one score"):
        metrics.roc_auc([], [1.0])
    with pytest.raises(ValueError, match="batch must be even"):
        H.train_one_class(batch=31)
    with pytest.raises(ValueError, match="geometry"):
        H.train_one_class("spherical")


# ---------------------------------------------------------------- pseudo-negatives and data

def test_pseudo_negatives_reproduce_the_official_running_mean_quirk():
    f1, f2, f3 = (torch.full((4, 3), v) for v in (1.0, 2.0, 4.0))
    s = H.PseudoNegatives(alpha=0.8, sigma=0.5)
    g = torch.Generator().manual_seed(0)
    s(f1, g)
    assert torch.allclose(s.mean, 0.2 * torch.ones(3))          # mu_old = 0 at the start of an epoch
    s(f2, g)
    assert torch.allclose(s.mean, 0.8 * 1.0 + 0.2 * 2.0 * torch.ones(3))  # mu_old = previous *batch* mean
    s(f3, g)
    assert torch.allclose(s.mean, (0.8 * 2.0 + 0.2 * 4.0) * torch.ones(3))
    s.reset()
    s(f3, g)
    assert torch.allclose(s.mean, 0.2 * 4.0 * torch.ones(3))
    e = H.PseudoNegatives(alpha=0.8, running="ema")
    e(f1, g)
    e(f2, g)
    assert torch.allclose(e.mean, (0.8 * 1.0 + 0.2 * 2.0) * torch.ones(3))
    e(f3, g)
    assert torch.allclose(e.mean, (0.8 * 1.2 + 0.2 * 4.0) * torch.ones(3))


def test_pseudo_negative_sigma_is_a_standard_deviation_and_seeded():
    f = torch.zeros(20000, 2)
    s = H.PseudoNegatives(alpha=0.0, sigma=0.3)
    x = s(f, torch.Generator().manual_seed(0))
    assert x.shape == f.shape and not x.requires_grad
    assert float(x.std()) == pytest.approx(0.3, rel=0.02)
    again = H.PseudoNegatives(alpha=0.0, sigma=0.3)(f, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


def test_attacks_are_deterministic_image_transformations():
    flat = torch.full((2, 64), 0.5)
    assert torch.allclose(H.attack(flat, "print"), torch.full((2, 64), 0.5))  # blur of a constant, 0.5*0.6+0.2
    img = torch.zeros(1, 64)
    img[0, 27] = 1.0
    printed = H.attack(img, "print").reshape(8, 8)
    assert printed[3, 3] == pytest.approx(1 / 9 * 0.6 + 0.2) and printed[0, 0] == pytest.approx(0.2)
    replay = H.attack(torch.full((1, 64), 0.5), "replay").reshape(8, 8)
    assert replay[1, 2] == pytest.approx(0.5 + 0.25 * math.sin(2.5 * 2 + 1.7 * 1))
    mask = H.attack(torch.full((1, 64), 0.04), "mask").reshape(8, 8)  # gamma 0.5: 0.04 -> 0.2
    assert torch.allclose(mask[:5], torch.full((5, 8), 0.2)) and torch.allclose(mask[5:], torch.full((3, 8), 0.5))
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(0))
    for kind in H.ATTACKS:
        out = H.attack(x, kind)
        assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
        assert torch.equal(out, H.attack(x, kind)) and not torch.equal(out, x)


def test_spoof_data_shapes_and_frozen_backbone():
    d = H.spoof_data()
    assert d.train.shape == (1200, 64) and d.test_live.shape == (597, 64)
    assert set(d.test_attacks) == set(H.ATTACKS) and all(v.shape == (597, 64) for v in d.test_attacks.values())
    assert not d.train.requires_grad and float(d.train.min()) >= 0  # ReLU features
    assert d.backbone_acc > 0.9
    assert H.spoof_data() is d  # cached


# ---------------------------------------------------------------- AUC

# ---------------------------------------------------------------- training and pictures

def test_boundary_gradients_vanish_without_clipping():
    norms = [0.5, 4.0, 32.0]
    clipped, free = (H.boundary_gradients(norms, clip_r=r) for r in (2.0, None))
    assert clipped["grad_u"][0] == pytest.approx(free["grad_u"][0])  # below r, clipping does nothing
    assert free["radius"][-1] == pytest.approx(1 - 1e-3) and clipped["radius"][-1] < 0.6
    assert free["grad_u"][-1] < 1e-3 * clipped["grad_u"][-1]       # vanishing at the network
    assert free["grad_z"][-1] > 100 * free["grad_z"][0]             # blowing up at the ball point


def test_train_one_class_records_caches_and_is_deterministic():
    T.clear_cache()
    short = dict(iters=40, eval_every=20, progress=False)
    run = H.train_one_class(**short)
    h = run.history
    assert h["iter"].tolist() == list(range(1, 41)) and run.evals["iter"].tolist() == [0, 20, 40]
    for key in ("loss", "ce", "pc", "grad_norm", "radius", "u_norm"):
        assert np.isfinite(h[key]).all() and h[key].shape == (40,)
    assert np.allclose(h["loss"], h["ce"] + 0.1 * h["pc"], atol=1e-5)
    assert (h["radius"] <= H.clip_bound(0.1, 2.0) * math.sqrt(0.1) + 0.2).all()
    assert set(run.auc) == set(H.ATTACKS) and all(0 <= v <= 1 for v in run.auc.values())
    assert run.scores == {f"auc_{a}": run.evals[f"auc_{a}"][-1] for a in H.ATTACKS}
    assert run.p_spoof["live"].shape == (597,) and run.embeddings["train_real"].shape == (32, 16)
    assert H.train_one_class(**short) is run
    again = H.train_one_class(**short, cache=False)
    assert np.array_equal(again.history["loss"], h["loss"]) and again.auc == run.auc
    eu = H.train_one_class("euclidean", dim=2, **short)
    assert eu.embeddings["live"].shape == (597, 2) and np.isfinite(eu.history["loss"]).all()
    rep = H.clip_report(run)
    assert rep["max_norm"] <= rep["bound"] and rep["max_dist"] <= rep["dist_bound"] + 1e-6
    with pytest.raises(ValueError, match="hyperbolic run"):
        H.clip_report(eu)


def test_running_mean_drift_jumps_at_each_epoch_with_the_official_rule():
    f = H.spoof_data().train
    official = H.running_mean_drift(f, epochs=2)
    ema = H.running_mean_drift(f, epochs=2, running="ema")
    per_epoch = len(f) // 32
    assert len(official) == 2 * per_epoch
    assert official[0] > 5 * np.median(official) and official[per_epoch] > 5 * np.median(official)
    assert ema.max() < official.max() / 3


def drawn(fig) -> list:
    """The artists in a panel's axes: a pure-maths panel moves these on a change, never replaces them."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]


def test_geometry_panel_redraws_on_every_knob():
    panel = H.geometry_panel()
    artists = drawn(panel.fig)
    s0 = panel.state
    assert s0["bound"] == pytest.approx(H.clip_bound(0.1, 2.0))
    assert float(s0["z_real"].norm(dim=1).max()) <= s0["bound"] + 1e-12
    panel.controls["c"].value = 1.0
    assert panel.state["R"] == pytest.approx(1.0) and panel.state["bound"] == pytest.approx(math.tanh(2.0))
    before = panel.state["z_pseudo"].clone()
    panel.controls["sigma"].value = 0.2
    assert not torch.equal(before, panel.state["z_pseudo"]) and panel.state["clipped"] < 1
    panel.controls["clip_r"].value = 0.5
    assert panel.state["u_max"] == pytest.approx(math.tanh(2 * 1.0 * 0.5))
    assert float(panel.state["z_real"].norm(dim=1).max()) <= math.tanh(0.5) + 1e-12
    assert len(panel.fig.axes[1].collections) >= 2  # the points were redrawn in the ball
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt


def test_training_panel_trains_on_press_and_flags_stale_settings():
    T.clear_cache()
    panel = H.training_panel(iters=20)
    first = panel.state["result"]
    assert first.params["geometry"] == "hyperbolic" and first.params["dim"] == 2 and not panel.state["stale"]
    panel.controls["geometry"].value = "euclidean"
    assert panel.state["stale"] and panel.state["result"] is first
    second = panel.train()
    assert second.params["geometry"] == "euclidean" and panel.state["result"] is second
    panel.controls["clip_r"].value = 0.0
    panel.controls["geometry"].value = "hyperbolic"
    assert panel.train().params["clip_r"] is None


def test_the_ball_maths_equals_geoopt():
    """Möbius addition, the exponential maps, the distance, the Riemannian gradient and the MLR
    logits against geoopt's PoincareBall (in the test extras; its maps without their projection onto
    the ball, which lossviz does separately, :func:`project`)."""
    import geoopt

    g = torch.Generator().manual_seed(0)
    for c in (0.1, 1.0, 2.5):
        ball = geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))     # float64: its default is float32
        r = 1 / math.sqrt(c)
        x = H.expmap0(torch.randn(20, 5, generator=g, dtype=torch.float64) * 0.4 / math.sqrt(c), c)
        y = H.expmap0(torch.randn(20, 5, generator=g, dtype=torch.float64) * 0.4 / math.sqrt(c), c)  # off the rim:
        # dist's artanh clamp (the official code's) stays out of play
        u = torch.randn(20, 5, generator=g, dtype=torch.float64) * 0.3
        assert float(x.norm(dim=1).max()) < r and float(y.norm(dim=1).max()) < r
        torch.testing.assert_close(H.mobius_add(x, y, c), ball.mobius_add(x, y, project=False), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(H.expmap0(u, c), ball.expmap0(u, project=False), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(H.expmap(x, u, c), ball.expmap(x, u, project=False), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(H.dist(x, y, c), ball.dist(x, y), rtol=1e-8, atol=1e-10)
        leaf = x.clone().requires_grad_(True)
        (H.riemannian_grad(leaf, c) * u).sum().backward()
        torch.testing.assert_close(leaf.grad, ball.egrad2rgrad(x, u), rtol=1e-10, atol=1e-12)
        a, p = torch.randn(3, 5, generator=g, dtype=torch.float64), y[:3]
        want = torch.stack([ball.lambda_x(p[k]) * a[k].norm() * ball.dist2plane(x, p[k], a[k], signed=True)
                            for k in range(3)], dim=1)
        torch.testing.assert_close(H.mlr_logits(x, a, p, c), want, rtol=1e-9, atol=1e-10)
