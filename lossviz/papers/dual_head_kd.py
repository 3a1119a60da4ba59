"""Dual-Head Knowledge Distillation (Yang, Zong, Huang, Feng, An, arXiv 2411.08937).

Probability-level distillation (softmax KD) cannot see a constant shift of the logits; a logit-level
loss (BinaryKL) can. The paper adds BinaryKL to cross-entropy and finds that on ONE shared linear
head the two gradients fight; its fix (DHKD) gives the logit loss its own head ``fc2``:

    L = gamma * CE(fc(h), y) + alpha * L_BKLN(fc2(h), t)

    L_BKL  = (T^2/N) sum_{i,k} KL(Bern(s(t_ik/T)) || Bern(s(z_ik/T)))
    L_BKLN = (T^2/N) sum_{i,k} [ (softplus(d_ik) + softplus(-d_ik))/2 - log 2 ],  d = (z - t)/T
    KD     = T^2 * mean_i KL(softmax(t_i/T) || softmax(z_i/T))

All logit losses use the stable forms (logsigmoid / softplus); ``bkl_norm_clamped`` mirrors the
official code's clamp to [1e-8, 1 - 1e-8], which overflows to inf in float32.
Maths, then the miniature experiment (cached teacher, students on ``make_ids``), then the panels.
"""
from __future__ import annotations

import math

import ipywidgets as W
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lossviz import checks, plots
from lossviz import train as T
from lossviz.data import make_ids
from lossviz.metrics import paired_difference  # noqa: F401  (re-exported for the notebook)


# ----------------------------------------------------------------------------- the losses
def _pair(z, t, temperature):
    z = checks.as_float_tensor(z, "z (student logits)", 2)
    t = checks.as_float_tensor(t, "t (teacher logits)", 2).to(z)
    if z.shape != t.shape:
        raise ValueError(f"student and teacher logits must have the same shape, got {tuple(z.shape)} and {tuple(t.shape)}")
    checks.temperature(temperature, "T (the temperature)")
    return z, t, float(temperature)


def bkl_loss(z, t, T: float = 2.0):
    """BinaryKL: (T^2/N) sum KL(Bern(p) || Bern(q)), p = s(t/T), q = s(z/T), in log-sigmoid form."""
    z, t, T = _pair(z, t, T)
    p, logp, log1mp = torch.sigmoid(t / T), F.logsigmoid(t / T), F.logsigmoid(-t / T)
    logq, log1mq = F.logsigmoid(z / T), F.logsigmoid(-z / T)
    kl = p * (logp - logq) + (1 - p) * (log1mp - log1mq)
    return T * T * kl.sum() / z.shape[0]


def bkl_norm_loss(z, t, T: float = 2.0):
    """BinaryKL-Norm: (T^2/N) sum [(softplus(d) + softplus(-d))/2 - log 2], d = (z - t)/T."""
    z, t, T = _pair(z, t, T)
    d = (z - t) / T
    return T * T * (0.5 * (F.softplus(d) + F.softplus(-d)) - math.log(2.0)).sum() / z.shape[0]


def bkl_norm_clamped(z, t, T: float = 2.0, eps: float = 1e-8):
    """The official code's form: sigmoid clamped to [eps, 1 - eps], then logs (inf in float32 at |d| > ~17)."""
    z, t, T = _pair(z, t, T)
    u = torch.sigmoid((z - t) / T).clamp(eps, 1 - eps)
    return T * T * (-0.5 * torch.log(u) - 0.5 * torch.log(1 - u) - math.log(2.0)).sum() / z.shape[0]


def kd_loss(z, t, T: float = 4.0):
    """Classic KD: T^2 * mean_i KL(softmax(t_i/T) || softmax(z_i/T))."""
    z, t, T = _pair(z, t, T)
    logp = F.log_softmax(t / T, dim=1)
    return T * T * (logp.exp() * (logp - F.log_softmax(z / T, dim=1))).sum() / z.shape[0]


def ce_loss(z, y):
    z = checks.as_float_tensor(z, "z (logits)", 2)
    y = checks.check_labels(y, z.shape[0], z.device)
    return F.cross_entropy(z, y)


LOSSES = {"KD (T=4)": (kd_loss, 4.0), "BinaryKL (T=2)": (bkl_loss, 2.0), "BKL-Norm (T=2)": (bkl_norm_loss, 2.0)}


def logit_grad(loss, z, t, **kw) -> torch.Tensor:
    """dL/dz by autograd (the logits made a leaf): the per-logit weights."""
    z = torch.as_tensor(z).detach().clone().requires_grad_(True)
    loss(z, t, **kw).backward()
    return z.grad


# ----------------------------------------------------------------------------- neural-collapse illustration
def etf_means(K: int = 10, dim: int = 16, seed: int = 0) -> torch.Tensor:
    """K unit class means forming a simplex ETF in ``dim`` dimensions (K <= dim)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, K, generator=g, dtype=torch.float64))
    M = torch.eye(K, dtype=torch.float64) - 1.0 / K
    M = M / M.norm(dim=1, keepdim=True)
    return M @ Q.T  # (K, dim)


def collapse_cosines(scale: float, *, K: int = 10, dim: int = 16, n: int = 20, noise: float = 0.05,
                     teacher_target: float = 8.0, seed: int = 0) -> dict:
    """cos(grad CE, grad BKL) on the head weights W and on the features h, for a collapsed student.

    Features h = sqrt(scale) (mu_y + noise), head W = sqrt(scale) mu, so the target logit is about
    ``scale``. Teacher: target logit 8, non-target logits N(-1, 2^2)."""
    checks.positive(scale, "scale")
    g = torch.Generator().manual_seed(seed)
    mu = etf_means(K, dim, seed)
    y = torch.arange(K).repeat_interleave(n)
    h = (math.sqrt(scale) * (mu[y] + noise * torch.randn(len(y), dim, generator=g, dtype=torch.float64))).requires_grad_(True)
    Wt = (math.sqrt(scale) * mu).clone().requires_grad_(True)
    t = -1 + 2 * torch.randn(len(y), K, generator=g, dtype=torch.float64)
    t[torch.arange(len(y)), y] = teacher_target
    out = {}
    for name, fn in (("ce", lambda z: F.cross_entropy(z, y)), ("bkl", lambda z: bkl_loss(z, t, 2.0))):
        gW, gh = torch.autograd.grad(fn(h @ Wt.T), (Wt, h))
        out[name] = (gW.flatten(), gh.flatten())
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))
    return {"cos_W": cos(out["ce"][0], out["bkl"][0]), "cos_h": cos(out["ce"][1], out["bkl"][1])}


# ----------------------------------------------------------------------------- the miniature experiment
def split():
    X, y = make_ids(100, 40, seed=0)
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = torch.as_tensor(X, dtype=torch.float32)[perm], torch.as_tensor(y, dtype=torch.long)[perm]
    return X[:3000], y[:3000], X[3000:], y[3000:]


def _mlp(widths):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def _sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def teacher(steps: int = 500, width: int = 256, progress=False) -> dict:
    """The cached teacher: MLP 32-width-width-100 (torch seed 123); returns its logits on train and test."""
    def compute():
        Xtr, ytr, Xte, yte = split()
        torch.manual_seed(123)
        net = nn.Sequential(_mlp([32, width, width]), nn.Linear(width, 100))
        opt = _sgd(net.parameters())
        g = torch.Generator().manual_seed(123)

        def step(_it):
            idx = torch.randint(0, len(ytr), (128,), generator=g)
            loss = F.cross_entropy(net(Xtr[idx]), ytr[idx])
            opt.zero_grad(); loss.backward(); opt.step()
            return {"loss": loss}
        T.loop(step, steps, desc="teacher", progress=progress)
        with torch.no_grad():
            return {"train": net(Xtr), "test": net(Xte), "acc": float((net(Xte).argmax(1) == yte).float().mean())}
    return T.memo("dhkd-teacher", {"steps": steps, "width": width}, compute)


class Student(nn.Module):
    """Backbone 32-w-w, main head fc (evaluated) and auxiliary head fc2 (training only)."""

    def __init__(self, width: int = 32, n_classes: int = 100):
        super().__init__()
        self.backbone = _mlp([32, width, width])
        self.fc, self.fc2 = nn.Linear(width, n_classes), nn.Linear(width, n_classes)

    def forward(self, x):
        h = self.backbone(x)
        return self.fc(h), self.fc2(h)


MODES = ("ce", "bkl_only", "shared", "dhkd", "dual_bkl")


def student_loss(mode, z1, z2, y, t, alpha):
    """The training loss of each setting (fc's logits z1, fc2's logits z2)."""
    if mode == "ce":
        return ce_loss(z1, y)
    if mode == "bkl_only":
        return alpha * bkl_loss(z1, t, 2.0)
    if mode == "shared":
        return ce_loss(z1, y) + alpha * bkl_loss(z1, t, 2.0)
    if mode == "dhkd":
        return ce_loss(z1, y) + alpha * bkl_norm_loss(z2, t, 2.0)
    if mode == "dual_bkl":
        return ce_loss(z1, y) + alpha * bkl_loss(z2, t, 2.0)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def train_student(mode: str = "dhkd", *, alpha: float = 0.1, seed: int = 0, steps: int = 600, width: int = 32,
                  t_scale: float = 1.0, progress=False) -> dict:
    """One student run, cached by its parameters: head-1 (fc) test accuracy, curves, the cosines."""
    checks.choice(mode, "mode", MODES)
    checks.non_negative(alpha, "alpha")
    params = dict(mode=mode, alpha=float(alpha), seed=int(seed), steps=int(steps), width=int(width), t_scale=float(t_scale))

    def compute():
        Xtr, ytr, Xte, yte = split()
        tea = teacher()
        ttr = tea["train"] * t_scale
        torch.manual_seed(seed)
        net = Student(width)
        opt = _sgd(net.parameters())
        g = torch.Generator().manual_seed(seed)

        def evaluate():
            with torch.no_grad():
                return float((net(Xte)[0].argmax(1) == yte).float().mean())

        def step(it):
            idx = torch.randint(0, len(ytr), (128,), generator=g)
            z1, z2 = net(Xtr[idx])
            loss = student_loss(mode, z1, z2, ytr[idx], ttr[idx], alpha)
            opt.zero_grad(); loss.backward(); opt.step()
            out = {"loss": loss}
            if it % 50 == 0 or it == steps:
                out["acc"] = evaluate()
            return out
        hist = T.loop(step, steps, desc=mode, progress=progress)
        return {"hist": hist, "acc": hist["acc"][-1], "params": params}
    return T.memo("dhkd-student", params, compute)


def head_grads(alpha: float = 1.0, seed: int = 0, width: int = 32) -> dict:
    """At initialisation of a DHKD student, the gradients of each loss on each head (head isolation)."""
    Xtr, ytr, _, _ = split()
    tea = teacher()
    torch.manual_seed(seed)
    net = Student(width)
    z1, z2 = net(Xtr[:128])
    ce = ce_loss(z1, ytr[:128])
    kd = alpha * bkl_norm_loss(z2, tea["train"][:128], 2.0)
    out = {}
    for name, loss in (("ce", ce), ("kd", kd)):
        gs = torch.autograd.grad(loss, [net.fc.weight, net.fc2.weight, net.backbone[0].weight],
                                 retain_graph=True, allow_unused=True)
        out[name] = [torch.zeros_like(p) if g_ is None else g_ for p, g_ in
                     zip([net.fc.weight, net.fc2.weight, net.backbone[0].weight], gs)]
    return out


# ----------------------------------------------------------------------------- pictures and panels
def gap_grid(n: int = 201, lim: float = 20.0) -> torch.Tensor:
    return torch.linspace(-lim, lim, n, dtype=torch.float64)


def per_logit_curves(T_bkl: float = 2.0, T_kd: float = 4.0, t0: float = 2.0, gaps=None) -> dict:
    """dL/dz of one logit against the gap z - t (one sample, N = 1).

    For KD the row has two classes (the other logit fixed at 0 in both networks)."""
    gaps = gap_grid() if gaps is None else gaps
    t = torch.full((len(gaps), 1), t0, dtype=torch.float64)
    z = t + gaps[:, None]
    g_bkln = logit_grad(bkl_norm_loss, z, t, T=T_bkl).squeeze(1) * len(gaps)
    g_bkl = logit_grad(bkl_loss, z, t, T=T_bkl).squeeze(1) * len(gaps)
    z2, t2 = torch.cat([z, torch.zeros_like(z)], 1), torch.cat([t, torch.zeros_like(t)], 1)
    g_kd = logit_grad(kd_loss, z2, t2, T=T_kd)[:, 0] * len(gaps)
    return {"gap": gaps, "BKL-Norm (T=2)": g_bkln, "BinaryKL (T=2)": g_bkl, "KD (T=4)": g_kd}


def shift_curves(z, t, shifts, T_bkl: float = 2.0, T_kd: float = 4.0) -> dict:
    """Each loss when a constant c is added to every student logit."""
    out = {"KD (T=4)": [], "BinaryKL (T=2)": [], "BKL-Norm (T=2)": []}
    for c in shifts:
        out["KD (T=4)"].append(float(kd_loss(z + c, t, T_kd)))
        out["BinaryKL (T=2)"].append(float(bkl_loss(z + c, t, T_bkl)))
        out["BKL-Norm (T=2)"].append(float(bkl_norm_loss(z + c, t, T_bkl)))
    return {k: np.asarray(v) for k, v in out.items()}


COLORS = {"KD (T=4)": "tab:gray", "BinaryKL (T=2)": "tab:orange", "BKL-Norm (T=2)": "tab:blue"}


def logit_panel(z=None, t=None):
    """Pure maths: the per-logit gradient against the gap (left) and each loss against a shift c of
    the student's logits (right), for BinaryKL's temperature T and softmax KD's own T."""
    from lossviz.widgets import Panel
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 10, generator=g, dtype=torch.float64) * 2 if z is None else z
    t = torch.randn(4, 10, generator=g, dtype=torch.float64) * 2 if t is None else t
    shifts = np.linspace(-5, 5, 41)
    controls = {"T_bkl": W.FloatSlider(value=2.0, min=0.5, max=8.0, step=0.5, description="T (BinaryKL)", readout_format=".2f"),
                "T_kd": W.FloatSlider(value=4.0, min=0.5, max=8.0, step=0.5, description="T (KD)", readout_format=".2f")}
    fig, axes = plots.new_figure(2, width=4.6, height=3.3)
    a0, a1 = axes[0, 0], axes[0, 1]
    lines0, lines1 = {}, {}
    for k, col in COLORS.items():
        (lines0[k],) = a0.plot([], [], color=col, label=k)
        (lines1[k],) = a1.plot([], [], color=col, label=k)
    bound = a0.axhline(1.0, ls=":", color="tab:blue", lw=1)
    a0.axhline(-1.0, ls=":", color="tab:blue", lw=1)
    a0.set(xlabel="logit gap z - t", ylabel="N · dL/dz", title="per-logit gradient", xlim=(-20, 20), ylim=(-4.5, 4.5))
    a1.set(xlabel="shift c added to every student logit", ylabel="loss", title="shift invariance", xlim=(-5, 5))
    a0.legend(fontsize=7)

    def draw(v):
        cur = per_logit_curves(v["T_bkl"], v["T_kd"])
        for k in COLORS:
            lines0[k].set_data(cur["gap"].numpy(), cur[k].numpy())
        bound.set_ydata([v["T_bkl"] / 2] * 2)
        sh = shift_curves(z, t, shifts, v["T_bkl"], v["T_kd"])
        for k in COLORS:
            lines1[k].set_data(shifts, sh[k])
        top = max(float(s.max()) for s in sh.values())
        a1.set_ylim(0, 1.05 * top)
        bkln = cur["BKL-Norm (T=2)"]
        return {"max_bkln": float(bkln.abs().max()), "kd_spread": float(np.ptp(sh["KD (T=4)"])),
                "bkl_spread": float(np.ptp(sh["BinaryKL (T=2)"])),
                "status": f"max |N dL/dz| of BKL-Norm = {float(bkln.abs().max()):.3g} (bound T/2 = {v['T_bkl'] / 2:.3g})"}
    return Panel(controls, fig, draw)


def plot_collapse(ax, scales=None) -> dict:
    scales = np.geomspace(0.5, 32, 13) if scales is None else scales
    cs = [collapse_cosines(s) for s in scales]
    cw, ch = np.array([c["cos_W"] for c in cs]), np.array([c["cos_h"] for c in cs])
    ax.semilogx(scales, cw, "o-", color="tab:red", label="cos on head W")
    ax.semilogx(scales, ch, "s-", color="tab:green", label="cos on features h")
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(8, ls=":", color="gray", lw=1)
    ax.set(xlabel="student target logit (scale)", ylabel="cos(∇CE, ∇BKL)", title="CE vs BinaryKL: gradient conflict")
    ax.legend(fontsize=7)
    return {"scale": scales, "cos_W": cw, "cos_h": ch}


def plot_runs(ax, runs: dict) -> None:
    for name, r in runs.items():
        h = r["hist"]
        ax.plot(h.get("acc_iter", h["iter"]), h["acc"], label=f"{name}: {r['acc']:.3f}")
    ax.set(xlabel="step", ylabel="head-1 (fc) test accuracy", title="students", ylim=(0, 1))
    ax.legend(fontsize=7)


def train_panel(steps: int = 600):
    """Train-button panel on DHKD's knobs: setting, alpha, teacher logit scale, width, seed."""
    from lossviz.widgets import run_panel
    controls = {"mode": W.Dropdown(options=list(MODES), value="dhkd", description="setting"),
                "alpha": W.FloatLogSlider(value=0.1, base=10, min=-1.4, max=0.3, step=0.1, description="alpha", readout_format=".2f"),
                "t_scale": W.FloatSlider(value=1.0, min=0.5, max=4.0, step=0.5, description="teacher ×", readout_format=".2f"),
                "width": W.Dropdown(options=[16, 32, 64, 128], value=32, description="width"),
                "seed": W.IntSlider(value=0, min=0, max=7, description="seed")}

    def run(v, progress):
        ce = train_student("ce", seed=v["seed"], steps=steps, width=v["width"], progress=progress)
        r = train_student(v["mode"], alpha=v["alpha"], seed=v["seed"], steps=steps, width=v["width"],
                          t_scale=v["t_scale"], progress=progress)
        return {"CE only": ce, v["mode"]: r}

    def draw(axes, res, v):
        plot_runs(axes[0, 0], res)
        return {"acc": {k: r["acc"] for k, r in res.items()}}

    return run_panel(controls, run, draw, ncols=1, width=6.0, height=3.3,
                     describe=lambda res: " | ".join(f"{k}: {r['acc']:.3f}" for k, r in res.items()))
