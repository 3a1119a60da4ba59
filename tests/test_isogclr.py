"""lossviz.papers.isogclr: the robust objective and its temperature gradient against loops written from the
paper's formula (float64, values and gradients), the per-sample update against the official
algorithm written out as a loop, the long-tailed data, short runs, the panels, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz import augment, data
from lossviz.papers import isogclr as I
from _util import drawn_artists, same_artists


pytestmark = pytest.mark.usefixtures("one_thread")       # tests/conftest.py: one thread, an empty run cache


def random_batch(seed: int, B: int = 6, dim: int = 5, two_view: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * B if two_view else 3 * B, dim, generator=g, dtype=torch.float64)
    labels = augment.two_view_labels(B) if two_view else torch.randint(0, 4, (3 * B,), generator=g)
    return lv.similarity(x), labels, g


# ------------------------------------------------------------------------------------------------
# Loop references, written from the paper's formula
# ------------------------------------------------------------------------------------------------

def robust_loss_loop(S, labels, tau, rho):
    """(1/n) sum_i F_i, F_i = tau_i log (1/|N_i|) sum_{j in N_i} exp((s_ij - s_i+) / tau_i) + tau_i rho,
    over the anchors with a positive and a negative (s_i+ = the mean positive similarity)."""
    n = S.shape[0]
    terms = []
    for i in range(n):
        P = [j for j in range(n) if j != i and labels[j] == labels[i]]
        N = [j for j in range(n) if labels[j] != labels[i]]
        if not P or not N:
            continue
        s_pos = sum(S[i, p] for p in P) / len(P)
        mean_exp = sum(torch.exp((S[i, j] - s_pos) / tau[i]) for j in N) / len(N)
        terms.append(tau[i] * torch.log(mean_exp) + tau[i] * rho)
    return sum(terms) / len(terms)


def kl_loop(S, labels, tau):
    out = []
    for i in range(S.shape[0]):
        N = [j for j in range(S.shape[0]) if labels[j] != labels[i]]
        e = [math.exp(float(S[i, j]) / float(tau[i])) for j in N]
        p = [v / sum(e) for v in e]
        out.append(sum(q * math.log(q * len(N)) for q in p if q > 0))
    return torch.tensor(out, dtype=torch.float64)


class OfficialLoop:
    """The official SogCLR_DRO_Loss update, one item at a time (first visit of an item: batch value)."""

    def __init__(self, n, rho, gamma, tau_init, beta_u, eta, tau_min, tau_max, clip=3.0):
        self.s, self.u, self.tau = [0.0] * n, [0.0] * n, [tau_init] * n
        self.seen = [False] * n
        self.k = dict(rho=rho, gamma=gamma, beta_u=beta_u, eta=eta, tau_min=tau_min, tau_max=tau_max, clip=clip)

    def step(self, S, idx):
        k, B = self.k, len(idx)
        loss, grads, new_s = 0.0, [], []
        Sd = S.detach()
        for a in range(2 * B):
            item = idx[a % B]
            tau = self.tau[item]
            negs = [j for j in range(2 * B) if j % B != a % B]
            g = sum(math.exp(float(Sd[a, j]) / tau) for j in negs) / len(negs)
            s = g if not self.seen[item] else (1 - k["gamma"]) * self.s[item] + k["gamma"] * g
            new_s.append(s)
            w = {j: math.exp(float(Sd[a, j]) / tau) / s for j in negs}
            loss = loss + sum(w[j] * S[a, j] for j in negs) / len(negs) - S[a, (a + B) % (2 * B)]
            grads.append(math.log(s) + k["rho"] - sum(w[j] * float(Sd[a, j]) / tau for j in negs) / len(negs))
        for b, item in enumerate(idx):
            self.s[item] = (new_s[b] + new_s[b + B]) / 2
            gt = min(max((grads[b] + grads[b + B]) / 2, -k["clip"]), k["clip"])
            self.u[item] = (1 - k["beta_u"]) * self.u[item] + k["beta_u"] * gt
            self.tau[item] = min(max(self.tau[item] - k["eta"] * self.u[item], k["tau_min"]), k["tau_max"])
            self.seen[item] = True
        return loss / (2 * B)


# ------------------------------------------------------------------------------------------------
# The objective, its weights, its temperature gradient, tau*
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rho", [0.0, 0.4, 2.0])
def test_robust_loss_value_and_gradients_match_the_loop(seed, rho):
    S, labels, g = random_batch(seed, two_view=seed % 2 == 0)
    tau = 0.05 + torch.rand(len(labels), generator=g, dtype=torch.float64)
    S1, t1 = S.clone().requires_grad_(True), tau.clone().requires_grad_(True)
    S2, t2 = S.clone().requires_grad_(True), tau.clone().requires_grad_(True)
    fast = I.robust_loss(S1, labels, tau=t1, rho=rho)
    slow = robust_loss_loop(S2, labels, t2, rho)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    gS1, gt1 = torch.autograd.grad(fast, (S1, t1))
    gS2, gt2 = torch.autograd.grad(slow, (S2, t2))
    torch.testing.assert_close(gS1, gS2, rtol=0, atol=1e-12)
    torch.testing.assert_close(gt1, gt2, rtol=0, atol=1e-12)


def test_scalar_tau_is_one_tau_for_every_anchor_and_none_reduction():
    S, labels, _ = random_batch(7)
    F = I.robust_loss(S, labels, tau=0.3, rho=0.5, reduction="none")
    torch.testing.assert_close(F, I.robust_loss(S, labels, tau=torch.full((12,), 0.3, dtype=torch.float64),
                                                rho=0.5, reduction="none"))
    torch.testing.assert_close(F.mean(), I.robust_loss(S, labels, tau=0.3, rho=0.5))


@pytest.mark.parametrize("seed", range(3))
def test_tau_gradient_is_rho_minus_kl(seed):
    S, labels, g = random_batch(seed)
    tau = (0.05 + torch.rand(12, generator=g, dtype=torch.float64)).requires_grad_(True)
    F = I.robust_loss(S, labels, tau=tau, rho=0.7, reduction="none")
    (grad,) = torch.autograd.grad(F.sum(), tau)
    torch.testing.assert_close(grad, I.tau_gradient(S, labels, tau=tau.detach(), rho=0.7), rtol=0, atol=1e-12)
    torch.testing.assert_close(I.kl_to_uniform(S, labels, tau=tau.detach()), kl_loop(S, labels, tau.detach()),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(I.tau_gradient_estimate(S, labels, tau=tau.detach(), rho=0.7), grad,
                               rtol=0, atol=1e-12)


def test_stale_denominator_error_in_closed_form():
    S, labels, g = random_batch(3)
    tau = 0.1 + 0.2 * torch.rand(12, generator=g, dtype=torch.float64)
    exact = I.tau_gradient(S, labels, tau=tau, rho=0.4)
    neg = lv.pair_masks(labels)[1]
    z = S / tau[:, None]
    log_g = torch.logsumexp(z.masked_fill(~neg, -math.inf), 1) - math.log(10)
    Ez = (I.dro_weights(S, labels, tau=tau) * z).sum(1)
    for c in (0.5, 0.9, 1.1, 3.0):
        est = I.tau_gradient_estimate(S, labels, tau=tau, rho=0.4, log_s=log_g + math.log(c))
        torch.testing.assert_close(est, exact + math.log(c) + Ez * (1 - 1 / c), rtol=0, atol=1e-12)


def test_dro_weights_are_the_pair_weights_of_the_robust_loss():
    """GPW: the robust loss pushes each negative with p_ij (a softmax at tau_i, rows sum to 1) and
    pulls each positive with weight exactly 1, whatever its similarity."""
    S, labels, g = random_batch(1)
    tau = 0.05 + torch.rand(12, generator=g, dtype=torch.float64)
    W = lv.pair_weights(I.robust_loss, S, labels, signed=True, tau=tau, rho=0.4) * 12
    pos, neg = lv.pair_masks(labels)
    p = I.dro_weights(S, labels, tau=tau)
    torch.testing.assert_close(W[neg], p[neg], rtol=0, atol=1e-12)
    torch.testing.assert_close(W[pos], -torch.ones(12, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(p.sum(1), torch.ones(12, dtype=torch.float64))
    r = torch.stack([lv.contrastive.relative_penalty(S, labels, tau=float(t))[i] for i, t in enumerate(tau)])
    torch.testing.assert_close(p, r)


def test_tau_star_solves_kl_equals_rho_minimises_F_and_is_pinned_out_of_reach():
    S, labels, _ = random_batch(4, B=16, dim=8)
    star = I.tau_star(S, labels, rho=0.4, tau_min=1e-3, tau_max=10.0)
    torch.testing.assert_close(I.kl_to_uniform(S, labels, tau=star), torch.full_like(star, 0.4), rtol=0, atol=1e-6)
    grid = torch.logspace(-3, 1, 200, dtype=torch.float64)
    F = torch.stack([I.robust_loss(S, labels, tau=float(t), rho=0.4, reduction="none") for t in grid])
    at_star = I.robust_loss(S, labels, tau=star, rho=0.4, reduction="none")
    assert bool((at_star <= F.min(0).values + 1e-12).all())
    assert I.tau_star(S, labels, rho=math.log(30) + 0.1).tolist() == pytest.approx([0.05] * 32)  # KL <= log|N| < rho
    assert I.tau_star(S, labels, rho=1e-6, tau_max=1.0).tolist() == pytest.approx([1.0] * 32)
    # a larger radius needs a more peaked worst case: a smaller tau
    assert bool((I.tau_star(S, labels, rho=1.0) < I.tau_star(S, labels, rho=0.2)).all())


def test_one_anchor_helpers_match_the_batch_functions():
    S, labels, _ = random_batch(5)
    neg = lv.pair_masks(labels)[1]
    s_neg = S[2, neg[2]]
    assert I.anchor_tau_star(s_neg, rho=0.4) == pytest.approx(float(I.tau_star(S, labels, rho=0.4)[2]), abs=1e-9)
    kl = I.anchor_kl(s_neg, [0.1, 0.5])
    assert kl == pytest.approx([float(I.kl_to_uniform(S, labels, tau=t)[2]) for t in (0.1, 0.5)], abs=1e-12)


# ------------------------------------------------------------------------------------------------
# The per-sample algorithm
# ------------------------------------------------------------------------------------------------

def test_isogclr_state_update_matches_the_official_algorithm_as_a_loop():
    n, B = 10, 4
    knobs = dict(rho=0.4, gamma=0.8, tau_init=0.1, beta_u=0.5, eta=0.3, tau_min=0.05, tau_max=1.0)
    fast, slow = I.ISogCLR(n, **knobs), OfficialLoop(n, **knobs)
    g = torch.Generator().manual_seed(0)
    for step, idx in enumerate(([0, 1, 2, 3], [4, 5, 0, 1], [1, 7, 4, 9], [0, 1, 2, 3])):
        S = lv.similarity(torch.randn(2 * B, 3, generator=g, dtype=torch.float64))
        S1, S2 = S.clone().requires_grad_(True), S.clone().requires_grad_(True)
        loss_fast, loss_slow = fast(S1, torch.tensor(idx)), slow.step(S2, idx)
        torch.testing.assert_close(loss_fast, loss_slow, rtol=0, atol=1e-12)
        g1, g2 = torch.autograd.grad(loss_fast, S1)[0], torch.autograd.grad(loss_slow, S2)[0]
        torch.testing.assert_close(g1, g2, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.s.numpy(), slow.s, rtol=1e-12, atol=0)
        np.testing.assert_allclose(fast.u.numpy(), slow.u, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.tau.numpy(), slow.tau, rtol=0, atol=1e-12)
    assert fast.seen.sum() == 8 and not fast.seen[[6, 8]].any()


@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_surrogate_gradient_is_the_robust_gradient_with_the_batch_denominator(gamma):
    """First visit (any gamma) and gamma = 1 (every visit): the surrogate's gradient in S is that of
    (1/2B) sum F_i, and the temperature gradient is rho - KL (clipped, averaged over the two views)."""
    state = I.ISogCLR(8, gamma=gamma, tau_init=0.2, eta=0.0)
    g = torch.Generator().manual_seed(1)
    for visit in range(2):
        S = lv.similarity(torch.randn(8, 4, generator=g, dtype=torch.float64))
        labels = augment.two_view_labels(4)
        tau = state.tau[torch.arange(4)].repeat(2)
        leaf = S.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(state(leaf, torch.arange(4)), leaf)
        if visit == 1 and gamma < 1:
            assert not torch.allclose(grad, lv.pair_weights(I.robust_loss, S, labels, signed=True, tau=tau))
            continue
        torch.testing.assert_close(grad, lv.pair_weights(I.robust_loss, S, labels, signed=True, tau=tau, rho=0.4),
                                   rtol=0, atol=1e-12)
        exact = I.tau_gradient(S, labels, tau=tau, rho=0.4)
        torch.testing.assert_close(state.last["grad_tau"], ((exact[:4] + exact[4:]) / 2).clamp(-3, 3))
    assert (state.tau == 0.2).all()                                   # eta = 0: SogCLR, tau never moves


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device")])])
def test_state_follows_the_batch_device_and_matches_cpu(device):
    g = torch.Generator().manual_seed(2)
    batches = [(lv.similarity(torch.randn(8, 3, generator=g, dtype=torch.float64)), torch.tensor(i))
               for i in ([0, 1, 2, 3], [2, 3, 4, 5])]
    ref, dev = I.ISogCLR(6, eta=0.3), I.ISogCLR(6, eta=0.3)
    for S, idx in batches:
        torch.testing.assert_close(dev(S.to(device), idx.to(device)).cpu(), ref(S, idx))
    assert dev.tau.device.type == device
    torch.testing.assert_close(dev.tau.cpu(), ref.tau)
    torch.testing.assert_close(I.robust_loss(batches[0][0].to(device), augment.two_view_labels(4, device), tau=0.2).cpu(),
                               I.robust_loss(batches[0][0], augment.two_view_labels(4), tau=0.2))


def test_gradient_clip_and_tau_range():
    state = I.ISogCLR(4, rho=5.0, tau_init=0.1, eta=10.0, beta_u=1.0, grad_clip=0.5)
    S = lv.similarity(torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    state(S, torch.tensor([0, 1]))
    assert state.last["grad_tau"].tolist() == [0.5, 0.5]             # rho - KL > 4.5, clipped to 0.5
    assert state.tau[:2].tolist() == [0.05, 0.05]                    # 0.1 - 10 * 0.5, clipped to tau_min


def test_log_space_denominator_survives_a_tiny_temperature():
    state = I.ISogCLR(4, tau_init=0.002, tau_min=0.001, eta=0.0)
    S = lv.similarity(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
    loss = state(S, torch.tensor([2, 3]))                             # e^{1/0.002} overflows float64
    assert torch.isfinite(loss) and torch.isfinite(state.log_s[2:]).all() and torch.isfinite(state.tau).all()


def test_simulated_update_with_exact_denominators_settles_at_tau_star():
    s_neg = lv.similarity(data.load("digits").x_train[:60].double())[0, 1:]
    star = I.anchor_tau_star(s_neg, rho=0.4)
    sim = I.simulate_tau(s_neg, rho=0.4, gamma=1.0, eta=0.03, batch=len(s_neg), steps=300)
    assert sim["tau"][-1] == pytest.approx(star, rel=1e-3)
    again = I.simulate_tau(s_neg, batch=20, seed=3)
    assert np.array_equal(again["tau"], I.simulate_tau(s_neg, batch=20, seed=3)["tau"])
    assert not np.array_equal(again["tau"], I.simulate_tau(s_neg, batch=20, seed=4)["tau"])


# ------------------------------------------------------------------------------------------------
# Data, training, panels
# ------------------------------------------------------------------------------------------------

def test_long_tailed_digits_counts_determinism_and_balanced_test():
    full = data.load("digits")
    lt = I.long_tailed("digits", imbalance=10)
    full_counts, counts = I.class_counts(full.y_train), I.class_counts(lt.y_train)
    assert counts[:5].tolist() == full_counts[:5].tolist()
    assert counts[5:].tolist() == [math.ceil(c / 10) for c in full_counts[5:]]
    assert torch.equal(lt.x_test, full.x_test) and torch.equal(lt.y_test, full.y_test)
    again = I.long_tailed("digits", imbalance=10)
    assert torch.equal(again.x_train, lt.x_train)
    other = I.long_tailed("digits", imbalance=10, seed=1)
    assert np.array_equal(I.class_counts(other.y_train), counts) and not torch.equal(other.x_train, lt.x_train)
    assert len(I.long_tailed("digits", imbalance=1).y_train) == len(full.y_train)
    assert I.class_counts(I.long_tailed("digits", imbalance=20, n_head=3).y_train)[3] == math.ceil(full_counts[3] / 20)
    signals = I.long_tailed("mnist1d", imbalance=5)                   # MNIST-1D, generated offline
    full_1d = I.class_counts(data.load("mnist1d").y_train)
    assert I.class_counts(signals.y_train).tolist() == [*full_1d[:5], *(math.ceil(c / 5) for c in full_1d[5:])]


def test_short_runs_record_temperatures_and_are_cached():
    run = I.train_isogclr("isogclr", **I.PRESETS["digits"], epochs=2, eval_every=1, progress=False)
    h = run.history
    assert len(h["iter"]) == 2 * (496 // 128) and list(run.evals["iter"]) == [0, 3, 6] and len(run.evals["knn"]) == 3
    assert {"loss", "objective", "tau_head", "tau_tail", "grad_tau"} <= set(h)
    assert run.tau.shape == (496,) and ((run.tau >= 0.05) & (run.tau <= 1.0)).all()
    assert run.tau_epochs.shape == (2, 496) and run.head.sum() == 450
    assert 0 < run.scores["knn"] <= 1 and run.tau_star.shape == (496,)
    assert I.train_isogclr("isogclr", **I.PRESETS["digits"], epochs=2, eval_every=1, progress=False) is run
    simclr = I.train_isogclr("simclr", epochs=1, progress=False)
    assert simclr.tau is None and "simclr" in repr(simclr) and "loss" in simclr.history
    sog = I.train_isogclr("sogclr", epochs=1, eta=0.5, progress=False)
    assert (sog.tau == 0.1).all()


def test_dro_panel_redraws_on_rho():
    lt = I.long_tailed()
    S = lv.similarity(lt.x_train[:40].double())
    panel = I.dro_panel(S, torch.arange(40), anchors={"first": 0, "second": 5}, batch=20)
    drawn = drawn_artists(panel.fig)
    star = panel.state["tau_star"]
    assert star == pytest.approx(I.anchor_tau_star(S[0, 1:], rho=0.4), rel=1e-9)
    panel.controls["rho"].value = 1.0
    assert panel.state["tau_star"] < star                              # a larger ball: a smaller tau*
    panel.controls["anchor"].value = "second"
    assert panel.state["tau_star"] == pytest.approx(
        I.anchor_tau_star(S[5, torch.arange(40) != 5], rho=1.0), rel=1e-9)
    assert len(panel.state["trajectory"]) == 101
    panel.controls["batch"].value = 8
    panel.controls["tau_max"].value = 0.5
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_trains_on_press():
    panel = I.training_panel(autorun=False, epochs=10)
    assert "press" in panel.state["status"]
    run = panel.train()
    assert run.params["epochs"] == 10 and panel.state["result"] is run
    panel.controls["method"].value = "simclr"
    assert panel.state["stale"]
    slider = panel.controls["tau_init"]
    slider.value = 10 ** slider.min                                   # 0.0499999..., below tau_min = 0.05
    assert slider.value < 0.05
    assert panel.train().params["tau_init"] == 0.05                    # clamped, not refused


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_with_clear_messages():
    S, labels, _ = random_batch(0)
    with pytest.raises(ValueError, match="must be > 0"):
        I.robust_loss(S, labels, tau=0)
    with pytest.raises(ValueError, match="one temperature per anchor"):
        I.robust_loss(S, labels, tau=torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="finite and > 0"):
        I.robust_loss(S, labels, tau=torch.zeros(12, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating point"):
        I.robust_loss(S, labels, tau=torch.ones(12, dtype=torch.long))
    with pytest.raises(ValueError, match="rho"):
        I.robust_loss(S, labels, rho=-1)
    with pytest.raises(ValueError, match="integer class ids"):
        I.robust_loss(S, labels.double())
    with pytest.raises(ValueError, match="NaN"):
        I.robust_loss(S.clone().fill_diagonal_(math.nan), labels)
    with pytest.raises(ValueError, match="no positive pair"):
        I.robust_loss(S, torch.arange(12))
    with pytest.raises(ValueError, match="unknown reduction 'sum'"):
        I.robust_loss(S, labels, reduction="sum")
    with pytest.raises(ValueError, match="tau_min must be < tau_max"):
        I.tau_star(S, labels, tau_min=0.5, tau_max=0.1)
    with pytest.raises(ValueError, match="log_s must hold one value per row"):
        I.tau_gradient_estimate(S, labels, log_s=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="gamma"):
        I.ISogCLR(10, gamma=0)
    with pytest.raises(ValueError, match="tau_init must lie in"):
        I.ISogCLR(10, tau_init=2.0)
    with pytest.raises(ValueError, match="dataset size"):
        I.ISogCLR(1)
    state = I.ISogCLR(10)
    with pytest.raises(ValueError, match="2B x 2B"):
        state(S[:5, :5], torch.arange(2))
    with pytest.raises(ValueError, match="B = 6 items"):
        state(S, torch.arange(5))
    with pytest.raises(ValueError, match="B = 6 items"):
        state(S, torch.arange(6).double())
    with pytest.raises(ValueError, match="twice"):
        state(S, torch.tensor([0, 1, 2, 3, 4, 4]))
    with pytest.raises(ValueError, match=r"positions in \[0, 10\)"):
        state(S, torch.tensor([0, 1, 2, 3, 4, 10]))
    with pytest.raises(ValueError, match="imbalance must be >= 1"):
        I.long_tailed(imbalance=0.5)
    with pytest.raises(ValueError, match="n_head"):
        I.long_tailed(n_head=10)
    with pytest.raises(ValueError, match="unknown data set name 'cifar'"):
        I.long_tailed("cifar")
    with pytest.raises(ValueError, match="unknown method"):
        I.train_isogclr("moco")
    with pytest.raises(ValueError, match="epochs"):
        I.train_isogclr(epochs=0)
    with pytest.raises(ValueError, match="beta_u"):
        I.train_isogclr(beta_u=1.5)
    with pytest.raises(ValueError, match="batch must be an integer"):
        I.simulate_tau(torch.rand(10), batch=11)
