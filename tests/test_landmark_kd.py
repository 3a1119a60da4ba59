"""KD-Loss for landmark regression (lossviz.papers.landmark_kd): loop references from the formulas for
values and gradients, the region table, the sign(0) cases, the direction property, the miniature's
pieces, the panels and bad input."""

import io
import math
import time

import numpy as np
import pytest
import torch

from lossviz.papers import landmark_kd as M
from _util import drawn_artists, same_artists

pytestmark = pytest.mark.usefixtures("one_thread")


def sgn(x):
    return (x > 0) - (x < 0)


def loop_kd(p, g, tt, tl, alphas=M.ALPHAS, frac=0.15, weights=(2.0, 1.0, 1.0)):
    """KD-Loss written from the paper's formulas, one coordinate at a time (plain Python floats)."""
    n = len(p)
    main = aux_tou = aux_tol = 0.0
    for pi, gi, ti, li in zip(p, g, tt, tl):
        e, d = abs(gi - pi), abs(gi - li)
        main += 3 * e if e <= d else e * e + 3 * d - d * d
        for T, (a, an), key in ((ti, alphas["tou"], "tou"), (li, alphas["tol"], "tol")):
            tr = gi + sgn(pi - gi) * abs(T - gi)
            b = gi + frac * sgn(pi - gi) * abs(T - gi)
            if sgn(pi - tr) * sgn(tr - gi) > 0:
                w = a
            elif sgn(tr - pi) * sgn(pi - b) >= 0:
                w = an
            else:
                w = 0.0
            if key == "tou":
                aux_tou += w * abs(tr - pi)
            else:
                aux_tol += w * abs(tr - pi)
    return (weights[0] * main + weights[1] * aux_tou + weights[2] * aux_tol) / n


def loop_grad(p, g, tt, tl, alphas=M.ALPHAS, frac=0.15, weights=(2.0, 1.0, 1.0)):
    """dKD/dp per coordinate from the closed form: main 3 sign(p - g) or 2(p - g); ALoss w sign(p - T~)."""
    n, out = len(p), []
    for pi, gi, ti, li in zip(p, g, tt, tl):
        e, d = abs(gi - pi), abs(gi - li)
        gm = 3 * sgn(pi - gi) if e <= d else 2 * (pi - gi)
        ga = 0.0
        for T, (a, an), wt in ((ti, alphas["tou"], weights[1]), (li, alphas["tol"], weights[2])):
            tr = gi + sgn(pi - gi) * abs(T - gi)
            b = gi + frac * sgn(pi - gi) * abs(T - gi)
            w = a if sgn(pi - tr) * sgn(tr - gi) > 0 else an if sgn(tr - pi) * sgn(pi - b) >= 0 else 0.0
            ga += wt * w * sgn(pi - tr)
        out.append((weights[0] * gm + ga) / n)
    return out


def batch(seed, n=6, L2=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, L2, generator=g, dtype=torch.float64) for _ in range(4)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("frac", [0.15, 0.4])
def test_kd_loss_and_gradient_match_the_loop(seed, frac):
    p, g, tt, tl = batch(seed)
    alphas = {"tou": (1.2, -0.3), "tol": (2.0, -0.7)} if seed == 2 else M.ALPHAS
    weights = (1.5, 0.5, 2.0) if seed == 1 else M.WEIGHTS
    flat = [x.flatten().tolist() for x in (p, g, tt, tl)]
    leaf = p.clone().requires_grad_(True)
    ours = M.kd_loss(leaf, g, tt, tl, alphas=alphas, frac=frac, weights=weights)
    ours.backward()
    assert abs(float(ours.detach()) - loop_kd(*flat, alphas=alphas, frac=frac, weights=weights)) < 1e-12
    ref = torch.tensor(loop_grad(*flat, alphas=alphas, frac=frac, weights=weights), dtype=torch.float64)
    assert torch.allclose(leaf.grad.flatten(), ref, atol=1e-12)


def test_region_table_on_one_coordinate():
    g, T = torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), -0.5, dtype=torch.float64)   # reflected
    w = lambda p: float(M.region_weights(torch.full((1, 1), p, dtype=torch.float64), g, T, 1.9, -0.45))
    assert w(0.8) == 1.9 and w(-0.8) == 1.9                            # beyond the reflected teacher
    assert w(0.3) == -0.45 and w(-0.3) == -0.45                        # middle zone
    assert w(0.05) == 0.0 and w(-0.05) == 0.0                          # dead zone, 0.15 x 0.5 = 0.075
    assert w(0.5) == -0.45 and w(0.15 * 0.5) == -0.45                       # the >= : p = T~ and p = b_T are middle zone


def test_sign_zero_cases():
    """p = g exactly, and a teacher exactly at g: finite, zero loss and gradient from the aux terms."""
    g = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    T = torch.tensor([[0.5, 0.1]], dtype=torch.float64)
    p = g.clone().requires_grad_(True)                                  # p = g: T~ = b_T = g, middle zone, |T~ - p| = 0
    assert torch.equal(M.region_weights(p, g, T, 1.9, -0.45), torch.full_like(g, -0.45))
    aux = M.assistive_loss(p, g, T, alpha=1.9, alpha_neg=-0.45)
    aux.backward()
    assert float(aux.detach()) == 0.0 and bool((p.grad == 0).all())
    q = torch.tensor([[0.9, -1.0]], dtype=torch.float64)                # the teacher exactly at g: weight 0 everywhere
    assert bool((M.region_weights(q, g, g, 1.9, -0.45) == 0).all())
    assert float(M.assistive_loss(q, g, g, alpha=1.9, alpha_neg=-0.45)) == 0.0
    p2 = g.clone().requires_grad_(True)
    M.kd_loss(p2, g, T, T).backward()
    assert bool(torch.isfinite(p2.grad).all()) and bool((p2.grad == 0).all())


def test_main_term_is_continuous_and_3l1_inside():
    g, tl = torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), 0.7, dtype=torch.float64)
    for d in (0.7 - 1e-9, 0.7 + 1e-9):
        assert abs(float(M.main_loss(torch.full((1, 1), d, dtype=torch.float64), g, tl)) - 2.1) < 1e-8
    p, g, _, tl = batch(4)
    inside = (p - g).abs() <= (g - tl).abs()
    pin = torch.where(inside, p, g + 0.5 * (tl - g).abs())            # every coordinate inside the radius
    assert torch.allclose(M.main_loss(pin, g, tl), M.l1x3_loss(pin, g), atol=1e-12)


def test_teachers_are_detached():
    p, g, tt, tl = batch(5)
    tt, tl = tt.requires_grad_(True), tl.requires_grad_(True)
    M.kd_loss(p.requires_grad_(True), g, tt, tl).backward()
    assert tt.grad is None and tl.grad is None and p.grad is not None


def test_direction_property():
    r = M.direction_check(n=4000, seed=1)
    assert r["tou"] == 1.0 and r["tol"] == 1.0 and r["kd_away"] == 0.0
    assert 0.5 < r["tou_active"] < 1.0


def test_curves_and_field_agree_with_the_loss():
    c = M.curves_1d(0.4, 0.7)
    p = torch.tensor(c["p"], dtype=torch.float64)[:, None]
    g = torch.zeros_like(p)
    ref = M.coord_grad(M.kd_loss, p, g, torch.full_like(p, 0.4), torch.full_like(p, -0.7)) * len(p)
    assert np.allclose(c["kd_grad"], ref[:, 0].numpy(), atol=1e-10)
    assert abs(c["kd"].mean() - float(M.kd_loss(p, g, torch.full_like(p, 0.4), torch.full_like(p, -0.7)))) < 1e-10
    f = M.arrow_field()
    assert bool((f["towards"] >= -1e-12).all())


def test_baselines_and_nme():
    p, g, tt, tl = batch(6)
    assert torch.allclose(M.mse_loss(p, g), ((p - g) ** 2).mean())
    assert torch.allclose(M.l1x3_loss(p, g, tt, tl), 3 * (p - g).abs().mean())
    assert torch.allclose(M.main_only_loss(p, g, tt, tl), 2 * M.main_loss(p, g, tl))
    gt = torch.tensor([[0.0, 0.0, 2.0, 0.0, 1.0, 1.0]])
    pred = gt + torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])          # one point off by 1 of 3, eyes 2 apart
    assert abs(M.nme(pred, gt) - (1 / 3) / 2) < 1e-7


def test_world_is_seeded_and_soft_landmarks_are_pca():
    w = M.make_world(n_train=200, n_test=50)
    assert w["x_train"].shape == (200, 256) and w["y_train"].shape == (200, 20) and w["y_test"].shape == (50, 20)
    assert torch.equal(w["x_train"], M.make_world(n_train=200, n_test=50, pca_var=0.9)["x_train"])
    soft, k = M.soft_landmarks(w["y_train"].double().numpy(), 0.9)
    assert 1 <= k < 20 and np.linalg.matrix_rank(soft - soft.mean(0)) == k
    full, k20 = M.soft_landmarks(w["y_train"].double().numpy(), 1.0)
    assert np.allclose(full, w["y_train"].double().numpy(), atol=1e-6)


def test_stacked_students_equal_single_runs():
    """S students trained side by side give each member's own run (same init, batches, updates)."""
    x = torch.randn(300, 256, generator=torch.Generator().manual_seed(0))
    y = torch.randn(300, 20, generator=torch.Generator().manual_seed(1))
    nets = [M.StackedMLP([256, 8, 20], seeds) for seeds in ((3, 4), (3,), (4,))]
    for net, seeds in zip(nets, ((3, 4), (3,), (4,))):
        M._fit(net, seeds, x, y.expand(len(seeds), -1, -1), 20, M.l1x3_loss)
    both = nets[0](x)
    assert torch.allclose(both[0], nets[1](x)[0], atol=1e-5) and torch.allclose(both[1], nets[2](x)[0], atol=1e-5)


def test_bad_input():
    p, g, tt, tl = batch(7)
    with pytest.raises(ValueError, match="shape of p"):
        M.kd_loss(p, g[:, :2], tt, tl)
    with pytest.raises(ValueError, match="T_tou .* shape of p"):
        M.kd_loss(p, g, tt[:3], tl)
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.kd_loss(p * math.nan, g, tt, tl)
    with pytest.raises(ValueError, match="2 dimensions"):
        M.main_loss(p.flatten(), g.flatten(), tl.flatten())
    with pytest.raises(ValueError, match="floating-point"):
        M.mse_loss(p.long(), g)
    with pytest.raises(ValueError, match="alpha_neg .* <= 0"):
        M.assistive_loss(p, g, tt, alpha=1.9, alpha_neg=0.45)
    with pytest.raises(ValueError, match="alpha .* >= 0"):
        M.assistive_loss(p, g, tt, alpha=-1.0, alpha_neg=-0.45)
    with pytest.raises(ValueError, match="frac"):
        M.assistive_loss(p, g, tt, alpha=1.9, alpha_neg=-0.45, frac=1.0)
    with pytest.raises(ValueError, match="unknown loss"):
        M.train_students("huber")
    with pytest.raises(ValueError, match="at least one seed"):
        M.train_students("mse", seeds=())
    with pytest.raises(ValueError, match="var"):
        M.soft_landmarks(np.zeros((5, 4)), 0.0)


def test_geometry_panel_without_a_browser():
    panel = M.geometry_panel()
    assert panel.state["away_1d"] == 0.0 and panel.state["away_2d"] == 0.0
    drawn = drawn_artists(panel.fig)
    start = time.perf_counter()
    panel.controls["r_tou"].value = 0.8
    panel.fig.savefig(io.BytesIO(), format="png")
    assert time.perf_counter() - start < 1.0                           # generous on a shared CI machine
    c = panel.state["curves"]
    a = np.abs(c["p"])
    dead = a < 0.15 * 0.8 - 1e-6
    live = (a > 0.15 * 0.8 + 1e-6) & (np.abs(a - 0.8) > 1e-6)      # off the edges (p = T~: |T~ - p|' = 0)
    assert bool((c["tou_grad"][dead] == 0).all()) and bool((c["tou_grad"][live] != 0).all())
    panel.controls["an_tou"].value = 0.0                               # no middle-zone push: only the pull beyond
    mid = (np.abs(c["p"]) > 0.15 * 0.8) & (np.abs(c["p"]) < 0.8)
    assert bool((panel.state["curves"]["tou_grad"][mid] == 0).all())
    panel.controls["w_main"].value = 0.0
    assert np.allclose(panel.state["curves"]["main"], 0) and panel.state["away_2d"] == 0.0
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_and_panel(monkeypatch):
    """Tiny teachers and students (monkeypatched budgets) through the real code path."""
    tea = M.teachers(steps=30)
    monkeypatch.setattr(M, "teachers", lambda pca_var=0.9, **kw: tea)
    r = M.train_students("kd", h=4, steps=40, seeds=(0, 1))
    assert r["nme"].shape == (2,) and bool((r["nme"] < r["start"]).all())    # it learns
    assert M.train_students("kd", h=4, steps=40, seeds=(0, 1)) is r          # cached by parameters
    out = M.paired_runs(seeds=(0, 1), widths=((4, 20),), losses=("mse", "kd"))
    assert set(out[4]) == {"mse", "kd"} and out[4]["mse"]["nme"].shape == (2,)
    panel = M.train_panel(autorun=False)
    panel.controls["steps"].value = 300
    panel.controls["h"].value = 4
    res = panel.train()
    assert set(res) == {"teachers", "mse", "kd"} and set(panel.state["nme"]) == {"mse", "kd"}
    assert "KD-Loss: NME" in panel.status.value
