"""lossviz.papers.amcl: the AMCL objective against a loop written from the official code's formula (values,
gradients with respect to the similarities and to every temperature, float64), the collapse
mechanism (the sign of dL/dtau), the bounded variant's optimum, the temperature network, short
training runs, the two panels driven without a browser, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

import lossviz as lv
from lossviz.papers import amcl as A
from lossviz import augment, data

pytestmark = pytest.mark.usefixtures("one_thread")      # tests/conftest.py: one torch thread, an empty run cache


def random_batch(heads: int, B: int, d: int, seed: int):
    """C heads' similarities of 2B views (two views per item, the second near the first), float64,
    with random pair temperatures in [0.05, 2]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, d, generator=g, dtype=torch.float64)
    Z = []
    for _ in range(heads):
        v = torch.cat([x, x + 0.8 * torch.randn(B, d, generator=g, dtype=torch.float64)])
        Z.append(torch.nn.functional.normalize(v @ torch.randn(d, d, generator=g, dtype=torch.float64), dim=1))
    S = torch.stack([z @ z.T for z in Z])
    tau = 0.05 + 1.95 * torch.rand(S.shape, generator=g, dtype=torch.float64)
    return S, tau, augment.two_view_labels(B)


def loop_reference(S, labels, tau, *, beta, dim, topk, bounded):
    """Written from the official code's formula (bounded: lossviz's variant), one anchor at a time."""
    C, n, _ = S.shape
    total = 0.0
    for c in range(C):
        head = 0.0
        for i in range(n):
            p = next(j for j in range(n) if j != i and labels[j] == labels[i])
            row = S[c, i].detach()
            negs = sorted((j for j in range(n) if labels[j] != labels[i]), key=lambda j, row=row: -float(row[j]))
            top = negs[:min(topk, len(negs))]
            k = len(top)
            s_p, t_p = S[c, i, p], tau[c, i, p]
            omega_p = dim / 2 * torch.log(t_p) + 1 / t_p
            if bounded:
                ell = (1 - s_p) / t_p + beta * omega_p
                for j in top:
                    t = tau[c, i, j]
                    ell = ell + ((1 + S[c, i, j]) / t + beta * (dim / 2 * torch.log(t) + 1 / t)) / k
            else:
                ell = -s_p / t_p + beta * omega_p
                for j in top:
                    t = tau[c, i, j]
                    ell = ell + S[c, i, j] / t / k - beta * (torch.log(t) + 1 / t)
            head = head + ell
        total = total + head / n
    return total


@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("seed, heads, B, beta, dim, topk", [
    (0, 1, 4, 0.01, 16, 100), (1, 3, 5, 0.1, 8, 3), (2, 2, 6, 1e-4, 128, 1), (3, 4, 3, 0.5, 4, 2)])
def test_loss_and_its_gradients_match_the_loop_reference(bounded, seed, heads, B, beta, dim, topk):
    S, tau, y = random_batch(heads, B, 6, seed)
    knobs = dict(beta=beta, dim=dim, topk=topk, bounded=bounded)
    S1, t1 = S.clone().requires_grad_(True), tau.clone().requires_grad_(True)
    S2, t2 = S.clone().requires_grad_(True), tau.clone().requires_grad_(True)
    ours = A.amcl_loss(S1, y, tau=t1, **knobs)
    ref = loop_reference(S2, y, t2, **knobs)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (S1, t1))
    g_ref = torch.autograd.grad(ref, (S2, t2))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    per = A.amcl_loss(S, y, tau=tau, per_head=True, **knobs)
    assert per.shape == (heads,) and torch.allclose(per.sum(), ours.detach())
    one = A.amcl_loss(S[0], y, tau=tau[0], **knobs)                  # one head: 2-D input
    torch.testing.assert_close(one, per[0])


def paper_eq_2_1(S, labels, tau, *, beta, dim):
    """The paper's eq. (2.1) (its table of losses), one anchor at a time: the positive's terms as in
    the code, and only the most similar negative n*, with the full regulariser Omega on it."""
    C, n, _ = S.shape
    total = 0.0
    for c in range(C):
        for i in range(n):
            p = next(j for j in range(n) if j != i and labels[j] == labels[i])
            star = max((j for j in range(n) if labels[j] != labels[i]), key=lambda j, c=c, i=i: float(S[c, i, j]))
            t_p, t_n = tau[c, i, p], tau[c, i, star]
            omega = lambda t: dim / 2 * torch.log(t) + 1 / t
            total = total + (-S[c, i, p] / t_p + S[c, i, star] / t_n + beta * omega(t_p) - beta * omega(t_n)) / n
    return total


def test_the_code_with_top_1_is_the_papers_eq_2_1_but_for_the_negatives_log_factor():
    """What the notebook says: with k = 1 the official code's objective is eq. (2.1) of the paper,
    except that the code's regulariser on the negative is log(tau) + 1/tau, not Omega = (d'/2) log(tau) + 1/tau."""
    S, tau, y = random_batch(3, 5, 6, 7)
    beta, dim = 0.1, 16
    code = A.amcl_loss(S, y, tau=tau, beta=beta, dim=dim, topk=1)
    paper = paper_eq_2_1(S, y, tau, beta=beta, dim=dim)
    star = S.masked_fill(~lv.pair_masks(y)[1], -2).argmax(dim=2, keepdim=True)
    log_t_star = torch.log(tau.gather(2, star))[..., 0]                       # C x n
    torch.testing.assert_close(code - paper, beta * (dim / 2 - 1) * log_t_star.mean(dim=1).sum(),
                               rtol=1e-12, atol=1e-12)


def test_temperature_ratio_against_a_loop():
    g = np.random.default_rng(0)
    s, tau = g.uniform(-1, 1, (3, 40)), g.uniform(0.05, 2, (3, 40))
    got = A.temperature_ratio(s, tau)
    for c in range(3):
        order = np.argsort(s[c])
        worst, best = tau[c, order[:10]], tau[c, order[-10:]]
        assert got[c] == pytest.approx(np.exp(np.mean(np.log(worst)) - np.mean(np.log(best))), rel=1e-12)
    rising = A.temperature_ratio(s, 1.5 - 0.5 * s)                            # tau falls as s rises
    assert (rising > 1).all()
    assert A.temperature_ratio(s, np.ones_like(s)) == pytest.approx([1, 1, 1])
    assert A.temperature_ratio(s[0], tau[0]).shape == (1,)
    with pytest.raises(ValueError, match="same shape"):
        A.temperature_ratio(s, tau[:, :5])
    with pytest.raises(ValueError, match="quantile"):
        A.temperature_ratio(s, tau, quantile=0.7)


@pytest.mark.parametrize("bounded", [False, True])
def test_gradient_wrt_each_temperature_is_the_closed_form(bounded):
    """dL/dtau_ij by autograd = temperature_gradient(s_ij, tau_ij) / n on every positive and top-k
    negative entry, 0 on the negatives outside the top-k."""
    S, tau, y = random_batch(3, 6, 6, 7)
    beta, dim, topk = 0.05, 16, 4
    t = tau.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(A.amcl_loss(S, y, tau=t, beta=beta, dim=dim, topk=topk, bounded=bounded), t)
    n = S.shape[-1]
    pos, neg = lv.pair_masks(y)
    knobs = dict(beta=beta, dim=dim, topk=topk, bounded=bounded)
    expect_pos = A.temperature_gradient(S, tau, role="positive", **knobs) / n
    expect_neg = A.temperature_gradient(S, tau, role="negative", **knobs) / n
    top = torch.zeros_like(S, dtype=torch.bool).scatter_(2, S.masked_fill(~neg, -9).topk(topk, dim=2).indices, True)
    torch.testing.assert_close(grad[:, pos], expect_pos[:, pos], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad[top], expect_neg[top], rtol=1e-10, atol=1e-12)
    assert (grad[neg.expand_as(S) & ~top] == 0).all() and (grad[:, torch.eye(n, dtype=torch.bool)] == 0).all()


@pytest.mark.parametrize("bounded", [False, True])
def test_pair_weights_are_one_over_tau(bounded):
    """GPW view: -1/(n tau) on each positive, 1/(n k tau) on each top-k negative, 0 elsewhere."""
    S, tau, y = random_batch(1, 5, 6, 11)
    S, tau, topk = S[0], tau[0], 3
    W = lv.pair_weights(A.amcl_loss, S, y, signed=True, tau=tau, dim=8, topk=topk, bounded=bounded)
    n = len(y)
    pos, neg = lv.pair_masks(y)
    torch.testing.assert_close(W[pos], -1 / (n * tau[pos]))
    top = torch.zeros_like(S, dtype=torch.bool).scatter_(1, S.masked_fill(~neg, -9).topk(topk, dim=1).indices, True)
    torch.testing.assert_close(W[top], 1 / (n * topk * tau[top]))
    assert (W[~pos & ~top] == 0).all()


def test_closed_form_gradient_is_the_derivative_of_the_pair_terms():
    s = torch.linspace(-0.9, 0.95, 9, dtype=torch.float64)
    for bounded in (False, True):
        for positive in (True, False):
            t = torch.full_like(s, 0.3).requires_grad_(True)
            role = "positive" if positive else "negative"
            term = A.pair_term(s, t, role=role, beta=0.05, dim=32, topk=5, bounded=bounded)
            (g,) = torch.autograd.grad(term.sum(), t)
            expect = A.temperature_gradient(s, 0.3, role=role, beta=0.05, dim=32, topk=5, bounded=bounded)
            torch.testing.assert_close(g, expect)


def test_collapse_mechanism_sign_of_dL_dtau():
    """Official form: dL/dtau_p > 0 at every temperature once s_p > beta, so gradient descent runs
    tau_p to the floor; below beta an interior minimum 2(beta - s)/(beta d') exists.  A negative's
    only stationary point 1 - s/(k beta) is a maximum.  Bounded: the sign flips exactly at tau*."""
    beta, dim, k = 0.01, 32, 20
    taus = torch.logspace(-5, math.log10(2), 400, dtype=torch.float64)
    for s in (0.02, 0.3, 0.9, 0.999):
        assert (A.temperature_gradient(s, taus, beta=beta, dim=dim) > 0).all()
    s = -0.5
    g = A.temperature_gradient(s, taus, beta=beta, dim=dim)
    t_star = 2 * (beta - s) / (beta * dim)
    assert ((g < 0) == (taus < t_star)).all()
    for s in (-0.5, 0.0, 0.1):
        g = A.temperature_gradient(s, taus, role="negative", beta=beta, dim=dim, topk=k)
        watershed = 1 - s / (k * beta)
        assert ((g > 0) == (taus < watershed)).all()              # below: towards the floor; above: the ceiling
    for role in ("positive", "negative"):
        for s in (-0.6, 0.0, 0.5, 0.95):
            g = A.temperature_gradient(s, taus, role=role, beta=0.1, dim=dim, topk=k, bounded=True)
            t_star = 2 * ((1 - s) if role == "positive" else (1 + s)) / (0.1 * dim) + 2 / dim
            assert ((g < 0) == (taus < t_star)).all()


def numerical_minimiser(s, *, lo=1e-5, hi=2.0, **knobs) -> float:
    """The minimiser of one pair's terms over [lo, hi]: a grid over log tau, then Brent's method."""
    f = lambda u: A.pair_term(s, torch.as_tensor(u, dtype=torch.float64).exp(), **knobs)
    grid = torch.linspace(math.log(lo), math.log(hi), 2001, dtype=torch.float64)
    u0 = float(grid[f(grid).argmin()])
    bounds = (max(u0 - 0.01, math.log(lo)), min(u0 + 0.01, math.log(hi)))
    res = minimize_scalar(lambda u: float(f(u)), bounds=bounds, method="bounded", options={"xatol": 1e-10})
    return math.exp(res.x)


@pytest.mark.parametrize("role", ["positive", "negative"])
@pytest.mark.parametrize("bounded", [False, True])
def test_optimal_temperature_matches_a_numerical_minimiser(role, bounded):
    for beta, dim, k in ((0.1, 32, 20), (0.5, 8, 5), (0.01, 128, 100)):
        knobs = dict(role=role, beta=beta, dim=dim, topk=k, bounded=bounded)
        for s in (-0.8, -0.2, 0.005, 0.4, 0.97):
            ours = float(A.optimal_temperature(s, **knobs))
            assert ours == pytest.approx(numerical_minimiser(s, **knobs), rel=1e-4, abs=1e-9), (s, beta)
    if not bounded and role == "positive":   # every positive above beta: the floor
        assert float(A.optimal_temperature(0.5, beta=0.01, dim=32, bounded=False)) == 1e-5


def test_pair_temperatures_and_the_temperature_net():
    r = torch.tensor([-1e3, -2.0, 0.0, 2.0, 1e3])
    t = A.pair_temperatures(r, tau_min=0.1, tau_max=1.1)
    assert t[0] == pytest.approx(1.1) and t[2] == pytest.approx(0.6) and t[4] == pytest.approx(0.1)
    assert (t.diff() < 0).all() or (t.diff() <= 0).all()
    assert A.pair_temperatures(torch.zeros(3, dtype=torch.float16)).dtype == torch.float32
    torch.manual_seed(0)
    net = A.TemperatureNet(8, 16).double()
    Z = torch.nn.functional.normalize(torch.randn(3, 10, 8, dtype=torch.float64), dim=-1)
    T3 = net(Z)
    assert T3.shape == (3, 10, 10) and torch.allclose(T3, T3.transpose(1, 2))
    assert ((T3 > 1e-5) & (T3 < 2.0)).all()
    naive = torch.stack([torch.stack([torch.stack([
        1e-5 + (2 - 1e-5) * torch.sigmoid(-(net.phi(Z[c, i]) * net.phi(Z[c, j])).sum()) for j in range(10)])
        for i in range(10)]) for c in range(3)])
    torch.testing.assert_close(T3, naive)
    torch.testing.assert_close(net(Z[1]), T3[1])
    model = A.MultiHeadModel(64, heads=2, dim=8)
    h, Zm = model(torch.rand(5, 64))
    assert h.shape == (5, 128) and Zm.shape == (2, 5, 8)
    assert torch.allclose(Zm.norm(dim=-1), torch.ones(2, 5), atol=1e-6)
    assert not torch.allclose(Zm[0], Zm[1])                                # the heads have their own weights


def test_half_precision_inputs_are_computed_in_float32():
    S, tau, y = random_batch(2, 4, 6, 3)
    out = A.amcl_loss(S.half(), y, tau=tau.half(), dim=8, topk=3)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    assert A.amcl_loss(S.float(), y, tau=1e-5, dim=8).dtype == torch.float32


def test_descend_temperatures_official_runs_to_the_floor_bounded_settles():
    views, y, _ = augment.TwoViewSampler(data.load("digits").x_train, "digits", batch_size=8, seed=0).sample()
    Z = A.random_heads(views, heads=2, dim=16)
    assert Z.shape == (2, 16, 16) and torch.allclose(Z.norm(dim=-1), torch.ones(2, 16, dtype=torch.float64))
    S = Z @ Z.transpose(1, 2)
    official = A.descend_temperatures(S, y, tau0=[0.5, 1.0], beta=0.01, dim=16, topk=5)
    above = official["s_pos"] > 0.01
    assert above.any() and (official["t_pos"][above] < 1e-3).all()
    assert official["tau_pos"].shape == (2, 201)
    bounded = A.descend_temperatures(S, y, tau0=[0.5, 1.0], bounded=True, beta=0.3, dim=16, topk=5, steps=300)
    expect = A.optimal_temperature(torch.as_tensor(bounded["s_pos"]), beta=0.3, dim=16)
    np.testing.assert_allclose(bounded["t_pos"], expect.numpy(), rtol=1e-3)
    assert (bounded["t_pos"] > 1e-3).all()


def test_closed_form_temperature_gradient_equals_autograd():
    """descend_temperatures steps with objective_tau_gradient, not autograd: the two must agree."""
    g = torch.Generator().manual_seed(0)
    s_p = torch.rand(3, 8, generator=g, dtype=torch.float64) * 2 - 1
    s_k = torch.rand(3, 8, 5, generator=g, dtype=torch.float64) * 2 - 1
    for bounded in (False, True):
        t_p = (torch.rand(3, 8, generator=g, dtype=torch.float64) + 0.05).requires_grad_(True)
        t_k = (torch.rand(3, 8, 5, generator=g, dtype=torch.float64) + 0.05).requires_grad_(True)
        A.amcl_objective(s_p, t_p, s_k, t_k, beta=0.3, dim=16, bounded=bounded).sum().backward()
        g_p, g_k = A.objective_tau_gradient(s_p, t_p.detach(), s_k, t_k.detach(), beta=0.3, dim=16, bounded=bounded)
        torch.testing.assert_close(g_p, t_p.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g_k, t_k.grad, rtol=1e-12, atol=1e-12)


def test_short_training_runs_record_every_head_and_are_cached():
    run = A.train_amcl("official", heads=2, epochs=1, batch_size=64, topk=20, progress=False)
    iters = 898 // 64
    assert len(run.history["loss"]) == iters and run.heads == 2
    for c in range(2):
        for key in ("tau_pos", "tau_neg", "floor_pos", "floor_neg", "s_pos", "s_neg"):
            assert run.history[f"{key}_{c}"].shape == (iters,)
    assert run.tau_pos()[-1] < run.tau_pos()[0]                               # already falling
    assert list(run.evals["iter"]) == [0, iters] and 0 < run.evals["knn_h"][-1] <= 1
    assert run.pairs["s_pos"].shape == (2, 256) and run.pairs["tau_neg"].shape == (2, 256 * 2)
    # the untrained-phi control: the temperature network as it was before training, on the trained embeddings
    assert run.pairs["tau_pos_init"].shape == (2, 256) and run.pairs["tau_neg_init"].shape == (2, 512)
    assert not np.allclose(run.pairs["tau_pos_init"], run.pairs["tau_pos"])     # phi has trained
    frozen = A.train_amcl("official", heads=2, epochs=1, topk=20, lr=1e-12, progress=False)   # nothing moves
    np.testing.assert_allclose(frozen.pairs["tau_pos_init"], frozen.pairs["tau_pos"], rtol=1e-6)
    a = A.adaptation(frozen)                               # an untrained phi is its own control
    assert a["trained"][0] == pytest.approx(a["control"][0], abs=1e-6)
    assert a["trained"][1] == pytest.approx(a["control"][1], rel=1e-5)
    ratio = np.exp(np.log(A.temperature_ratio(run.pairs["s_pos"], run.pairs["tau_pos"])).mean())
    assert A.adaptation(run)["trained"][1] == pytest.approx(ratio)
    assert "official" in repr(run)
    assert A.train_amcl("official", heads=2, epochs=1, batch_size=64, topk=20, progress=False) is run
    base = A.train_amcl("simclr", heads=1, epochs=1, progress=False)
    assert np.allclose(base.tau_pos(), 0.2) and base.heads == 1 and "tau_pos_init" not in base.pairs


def drawn(fig) -> list:
    """The artists in a panel's axes: a pure-maths panel moves these on a change, never replaces them."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]


def test_descent_panel_redraws_on_every_knob():
    views, y, _ = augment.TwoViewSampler(data.load("digits").x_train, "digits", batch_size=8, seed=0).sample()
    Z = A.random_heads(views, heads=4, dim=32)
    panel = A.descent_panel(Z @ Z.transpose(1, 2), y, heads=3)
    artists = drawn(panel.fig)
    assert panel.state["out"]["tau_pos"].shape == (3, 201) and panel.state["at_floor"] > 0.5
    panel.controls["variant"].value = True
    assert panel.state["at_floor"] == 0 and "bounded" in panel.status.value
    panel.controls["heads"].value = 1
    assert panel.state["out"]["tau_pos"].shape == (1, 201)
    panel.controls["tau0"].value = 1.0
    assert panel.state["tau0"][0] == pytest.approx(1.0)
    panel.controls["tau_max"].value = 0.5                                     # tau0 is clamped into the range
    assert panel.state["tau0"][0] < 0.5 and panel.state["out"]["t_pos"].max() < 0.5
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt
    assert sum(line.get_visible() for line in panel.fig.axes[0].lines[:8]) == 2           # one head: 2 of 8 lines


def test_training_panel_trains_and_flags_stale_settings():
    panel = A.training_panel(autorun=False, variant="simclr", epochs=5)
    assert "press" in panel.status.value
    result = panel.train()
    assert result.params["variant"] == "simclr" and not panel.state["stale"]
    panel.controls["beta"].value = 0.1                                        # simclr ignores beta
    assert not panel.state["stale"]
    panel.controls["variant"].value = "bounded"
    assert panel.state["stale"]


def test_bad_input_is_refused_with_a_clear_message():
    S, tau, y = random_batch(2, 4, 6, 0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        A.amcl_loss(S.masked_fill(torch.eye(8, dtype=torch.bool), math.nan), y, tau=tau)
    with pytest.raises(ValueError, match="must be square"):
        A.amcl_loss(S[:, :, :7], y, tau=0.2)
    with pytest.raises(ValueError, match="integer class ids"):
        A.amcl_loss(S, y.float(), tau=0.2)
    with pytest.raises(ValueError, match="exactly one positive per anchor"):
        A.amcl_loss(S, torch.tensor([0, 0, 0, 1, 1, 1, 2, 2]), tau=0.2)
    with pytest.raises(ValueError, match="at least 3 views"):
        A.amcl_loss(S[:, :2, :2], y[:2], tau=0.2)
    with pytest.raises(ValueError, match="must be > 0"):
        A.amcl_loss(S, y, tau=0)
    with pytest.raises(ValueError, match="every temperature in tau must be > 0"):
        A.amcl_loss(S, y, tau=tau - 5)
    with pytest.raises(ValueError, match="must have the shape of S"):
        A.amcl_loss(S, y, tau=tau[0, :4])
    with pytest.raises(ValueError, match="topk must be an integer >= 1"):
        A.amcl_loss(S, y, tau=tau, topk=0)
    with pytest.raises(ValueError, match="dim .* must be an integer"):
        A.amcl_loss(S, y, tau=tau, dim=0)
    with pytest.raises(ValueError, match="beta .* must be >= 0"):
        A.amcl_loss(S, y, tau=tau, beta=-1)
    with pytest.raises(ValueError, match="tau_min must be < tau_max"):
        A.pair_temperatures(torch.zeros(2), tau_min=2.0, tau_max=1.0)
    with pytest.raises(ValueError, match="unknown role 'anchor'"):
        A.temperature_gradient(0.5, 0.1, role="anchor")
    with pytest.raises(ValueError, match="tau must be > 0"):
        A.temperature_gradient(0.5, 0.0)
    with pytest.raises(ValueError, match="strictly between"):
        A.descend_temperatures(S, y, tau0=[0.5, 3.0])
    with pytest.raises(ValueError, match="one initial temperature per head"):
        A.descend_temperatures(S, y, tau0=[0.5])
    with pytest.raises(ValueError, match="unknown variant"):
        A.train_amcl("moco")
    with pytest.raises(ValueError, match="use heads=1"):
        A.train_amcl("simclr", heads=3)
    with pytest.raises(ValueError, match="heads must be an integer >= 1"):
        A.MultiHeadModel(heads=0)
