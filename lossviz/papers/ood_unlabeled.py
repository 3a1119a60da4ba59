r"""Out-of-domain unlabelled data improves generalisation (Saberi et al., ICLR 2024), in miniature.

A few labelled samples from P, many unlabelled ones from a *shifted* Q. Robust self-training (RSS):
pseudo-label the unlabelled data with the current linear rule, then minimise

    (1/m) sum_i phi_g(theta; x_i, y_i) + lam (1/n) sum_j phi_g(theta; xu_j, yhat_j) + wd/2 |theta|^2
    phi_g(theta; x, y) = sup_x' [ l(theta; x', y) - g |x' - x|^2 ],   l = softplus(-y theta^T x)

(reconstructed from the abstract; g = inf is plain self-training, the only case asserted).
The theory setting: the two-Gaussian mixture N(y mu, I) in R^d, the unlabelled mean rotated by alpha
towards e_2.  The error of sign(theta^T x) is exactly Phi(-theta^T mu / |theta|), so no test set is needed.

* :func:`logistic_loss`, :func:`logit_loss` (the same loss as two-class cross-entropy of logits
  ``(0, theta^T x)``, for :func:`lossviz.sample_weights`), :func:`pseudo_labels`, :func:`exact_error`.
* :func:`adversarial_points` (WRM's inner ascent) and :func:`robust_loss` (phi_g).
* :func:`rss_objective`, :func:`fit` (L-BFGS), :func:`self_train`.
* :func:`sample_task`, :func:`run_alpha` / :func:`experiment` (paired repeats, cached with
  :func:`lossviz.train.memo`), and the panels :func:`geometry_panel` (pure maths) and
  :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks, plots
from ..train import loop, memo

#: The spec's miniature.
D, M, N, MU_NORM, WD = 50, 20, 1000, 1.5, 1e-2
ALPHAS = (0.0, 0.6, 1.0)
COLORS = {"erm": plots.MUTED, "rss": plots.POS_COLOR, "neg": plots.NEG_COLOR, "ood": "#009E73"}


def _xy(theta, x, y):
    theta = checks.as_float_tensor(theta, "theta (the weight vector, length d)", 1)
    x = checks.as_float_tensor(x, "x (samples, n x d)", 2)
    if x.shape[1] != theta.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but theta has {theta.shape[0]}")
    y = torch.as_tensor(y)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must hold one label per row of x, shape ({x.shape[0]},); got {tuple(y.shape)}")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or Inf")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("labels y must be +1 or -1 (map class 0 to -1; sign(0) to +1)")
    return theta, x, y.to(x.dtype)


def logistic_loss(theta, x, y, *, reduction: str = "mean") -> torch.Tensor:
    """``l = softplus(-y theta^T x)`` (stable), labels +-1; ``reduction`` "mean", "sum" or "none"."""
    theta, x, y = _xy(theta, x, y)
    checks.choice(reduction, "reduction", ("mean", "sum", "none"))
    loss = F.softplus(-y * (x @ theta))
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def logit_loss(logits, labels, *, weight=None) -> torch.Tensor:
    """Per-sample two-class cross-entropy of logits ``(0, theta^T x)`` with class ids 0/1 (label -1 -> 0),
    times an optional per-sample ``weight`` (1/m for labelled, lam/n for pseudo-labelled samples).
    Equal to :func:`logistic_loss`; the form :func:`lossviz.sample_weights` reads."""
    loss = torch.logsumexp(logits, 1) - logits.gather(1, labels[:, None]).squeeze(1)
    return loss if weight is None else loss * weight


def pseudo_labels(theta, x) -> torch.Tensor:
    """``sign(theta^T x)`` with sign(0) mapped to +1 (a label of 0 would drop the sample)."""
    theta = checks.as_float_tensor(theta, "theta", 1)
    x = checks.as_float_tensor(x, "x", 2)
    return torch.where(x @ theta >= 0, 1.0, -1.0).to(x.dtype)


def exact_error(theta, mu) -> float:
    """Test error of ``sign(theta^T x)`` on N(y mu, I), y = +-1 equally likely: ``Phi(-theta^T mu/|theta|)``."""
    theta = checks.as_float_tensor(theta, "theta", 1)
    mu = checks.as_float_tensor(mu, "mu", 1)
    norm = float(theta.norm())
    if norm == 0:
        raise ValueError("theta is the zero vector: its rule sign(0) has no direction")
    return 0.5 * math.erfc(float(theta @ mu) / norm / math.sqrt(2))


def adversarial_points(theta, x, y, gamma: float, *, steps: int = 5, lr: float = 0.1) -> torch.Tensor:
    """WRM's inner maximisation: ``steps`` gradient-ascent steps on ``l(theta; x', y) - gamma |x' - x|^2``
    from x' = x (theta held fixed, result detached)."""
    theta, x, y = _xy(theta, x, y)
    gamma = checks.positive(gamma, "gamma (the transport cost)")
    checks.integer(steps, "steps", 0)
    theta = theta.detach()
    xp = x.detach().clone()
    for _ in range(steps):
        xp.requires_grad_(True)
        with torch.enable_grad():
            obj = (F.softplus(-y * (xp @ theta)) - gamma * ((xp - x) ** 2).sum(1)).sum()
            g, = torch.autograd.grad(obj, xp)
        xp = (xp + lr * g).detach()
    return xp


def robust_loss(theta, x, y, gamma: float = math.inf, *, steps: int = 5, lr: float = 0.1,
                reduction: str = "mean") -> torch.Tensor:
    """``phi_gamma = l(theta; x', y) - gamma |x' - x|^2`` at the ascent's x' (Danskin: the gradient in
    theta is taken at x'); ``gamma = inf`` is the plain logistic loss."""
    if gamma == math.inf:
        return logistic_loss(theta, x, y, reduction=reduction)
    xp = adversarial_points(theta, x, y, gamma, steps=steps, lr=lr)
    loss = logistic_loss(theta, xp, y, reduction="none") - gamma * ((xp - x) ** 2).sum(1)
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def rss_objective(theta, x, y, xu=None, yu=None, *, lam: float = 0.5, wd: float = WD,
                  gamma: float = math.inf) -> torch.Tensor:
    """``mean_i phi(x_i, y_i) + lam mean_j phi(xu_j, yu_j) + wd/2 |theta|^2`` (lam = 0 or no xu: ERM)."""
    checks.non_negative(lam, "lam (the weight of the unlabelled term)")
    obj = robust_loss(theta, x, y, gamma) + 0.5 * wd * (theta ** 2).sum()
    if xu is not None and len(xu) and lam > 0:
        obj = obj + lam * robust_loss(theta, xu, yu, gamma)
    return obj


def rss_grad(theta, x, y, xu=None, yu=None, *, lam: float = 0.5, wd: float = WD):
    """Closed-form value and gradient of :func:`rss_objective` at gamma = inf (the fast path of :func:`fit`):
    ``dl/dtheta = -sigmoid(-y theta^T x) y x``, so each sample pulls with weight ``sigmoid(-margin)`` times
    1/m (labelled) or lam/n (pseudo-labelled)."""
    a = y[:, None] * x
    s = a @ theta
    value = F.softplus(-s).mean() + 0.5 * wd * theta @ theta
    grad = -(a.T @ torch.sigmoid(-s)) / len(s) + wd * theta
    if xu is not None and len(xu) and lam > 0:
        au = yu[:, None] * xu
        su = au @ theta
        value = value + lam * F.softplus(-su).mean()
        grad = grad - lam * (au.T @ torch.sigmoid(-su)) / len(su)
    return value, grad


def fit(x, y, xu=None, yu=None, *, lam: float = 0.5, wd: float = WD, gamma: float = math.inf,
        theta0=None, max_iter: int = 100) -> torch.Tensor:
    """Minimise :func:`rss_objective` by L-BFGS (strong-Wolfe line search), warm-started at ``theta0``
    (gamma = inf uses the closed-form gradient :func:`rss_grad`; finite gamma, autograd at WRM's x')."""
    theta = (torch.zeros(x.shape[1], dtype=x.dtype) if theta0 is None else theta0.detach().clone())
    theta.requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        if gamma == math.inf:
            value, theta.grad = rss_grad(theta.detach(), x, y, xu, yu, lam=lam, wd=wd)
            return value
        opt.zero_grad()
        obj = rss_objective(theta, x, y, xu, yu, lam=lam, wd=wd, gamma=gamma)
        obj.backward()
        return obj.detach()

    with torch.enable_grad():
        opt.step(closure)
    return theta.detach()


def self_train(x, y, xu, *, lam: float = 0.5, rounds: int = 10, gamma: float = math.inf,
               theta_erm=None) -> list[torch.Tensor]:
    """ERM, then ``rounds`` of: pseudo-label xu with the current theta, refit warm-started.
    Returns the thetas ``[erm, round 1, ..., round rounds]``."""
    checks.integer(rounds, "rounds", 1)
    thetas = [fit(x, y) if theta_erm is None else theta_erm]
    for _ in range(rounds):
        yu = pseudo_labels(thetas[-1], xu)
        thetas.append(fit(x, y, xu, yu, lam=lam, gamma=gamma, theta0=thetas[-1]))
    return thetas


def mean_vector(alpha: float = 0.0, d: int = D, mu_norm: float = MU_NORM) -> torch.Tensor:
    """``mu_alpha = |mu| (cos alpha e_1 + sin alpha e_2)``."""
    mu = torch.zeros(d, dtype=torch.float64)
    mu[0], mu[1] = mu_norm * math.cos(alpha), mu_norm * math.sin(alpha)
    return mu


def sample_task(seed: int, *, d: int = D, m: int = M, n: int = N):
    """One repeat's randomness: labelled labels and noise, unlabelled labels and noise (reused for every
    alpha, so that the comparison across shifts is paired).  Returns ``(y, z, yu, zu)``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (m,), generator=g).double() * 2 - 1
    z = torch.randn(m, d, generator=g, dtype=torch.float64)
    yu = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    zu = torch.randn(n, d, generator=g, dtype=torch.float64)
    return y, z, yu, zu


@dataclass
class AlphaRun:
    """Exact errors of ERM and of every self-training round, one row per repeat."""
    params: dict
    erm: np.ndarray          # (repeats,)
    rounds: np.ndarray       # (repeats, rounds): error after each round
    pseudo_wrong: np.ndarray  # (repeats,): share of wrong pseudo-labels in the last round

    @property
    def rss(self) -> np.ndarray:
        return self.rounds[:, -1]

    @property
    def gain(self) -> np.ndarray:
        return self.erm - self.rss

    def __repr__(self) -> str:
        p = self.params
        return (f"AlphaRun(alpha={p['alpha']:.2f}, n={p['n']}, lam={p['lam']:.3g}, rounds={p['rounds']}, "
                f"gamma={p['gamma']}, {p['repeats']} repeats: gain {self.gain.mean():+.3f})")


def run_alpha(alpha: float = 0.0, *, n: int = N, lam: float = 0.5, rounds: int = 10, gamma: float = math.inf,
              repeats: int = 40, seed: int = 0, d: int = D, m: int = M, mu_norm: float = MU_NORM,
              progress=False) -> AlphaRun:
    """``repeats`` paired repeats at one shift ``alpha`` (seeds ``seed .. seed + repeats - 1``), cached."""
    params = dict(alpha=float(alpha), n=int(n), lam=float(lam), rounds=int(rounds), gamma=float(gamma),
                  repeats=int(repeats), seed=int(seed), d=int(d), m=int(m), mu_norm=float(mu_norm))

    def compute():
        mu, mu_a = mean_vector(0.0, d, mu_norm), mean_vector(alpha, d, mu_norm)
        erm, rows, wrong = [], [], []

        def step(it):
            y, z, yu, zu = sample_task(seed + it - 1, d=d, m=m, n=n)
            x, xu = y[:, None] * mu + z, yu[:, None] * mu_a + zu
            theta0 = fit(x, y)
            thetas = self_train(x, y, xu, lam=lam, rounds=rounds, gamma=gamma, theta_erm=theta0) if n else \
                [theta0] * (rounds + 1)
            erm.append(exact_error(theta0, mu))
            rows.append([exact_error(t, mu) for t in thetas[1:]])
            wrong.append(float((pseudo_labels(thetas[-2], xu) != yu).double().mean()) if n else 0.0)
            return {"gain": erm[-1] - rows[-1][-1]}

        loop(step, repeats, desc=f"alpha = {alpha:.2f}", progress=progress, every=1)
        return AlphaRun(params, np.array(erm), np.array(rows), np.array(wrong))

    return memo("ood_unlabeled.run_alpha", params, compute)


def experiment(alphas=ALPHAS, progress=False, **kw) -> dict:
    """:func:`run_alpha` at every shift, the same seeds: ``{alpha: AlphaRun}``."""
    return {a: run_alpha(a, progress=progress, **kw) for a in alphas}


def projection_picture(ax, seed: int = 0, alpha: float = 0.6, *, lam: float = 0.5, rounds: int = 10,
                       n_show: int = 300):
    """Picture 1: one repeat projected on span(e_1, e_2): labelled points, pseudo-labelled OOD points,
    and the ERM and RSS boundaries (their traces in that plane). Returns the two thetas."""
    y, z, yu, zu = sample_task(seed)
    mu, mu_a = mean_vector(0.0), mean_vector(alpha)
    x, xu = y[:, None] * mu + z, yu[:, None] * mu_a + zu
    thetas = self_train(x, y, xu, lam=lam, rounds=rounds)
    yhat = pseudo_labels(thetas[-2], xu)
    for s, c in ((1, plots.POS_COLOR), (-1, plots.NEG_COLOR)):
        k = (yhat[:n_show] == s).numpy()
        ax.scatter(xu[:n_show][k, 0], xu[:n_show][k, 1], s=6, color=c, alpha=0.25)
        k = (y == s).numpy()
        ax.scatter(x[k, 0], x[k, 1], s=40, color=c, edgecolor="k", label=f"labelled y = {s:+d}")
    t = np.linspace(-4, 4, 2)
    for th, c, name in ((thetas[0], "k", "ERM"), (thetas[-1], COLORS["ood"], "RSS")):
        a, b = float(th[0]), float(th[1])
        ax.plot(t * b / math.hypot(a, b) * -1, t * a / math.hypot(a, b), color=c, lw=2, label=f"{name} boundary")
    ax.set(xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), aspect="equal", xlabel="e₁ (in-domain mean)",
           ylabel="e₂ (shift direction)", title=f"one repeat, α = {alpha:.2f} (faint: pseudo-labelled)")
    ax.legend(fontsize=7, loc="lower right")
    return thetas[0], thetas[-1]


def geometry_panel(*, mu_norm: float = MU_NORM, alpha: float = 0.6, beta: float = 0.3):
    """Pure maths: a rule theta at angle beta from mu (in the plane of mu and the shift).  Left: its exact
    in-domain error Phi(-|mu| cos beta) and the share of wrong pseudo-labels it gives on the shifted data,
    Phi(-|mu| cos(beta - alpha)), against beta.  Right: both populations in that plane and the boundary."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "mu_norm": W.FloatSlider(value=mu_norm, min=0.25, max=3.0, step=0.05, description="|μ|", **style),
        "alpha": W.FloatSlider(value=alpha, min=0.0, max=1.5, step=0.05, description="α (shift)", **style),
        "beta": W.FloatSlider(value=beta, min=-1.5, max=1.5, step=0.05, description="β (θ angle)", **style),
    }
    fig, axes = plots.new_figure(2, width=4.6, height=3.6)
    ax, ax2 = axes[0, 0], axes[0, 1]
    b = np.linspace(-math.pi / 2, math.pi / 2, 181)
    l_in, = ax.plot(b, b * 0, color="k", label="test error (in domain)")
    l_ood, = ax.plot(b, b * 0, color=COLORS["ood"], label="wrong pseudo-labels (shifted)")
    dots = ax.plot([0, 0], [0, 0], "o", color="k")[0]
    ax.set(xlabel="β, angle of θ from μ (rad)", ylabel="probability", ylim=(0, 0.6))
    ax.legend(fontsize=8, loc="upper left")
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (150,), generator=g).double() * 2 - 1
    z = torch.randn(150, 2, generator=g, dtype=torch.float64).numpy()
    yo = torch.randint(0, 2, (150,), generator=g).double() * 2 - 1
    zo = torch.randn(150, 2, generator=g, dtype=torch.float64).numpy()
    colors = np.where(y.numpy()[:, None] > 0, 0, 1)[:, 0]
    cmap = [plots.POS_COLOR, plots.NEG_COLOR]
    sc_in = ax2.scatter(z[:, 0], z[:, 1], s=10, c=[cmap[c] for c in colors], label="labelled domain")
    sc_ood = ax2.scatter(zo[:, 0], zo[:, 1], s=10, marker="x", color=COLORS["ood"], alpha=0.6, label="shifted")
    edge, = ax2.plot([0, 0], [0, 0], "k", lw=2, label="boundary of θ")
    ax2.set(xlim=(-5, 5), ylim=(-5, 5), aspect="equal", xlabel="e₁", ylabel="e₂")
    ax2.legend(fontsize=7, loc="lower right")

    def draw(v):
        r, a, be = float(v["mu_norm"]), float(v["alpha"]), float(v["beta"])
        phi = lambda t: 0.5 * np.vectorize(math.erfc)(r * np.cos(t) / math.sqrt(2))  # noqa: E731
        err_in, err_ood = phi(b), phi(b - a)
        l_in.set_ydata(err_in)
        l_ood.set_ydata(err_ood)
        e_in, e_ood = float(phi(np.array(be))), float(phi(np.array(be - a)))
        dots.set_data([be, be], [e_in, e_ood])
        mu, mu_a = np.array([r, 0.0]), r * np.array([math.cos(a), math.sin(a)])
        sc_in.set_offsets(y.numpy()[:, None] * mu + z)
        sc_ood.set_offsets(yo.numpy()[:, None] * mu_a + zo)
        edge.set_data([5 * math.sin(be), -5 * math.sin(be)], [-5 * math.cos(be), 5 * math.cos(be)])
        ax.set_title(f"error {e_in:.3f}, wrong pseudo-labels {e_ood:.3f}")
        ax2.set_title(f"|μ| = {r:.2f}, α = {a:.2f}, β = {be:.2f}")
        return {"error": e_in, "pseudo_wrong": e_ood,
                "status": f"test error {e_in:.3f} | wrong pseudo-labels on the shifted data {e_ood:.3f}"}

    return widgets.Panel(controls, fig, draw)


GAMMAS = {"∞ (plain)": math.inf, "10": 10.0, "2": 2.0, "0.5": 0.5}


def training_panel(*, alpha: float = 0.0, n: int = N, lam: float = 0.5, rounds: int = 10, repeats: int = 40,
                   autorun: bool = True):
    """A Train button over :func:`run_alpha`: shift, n, lam, rounds, gamma, repeats; draws the error per
    self-training round (mean +- se, ERM dashed) and the paired ERM-vs-RSS errors."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "alpha": W.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.1, description="α (shift)", **style),
        "n": W.IntSlider(value=n, min=0, max=5000, step=250, description="n unlabelled", **style),
        "lam": W.FloatLogSlider(value=lam, base=10, min=-2, max=math.log10(20), step=0.1, description="λ",
                                readout_format=".3g", **style),
        "rounds": W.IntSlider(value=rounds, min=1, max=10, description="rounds", **style),
        "gamma": W.Dropdown(options=list(GAMMAS), value="∞ (plain)", description="γ", layout=W.Layout(width="150px")),
        "repeats": W.IntSlider(value=repeats, min=4, max=40, step=4, description="repeats", **style),
    }

    def run(v, progress):
        return run_alpha(float(v["alpha"]), n=int(v["n"]), lam=float(v["lam"]), rounds=int(v["rounds"]),
                         gamma=GAMMAS[v["gamma"]], repeats=int(v["repeats"]), progress=progress)

    def draw(axes, r, _v):
        k = np.arange(1, r.rounds.shape[1] + 1)
        se = r.rounds.std(0, ddof=1) / math.sqrt(len(r.erm))
        axes[0, 0].errorbar(k, r.rounds.mean(0), se, fmt="o-", color=COLORS["rss"], label="self-training", capsize=2)
        axes[0, 0].axhline(r.erm.mean(), color="k", ls="--", label="ERM (labelled only)")
        axes[0, 0].set(xlabel="self-training round", ylabel="exact test error", title="mean over repeats")
        axes[0, 0].legend(fontsize=8)
        axes[0, 1].scatter(r.erm, r.rss, s=12, color=COLORS["rss"])
        lim = (min(r.erm.min(), r.rss.min()) - 0.01, max(r.erm.max(), r.rss.max()) + 0.01)
        axes[0, 1].plot(lim, lim, color=plots.MUTED)
        axes[0, 1].set(xlim=lim, ylim=lim, xlabel="ERM error", ylabel="RSS error", title="paired repeats (below: gain)")
        return {"status": repr(r), "gain": float(r.gain.mean())}

    return widgets.run_panel(controls, run, draw, ncols=2, width=4.6, height=3.4, autorun=autorun)
