r"""Surrogate sharpness in offline optimisation: IGNITE and IGNITE2 (Dao, Nguyen, Truong, Hoang,
arXiv 2503.04242, 2025), in miniature.

A surrogate ``g_beta`` is fitted to offline designs and their scores, then searched by gradient
ascent.  IGNITE penalises the *sharpness of the mean prediction* of the surrogate with respect to its
weights, ``rho * ||grad_beta G(beta)||`` with ``G = mean_{x in batch} g_beta(x)``, through a Lagrangian
``L(beta) + lam (rho ||grad G|| - eps)``.

* :func:`oracle`, :func:`make_task`: the synthetic oracle and its offline / unseen split.
* :func:`mean_prediction_grad`, :func:`sharpness`: ``grad_beta G`` and its norm.
* :func:`fd_norm_grad` (the paper's finite difference) and :func:`exact_norm_grad` (double backprop).
* :func:`dual_update`: the dual ascent on ``lam`` (clipped at 0 here; the official code does not clip).
* :func:`train_surrogate` (cached with :func:`lossviz.train.memo`), :func:`ascend`, :func:`paired_runs`.
* :func:`dual_panel` (pure maths) and :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from .. import checks, plots
from ..train import loop, memo

COLORS = {"base": "#555555", "ignite": "#1f77b4", "train": "#2ca02c", "unseen": "#d62728"}


def oracle(x) -> torch.Tensor:
    """f(x) = -||x - 1||^2 + 2 sum_j cos(2 (x_j - 1)), one value per row of x (N x d)."""
    x = checks.as_float_tensor(x, "x", 2)
    z = x - 1
    return -(z ** 2).sum(1) + 2 * torch.cos(2 * z).sum(1)


def make_task(seed: int = 0, d: int = 8, n: int = 1000, pool: int = 20000):
    """Offline points (n below the median oracle value), unseen points (n above it, never fitted), and
    the score normaliser ``(lo, hi)``: lo = min over the offline set, hi = max over 200 000 draws."""
    checks.integer(d, "d", 1)
    checks.integer(n, "n", 2, pool // 2)
    g = torch.Generator().manual_seed(int(seed))
    x = 6 * torch.rand(pool, d, generator=g) - 3
    f = oracle(x)
    med = f.median()
    lo_idx, hi_idx = torch.nonzero(f < med)[:, 0], torch.nonzero(f > med)[:, 0]
    lo_idx, hi_idx = lo_idx[torch.randperm(len(lo_idx), generator=g)[:n]], hi_idx[torch.randperm(len(hi_idx), generator=g)[:n]]
    x_off, f_off = x[lo_idx], f[lo_idx]
    return {"x": x_off, "y": f_off, "x_unseen": x[hi_idx], "y_unseen": f[hi_idx],
            "lo": float(f_off.min()), "hi": _best_of_draws(d)}


@functools.lru_cache(maxsize=4)
def _best_of_draws(d: int) -> float:
    big = 6 * torch.rand(200000, d, generator=torch.Generator().manual_seed(12345)) - 3
    return float(oracle(big).max())


def surrogate(d: int = 8, width: int = 64, act: str = "leaky") -> nn.Sequential:
    """The MLP d - width - width - 1 (the spec uses width 128; 64 here keeps runs under a second) (leaky ReLU, or tanh for the smooth finite-difference check)."""
    A = {"leaky": nn.LeakyReLU, "tanh": nn.Tanh}[checks.choice(act, "act", ("leaky", "tanh"))]
    return nn.Sequential(nn.Linear(d, width), A(), nn.Linear(width, width), A(), nn.Linear(width, 1))


def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


def mean_prediction_grad(model, x, *, create_graph: bool = False) -> list:
    """``grad_beta G`` with ``G = mean_x g_beta(x)``: one tensor per parameter."""
    x = checks.as_float_tensor(x, "x", 2)
    G = model(x).mean()
    return list(torch.autograd.grad(G, _params(model), create_graph=create_graph))


def _norm(grads) -> torch.Tensor:
    return torch.sqrt(sum((g ** 2).sum() for g in grads))


def sharpness(model, x) -> float:
    """``||grad_beta G||`` on the points x: the first-order sharpness of the mean prediction
    (``max_{||delta|| <= rho} G(beta + delta) - G(beta) ~ rho * sharpness``)."""
    return float(_norm(mean_prediction_grad(model, x)).detach())


def fd_norm_grad(model, x, r: float = 0.05, *, g0=None) -> list:
    """The paper's finite difference: ``grad_beta ||grad G|| ~ (grad G(beta + r u) - grad G(beta)) / r``
    with ``u = grad G / ||grad G||``.  Leaves the model's weights as they were.  ``g0``: grad G at the
    current weights, if already computed (saves one backward pass)."""
    r = checks.positive(r, "r (the finite-difference step)")
    g0 = mean_prediction_grad(model, x) if g0 is None else g0
    n = _norm(g0)
    if not float(n) > 0:
        raise ValueError("grad G is zero: the finite-difference direction u is undefined")
    ps = _params(model)
    saved = [p.detach().clone() for p in ps]
    with torch.no_grad():
        for p, g in zip(ps, g0):
            p.add_(g, alpha=r / float(n))
    try:
        g1 = mean_prediction_grad(model, x)
    finally:
        with torch.no_grad():  # restore exactly (adding then subtracting would round)
            for p, w in zip(ps, saved):
                p.copy_(w)
    return [(a - b) / r for a, b in zip(g1, g0)]


def exact_norm_grad(model, x) -> list:
    """``grad_beta ||grad_beta G||`` by double backprop (the reference for small models)."""
    n = _norm(mean_prediction_grad(model, x, create_graph=True))
    ps = _params(model)
    gs = torch.autograd.grad(n, ps, allow_unused=True)  # the last bias does not change grad G
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(ps, gs)]


def cosine(a: list, b: list) -> float:
    """Cosine between two gradients given as lists of tensors."""
    dot = sum((x * y).sum() for x, y in zip(a, b))
    return float(dot / (_norm(a) * _norm(b)))


def dual_update(lam: float, norm: float, *, rho: float = 0.05, eps: float = 0.1, eta: float = 1e-3,
                clip: bool = True) -> float:
    """One dual-ascent step ``lam + eta (rho ||grad G|| - eps)``; clipped at 0 unless ``clip=False``
    (the official code does not clip)."""
    checks.non_negative(rho, "rho")
    checks.non_negative(eta, "eta (the dual step)")
    checks.finite(eps, "eps")
    new = float(lam) + eta * (rho * float(norm) - eps)
    return max(new, 0.0) if clip else new


def dual_trace(norms, *, lam0: float = 1e-3, **kw) -> np.ndarray:
    """lam after each step of :func:`dual_update` over a sequence of sharpness values."""
    out, lam = [], float(lam0)
    for n in np.asarray(norms, dtype=float):
        lam = dual_update(lam, n, **kw)
        out.append(lam)
    return np.asarray(out)


def ascend(model, x0, *, steps: int = 200, lr: float = 0.02) -> torch.Tensor:
    """Gradient ascent on the surrogate's prediction from the designs x0 (N x d)."""
    x = checks.as_float_tensor(x0, "x0", 2).clone().requires_grad_(True)
    for _ in range(checks.integer(steps, "steps", 0)):
        (gx,) = torch.autograd.grad(model(x).sum(), x)
        with torch.no_grad():
            x += lr * gx
    return x.detach()


def _train(seed, lam, mode, epochs, rho, r, eps, eta, wd, lr, progress):
    task = make_task(seed)
    torch.manual_seed(1000 + int(seed))
    model = surrogate()
    ym, ys = task["y"].mean(), task["y"].std()
    x, y = task["x"], (task["y"] - ym) / ys
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    g = torch.Generator().manual_seed(int(seed))
    n, bs = len(x), 128
    nb = math.ceil(n / bs)
    state = {"lam": float(lam), "perm": None}
    ps = _params(model)

    def step(it):
        b = (it - 1) % nb
        if b == 0:
            state["perm"] = torch.randperm(n, generator=g)
        idx = state["perm"][b * bs:(b + 1) * bs]
        xb, yb = x[idx], y[idx]
        loss = ((model(xb)[:, 0] - yb) ** 2).mean()
        gl = torch.autograd.grad(loss, ps)
        out = {"loss": float(loss.detach())}
        if mode != "base":
            g0 = mean_prediction_grad(model, xb)
            nrm = float(_norm(g0))
            if state["lam"] != 0:
                fd = fd_norm_grad(model, xb, r, g0=g0)
                gl = [a + state["lam"] * rho * f for a, f in zip(gl, fd)]
            out.update(sharp=nrm, lam=state["lam"])
            if mode == "dual":
                state["lam"] = dual_update(state["lam"], nrm, rho=rho, eps=eps, eta=eta)
        for p, gg in zip(ps, gl):
            p.grad = gg
        opt.step()
        return out

    hist = loop(step, epochs * nb, desc=f"{mode} λ={lam:g} seed {seed}", progress=progress)
    model.eval()
    start = task["x"][torch.argsort(task["y"], descending=True)[:64]]
    xs = ascend(model, start)
    scores = ((oracle(xs) - task["lo"]) / (task["hi"] - task["lo"])).numpy()
    return {"hist": hist, "sharp_train": sharpness(model, task["x"]),
            "sharp_unseen": sharpness(model, task["x_unseen"]),
            "score": float(np.median(scores)),
            "start_score": float(np.median(((oracle(start) - task["lo"]) / (task["hi"] - task["lo"])).numpy())),
            "lam_end": state["lam"], "params": dict(seed=seed, lam=lam, mode=mode, epochs=epochs, wd=wd)}


def train_surrogate(seed: int = 0, *, lam: float = 0.0, mode: str = "ignite2", epochs: int = 100,
                    rho: float = 0.05, r: float = 0.05, eps: float = 0.1, eta: float = 1e-3, wd: float = 0.0,
                    lr: float = 1e-3, progress=False) -> dict:
    """Train one surrogate (MSE on standardised scores; Adam 3e-4, batch 128) and search it.

    ``mode``: ``"base"`` (plain MSE), ``"ignite2"`` (fixed ``lam``), ``"dual"`` (IGNITE: ``lam``
    starts at the given value and follows :func:`dual_update`).  Returns a dict with the sharpness on
    the offline and unseen points, the median normalised score after ascent, and the history."""
    checks.choice(mode, "mode", ("base", "ignite2", "dual"))
    checks.non_negative(lam, "lam")
    checks.positive(rho, "rho")
    checks.positive(r, "r")
    checks.integer(epochs, "epochs", 1)
    if mode == "base":
        lam = 0.0
    params = dict(seed=int(seed), lam=float(lam), mode=mode, epochs=int(epochs), rho=rho, r=r, eps=eps, eta=eta,
                  wd=float(wd), lr=float(lr))
    return memo("ignite", params, lambda: _train(int(seed), float(lam), mode, int(epochs), rho, r, eps, eta,
                                                 float(wd), float(lr), progress))


def paired_runs(seeds, *, lam: float = 1.0, epochs: int = 100, progress=False) -> dict:
    """Base and IGNITE2 (``lam``) on the same seeds: arrays of sharpness (offline, unseen) and score."""
    out = {}
    for name, kw in (("base", dict(mode="base")), ("ignite2", dict(mode="ignite2", lam=lam))):
        rs = [train_surrogate(s, epochs=epochs, progress=progress, **kw) for s in seeds]
        out[name] = {k: np.array([r[k] for r in rs]) for k in ("sharp_train", "sharp_unseen", "score", "start_score")}
    return out


def sharpness_bars(ax, runs: dict):
    """Picture 1: mean sharpness on offline and unseen points, base vs IGNITE2, seeds as dots."""
    for i, where in enumerate(("sharp_train", "sharp_unseen")):
        for j, name in enumerate(("base", "ignite2")):
            v = runs[name][where]
            pos = i * 3 + j
            ax.bar(pos, v.mean(), color=COLORS["base" if name == "base" else "ignite"], alpha=0.7,
                   label=(name if i == 0 else None))
            ax.plot(np.full(len(v), pos), v, "k.", ms=4)
    ax.set_xticks([0.5, 3.5], ["offline (trained on)", "unseen (top half)"])
    ax.set_ylabel("‖∇_β G‖")
    ax.set_title("sharpness of the mean prediction")
    ax.legend()


def fd_cosines(rs=(0.1, 0.05, 1e-3), *, act: str = "tanh", seed: int = 0) -> dict:
    """Cosine between the finite-difference and the exact gradient of ||grad G||, per r (float64)."""
    task = make_task(seed)
    torch.manual_seed(seed)
    model = surrogate(act=act).double()
    xb = task["x"][:128].double()
    exact = exact_norm_grad(model, xb)
    return {r: cosine(fd_norm_grad(model, xb, r), exact) for r in rs}


def dual_panel(norms=None, *, rho: float = 0.05, eps: float = 0.1, eta: float = 1e-3):
    """Pure maths: the dual-ascent trajectory of lam over a fixed sequence of batch sharpness values.
    Knobs: eps, eta (log), rho, the clip at 0."""
    import ipywidgets as W

    from .. import widgets

    if norms is None:
        t = np.arange(800)
        norms = 1.0 + 6.0 * np.exp(-t / 150) + 0.3 * np.sin(t / 7)
    norms = np.asarray(norms, dtype=float)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "eps": W.FloatSlider(value=eps, min=0.0, max=0.5, step=0.01, description="ε (budget)", readout_format=".2f", **style),
        "eta": W.FloatLogSlider(value=eta, base=10, min=-4, max=-1, step=0.1, description="η_λ (step)",
                                readout_format=".3g", **style),
        "rho": W.FloatSlider(value=rho, min=0.01, max=0.2, step=0.01, description="ρ (radius)", readout_format=".2f", **style),
        "clip": W.Checkbox(value=True, description="clip λ ≥ 0", indent=False),
    }
    fig, axes = plots.new_figure(2, width=4.6, height=3.3)
    ax, ax2 = axes[0, 0], axes[0, 1]
    t = np.arange(1, len(norms) + 1)
    (l_s,) = ax.plot(t, rho * norms, color=COLORS["train"], label="ρ‖∇G‖")
    (l_e,) = ax.plot(t, t * 0 + eps, "k--", label="ε")
    ax.set(xlabel="training step", ylabel="penalised sharpness", title="constraint ρ‖∇G‖ ≤ ε")
    ax.legend()
    (l_l,) = ax2.plot(t, t * 0.0, color=COLORS["ignite"])
    ax2.axhline(0, color="0.6", lw=0.8)
    ax2.set(xlabel="training step", ylabel="λ", title="λ under dual ascent")

    def draw(v):
        lam = dual_trace(norms, rho=v["rho"], eps=v["eps"], eta=v["eta"], clip=v["clip"])
        l_s.set_ydata(v["rho"] * norms)
        l_e.set_ydata(t * 0 + v["eps"])
        ax.set_ylim(0, max(v["rho"] * norms.max(), v["eps"]) * 1.1)
        l_l.set_ydata(lam)
        lo, hi = min(lam.min(), 0.0), max(lam.max(), 1e-6)
        ax2.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        return {"lam": lam, "status": f"final λ = {lam[-1]:.3g}"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, epochs: int = 100, autorun: bool = False):
    """A Train button: base against a chosen mode (IGNITE2 with fixed λ, or dual IGNITE) and weight
    decay, one seed.  Left: training loss; middle: sharpness bars; right: median score after ascent."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "mode": W.Dropdown(options=[("IGNITE2", "ignite2"), ("IGNITE dual", "dual")], value="ignite2",
                           description="mode", layout=W.Layout(width="200px")),
        "lam": W.FloatLogSlider(value=1.0, base=10, min=-3, max=1, step=0.5, description="λ", readout_format=".3g", **style),
        "wd": W.FloatLogSlider(value=1e-6, base=10, min=-6, max=-1, step=1, description="weight decay",
                               readout_format=".0e", **style),
        "seed": W.BoundedIntText(value=0, min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        wd = 0.0 if v["wd"] <= 1e-6 else float(v["wd"])
        return {"base": train_surrogate(v["seed"], mode="base", epochs=epochs, wd=wd, progress=progress),
                "reg": train_surrogate(v["seed"], mode=v["mode"], lam=v["lam"], epochs=epochs, wd=wd,
                                       progress=progress)}

    def draw(axes, res, v):
        b, r = res["base"], res["reg"]
        ax = axes[0, 0]
        for nm, rr, c in (("base", b, COLORS["base"]), (v["mode"], r, COLORS["ignite"])):
            h = rr["hist"]
            ax.plot(h["iter"], h["loss"], color=c, lw=0.8, label=nm)
        ax.set(yscale="log", xlabel="step", ylabel="MSE (standardised)", title="training loss")
        ax.legend()
        ax = axes[0, 1]
        w = np.array([0, 1])
        ax.bar(w - 0.2, [b["sharp_train"], b["sharp_unseen"]], 0.4, color=COLORS["base"], label="base")
        ax.bar(w + 0.2, [r["sharp_train"], r["sharp_unseen"]], 0.4, color=COLORS["ignite"], label=v["mode"])
        ax.set_xticks(w, ["offline", "unseen"])
        ax.set(ylabel="‖∇_β G‖", title="sharpness")
        ax.legend()
        ax = axes[0, 2]
        ax.bar([0, 1, 2], [b["start_score"], b["score"], r["score"]], color=["0.8", COLORS["base"], COLORS["ignite"]])
        ax.set_xticks([0, 1, 2], ["start", "base", v["mode"]])
        ax.set(ylabel="median normalised score", title="after 200 ascent steps")
        return {"ratio_unseen": r["sharp_unseen"] / b["sharp_unseen"],
                "status": f"unseen sharpness ratio {r['sharp_unseen'] / b['sharp_unseen']:.2f}; "
                          f"scores {b['score']:.3f} → {r['score']:.3f}"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=3.3, height=3.1, autorun=autorun)
