"""Learning from aggregate responses (Javanmard et al., ICLR 2024): instance-level vs bag-level loss.

Only the mean response of each bag B of k samples is observed, ``ybar_B = (1/k) sum_{i in B} y_i``.
With predictions ``f_i`` and the bag's mean prediction ``fbar_B``, for the squared loss:

    L_bag  = sum_B k (ybar_B - fbar_B)^2
    L_inst = sum_B sum_{i in B} (ybar_B - f_i)^2
           = L_bag + sum_B sum_{i in B} (f_i - fbar_B)^2          (exact, any model)
    L_rho  = L_bag + rho * sum_B sum_i (f_i - fbar_B)^2 = rho L_inst + (1 - rho) L_bag

For a linear model f = x theta the minimiser of L_rho solves
``(k Xbar^T Xbar + rho Xc^T Xc) theta = k Xbar^T ybar`` (Xbar: bag means, Xc: within-bag deviations).
The module holds the losses, that closed form, the paired Monte-Carlo over rho, a small gradient
run on sklearn's diabetes data, and the notebook's panels.  Bags are equal-sized: predictions are
laid out as a ``(bags, k)`` tensor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import checks, plots
from ..train import loop, memo

RHOS = tuple(round(0.1 * i, 1) for i in range(11))
COLORS = {"risk": "#000000", "bias2": plots.POS_COLOR, "var": plots.NEG_COLOR, "bag": plots.NEG_COLOR,
          "inst": plots.POS_COLOR, "mid": "#009E73"}


# ------------------------------------------------------------------------------------------------
# The losses
# ------------------------------------------------------------------------------------------------

def _check(f, ybar):
    f = checks.as_float_tensor(f, "f (predictions, shape (bags, k))", 2)
    ybar = checks.as_float_tensor(ybar, "ybar (one mean response per bag)", 1)
    if ybar.shape[0] != f.shape[0]:
        raise ValueError(f"ybar must hold one value per bag: f has {f.shape[0]} bags, ybar {ybar.shape[0]}")
    if f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"f must hold at least one bag of at least one sample; got shape {tuple(f.shape)}")
    return f, ybar


def bag_loss(f, ybar):
    """L_bag = sum_B k (ybar_B - fbar_B)^2."""
    f, ybar = _check(f, ybar)
    return f.shape[1] * ((ybar - f.mean(1)) ** 2).sum()


def instance_loss(f, ybar):
    """L_inst = sum_B sum_{i in B} (ybar_B - f_i)^2."""
    f, ybar = _check(f, ybar)
    return ((ybar[:, None] - f) ** 2).sum()


def within_bag_variance(f):
    """sum_B sum_{i in B} (f_i - fbar_B)^2: the regulariser that turns L_bag into L_inst."""
    f = checks.as_float_tensor(f, "f (predictions, shape (bags, k))", 2)
    return ((f - f.mean(1, keepdim=True)) ** 2).sum()


def rho_loss(f, ybar, rho: float):
    """L_rho = L_bag + rho * within-bag variance (rho = 0: bag level, rho = 1: instance level)."""
    rho = checks.fraction(rho, "rho")
    return bag_loss(f, ybar) + rho * within_bag_variance(f)


# ------------------------------------------------------------------------------------------------
# Bags, data, the closed form
# ------------------------------------------------------------------------------------------------

def make_bags(x, k: int, generator=None, scheme: str = "random") -> torch.Tensor:
    """Indices of shape (n // k, k): random bags, or bags of neighbours along feature 0 ("clustered")."""
    x = checks.as_float_tensor(x, "x", 2)
    k = checks.integer(k, "k (the bag size)", 1, x.shape[0])
    checks.choice(scheme, "bagging scheme", ("random", "clustered"))
    n = (x.shape[0] // k) * k
    order = torch.randperm(x.shape[0], generator=generator)[:n]
    if scheme == "clustered":
        order = order[torch.argsort(x[order, 0])]
    return order.view(-1, k)


def sample(n: int, d: int, sigma: float, generator, theta_star=None):
    """x ~ N(0, I_d), y = x theta* + sigma * noise, theta* on the unit sphere."""
    if theta_star is None:
        theta_star = torch.randn(d, generator=generator, dtype=torch.float64)
        theta_star = theta_star / theta_star.norm()
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = x @ theta_star + sigma * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, y, theta_star


def solve(x, y, bags, rhos=RHOS, ridge: float = 1e-10) -> torch.Tensor:
    """The minimisers of L_rho for a linear model, one row per rho: (k Xbar'Xbar + rho Xc'Xc) theta = k Xbar'ybar.

    ``ridge`` (times the trace scale) keeps rho = 0 solvable when there are fewer bags than features;
    the solution then is the minimum-norm-like least squares, not an unbiased estimate."""
    x = checks.as_float_tensor(x, "x", 2)
    y = checks.as_float_tensor(y, "y", 1)
    rhos = [checks.fraction(r, "rho") for r in rhos]
    k = bags.shape[1]
    xb, ybar = x[bags].mean(1), y[bags].mean(1)                      # bag means
    xc = (x[bags] - xb[:, None, :]).reshape(-1, x.shape[1])           # within-bag deviations
    G_bag, G_c, b = k * xb.T @ xb, xc.T @ xc, k * xb.T @ ybar
    eye = torch.eye(x.shape[1], dtype=x.dtype) * ridge * float(G_bag.trace() + G_c.trace()) / x.shape[1]
    A = torch.stack([G_bag + r * G_c + eye for r in rhos])
    return torch.linalg.solve(A, b.expand(len(rhos), -1))


@dataclass(repr=False)
class MonteCarlo:
    """theta-hats of ``reps`` replicates x every rho, paired (each replicate solves every rho on its data)."""

    params: dict
    rhos: tuple
    theta: np.ndarray               # (reps, len(rhos), d)
    theta_star: np.ndarray          # (d,)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def risk_per_rep(self) -> np.ndarray:
        """||theta_hat - theta*||^2, shape (reps, len(rhos))."""
        return ((self.theta - self.theta_star) ** 2).sum(-1)

    @property
    def risk(self) -> np.ndarray:
        return self.risk_per_rep.mean(0)

    @property
    def bias2(self) -> np.ndarray:
        return ((self.theta.mean(0) - self.theta_star) ** 2).sum(-1)

    @property
    def variance(self) -> np.ndarray:
        return ((self.theta - self.theta.mean(0)) ** 2).sum(-1).mean(0)

    @property
    def alignment(self) -> np.ndarray:
        """<theta_hat, theta*> / ||theta*||^2 per replicate and rho (1 = unbiased, 1/k = shrunk)."""
        return self.theta @ self.theta_star / float(self.theta_star @ self.theta_star)

    @property
    def rho_star(self) -> float:
        return float(self.rhos[int(np.argmin(self.risk))])

    def __repr__(self) -> str:
        p = self.params
        return (f"MonteCarlo(n={p['n']}, d={p['d']}, k={p['k']}, σ={p['sigma']:.3g}, {p['reps']} reps): "
                f"risk bag {self.risk[0]:.3f}, instance {self.risk[-1]:.3f}, best ρ = {self.rho_star:.2g} "
                f"→ {self.risk.min():.3f}")


def monte_carlo(n: int = 1000, d: int = 50, k: int = 5, sigma: float = 2.0, *, reps: int = 200, seed: int = 0,
                scheme: str = "random", rhos=RHOS, progress=False, cache: bool = True) -> MonteCarlo:
    """Excess risk of the L_rho estimator over ``reps`` replicates (fixed theta*, fresh x, noise, bags)."""
    n, d = checks.integer(n, "n", 2), checks.integer(d, "d", 1)
    k = checks.integer(k, "k (the bag size)", 1, n)
    sigma = float(checks.non_negative(sigma, "sigma"))
    reps = checks.integer(reps, "reps", 2)
    checks.choice(scheme, "bagging scheme", ("random", "clustered"))
    params = dict(n=n, d=d, k=k, sigma=sigma, reps=reps, seed=seed, scheme=scheme, rhos=tuple(rhos))
    return memo("aggregate_mc", params, lambda: _monte_carlo(params, progress), cache=cache)


def _monte_carlo(p: dict, progress) -> MonteCarlo:
    g = torch.Generator().manual_seed(p["seed"])
    _, _, theta_star = sample(1, p["d"], 0.0, g)
    theta = np.zeros((p["reps"], len(p["rhos"]), p["d"]))

    def step(it: int) -> dict:
        x, y, _ = sample(p["n"], p["d"], p["sigma"], g, theta_star)
        theta[it - 1] = solve(x, y, make_bags(x, p["k"], g, p["scheme"]), p["rhos"]).numpy()
        return {}

    start = time.perf_counter()
    loop(step, p["reps"], desc="replicates", progress=progress, every=max(1, p["reps"] // 20))
    return MonteCarlo(p, p["rhos"], theta, theta_star.numpy(), time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------
# A gradient run on real data: sklearn's diabetes (bundled), bags of k patients
# ------------------------------------------------------------------------------------------------

def diabetes(seed: int = 0):
    """Standardised diabetes data (442 patients, 10 features), split 300 train / 142 test by ``seed``."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    mu, sd = x[:300].mean(0), x[:300].std(0)
    ym, ys = y[:300].mean(), y[:300].std()
    x, y = (x - mu) / sd, (y - ym) / ys
    return x[:300], y[:300], x[300:], y[300:]


def train_linear(rho: float, k: int = 5, *, seed: int = 0, iters: int = 300, lr: float = 0.05,
                 progress=False, cache: bool = True) -> dict:
    """A linear model fitted by Adam on L_rho / n with bags of k training patients; test MSE per step."""
    rho = float(checks.fraction(rho, "rho"))
    params = dict(rho=rho, k=checks.integer(k, "k", 1, 300), seed=seed, iters=checks.integer(iters, "iters", 1), lr=lr)
    return memo("aggregate_diabetes", params, lambda: _train_linear(params, progress), cache=cache)


def _train_linear(p: dict, progress) -> dict:
    xtr, ytr, xte, yte = diabetes(p["seed"])
    g = torch.Generator().manual_seed(1000 + p["seed"])
    bags = make_bags(xtr, p["k"], g)
    ybar = ytr[bags].mean(1)
    torch.manual_seed(p["seed"])
    model = torch.nn.Linear(xtr.shape[1], 1).double()
    opt = torch.optim.Adam(model.parameters(), lr=p["lr"])

    def step(it: int) -> dict:
        loss = rho_loss(model(xtr[bags]).squeeze(-1), ybar, p["rho"]) / bags.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            return {"loss": loss, "test_mse": ((model(xte).squeeze(-1) - yte) ** 2).mean()}

    hist = loop(step, p["iters"], desc=f"ρ = {p['rho']:.2g}", progress=progress)
    return {"params": p, "history": hist, "test_mse": float(hist["test_mse"][-1])}


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def plot_risk(ax, mc: MonteCarlo, *, legend: bool = True):
    """Risk, bias^2 and variance against rho, with the best rho marked."""
    r = np.asarray(mc.rhos)
    ax.plot(r, mc.risk, "o-", color=COLORS["risk"], label="risk ‖θ̂−θ*‖²")
    ax.plot(r, mc.bias2, "--", color=COLORS["bias2"], label="bias²")
    ax.plot(r, mc.variance, ":", color=COLORS["var"], label="variance")
    ax.axvline(mc.rho_star, color=plots.MUTED, lw=1)
    p = mc.params
    ax.set(xlabel="ρ (0 = bag level, 1 = instance level)", ylabel="excess risk",
           title=f"k = {p['k']}, σ = {p['sigma']:.2g}, n/d = {p['n'] / p['d']:.3g}")
    if legend:
        ax.legend(fontsize=8)


def draw_panel(*, k: int = 5, sigma: float = 2.0, rho: float = 0.3, scheme: str = "random", reps: int = 20):
    """Pure maths (closed-form solves, ``reps`` replicates at n = 1000, d = 50, cached per setting): left,
    risk / bias² / variance against rho with the chosen rho marked; right, one replicate's theta-hat
    against theta* at the chosen rho, with the lines y = x (unbiased) and y = x / k (shrunk)."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "k": W.SelectionSlider(options=[1, 2, 5, 10, 20], value=k, description="bag size k", **style),
        "sigma": W.FloatLogSlider(value=sigma, base=10, min=-1, max=np.log10(3), step=0.05, description="noise σ",
                                  readout_format=".2f", **style),
        "rho": W.SelectionSlider(options=list(RHOS), value=rho, description="ρ", **style),
        "scheme": W.Dropdown(options=["random", "clustered"], value=scheme, description="bags",
                             layout=W.Layout(width="180px")),
    }
    fig, axes = plots.new_figure(2, width=4.6, height=3.5)
    ax, ax2 = axes[0, 0], axes[0, 1]
    r = np.asarray(RHOS)
    lines = {"risk": ax.plot(r, r, "o-", color=COLORS["risk"], label="risk")[0],
             "bias2": ax.plot(r, r, "--", color=COLORS["bias2"], label="bias²")[0],
             "var": ax.plot(r, r, ":", color=COLORS["var"], label="variance")[0]}
    marker = ax.axvline(rho, color=plots.MUTED, lw=1)
    ax.set(xlabel="ρ (0 = bag, 1 = instance)", ylabel="excess risk ‖θ̂−θ*‖²", yscale="log")
    ax.legend(fontsize=8, loc="upper right")
    dots = ax2.plot([], [], "o", ms=3, color="k", label="θ̂ at ρ")[0]
    ident = ax2.plot([-1, 1], [-1, 1], color=plots.MUTED, label="y = x (unbiased)")[0]
    shrunk = ax2.plot([-1, 1], [-0.2, 0.2], "--", color=COLORS["inst"], label="y = x / k")[0]
    ax2.set(xlabel="θ*_j", ylabel="θ̂_j (one replicate)")
    ax2.legend(fontsize=8, loc="upper left")
    lim = [1.0]

    def draw(v):
        mc = monte_carlo(k=int(v["k"]), sigma=float(v["sigma"]), reps=reps, scheme=v["scheme"])
        i = RHOS.index(v["rho"])
        for key, val in (("risk", mc.risk), ("bias2", mc.bias2), ("var", mc.variance)):
            lines[key].set_ydata(np.maximum(val, 1e-4))
        lo, hi = max(1e-4, min(mc.bias2.min(), mc.variance.min())), max(mc.risk.max(), mc.bias2.max())
        ax.set_ylim(lo / 1.5, hi * 1.5)
        marker.set_xdata([v["rho"], v["rho"]])
        ax.set_title(f"k = {v['k']}, σ = {float(v['sigma']):.2f}: best ρ = {mc.rho_star:.1f}")
        ts, th = mc.theta_star, mc.theta[0, i]
        dots.set_data(ts, th)
        m = float(max(np.abs(ts).max(), np.abs(th).max(), 0.1)) * 1.1
        ident.set_data([-m, m], [-m, m])
        shrunk.set_data([-m, m], [-m / int(v["k"]), m / int(v["k"])])
        ax2.set(xlim=(-m, m), ylim=(-m, m))
        align = float(mc.alignment[:, i].mean())
        ax2.set_title(f"ρ = {v['rho']:.1f}: mean ⟨θ̂,θ*⟩ = {align:.2f}")
        return {"mc": mc, "risk": float(mc.risk[i]), "rho_star": mc.rho_star, "alignment": align,
                "status": f"risk at ρ = {v['rho']:.1f}: {mc.risk[i]:.3f} (bag {mc.risk[0]:.3f}, instance "
                          f"{mc.risk[-1]:.3f}, best ρ = {mc.rho_star:.1f}) over {reps} replicates"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, n: int = 1000, d: int = 50, k: int = 5, sigma: float = 2.0, reps: int = 200,
                   autorun: bool = True):
    """A Train button over :func:`monte_carlo`: n, d, k, σ, replicates, bagging scheme; draws the risk curve."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "n": W.Dropdown(options=[200, 400, 1000, 2000], value=n, description="n", layout=W.Layout(width="130px")),
        "d": W.Dropdown(options=[10, 25, 50, 100], value=d, description="d", layout=W.Layout(width="120px")),
        "k": W.Dropdown(options=[1, 2, 5, 10, 20], value=k, description="k", layout=W.Layout(width="120px")),
        "sigma": W.FloatSlider(value=sigma, min=0.1, max=3.0, step=0.1, description="noise σ",
                               readout_format=".2f", **style),
        "reps": W.IntSlider(value=reps, min=20, max=400, step=20, description="replicates", **style),
        "scheme": W.Dropdown(options=["random", "clustered"], value="random", description="bags",
                             layout=W.Layout(width="180px")),
    }

    def run(v, progress):
        if v["n"] // v["k"] < 2:
            raise ValueError("need at least 2 bags: lower k or raise n")
        return monte_carlo(int(v["n"]), int(v["d"]), int(v["k"]), float(v["sigma"]), reps=int(v["reps"]),
                           scheme=v["scheme"], progress=progress)

    def draw(axes, result, _v):
        plot_risk(axes[0, 0], result)
        axes[0, 0].set_yscale("log")
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=1, width=6.0, height=3.6, autorun=autorun)
