r"""KD-Loss for facial landmark regression (Fard & Mahoor, arXiv 2111.07047, CVIU): a small student
regresses landmark coordinates with the help of two imperfect teachers, a *Tough* one (trained on the
true landmarks) and a *Tolerant* one (trained on PCA-smoothed landmarks).

Everything is per coordinate (x and y separately), averaged over batch x 2L coordinates.  With the
student's prediction ``p``, the ground truth ``g`` and a frozen teacher's prediction ``T``:

    T~  = g + sign(p - g) |T - g|                   (the teacher reflected onto the student's side)
    b_T = g + 0.15 sign(p - g) |T - g|              (the edge of the dead zone)
    w_T = alpha_T    if sign(p - T~) sign(T~ - g) > 0     (beyond the reflected teacher)
          alpha_T^-  if sign(T~ - p) sign(p - b_T) >= 0   (between b_T and T~; alpha_T^- < 0)
          0          otherwise                            (within 0.15 |T - g| of g)
    ALoss_T = mean(w_T |T~ - p|)
    L_main  = mean(1[e <= d] 3e + 1[e > d] (e^2 + 3d - d^2)),  e = |g - p|, d = |g - T_tol|
    KD-Loss = 2 L_main + ALoss_tou + ALoss_tol

* :func:`reflect`, :func:`region_weights`, :func:`assistive_loss`, :func:`main_loss`, :func:`kd_loss`
  (the paper's loss) and the baselines :func:`mse_loss`, :func:`l1x3_loss`; :func:`coord_grad` gives
  the per-coordinate weights ``dL/dp`` by autograd, :func:`direction_check` the gradient-direction
  property on random configurations.
* The miniature: :func:`make_world` (synthetic 16 x 16 "faces" with 10 landmarks, hard and PCA-soft
  targets), :func:`teachers` (cached), :func:`train_student` (cached by parameters), :func:`nme`.
* Pictures: :func:`curves_1d`, :func:`arrow_field`, :func:`draw_faces`, :func:`draw_paired` and the
  panels :func:`geometry_panel` (pure maths) and :func:`train_panel` (a Train button).
"""

from __future__ import annotations

import math

import ipywidgets as W
import numpy as np
import torch

from lossviz import checks, plots
from lossviz.models import StackedMLP  # the paired seeds of one loss, trained as one network
from lossviz import train as T

#: The official code's values (``student_train.py``, ``main.py``).
ALPHAS = {"tou": (1.9, -0.45), "tol": (1.8, -0.4)}
DEAD_ZONE = 0.15
WEIGHTS = (2.0, 1.0, 1.0)   # main, Tough, Tolerant
LOSS_NAMES = {"mse": "MSE (L2)", "l1x3": "3×L1", "kd": "KD-Loss", "main": "main term only"}
COLORS = {"mse": "#7F7F7F", "l1x3": "#E69F00", "kd": "#009E73", "main": "#5D3A9B",
          "tou": "#CC79A7", "tol": "#56B4E9"}


# ------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------

def _coords(p, g, *teachers):
    """p, g (and teachers) as float tensors of one shape, batch x 2L; teachers are detached."""
    p = checks.as_float_tensor(p, "p (student predictions, batch x 2L)", 2)
    g = checks.as_float_tensor(g, "g (ground truth, batch x 2L)", 2)
    if g.shape != p.shape:
        raise ValueError(f"g must have the shape of p, {tuple(p.shape)}; got {tuple(g.shape)}")
    out = [p, g.to(p)]
    for name, t in zip(("T_tou (Tough teacher)", "T_tol (Tolerant teacher)"), teachers):
        t = checks.as_float_tensor(t, f"{name}", 2)
        if t.shape != p.shape:
            raise ValueError(f"{name} must have the shape of p, {tuple(p.shape)}; got {tuple(t.shape)}")
        out.append(t.detach().to(p))
    return out


def _alphas(alpha, alpha_neg, frac):
    alpha = checks.non_negative(alpha, "alpha (weight beyond the teacher, >= 0)")
    alpha_neg = checks.finite(alpha_neg, "alpha_neg (weight of the middle zone)")
    if alpha_neg > 0:
        raise ValueError(f"alpha_neg (weight of the middle zone) must be <= 0, so that it pushes p away from "
                         f"the reflected teacher, i.e. towards g; got {alpha_neg}")
    frac = checks.fraction(frac, "frac (dead-zone fraction)")
    if frac >= 1:
        raise ValueError(f"frac (dead-zone fraction) must be < 1: the dead zone ends before the teacher; got {frac}")
    return alpha, alpha_neg, frac


def reflect(p, g, t, frac: float = DEAD_ZONE):
    """``(T~, b_T)``: the teacher reflected onto the student's side of g, and the dead zone's edge.
    ``T~ = g + sign(p - g)|T - g|``, ``b_T = g + frac sign(p - g)|T - g|`` (both equal g where p = g)."""
    s, r = torch.sign(p - g), (t - g).abs()
    return g + s * r, g + frac * s * r


def region_weights(p, g, t, alpha: float, alpha_neg: float, frac: float = DEAD_ZONE) -> torch.Tensor:
    """The region weight ``w_T`` of each coordinate: ``alpha`` beyond the reflected teacher,
    ``alpha_neg`` between ``b_T`` and it (the ``>=`` of the official code: p = T~, p = b_T and p = g
    count as middle zone), 0 in the dead zone near g.  Piecewise constant: no gradient flows."""
    p, g, t = (x.detach() for x in (p, g, t))
    tr, b = reflect(p, g, t, frac)
    beyond = torch.sign(p - tr) * torch.sign(tr - g) > 0
    middle = torch.sign(tr - p) * torch.sign(p - b) >= 0
    zero = torch.zeros_like(p)
    return torch.where(beyond, zero + alpha, torch.where(middle, zero + alpha_neg, zero))


def assistive_loss(p, g, t, *, alpha: float, alpha_neg: float, frac: float = DEAD_ZONE) -> torch.Tensor:
    r"""``ALoss_T = mean(w_T |T~ - p|)`` (:func:`region_weights`, :func:`reflect`).

    Its gradient is ``w_T sign(p - T~) / n``: beyond the teacher ``alpha`` pulls p back to T~, in the
    middle zone the negative ``alpha_neg`` pushes p away from T~; both point towards g."""
    p, g, t = _coords(p, g, t)
    alpha, alpha_neg, frac = _alphas(alpha, alpha_neg, frac)
    tr, _ = reflect(p, g, t, frac)
    return (region_weights(p, g, t, alpha, alpha_neg, frac) * (tr.detach() - p).abs()).mean()


def main_loss(p, g, t_tol) -> torch.Tensor:
    r"""``L_main = mean(1[e <= d] 3e + 1[e > d](e^2 + 3d - d^2))``, e = |g - p|, d = |g - T_tol|:
    linear (slope 3) inside the Tolerant teacher's radius, quadratic outside, continuous at e = d."""
    p, g, t_tol = _coords(p, g, t_tol)
    e, d = (g - p).abs(), (g - t_tol).abs()
    return torch.where(e <= d, 3 * e, e * e + 3 * d - d * d).mean()


def kd_loss(p, g, t_tou, t_tol, *, alphas=ALPHAS, frac: float = DEAD_ZONE, weights=WEIGHTS) -> torch.Tensor:
    """KD-Loss = w_main L_main + w_tou ALoss_tou + w_tol ALoss_tol (official weights 2, 1, 1)."""
    p, g, t_tou, t_tol = _coords(p, g, t_tou, t_tol)
    w_main, w_tou, w_tol = (checks.non_negative(w, "a loss weight") for w in weights)
    a_tou, a_tol = alphas["tou"], alphas["tol"]
    return (w_main * main_loss(p, g, t_tol)
            + w_tou * assistive_loss(p, g, t_tou, alpha=a_tou[0], alpha_neg=a_tou[1], frac=frac)
            + w_tol * assistive_loss(p, g, t_tol, alpha=a_tol[0], alpha_neg=a_tol[1], frac=frac))


def mse_loss(p, g, *_teachers) -> torch.Tensor:
    """The baseline: mean squared error per coordinate (teachers ignored)."""
    p, g = _coords(p, g)
    return ((p - g) ** 2).mean()


def l1x3_loss(p, g, *_teachers) -> torch.Tensor:
    """3 x L1: what the main term is inside the Tolerant radius, with no teacher at all."""
    p, g = _coords(p, g)
    return 3 * (p - g).abs().mean()


def main_only_loss(p, g, t_tou, t_tol) -> torch.Tensor:
    """KD-Loss without its assistive terms: ``2 L_main`` (the ablation)."""
    return WEIGHTS[0] * main_loss(p, g, t_tol)


LOSSES = {"mse": mse_loss, "l1x3": l1x3_loss, "kd": kd_loss, "main": main_only_loss}


def coord_grad(loss, p, *args, **kw) -> torch.Tensor:
    """``dL/dp`` by autograd (p made a leaf): the per-coordinate weights of a regression loss."""
    p = torch.as_tensor(p).detach().clone().requires_grad_(True)
    loss(p, *args, **kw).backward()
    return p.grad


def direction_check(n: int = 20000, seed: int = 0) -> dict:
    """The gradient-direction property on ``n`` random (p, g, T_tou, T_tol) coordinates (N(0, 1)):
    the share of coordinates with a non-zero assistive weight whose negative gradient points towards
    g, per teacher, and the share where the full KD-Loss's negative gradient points away from g."""
    gen = torch.Generator().manual_seed(seed)
    p, g, tt, tl = torch.randn(4, n, 1, generator=gen, dtype=torch.float64)
    towards = {}
    for key, t in (("tou", tt), ("tol", tl)):
        a, a_neg = ALPHAS[key]
        w = region_weights(p, g, t, a, a_neg)
        grad = coord_grad(assistive_loss, p, g, t, alpha=a, alpha_neg=a_neg)
        live = w != 0
        towards[key] = float(((-grad * (g - p))[live] > 0).double().mean())
        towards[key + "_active"] = float(live.double().mean())
    grad = coord_grad(kd_loss, p, g, tt, tl)
    towards["kd_away"] = float(((-grad * (g - p)) < 0).double().mean())
    return towards


# ------------------------------------------------------------------------------------------------
# Pictures of the loss
# ------------------------------------------------------------------------------------------------

def _term_rows(k, p, g, t, alpha, alpha_neg, frac):
    """One term of KD-Loss per row (one coordinate each), not averaged: the per-coordinate loss."""
    if k == "main":
        e, d = (g - p).abs(), (g - t).abs()
        return torch.where(e <= d, 3 * e, e * e + 3 * d - d * d)
    tr, _ = reflect(p, g, t, frac)
    return region_weights(p, g, t, alpha, alpha_neg, frac) * (tr.detach() - p).abs()


def curves_1d(r_tou: float = 0.4, r_tol: float = 0.7, *, alphas=ALPHAS, frac: float = DEAD_ZONE,
              weights=WEIGHTS, lim: float = 1.2, n: int = 481) -> dict:
    """Each weighted term of KD-Loss and their sum against p, on one coordinate with g = 0,
    |T_tou - g| = r_tou and |T_tol - g| = r_tol (a teacher's side does not matter: it is reflected),
    with the derivative dL/dp of each by autograd.  Per coordinate: not divided by the batch size."""
    p = torch.linspace(-lim, lim, n, dtype=torch.float64)[:, None].requires_grad_(True)
    g = torch.zeros_like(p)
    knobs = {"main": (weights[0], torch.full_like(p, -r_tol), None, None),
             "tou": (weights[1], torch.full_like(p, r_tou), *alphas["tou"]),
             "tol": (weights[2], torch.full_like(p, -r_tol), *alphas["tol"])}
    out = {"p": p.detach()[:, 0].numpy()}
    for k, (w, t, a, a_neg) in knobs.items():
        v = w * _term_rows(k, p, g, t, a, a_neg, frac)
        (grad,) = torch.autograd.grad(v.sum(), p)
        out[k], out[k + "_grad"] = v.detach()[:, 0].numpy(), grad[:, 0].numpy()
    out["kd"] = out["main"] + out["tou"] + out["tol"]
    out["kd_grad"] = out["main_grad"] + out["tou_grad"] + out["tol_grad"]
    return out


def teacher_points(r_tou: float, r_tol: float):
    """Where the 2-D view puts the teachers, at distances r_tou and r_tol from g = (0, 0)."""
    return (0.8 * r_tou, -0.6 * r_tou), (-0.6 * r_tol, 0.8 * r_tol)


def arrow_field(g=(0.0, 0.0), t_tou=(0.32, -0.24), t_tol=(-0.42, 0.56), *, lim: float = 0.9, n: int = 15,
                alphas=ALPHAS, frac: float = DEAD_ZONE, weights=WEIGHTS) -> dict:
    """The negative gradient of KD-Loss at a grid of student positions around one landmark (x and y
    are separate coordinates: each arrow's components come from two 1-D problems), per coordinate;
    ``towards`` is its dot product with g - p (>= 0 when the arrow does not point away from g)."""
    xs = torch.linspace(-lim, lim, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    p = torch.stack([X.flatten(), Y.flatten()], 1)
    rep = lambda v: torch.tensor(v, dtype=torch.float64).expand_as(p).clone()  # noqa: E731
    gg = rep(g)
    u = -coord_grad(kd_loss, p, gg, rep(t_tou), rep(t_tol), alphas=alphas, frac=frac, weights=weights) * p.numel()
    return {"x": p[:, 0].numpy(), "y": p[:, 1].numpy(), "u": u[:, 0].numpy(), "v": u[:, 1].numpy(),
            "towards": (u * (gg - p)).sum(1).numpy()}


def geometry_panel(r_tou: float = 0.4, r_tol: float = 0.7):
    """Pure maths: KD-Loss's terms (left) and their derivatives (middle) against the student's
    prediction p on one coordinate, and the negative-gradient field around one landmark (right),
    for the teachers' distances, the four alphas, the dead-zone fraction and the main weight."""
    from lossviz.widgets import Panel
    fs = lambda v, lo, hi, st, d: W.FloatSlider(value=v, min=lo, max=hi, step=st, description=d,  # noqa: E731
                                                readout_format=".2f", continuous_update=True)
    controls = {"r_tou": fs(r_tou, 0.05, 1.0, 0.05, "|T_tou − g|"), "r_tol": fs(r_tol, 0.05, 1.0, 0.05, "|T_tol − g|"),
                "a_tou": fs(1.9, 0.0, 3.0, 0.05, "α_tou"), "an_tou": fs(-0.45, -1.5, 0.0, 0.05, "α⁻_tou"),
                "a_tol": fs(1.8, 0.0, 3.0, 0.05, "α_tol"), "an_tol": fs(-0.4, -1.5, 0.0, 0.05, "α⁻_tol"),
                "frac": fs(DEAD_ZONE, 0.0, 0.9, 0.05, "dead zone"), "w_main": fs(2.0, 0.0, 4.0, 0.1, "w_main")}
    fig, axes = plots.new_figure(3, width=3.3, height=3.2)
    a0, a1, a2 = axes[0]
    p0 = curves_1d()["p"]
    lines, dlines = {}, {}
    for k, lab in (("main", "w·L_main"), ("tou", "ALoss_tou"), ("tol", "ALoss_tol"), ("kd", "KD-Loss")):
        kw = dict(color=COLORS[k], lw=2.4 if k == "kd" else 1.4, label=lab)
        (lines[k],) = a0.plot(p0, p0 * 0, **kw)
        (dlines[k],) = a1.plot(p0, p0 * 0, **kw)
    marks = {k: [ax.axvline(0, color=COLORS[k], ls=":", lw=1) for ax in (a0, a1) for _ in range(2)]
             for k in ("tou", "tol")}
    dead = {k: [ax.axvspan(-0.1, 0.1, color=COLORS[k], alpha=0.15, lw=0) for ax in (a0, a1)] for k in ("tou", "tol")}
    a1.axhline(0, color="k", lw=0.6)
    a0.set(xlabel="student p (g = 0)", ylabel="loss per coordinate", title="terms of KD-Loss", ylim=(-0.3, 6))
    a1.set(xlabel="student p (g = 0)", ylabel="dL/dp", title="dL/dp (p moves against it)", ylim=(-9, 9))
    a0.legend(fontsize=8, loc="upper center")
    f = arrow_field()
    quiv = a2.quiver(f["x"], f["y"], f["u"], f["v"], np.hypot(f["u"], f["v"]), cmap="viridis", pivot="mid",
                     scale_units="xy", scale=9, width=0.006)
    a2.plot([0], [0], "k*", ms=12, label="g")
    (tou_pt,) = a2.plot([], [], "o", color=COLORS["tou"], ms=8, label="T_tou")
    (tol_pt,) = a2.plot([], [], "s", color=COLORS["tol"], ms=8, label="T_tol")
    a2.set(xlabel="x", ylabel="y", title="−∇ KD-Loss (unit arrows)", aspect="equal", xlim=(-1, 1), ylim=(-1, 1))
    a2.legend(fontsize=8, loc="lower left")

    def draw(v):
        alphas = {"tou": (v["a_tou"], v["an_tou"]), "tol": (v["a_tol"], v["an_tol"])}
        weights = (v["w_main"], 1.0, 1.0)
        c = curves_1d(v["r_tou"], v["r_tol"], alphas=alphas, frac=v["frac"], weights=weights)
        for k in lines:
            lines[k].set_ydata(c[k])
            dlines[k].set_ydata(c[k + "_grad"])
        for k in ("tou", "tol"):
            for m, x in zip(marks[k], (-v["r_" + k], v["r_" + k]) * 2):
                m.set_xdata([x, x])
        for k, spans in dead.items():                                 # each teacher's dead zone
            for span in spans:
                span.set_x(-v["frac"] * v["r_" + k])
                span.set_width(2 * v["frac"] * v["r_" + k])
        t_tou, t_tol = teacher_points(v["r_tou"], v["r_tol"])
        f = arrow_field(t_tou=t_tou, t_tol=t_tol, alphas=alphas, frac=v["frac"], weights=weights)
        mag = np.hypot(f["u"], f["v"])
        quiv.set_UVC(f["u"] / np.maximum(mag, 1e-12), f["v"] / np.maximum(mag, 1e-12), mag)
        quiv.set_clim(0, max(float(mag.max()), 1e-9))
        tou_pt.set_data([t_tou[0]], [t_tou[1]])
        tol_pt.set_data([t_tol[0]], [t_tol[1]])
        pushes_away = float(np.mean(c["kd_grad"] * c["p"] < -1e-12))    # -grad points away from g = 0
        return {"curves": c, "field": f, "away_1d": pushes_away, "away_2d": float(np.mean(f["towards"] < -1e-12)),
                "status": f"share of positions where −∇KD-Loss points away from g: {pushes_away:.3g} (1-D), "
                          f"{float(np.mean(f['towards'] < -1e-12)):.3g} (2-D)"}
    return Panel(controls, fig, draw)


# ------------------------------------------------------------------------------------------------
# The miniature: synthetic faces
# ------------------------------------------------------------------------------------------------

#: 10 landmarks in a unit face frame: outer eye corners (0, 1), inner eye corners (2, 3), nose tip (4),
#: mouth corners (5, 6), chin (7), brows (8, 9).
MEAN_SHAPE = np.array([[-0.45, -0.25], [0.45, -0.25], [-0.15, -0.22], [0.15, -0.22], [0.0, 0.05],
                       [-0.25, 0.35], [0.25, 0.35], [0.0, 0.55], [-0.3, -0.45], [0.3, -0.45]])
MODE_STD = (0.10, 0.07, 0.05, 0.04)
GRID = 16


def _faces(rng, modes, n):
    L = len(MEAN_SHAPE)
    z = rng.standard_normal((n, len(MODE_STD))) * np.array(MODE_STD)
    shape = MEAN_SHAPE.reshape(1, -1) + z @ modes.T + 0.03 * rng.standard_normal((n, 2 * L))
    shape = shape.reshape(n, L, 2)
    s, th = rng.uniform(0.8, 1.2, n), rng.uniform(-0.35, 0.35, n)
    rot = np.stack([np.stack([np.cos(th), -np.sin(th)], 1), np.stack([np.sin(th), np.cos(th)], 1)], 1)
    pos = s[:, None, None] * np.einsum("nij,nlj->nli", rot, shape) + rng.uniform(-0.1, 0.1, (n, 1, 2))
    pix = 7.5 + 5 * pos                                                   # pixel positions
    ax = np.arange(GRID)
    bx = np.exp(-(ax[None, None, :] - pix[:, :, 0:1]) ** 2 / (2 * 0.8 ** 2))   # n x L x 16 (columns)
    by = np.exp(-(ax[None, None, :] - pix[:, :, 1:2]) ** 2 / (2 * 0.8 ** 2))   # n x L x 16 (rows)
    img = np.einsum("nlr,nlc->nrc", by, bx) + 0.15 * rng.standard_normal((n, GRID, GRID))
    return img.reshape(n, -1), pix.reshape(n, -1) / GRID


def soft_landmarks(y_train, var: float = 0.9):
    """PCA of the training landmarks keeping the fewest components that explain ``var`` of the variance,
    then reconstruction: smoothed ("soft") landmarks and the number of components kept."""
    var = checks.fraction(var, "var (the PCA variance kept)", zero_ok=False)
    mu = y_train.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(y_train - mu, full_matrices=False)
    k = int(np.searchsorted(np.cumsum(s ** 2) / np.sum(s ** 2), var - 1e-12) + 1)
    v = vt[:k]
    return mu + (y_train - mu) @ v.T @ v, k


def make_world(pca_var: float = 0.9, seed: int = 0, n_train: int = 2000, n_test: int = 1000) -> dict:
    """The synthetic landmark world (cached): images ``x_train``/``x_test`` (n x 256, float32), hard
    targets ``y_train``/``y_test`` (n x 20: x0, y0, x1, y1, ..., pixel positions / 16), the soft
    targets ``y_soft`` (PCA keeping ``pca_var`` of the variance) and ``k`` (components kept)."""
    def compute():
        rng = np.random.default_rng(seed)
        modes, _ = np.linalg.qr(rng.standard_normal((2 * len(MEAN_SHAPE), len(MODE_STD))))
        x, y = _faces(rng, modes, n_train + n_test)
        soft, k = soft_landmarks(y[:n_train], pca_var)
        f = lambda a: torch.as_tensor(a, dtype=torch.float32)
        return {"x_train": f(x[:n_train]), "y_train": f(y[:n_train]), "x_test": f(x[n_train:]),
                "y_test": f(y[n_train:]), "y_soft": f(soft), "k": k}
    return T.memo("landmark-world", {"pca_var": float(pca_var), "seed": int(seed), "n_train": n_train,
                                     "n_test": n_test}, compute)


def nme(pred, gt) -> float:
    """Normalised mean error: the mean point-to-point error over the 10 landmarks divided by the
    outer-eye distance (landmarks 0 and 1) of the ground truth, averaged over images."""
    pred = checks.as_float_tensor(pred, "pred (n x 2L)", 2)
    gt = checks.as_float_tensor(gt, "gt (n x 2L)", 2)
    if pred.shape != gt.shape or pred.shape[1] % 2 or pred.shape[1] < 4:
        raise ValueError(f"pred and gt must both be n x 2L with L >= 2; got {tuple(pred.shape)}, {tuple(gt.shape)}")
    P, G = pred.reshape(len(pred), -1, 2), gt.reshape(len(gt), -1, 2).to(pred)
    iod = (G[:, 0] - G[:, 1]).norm(dim=1)
    return float(((P - G).norm(dim=2).mean(1) / iod).mean())


def _fit(net, seeds, x, ys, steps, loss_fn, *, teach=None, x_test=None, y_test=None, every=50, desc="",
         progress=False):
    """Adam 1e-3, batch 128; member s draws its batches with ``seeds[s]``.  ``ys``: S x N x 2L targets.
    Returns the loop's history plus ``nme_members`` (evaluations x S test NMEs)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    S, rows, evals = len(seeds), torch.arange(len(seeds))[:, None], []

    def step(it):
        idx = torch.stack([torch.randint(0, len(x), (128,), generator=g) for g in gens])
        flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
        extra = () if teach is None else (flat(teach[0][idx]), flat(teach[1][idx]))
        loss = S * loss_fn(flat(net(x[idx])), flat(ys[rows, idx]), *extra)   # the sum of the members' means
        opt.zero_grad()
        loss.backward()
        opt.step()
        out = {"loss": loss / S}
        if x_test is not None and (it % every == 0 or it == steps):
            with torch.no_grad():
                pred = net(x_test)
                evals.append([nme(pred[s], y_test) for s in range(S)])
            out["nme"] = float(np.mean(evals[-1]))
        return out
    with checks.validation(False):                    # trusted tensors: skip the per-step NaN scans
        hist = T.loop(step, steps, desc=desc, progress=progress)
    hist["nme_members"] = np.array(evals)
    return hist


def teachers(pca_var: float = 0.9, steps: int = 1500, progress=False) -> dict:
    """The Tough (hard targets, seed 1) and Tolerant (soft targets, seed 2) teachers: MLP
    256-256-256-20, MSE, Adam 1e-3, batch 128, ``steps`` each, trained side by side.  Cached;
    returns their train predictions (``tou``, ``tol``) and test NMEs (``nme_tou``, ``nme_tol``)."""
    def compute():
        w = make_world(pca_var)
        net = StackedMLP([256, 256, 256, 20], seeds=(1, 2))
        _fit(net, (1, 2), w["x_train"], torch.stack([w["y_train"], w["y_soft"]]), steps, mse_loss,
             desc="teachers", progress=progress)
        with torch.no_grad():
            tr, te = net(w["x_train"]), net(w["x_test"])
        return {"tou": tr[0], "tol": tr[1], "nme_tou": nme(te[0], w["y_test"]), "nme_tol": nme(te[1], w["y_test"])}
    return T.memo("landmark-teachers", {"pca_var": float(pca_var), "steps": int(steps)}, compute)


def train_students(loss: str = "kd", *, h: int = 8, steps: int = 600, seeds=(0,), pca_var: float = 0.9,
                   w_main: float = 2.0, progress=False) -> dict:
    """Students MLP 256-h-20, one per seed (its initialisation and batches), Adam 1e-3, batch 128,
    ``steps`` steps, trained side by side (:class:`StackedMLP`); the world and the teachers are fixed,
    so seeds pair across losses.  Cached by parameters.  Returns ``{"nme": final test NME per seed,
    "hist": curves (``nme_members``: evaluations x seeds), "start": NME at initialisation per seed}``."""
    checks.choice(loss, "loss", LOSSES)
    h = checks.integer(h, "h (student width)", 1)
    steps = checks.integer(steps, "steps", 1)
    seeds = tuple(checks.integer(s, "seed", 0) for s in seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    w_main = checks.non_negative(w_main, "w_main (weight of the main term)")
    params = dict(loss=loss, h=h, steps=steps, seeds=seeds, pca_var=float(pca_var), w_main=float(w_main))

    def compute():
        w, tea = make_world(pca_var), teachers(pca_var)
        fn = LOSSES[loss]
        if loss == "kd" and w_main != WEIGHTS[0]:
            fn = lambda p, g, a, b: kd_loss(p, g, a, b, weights=(w_main, 1.0, 1.0))  # noqa: E731
        net = StackedMLP([256, h, 20], seeds)
        with torch.no_grad():
            pred = net(w["x_test"])
            start = np.array([nme(pred[s], w["y_test"]) for s in range(len(seeds))])
        ys = w["y_train"].expand(len(seeds), -1, -1)
        hist = _fit(net, seeds, w["x_train"], ys, steps, fn, teach=(tea["tou"], tea["tol"]),
                    x_test=w["x_test"], y_test=w["y_test"], desc=LOSS_NAMES[loss], progress=progress)
        return {"nme": hist["nme_members"][-1], "hist": hist, "start": start, "params": params}
    return T.memo("landmark-students", params, compute)


def paired_runs(seeds=range(8), widths=((8, 600), (16, 300)), losses=tuple(LOSSES), progress=False) -> dict:
    """``{h: {loss: result of train_students}}`` over the same seeds for every loss and width."""
    return {h: {k: train_students(k, h=h, steps=steps, seeds=tuple(seeds), progress=progress) for k in losses}
            for h, steps in widths}


# ------------------------------------------------------------------------------------------------
# Pictures of the miniature and the Train panel
# ------------------------------------------------------------------------------------------------

def draw_faces(axes, world: dict, idx=(0, 1, 2)) -> None:
    """A few training faces with their hard landmarks (what the Tough teacher learns) and their
    PCA-smoothed soft landmarks (what the Tolerant teacher learns), in pixels."""
    for ax, i in zip(np.ravel(axes), idx):
        ax.imshow(world["x_train"][i].reshape(GRID, GRID).numpy(), cmap="gray")
        for key, mk, lab in (("y_train", "o", "hard"), ("y_soft", "x", f"soft (PCA, {world['k']} comp.)")):
            pts = world[key][i].reshape(-1, 2).numpy() * GRID
            ax.plot(pts[:, 0], pts[:, 1], mk, color=COLORS["tou" if key == "y_train" else "tol"], ms=6,
                    mfc="none" if mk == "o" else None, mew=1.6, label=lab)
        ax.set(title=f"training face {i}", xticks=[], yticks=[])
        ax.grid(False)
    np.ravel(axes)[0].legend(fontsize=8, loc="lower left")


def draw_paired(ax, runs: dict) -> None:
    """Final test NME per seed (dots, one line per seed) and the mean (bar) of each loss at each width."""
    for j, (h, by_loss) in enumerate(runs.items()):
        x0 = j * (len(by_loss) + 1)
        vals = np.array([r["nme"] for r in by_loss.values()])                  # losses x seeds
        for s in range(vals.shape[1]):
            ax.plot(x0 + np.arange(len(vals)), vals[:, s], color=plots.MUTED, lw=0.6, alpha=0.6)
        for i, (k, v) in enumerate(zip(by_loss, vals)):
            ax.scatter(np.full(len(v), x0 + i), v, color=COLORS[k], s=14, zorder=3,
                       label=LOSS_NAMES[k] if j == 0 else None)
            ax.hlines(v.mean(), x0 + i - 0.35, x0 + i + 0.35, color=COLORS[k], lw=2.5)
        ax.text(x0 + (len(vals) - 1) / 2, 1.0, f"h = {h}", transform=ax.get_xaxis_transform(), ha="center",
                va="bottom")
    ax.set(xticks=[], ylabel="test NME (outer-eye normalised)", xlabel="loss, one grey line per seed")
    ax.legend(fontsize=8, loc="upper center", ncols=2)


def train_panel(autorun: bool = True):
    """Train-button panel: a student with the chosen loss and, on the same seed, an MSE student;
    knobs: the loss, the width h, the steps, the PCA variance of the soft landmarks (a new value
    trains new teachers, about 10 s, cached), KD-Loss's main weight and the seed."""
    from lossviz.widgets import run_panel
    controls = {"loss": W.Dropdown(options=[(LOSS_NAMES[k], k) for k in LOSSES], value="kd", description="loss",
                                   layout=W.Layout(width="220px")),
                "h": W.Dropdown(options=[4, 8, 16, 32, 64], value=8, description="width h", layout=W.Layout(width="160px")),
                "steps": W.Dropdown(options=[300, 600, 1200], value=600, description="steps", layout=W.Layout(width="160px")),
                "pca": W.FloatSlider(value=0.9, min=0.5, max=0.99, step=0.01, description="PCA var.",
                                     readout_format=".2f", continuous_update=False),
                "w_main": W.FloatSlider(value=2.0, min=0.0, max=4.0, step=0.5, description="w_main",
                                        readout_format=".2f", continuous_update=False),
                "seed": W.BoundedIntText(value=0, min=0, max=99, description="seed", layout=W.Layout(width="140px"))}

    def run(v, progress):
        kw = dict(h=v["h"], steps=v["steps"], seeds=(v["seed"],), pca_var=v["pca"], progress=progress)
        tea = teachers(v["pca"])
        base = train_students("mse", **kw)
        return {"teachers": tea, "mse": base, v["loss"]: train_students(v["loss"], w_main=v["w_main"], **kw)}

    def draw(axes, res, v):
        ax = axes[0, 0]
        for k, r in res.items():
            if k == "teachers":
                continue
            h = r["hist"]
            ax.plot([0, *h["nme_iter"]], [r["start"][0], *h["nme_members"][:, 0]], color=COLORS[k], label=f"{LOSS_NAMES[k]}: {r['nme'][0]:.3f}")
        for k in ("tou", "tol"):
            ax.axhline(res["teachers"]["nme_" + k], color=COLORS[k], ls=":", label=f"teacher {k}: {res['teachers']['nme_' + k]:.3f}")
        ax.set(xlabel="step", ylabel="test NME", yscale="log", title=f"student h = {v['h']}, PCA var. {v['pca']:.2f}")
        ax.legend(fontsize=8)
        return {"nme": {k: float(r["nme"][0]) for k, r in res.items() if k != "teachers"}}

    return run_panel(controls, run, draw, ncols=1, width=6.5, height=3.4, autorun=autorun,
                     describe=lambda res: " | ".join(f"{LOSS_NAMES[k]}: NME {r['nme'][0]:.3f}"
                                                     for k, r in res.items() if k != "teachers"))
