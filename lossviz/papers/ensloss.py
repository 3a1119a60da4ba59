"""EnsLoss (Dai, 2024): random calibrated loss *derivatives*, redrawn every batch, against overfitting.

Binary labels ``y in {-1, +1}``, a score ``f(x)`` and the margin ``s = y f(x)``.  A convex margin loss
``phi(s)`` is classification-calibrated iff ``phi'(0) < 0`` (Bartlett et al.), so EnsLoss samples a
*derivative* that is non-decreasing in ``s`` (convexity) and negative (calibration), per batch:

    z_i ~ N(0, 1),  g_i = -BC^{-1}_lam(z_i)          (lam = 0: -exp(z_i), log-normal magnitudes)
    sort g ascending, clip at -c                      (c = 1 in the official code)
    the smallest margin gets the most negative g      (rank assignment)
    g_i <- g_i / s_i where s_i > 1                    (a decaying tail)
    g_i <- g_i - 1e-6                                 (strictly negative)
    loss = mean_i(g_i.detach() * s_i)                 (its gradient is (1/B) sum_i g_i grad s_i)

Sample i's weight (General Pair Weighting view) is ``-g_i in (0, c]``: a random monotone step function
of the margin, compared with the fixed losses' ``sigma(-s)`` (BCE), ``1[s < 1]`` (hinge), ``e^{-s}``
(exponential).  Maths first, then the digits odd-vs-even experiment with label noise, then pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import checks, data, plots
from ..train import Run, loop, memo

#: The fixed margin losses compared with EnsLoss, and EnsLoss itself.
FIXED = ("bce", "hinge", "exp", "focal")
LOSSES = ("ensloss",) + FIXED
NAMES = {"ensloss": "EnsLoss", "bce": "BCE (logistic)", "hinge": "hinge", "exp": "exponential", "focal": "focal (γ=2)"}
COLORS = {"ensloss": "#009E73", "bce": "#E69F00", "hinge": "#CC79A7", "exp": "#5D3A9B", "focal": "#56B4E9"}
EPS = 1e-6


# ------------------------------------------------------------------------------------------------
# Maths
# ------------------------------------------------------------------------------------------------

def _labels_pm1(y, n: int, device) -> torch.Tensor:
    """Labels in {-1, +1} as a float vector of length n (integer or float input)."""
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"y must hold labels -1 or +1; got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) to match the scores; got {tuple(y.shape)}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must hold labels -1 or +1 (binary margin losses); map {0, 1} with 2 * y - 1")
    return y.to(device=device, dtype=torch.get_default_dtype())


def margins(scores, y) -> torch.Tensor:
    """``s = y * f``: the margin of each sample (``scores`` a vector of B real scores)."""
    f = checks.as_float_tensor(scores, "scores (one real score f(x) per sample)", 1)
    return _labels_pm1(y, len(f), f.device).to(f.dtype) * f


def box_cox_inverse(z: torch.Tensor, lam: float = 0.0) -> torch.Tensor:
    """``BC^{-1}_lam(z)``: ``e^z`` for lam = 0, ``(1 + lam z)_+^{1/lam}`` otherwise (may be inf for lam < 0)."""
    if lam == 0:
        return torch.exp(z)
    return torch.clamp(1 + lam * z, min=0) ** (1.0 / lam)


def ensloss_derivatives(s, *, lam: float = 0.0, clip: float = 1.0, decay: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw of EnsLoss's derivatives ``g_i = phi'(s_i)`` for a batch of margins ``s`` (no grad).

    Follows ``s``'s device and dtype (the official code moves the draw to CUDA unconditionally).
    Every value lies in ``[-clip - 1e-6, -1e-6]`` and is non-decreasing in ``s``."""
    s = checks.as_float_tensor(s, "s (margins y * f)", 1)
    lam = checks.finite(lam, "lam (Box-Cox lambda)")
    clip = checks.positive(clip, "clip (the largest weight)")
    s = s.detach()
    z = torch.randn(len(s), generator=generator, dtype=s.dtype, device="cpu").to(s.device)
    g = -box_cox_inverse(z, lam)
    g = torch.sort(g).values.clamp(min=-clip)                 # ascending, then clipped at -c
    out = torch.empty_like(g)
    out[torch.argsort(s, stable=True)] = g                    # smallest margin <- most negative g
    if decay:
        out = torch.where(s > 1, out / s.clamp(min=1), out)   # decaying tail, never divides by 0
    return out - EPS


def ensloss(scores, y, *, lam: float = 0.0, clip: float = 1.0, decay: bool = True,
            generator: torch.Generator | None = None, return_derivatives: bool = False):
    """EnsLoss's surrogate ``mean_i(g_i * s_i)`` with ``g`` from :func:`ensloss_derivatives`, detached.

    Its *value* is meaningless (``g`` is random); its gradient is ``(1/B) sum_i g_i grad s_i``."""
    s = margins(scores, y)
    g = ensloss_derivatives(s, lam=lam, clip=clip, decay=decay, generator=generator)
    loss = (g * s).mean()
    return (loss, g) if return_derivatives else loss


def fixed_derivative(kind: str, s) -> torch.Tensor:
    """Closed-form ``phi'(s)`` of a fixed loss: BCE ``-sigma(-s)``, hinge ``-1[s < 1]``, exponential
    ``-e^{-s}`` (focal has no short form; use autograd)."""
    checks.choice(kind, "loss", ("bce", "hinge", "exp"))
    s = torch.as_tensor(s)
    if kind == "bce":
        return -torch.sigmoid(-s)
    if kind == "hinge":
        return -(s < 1).to(s.dtype)
    return -torch.exp(-s)


def margin_loss(scores, y, kind: str = "bce", *, gamma: float = 2.0) -> torch.Tensor:
    """Mean of a fixed margin loss ``phi(y f)``: ``bce`` = log(1 + e^{-s}), ``hinge`` = (1 - s)_+,
    ``exp`` = e^{-s}, ``focal`` = -(1 - p)^gamma log p with ``p = sigma(s)``."""
    checks.choice(kind, "loss", FIXED)
    s = margins(scores, y)
    if kind == "bce":
        return nn.functional.softplus(-s).mean()
    if kind == "hinge":
        return torch.relu(1 - s).mean()
    if kind == "exp":
        return torch.exp(-s).mean()
    gamma = checks.non_negative(gamma, "gamma (focal)")
    return (torch.sigmoid(-s) ** gamma * nn.functional.softplus(-s)).mean()


def two_logit_loss(logits, labels, kind: str = "bce", **knobs) -> torch.Tensor:
    """A binary margin loss as a loss of two logits (class 0, class 1), so that the core's
    :func:`lossviz.logit_weights` and :func:`lossviz.sample_weights` apply: ``f = z_1 - z_0`` and
    ``y = 2 * label - 1``.  ``kind="ensloss"`` uses the sampled derivatives (pass ``generator``).
    Returns one loss per sample, so ``|dL/dz_y|`` is that sample's weight ``|phi'(s_i)|``."""
    z = checks.as_float_tensor(logits, "logits (B x 2)", 2)
    if z.shape[1] != 2:
        raise ValueError(f"binary losses need exactly 2 logit columns; got shape {tuple(z.shape)}")
    labels = checks.check_labels(labels, len(z), z.device)
    f, y = z[:, 1] - z[:, 0], 2 * labels - 1
    s = y.to(z.dtype) * f
    if kind == "ensloss":
        return ensloss_derivatives(s, **knobs) * s
    checks.choice(kind, "loss", FIXED)
    return {"bce": lambda: nn.functional.softplus(-s), "hinge": lambda: torch.relu(1 - s),
            "exp": lambda: torch.exp(-s),
            "focal": lambda: torch.sigmoid(-s) ** knobs.get("gamma", 2.0) * nn.functional.softplus(-s)}[kind]()


def legitimacy(s: torch.Tensor, g: torch.Tensor, clip: float = 1.0) -> dict:
    """The sampler's guarantees on one batch: all ``g < 0``, all ``g >= -clip - 1e-6``, and ``g``
    non-decreasing in ``s`` where ``s <= 1``."""
    o = torch.argsort(s, stable=True)
    gs, ss = g[o], s[o]
    keep = ss <= 1
    mono = bool((torch.diff(gs[keep]) >= -1e-12).all()) if int(keep.sum()) > 1 else True
    return {"negative": bool((g < 0).all()), "bounded": bool((g >= -clip - EPS - 1e-12).all()), "monotone": mono}


# ------------------------------------------------------------------------------------------------
# Data and training
# ------------------------------------------------------------------------------------------------

def noisy_digits(seed: int = 0, *, noise: float = 0.2, n_train: int = 1000):
    """Digits as odd (+1) vs even (-1): a 67/33 split with ``random_state=seed``, the first
    ``n_train`` training samples standardised with ``noise`` of their labels flipped (seeded), and the
    clean test part.  Returns ``(x_train, y_train, x_test, y_test, flipped)`` with ``y`` in {-1, +1}."""
    noise = checks.fraction(noise, "noise (label-flip rate)", high=0.5)
    x_tr, x_te, d_tr, d_te = data.digits_split(0.33, stratify=False, seed=seed)
    x_tr, d_tr = x_tr[:n_train], d_tr[:n_train]
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    y_tr = torch.as_tensor(np.where(d_tr % 2 == 1, 1.0, -1.0), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    flipped = torch.rand(len(y_tr), generator=gen) < noise
    y_tr = torch.where(flipped, -y_tr, y_tr)
    as_t = lambda a: torch.as_tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return as_t(x_tr), y_tr, as_t(x_te), torch.as_tensor(np.where(d_te % 2 == 1, 1.0, -1.0), dtype=torch.float32), flipped


@dataclass(repr=False)
class EnsRun(Run):
    """``history``: per epoch ``test_acc``, ``train_acc`` (noisy labels) and ``bce`` (train BCE, a
    fixed reference loss); ``scores``: ``last10`` (mean test accuracy over the last 10 epochs),
    ``best`` (best-epoch test accuracy), ``best_epoch`` and, for EnsLoss, ``legit`` (the sampler's
    guarantees held on every batch of the first 2 epochs)."""

    def __repr__(self) -> str:
        s = self.scores
        return (f"EnsRun({NAMES[self.params['loss']]}, seed {self.params['seed']}: last-10 acc {s['last10']:.3f}, "
                f"best {s['best']:.3f} at epoch {int(s['best_epoch'])})")


def train_ensloss(loss: str = "ensloss", *, epochs: int = 100, noise: float = 0.2, width: int = 256,
                  batch_size: int = 64, lr: float = 1e-3, lam: float = 0.0, clip: float = 1.0,
                  decay: bool = True, seed: int = 0, progress=True, cache: bool = True) -> EnsRun:
    """MLP 64-width-width-1 (ReLU), Adam, on :func:`noisy_digits`.  Seed s fixes the split, the flips,
    the initialisation and the batch order for every loss (paired runs); EnsLoss's draws use their
    own generator, so they do not shift the batch order."""
    checks.choice(loss, "loss", LOSSES)
    for name, value, low in (("epochs", epochs, 1), ("width", width, 1), ("batch_size", batch_size, 2),
                             ("seed", seed, 0)):
        checks.integer(value, name, low)
    params = dict(loss=loss, epochs=epochs, noise=checks.fraction(noise, "noise", high=0.5), width=width,
                  batch_size=batch_size, lr=checks.positive(lr, "lr"), lam=checks.finite(lam, "lam"),
                  clip=checks.positive(clip, "clip"), decay=bool(decay), seed=seed)
    return memo("ensloss", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> EnsRun:
    x_tr, y_tr, x_te, y_te, _ = noisy_digits(p["seed"], noise=p["noise"])
    torch.manual_seed(p["seed"])
    w = p["width"]
    model = nn.Sequential(nn.Linear(x_tr.shape[1], w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 1))
    opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
    order_gen = torch.Generator().manual_seed(p["seed"])
    draw_gen = torch.Generator().manual_seed(10_000 + p["seed"])
    legit = {"negative": True, "bounded": True, "monotone": True}

    def epoch(ep: int) -> dict:
        model.train()
        for idx in torch.randperm(len(x_tr), generator=order_gen).split(p["batch_size"]):
            f = model(x_tr[idx]).squeeze(1)
            if p["loss"] == "ensloss":
                value, g = ensloss(f, y_tr[idx], lam=p["lam"], clip=p["clip"], decay=p["decay"],
                                   generator=draw_gen, return_derivatives=True)
                if ep <= 2:
                    for k, ok in legitimacy((y_tr[idx] * f).detach(), g, p["clip"]).items():
                        legit[k] = legit[k] and ok
            else:
                value = margin_loss(f, y_tr[idx], p["loss"])
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            f_tr, f_te = model(x_tr).squeeze(1), model(x_te).squeeze(1)
        return {"test_acc": (torch.sign(f_te) == y_te).float().mean(), "train_acc": (torch.sign(f_tr) == y_tr).float().mean(),
                "bce": nn.functional.softplus(-y_tr * f_tr).mean()}

    with checks.validation(False):
        import time
        t0 = time.perf_counter()
        history = loop(epoch, p["epochs"], desc=NAMES[p["loss"]], progress=progress, every=1)
        seconds = time.perf_counter() - t0
    acc = history["test_acc"]
    scores = {"last10": float(acc[-10:].mean()), "best": float(acc.max()), "best_epoch": int(acc.argmax()) + 1}
    if p["loss"] == "ensloss":
        scores["legit"] = all(legit.values())
    return EnsRun(params=p, history=history, scores=scores, seconds=seconds)


def paired_runs(seeds=range(8), losses=("ensloss", "bce"), **kw) -> dict:
    """``{loss: [EnsRun per seed]}``: :func:`train_ensloss` for every loss and seed (paired by seed)."""
    seeds = [checks.integer(s, "seed", 0) for s in seeds]
    if len(seeds) < 1:
        raise ValueError("paired_runs needs at least one seed")
    return {loss: [train_ensloss(loss, seed=s, progress=False, **kw) for s in seeds] for loss in losses}


def window_means(run: EnsRun, width: int = 10) -> np.ndarray:
    """Mean test accuracy over consecutive windows of ``width`` epochs (epochs 1-10, 11-20, ...)."""
    acc = np.asarray(run.history["test_acc"])
    n = len(acc) // width
    return acc[: n * width].reshape(n, width).mean(1)


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def plot_curves(ax, runs: dict, *, title: str = "test accuracy (clean labels)") -> None:
    """Test accuracy per epoch for ``{loss: [EnsRun per seed]}``: the mean over seeds (thick) and
    each seed (thin)."""
    for loss, rs in runs.items():
        acc = np.stack([r.history["test_acc"] for r in rs])
        ep = np.arange(1, acc.shape[1] + 1)
        for a in acc:
            ax.plot(ep, a, color=COLORS[loss], lw=0.5, alpha=0.35)
        ax.plot(ep, acc.mean(0), color=COLORS[loss], lw=2.2, label=f"{NAMES[loss]} (mean of {len(rs)})")
    ax.axvspan(ep[-1] - 9.5, ep[-1] + 0.5, color=plots.MUTED, alpha=0.15, lw=0, label="last 10 epochs")
    ax.set(xlabel="epoch", ylabel="test accuracy", title=title)
    ax.legend(loc="lower right", fontsize=9)


def derivative_panel(*, n: int = 64, draws: int = 5, seed: int = 0, lam: float = 0.0, clip: float = 1.0,
                     decay: bool = True):
    """Pure maths: ``draws`` EnsLoss derivative draws over a fixed batch of ``n`` margins (spread over
    [-2, 3]) as step functions of ``s``, next to BCE, hinge and exponential; right, the histogram of
    ``|g|`` pooled over 200 draws, with the share at the clip.  Knobs: lam, clip, decay."""
    import ipywidgets as W

    from .. import widgets

    s = torch.linspace(-2, 3, n, dtype=torch.float64)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "lam": W.FloatSlider(value=lam, min=-1.0, max=1.0, step=0.1, description="Box-Cox λ", **style),
        "clip": W.FloatSlider(value=clip, min=0.5, max=2.0, step=0.1, description="clip c", **style),
        "decay": W.Checkbox(value=decay, description="tail g/s (s > 1)", indent=False),
    }
    fig, axes = plots.new_figure(2, width=4.8, height=3.7)
    ax, hx = axes[0, 0], axes[0, 1]
    lines = [ax.step(s, 0 * s, where="mid", color=COLORS["ensloss"], lw=1.2, alpha=0.7,
                     label="EnsLoss draws" if k == 0 else None)[0] for k in range(draws)]
    for kind in ("bce", "hinge", "exp"):
        ax.plot(s, fixed_derivative(kind, s).clamp(min=-2.2), color=COLORS[kind], ls="--", lw=1.5, label=NAMES[kind])
    ax.axvline(0, color="k", lw=0.6)
    ax.set(xlabel="margin s = y f(x)", ylabel="derivative φ'(s)", ylim=(-2.2, 0.1), title="sampled derivatives")
    ax.legend(loc="lower right", fontsize=8)
    bins = np.linspace(0, 2.0, 41)
    bars = hx.bar(bins[:-1], np.zeros(40), width=np.diff(bins), align="edge", color=COLORS["ensloss"])
    hx.set(xlabel="weight |g|", ylabel="share of samples", ylim=(0, 0.7), title="histogram of |g|")
    note = hx.text(0.35, 0.9, "", transform=hx.transAxes, fontsize=10)

    def draw(v):
        gen = torch.Generator().manual_seed(seed)
        knobs = dict(lam=v["lam"], clip=v["clip"], decay=v["decay"], generator=gen)
        for line in lines:
            line.set_ydata(ensloss_derivatives(s, **knobs).numpy())
        pool = torch.cat([ensloss_derivatives(s, **knobs) for _ in range(200)]).abs()
        h, _ = np.histogram(pool.numpy().clip(max=bins[-1] - 1e-9), bins=bins)
        for bar, hh in zip(bars, h / len(pool)):
            bar.set_height(hh)
        at_clip = float((pool >= v["clip"]).double().mean())
        note.set_text(f"{at_clip:.0%} at the clip c = {v['clip']:.2f}")
        return {"at_clip": at_clip, "pool": pool,
                "status": f"λ = {v['lam']:.2f}, c = {v['clip']:.2f}: {at_clip:.0%} of the weights sit at the clip"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_ensloss` (one seed): loss, noise, epochs, width, clip, lam.
    Draws test and (noisy) train accuracy per epoch and the train BCE."""
    import ipywidgets as W

    from .. import widgets

    d = dict(loss="hinge", noise=0.2, epochs=100, width=256, clip=1.0, lam=0.0, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "loss": W.Dropdown(options=list(LOSSES), value=d["loss"], description="loss", layout=W.Layout(width="200px")),
        "noise": W.FloatSlider(value=d["noise"], min=0.0, max=0.3, step=0.05, description="label noise", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=20, max=200, step=10, description="epochs", **style),
        "width": W.Dropdown(options=[64, 128, 256], value=d["width"], description="width", layout=W.Layout(width="150px")),
        "clip": W.FloatSlider(value=d["clip"], min=0.5, max=2.0, step=0.1, description="clip c", **style),
        "lam": W.FloatSlider(value=d["lam"], min=-1.0, max=1.0, step=0.1, description="Box-Cox λ", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return train_ensloss(v["loss"], epochs=v["epochs"], noise=v["noise"], width=v["width"], clip=v["clip"],
                             lam=v["lam"], seed=v["seed"], progress=progress)

    def draw(axes, r, _v):
        h, c = r.history, COLORS[r.params["loss"]]
        axes[0, 0].plot(h["iter"], h["test_acc"], color=c, label="test (clean)")
        axes[0, 0].plot(h["iter"], h["train_acc"], color=c, ls="--", label="train (noisy labels)")
        axes[0, 0].set(xlabel="epoch", ylabel="accuracy", title=NAMES[r.params["loss"]])
        axes[0, 0].legend(loc="lower right", fontsize=9)
        axes[0, 1].plot(h["iter"], h["bce"], color=c)
        axes[0, 1].set(xlabel="epoch", ylabel="train BCE (nats)", title="a fixed reference loss")
        return {"status": f"{r!r} in {r.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=2, width=4.8, height=3.5, autorun=autorun)
