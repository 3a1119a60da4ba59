"""Delta learning (lossviz.papers.delta_learning): DPO and SFT against loops written from the formulas
(values and gradients), the pair weights, the miniature's identities (zero gradient where the teachers
agree, exact accuracy against Monte Carlo, the expected DPO direction, the first-order gain), training,
panels and bad input."""

import math

import numpy as np
import pytest
import torch

from lossviz.papers import delta_learning as D

pytestmark = pytest.mark.usefixtures("one_thread")


def logps(seed, n=7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g, dtype=dtype) * 6 + 0.01) for _ in range(4)]


def loop_dpo(pc, pr, rc, rr, beta, len_c=None, len_r=None):
    """From the formula, pair by pair: -log sigmoid(beta [(pc - rc) - (pr - rr)]) = log(1 + e^{-beta h}), averaged."""
    total = 0.0
    for i in range(len(pc)):
        lc = 1.0 if len_c is None else float(len_c[i])
        lr = 1.0 if len_r is None else float(len_r[i])
        h = (pc[i] / lc - rc[i] / lc) - (pr[i] / lr - rr[i] / lr)
        total = total + torch.log1p(torch.exp(-beta * h))      # -log sigmoid(beta h)
    return total / len(pc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta", [0.1, 2.0, 5.0])
@pytest.mark.parametrize("lengths", [False, True])
def test_dpo_loss_and_gradients_match_the_loop(dtype, beta, lengths):
    base = logps(int(beta * 10) + lengths, dtype=dtype)
    len_c, len_r = (torch.tensor([3, 1, 7, 2, 5, 4, 9]), torch.tensor([2, 6, 1, 8, 3, 3, 5])) if lengths else (None, None)
    ours_in = [t.clone().requires_grad_(True) for t in base]
    ref_in = [t.clone().requires_grad_(True) for t in base]
    ours = D.dpo_loss(*ours_in, beta=beta, len_c=len_c, len_r=len_r)
    ref = loop_dpo(*ref_in, beta, len_c, len_r)
    ours.backward()
    ref.backward()
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(ours, ref, **tol)
    for a, b in zip(ours_in, ref_in):
        torch.testing.assert_close(a.grad, b.grad, **tol)
    assert ours.dtype == dtype


def test_pair_weights_are_the_gradient():
    """dL/dlogp_c = -w_i / n and dL/dlogp_r = +w_i / n with w_i = beta sigmoid(-m_i): autograd agrees."""
    pc, pr, rc, rr = (t.requires_grad_(True) for t in logps(3, n=9))
    beta = 5.0
    D.dpo_loss(pc, pr, rc, rr, beta=beta).backward()
    w = D.dpo_pair_weights(pc, pr, rc, rr, beta=beta)
    torch.testing.assert_close(-pc.grad * 9, w, atol=1e-12, rtol=0)
    torch.testing.assert_close(pr.grad * 9, w, atol=1e-12, rtol=0)
    assert bool(((w > 0) & (w < beta)).all())
    # at the reference every margin is 0: every pair weighs beta / 2
    w0 = D.dpo_pair_weights(pc, pr, pc.detach(), pr.detach(), beta=beta)
    torch.testing.assert_close(w0, torch.full_like(w0, beta / 2))
    m = D.dpo_margin(pc, pr, rc, rr, beta=beta)
    torch.testing.assert_close(m, beta * ((pc - rc) - (pr - rr)))


def test_dpo_is_stable_for_huge_margins_in_float32():
    pc = torch.tensor([-1e-3, -500.0], requires_grad=True)
    pr = torch.tensor([-500.0, -1e-3], requires_grad=True)
    ref = torch.tensor([-10.0, -10.0])
    value = D.dpo_loss(pc, pr, ref, ref, beta=50.0)
    value.backward()
    assert torch.isfinite(value) and bool(torch.isfinite(pc.grad).all())
    assert abs(float(value.detach()) - 50 * 499.999 / 2) < 1e-2 * 50 * 500       # the wrong pair costs ~ its margin


def test_sft_loss_matches_the_loop():
    pc = logps(4)[0].requires_grad_(True)
    lengths = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    ref = sum(-pc[i] / float(lengths[i]) for i in range(7)) / 7
    torch.testing.assert_close(D.sft_loss(pc, len_c=lengths), ref, atol=1e-12, rtol=0)
    D.sft_loss(pc).backward()
    torch.testing.assert_close(pc.grad, torch.full((7,), -1 / 7, dtype=torch.float64))


def test_agreeing_pairs_carry_exactly_zero_gradient():
    """Property of the loss on binary labels: if y_c = y_r, the pair's margin is identically 0."""
    mini = D.make_miniature(0, n=400)
    agree = mini.y_c == mini.y_r
    assert 0 < int(agree.sum()) < 400
    x, y = mini.x[agree], mini.y_c[agree]
    w = (mini.w0 + 0.3 * torch.randn(100, dtype=torch.float64)).requires_grad_(True)   # any w, not just w_ref
    ref = D.logistic_logp(mini.w0, x, y)
    loss = D.dpo_loss(D.logistic_logp(w, x, y), D.logistic_logp(w, x, y), ref, ref, beta=2.0)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(math.log(2))
    assert bool((w.grad == 0).all())
    # on disagreeing pairs the margin is beta y_c (w - w_ref).x
    x, yc, yr = mini.x[~agree], mini.y_c[~agree], mini.y_r[~agree]
    m = D.dpo_margin(D.logistic_logp(w, x, yc), D.logistic_logp(w, x, yr), D.logistic_logp(mini.w0, x, yc),
                     D.logistic_logp(mini.w0, x, yr), beta=2.0)
    torch.testing.assert_close(m, 2.0 * yc * (x @ (w - mini.w0)), atol=1e-10, rtol=1e-10)


def test_exact_accuracy_against_monte_carlo():
    vecs = D.directions(**D.GEOMETRY)
    for key in ("w0", "w_c", "w_r"):
        exact = float(D.exact_accuracy(vecs[key], vecs["w_star"]))
        assert abs(exact - D.monte_carlo_accuracy(vecs[key], vecs["w_star"], n=100_000, seed=1)) < 0.005
    acc = D.make_miniature(0).accuracies()
    assert acc["w0"] == pytest.approx(1 - math.acos(0.8) / math.pi)
    assert acc["w_c"] == pytest.approx(1 - math.acos(0.7 / math.sqrt(0.49 + 1 + 0.09)) / math.pi)
    stack = torch.stack([vecs["w_star"], -vecs["w_star"], vecs["w0"]])
    torch.testing.assert_close(D.exact_accuracy(stack, vecs["w_star"]),
                               torch.tensor([1.0, 0.0, acc["w0"]], dtype=torch.float64))


def test_dpo_gradient_points_along_the_teachers_difference():
    assert D.dpo_gradient_cosine(D.make_miniature(0), beta=2.0) > 0.9


def test_first_order_gain_formula():
    """d cos(w_0 + t d_hat, w*)/dt at t = 0 is (rho_c - rho_r)(1 - rho_s^2) / (|d| |w_0|)."""
    for geometry in (D.GEOMETRY, D.INDEPENDENT, dict(D.GEOMETRY, alpha_c=0.1, alpha_r=0.7)):
        v = D.directions(**geometry)
        u_c, u_r = v["w_c"] / v["w_c"].norm(), v["w_r"] / v["w_r"].norm()
        d = u_c - u_r
        t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        w = v["w0"] + t * d / d.norm()
        torch.nn.functional.cosine_similarity(w, v["w_star"], dim=0).backward()
        rho_c, rho_r = float(u_c @ v["w_star"]), float(u_r @ v["w_star"])
        expected = (rho_c - rho_r) * (1 - 0.8 ** 2) / (float(d.norm()) * float(v["w0"].norm()))
        assert float(t.grad) == pytest.approx(expected, abs=1e-12)


def test_training_runs_and_cache():
    sft = D.train_delta("sft", steps=60, progress=False)
    assert D.train_delta("sft", steps=60, progress=False) is sft                  # cached by parameters
    assert len(sft.history["acc"]) == 60 and sft.scores["best_step"] > 0
    assert sft.scores["best"] > sft.scores["acc0"] > sft.scores["final"]           # rises, then falls to the teacher
    dpo = D.train_delta("dpo", beta=2.0, steps=60, progress=False)
    assert dpo.scores["final"] > dpo.scores["acc0"] + 0.01
    swapped = D.train_delta("dpo", beta=2.0, steps=60, swap=True, progress=False)
    assert swapped.scores["final"] < swapped.scores["acc0"]
    assert swapped.teachers["chosen"] < swapped.teachers["rejected"]
    assert "DPO β=2, swapped" in repr(swapped)
    runs = D.seed_runs(0, runs=("sft", "dpo"), steps=60)
    assert runs["sft"] is sft and runs["dpo"] is dpo


def test_bad_input():
    pc, pr, rc, rr = logps(5)
    with pytest.raises(ValueError, match="one entry per pair"):
        D.dpo_loss(pc, pr[:3], rc, rr)
    with pytest.raises(ValueError, match="NaN or Inf"):
        D.dpo_loss(pc * math.nan, pr, rc, rr)
    with pytest.raises(ValueError, match="beta"):
        D.dpo_loss(pc, pr, rc, rr, beta=0)
    with pytest.raises(ValueError, match="log-probability is <= 0"):
        D.dpo_loss(-pc, pr, rc, rr)
    with pytest.raises(ValueError, match="1 dimensions"):
        D.dpo_loss(pc[None], pr[None], rc[None], rr[None])
    with pytest.raises(ValueError, match="floating-point"):
        D.sft_loss(torch.tensor([-1, -2]))
    with pytest.raises(ValueError, match="empty"):
        D.sft_loss(torch.zeros(0))
    with pytest.raises(ValueError, match="len_c must be > 0"):
        D.dpo_loss(pc, pr, rc, rr, len_c=torch.zeros(7))
    with pytest.raises(ValueError, match="one length per pair"):
        D.dpo_loss(pc, pr, rc, rr, len_r=torch.ones(3))
    with pytest.raises(ValueError, match="unknown method 'ppo'"):
        D.train_delta("ppo")
    with pytest.raises(ValueError, match="steps must be an integer"):
        D.train_delta("dpo", steps=0)
    with pytest.raises(ValueError, match="zero vector"):
        D.directions(alpha_c=0.0, shared=0.0, own_c=0.0)
    with pytest.raises(ValueError, match="shared"):
        D.directions(shared=-1.0)
    with pytest.raises(ValueError, match="rho_s"):
        D.directions(rho_s=1.5)


def test_geometry_panel_without_a_browser():
    panel = D.geometry_panel()
    s = panel.state
    assert s["acc"]["w_c"] > s["acc"]["w_r"] and s["gain"] > 0
    assert s["acc_t"] > s["acc"]["w0"]                          # shared errors: a step along the delta helps
    assert bool(torch.isnan(s["weights"]).any()) and float(s["weights"].nan_to_num(0).max()) <= 2.0
    panel.controls["t"].value = 0.0                              # at the reference every pair weighs beta / 2
    w = panel.state["weights"]
    torch.testing.assert_close(w[~torch.isnan(w)], torch.full_like(w[~torch.isnan(w)], 1.0))
    panel.controls["gap"].value = -0.6                           # the worse teacher chosen: first-order loss
    assert panel.state["gain"] < 0
    panel.controls["gap"].value = 0.6
    panel.controls["shared"].value = 0.0                         # independent errors: a long step loses
    panel.controls["own"].value = 0.9
    panel.controls["t"].value = 3.0
    assert panel.state["gain"] > 0 and panel.state["acc_t"] < panel.state["acc"]["w0"]
    assert all(len(c.description) <= 14 for c in panel.controls.values())


def test_training_panel_without_a_browser():
    panel = D.training_panel(autorun=False, steps=50)
    assert "press <b>Train</b>" in panel.status.value
    panel.controls["steps"].value = 50
    runs = panel.train()
    assert set(runs) == {"sft", "dpo", "swap"} and runs["dpo"].params["steps"] == 50
    assert runs["dpo"].scores["final"] > runs["swap"].scores["final"]
    assert "SFT final" in panel.status.value
    assert panel.train()["dpo"] is runs["dpo"]                   # the same setting comes from the cache
    panel.controls["beta"].value = 20.0
    assert "controls changed" in panel.status.value


def test_panels_survive_the_corners_of_their_sliders():
    panel = D.geometry_panel()
    for key in ("alpha_c", "shared", "own", "gap"):
        panel.controls[key].value = panel.controls[key].min
    assert np.isfinite(panel.state["gain"]) and 0 <= panel.state["acc_t"] <= 1
    panel.controls["gap"].value = 0.0                            # identical teachers up to their own errors
    assert abs(panel.state["gain"]) < 1e-12
