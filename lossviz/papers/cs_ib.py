"""Cauchy–Schwarz divergence information bottleneck for regression (CS-IB; Yu et al., ICLR 2024).

The maths: a Gaussian kernel, the conditional CS divergence between p(y|x) and p(ŷ|x) as coded
officially (``CS_Div``), and the normalised CS quadratic mutual information I_CS(x; t).  The
experiment: Friedman-1 with 15% of the training targets corrupted, an MLP trained with MSE, L1,
Huber, the CS divergence and CS-IB (= CS divergence + beta * I_CS).  The pictures: per-sample
gradient weights against the residual, and a Train-button panel.

Shapes matter: targets enter the kernels as N x 1 columns.  With 1-D targets (what the official
training script passes) the target kernels are constant and the divergence equals SSE / (sigma² ln 2).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks, plots
from .. import train as T

LOSSES = ("mse", "l1", "huber", "cs")
COLORS = {"mse": plots.NEG_COLOR, "l1": "#009E73", "huber": "#CC79A7", "cs": plots.POS_COLOR,
          "cs_1d": plots.MUTED}
LN2 = math.log(2.0)


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||² in the matmul form of the official code, clamped at 0.

    For 1-D inputs this reproduces the official code's behaviour: ``(a*a).sum(-1)`` sums the whole
    vector, so every entry is the same number ||a - b||² (a constant N x N matrix)."""
    d = (a * a).sum(-1).unsqueeze(-1) + (b * b).sum(-1).unsqueeze(-2) - 2 * a @ b.T if a.ndim == 2 else \
        ((a * a).sum() + (b * b).sum() - 2 * (a @ b)).expand(a.shape[0], b.shape[0])
    return d.clamp_min(0)


def gaussian_kernel(a, b, sigma: float = 1.0) -> torch.Tensor:
    """kappa_sigma(a_i, b_j) = exp(-||a_i - b_j||² / (2 sigma²)); rows of a, b are samples."""
    return torch.exp(-_sqdist(a, b) / (2 * sigma ** 2))


def _check_xy(x, y, y_hat, flat: bool):
    x = checks.as_float_tensor(x, "x", 2)
    ndim = 1 if flat else 2
    if not flat and (torch.as_tensor(y).ndim == 1 or torch.as_tensor(y_hat).ndim == 1):
        raise ValueError("y and y_hat must be N x 1 columns (use y[:, None]): with 1-D targets the kernels are "
                         "constant and the CS divergence collapses to squared error. Pass flat=True to do that on purpose.")
    y = checks.as_float_tensor(y, "y", ndim)
    y_hat = checks.as_float_tensor(y_hat, "y_hat", ndim)
    if not (len(x) == len(y) == len(y_hat)) or y.shape != y_hat.shape:
        raise ValueError(f"x, y, y_hat need the same number of rows and y, y_hat the same shape; got "
                         f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(y_hat.shape)}")
    if len(x) < 2:
        raise ValueError("the CS divergence needs a batch of at least 2 samples")
    return x, y, y_hat


def cs_divergence(x, y, y_hat, sigma: float = 1.0, *, flat: bool = False) -> torch.Tensor:
    """Conditional CS divergence D_CS(p(y|x) || p(ŷ|x)) as coded officially (logs base 2):

        D = log2 sum_j (sum_i K_ji L1_ji)/n_j + log2 sum_j (sum_i K_ji L2_ji)/n_j
            - 2 log2 sum_j (sum_i K_ji L21_ji)/n_j,      n_j = sum_i K_ji²,

    K = kappa(x_i, x_j), L1 = kappa(y_i, y_j), L2 = kappa(ŷ_i, ŷ_j), L21_ji = kappa(ŷ_j, y_i).
    ``flat=True`` takes 1-D y, y_hat the way the official script does (constant target kernels).
    Computed in the log domain (logsumexp), so a kernel that underflows in float32 gives no log(0)."""
    sigma = checks.positive(sigma, "sigma (the kernel width)")
    x, y, y_hat = _check_xy(x, y, y_hat, flat)
    logK = -_sqdist(x, x) / (2 * sigma ** 2)
    log_n = torch.logsumexp(2 * logK, 1, keepdim=True)            # log n_j = log sum_i K_ji²

    def term(a, b):                                              # log2 sum_j sum_i K_ji L_ji / n_j, in logs
        return torch.logsumexp((logK - _sqdist(a, b) / (2 * sigma ** 2) - log_n).reshape(-1), 0) / LN2

    return term(y, y) + term(y_hat, y_hat) - 2 * term(y_hat, y)


def cs_mutual_information(x, t, sigma_x: float = 1.0, sigma_t: float = 1.0) -> torch.Tensor:
    """I_CS(x; t) = log2[ (1/N²) tr(Kx Kt) (1/N⁴)(1ᵀKx1)(1ᵀKt1) / ((1/N³) 1ᵀ Kx Kt 1)² ]."""
    x, t = checks.as_float_tensor(x, "x", 2), checks.as_float_tensor(t, "t", 2)
    if len(x) != len(t) or len(x) < 2:
        raise ValueError(f"x and t need the same number (>= 2) of rows; got {len(x)} and {len(t)}")
    Kx, Kt = gaussian_kernel(x, x, checks.positive(sigma_x, "sigma_x")), gaussian_kernel(t, t, checks.positive(sigma_t, "sigma_t"))
    return _ics(Kx, Kt)


def _ics(Kx, Kt):
    N = Kx.shape[0]
    joint = (Kx * Kt).sum() / N ** 2                       # tr(Kx Kt) / N², kernels symmetric
    marg = Kx.sum() * Kt.sum() / N ** 4
    cross = (Kx.sum(0) * Kt.sum(1)).sum() / N ** 3        # 1ᵀ Kx Kt 1 / N³
    return torch.log2(joint * marg / cross ** 2)


def normalized_ics(x, t, sigma_x: float = 1.0, sigma_t: float = 1.0) -> torch.Tensor:
    """I_CS(x; t) / sqrt(I_CS(x; x) I_CS(t; t)), in [0, 1]-ish: the compression term of CS-IB."""
    x, t = checks.as_float_tensor(x, "x", 2), checks.as_float_tensor(t, "t", 2)
    Kx, Kt = gaussian_kernel(x, x, sigma_x), gaussian_kernel(t, t, sigma_t)
    return _ics(Kx, Kt) / torch.sqrt(_ics(Kx, Kx) * _ics(Kt, Kt))


def correntropy_weights(r, sigma: float = 1.0) -> torch.Tensor:
    """softmax_j(-r_j² / (2 sigma²)): the per-sample weight of the CS divergence when K ≈ I."""
    r = checks.as_float_tensor(r, "r", 1)
    return torch.softmax(-r ** 2 / (2 * checks.positive(sigma, "sigma") ** 2), 0)


def residual_gradients(r, sigma: float = 1.0, *, spread: float = 100.0) -> torch.Tensor:
    """Autograd dD/dŷ_j at y = 0, ŷ = r, with x spread so far apart that K ≈ I (one x per sample)."""
    r = checks.as_float_tensor(r, "r", 1).detach().double()
    x = spread * torch.eye(len(r), dtype=r.dtype)
    y_hat = r[:, None].clone().requires_grad_(True)
    cs_divergence(x, torch.zeros_like(y_hat), y_hat, sigma).backward()
    return y_hat.grad[:, 0]


# ---------------------------------------------------------------- experiment
def make_data(seed: int, *, n: int = 1200, n_train: int = 800, outlier_frac: float = 0.15,
              outlier_scale: float = 5.0):
    """Friedman-1 (d = 10, noise 0.5), x and y standardised with training statistics; a fraction of the
    training targets gets N(0, outlier_scale²) added.  Returns (xtr, ytr, xte, yte, outlier_mask)."""
    from sklearn.datasets import make_friedman1

    checks.fraction(outlier_frac, "outlier_frac")
    X, y = make_friedman1(n_samples=n, n_features=10, noise=0.5, random_state=seed)
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    xtr, xte, ytr, yte = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    mu, sd = xtr.mean(0), xtr.std(0)
    ym, ys = ytr.mean(), ytr.std()
    xtr, xte, ytr, yte = (xtr - mu) / sd, (xte - mu) / sd, (ytr - ym) / ys, (yte - ym) / ys
    g = torch.Generator().manual_seed(1000 + seed)
    out = torch.rand(n_train, generator=g) < outlier_frac
    ytr = ytr + out * outlier_scale * torch.randn(n_train, generator=g)
    return xtr, ytr, xte, yte, out


class Net(torch.nn.Module):
    """Encoder 10-128-128-latent (ReLU), decoder latent-128-1; forward returns (t, ŷ as N x 1)."""

    def __init__(self, latent: int = 16):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Linear(10, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                       torch.nn.ReLU(), torch.nn.Linear(128, latent))
        self.dec = torch.nn.Sequential(torch.nn.Linear(latent, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))

    def forward(self, x):
        t = self.enc(x)
        return t, self.dec(t)


def batch_loss(loss: str, x, y, t, y_hat, *, sigma: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """One batch's objective; y, y_hat are N x 1 columns (``cs_1d`` flattens them, as the official script)."""
    if loss == "mse":
        return F.mse_loss(y_hat, y)
    if loss == "l1":
        return F.l1_loss(y_hat, y)
    if loss == "huber":
        return F.huber_loss(y_hat, y, delta=1.0)
    flat = loss == "cs_1d"
    d = cs_divergence(x, y[:, 0] if flat else y, y_hat[:, 0] if flat else y_hat, sigma, flat=flat)
    return d + beta * normalized_ics(x, t) if beta > 0 else d


def train_run(loss: str = "cs", seed: int = 0, *, beta: float = 0.0, sigma: float = 1.0, epochs: int = 60,
              outlier_frac: float = 0.15, latent: int = 16, progress=False) -> dict:
    """Train one model (cached by all parameters).  Returns test RMSE, I_CS(x; t) on 256 test points,
    the per-epoch test RMSE and the test predictions."""
    checks.choice(loss, "loss", (*LOSSES, "cs_1d"))
    checks.non_negative(beta, "beta")
    params = dict(loss=loss, seed=seed, beta=float(beta), sigma=float(sigma), epochs=epochs,
                  outlier_frac=float(outlier_frac), latent=latent)
    return T.memo("cs_ib.train_run", params, lambda: _train(progress=progress, **params))


def _train(loss, seed, beta, sigma, epochs, outlier_frac, latent, progress):
    t0 = time.process_time()
    xtr, ytr, xte, yte, out = make_data(seed, outlier_frac=outlier_frac)
    torch.manual_seed(seed)
    net = Net(latent)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)

    def rmse():
        with torch.no_grad():
            return float(((net(xte)[1][:, 0] - yte) ** 2).mean().sqrt())

    def epoch(_it):
        for idx in torch.randperm(len(xtr), generator=g).split(128):
            xb = xtr[idx]
            t, y_hat = net(xb)
            obj = batch_loss(loss, xb, ytr[idx][:, None], t, y_hat, sigma=sigma, beta=beta)
            opt.zero_grad()
            obj.backward()
            opt.step()
        return {"loss": obj, "test_rmse": rmse()}

    hist = T.loop(epoch, epochs, desc=loss, progress=progress, every=1)
    with torch.no_grad():
        t, pred = net(xte)
        ics = float(normalized_ics(xte[:256], t[:256]))
    return {"rmse": rmse(), "ics": ics, "history": hist, "pred": pred[:, 0].numpy(), "target": yte.numpy(),
            "rmse0": float((yte ** 2).mean().sqrt()), "seconds": time.process_time() - t0}


# ---------------------------------------------------------------- pictures
def weight_panel(*, sigma: float = 1.0, frac: float = 0.15, scale: float = 5.0):
    """Pure maths: a batch of 64 residuals (clean N(0, 0.3²), a fraction of them outliers N(0, scale²)).
    Left, the per-sample gradient dD/dŷ_j (autograd, K ≈ I) and MSE's 2r/N, each scaled to its largest
    value; right, the weight softmax(-r²/(2σ²)) against r, outliers marked."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {"sigma": W.FloatLogSlider(value=sigma, base=10, min=-1, max=math.log10(3), step=0.05,
                                          description="kernel σ", readout_format=".2f", **style),
                "frac": W.FloatSlider(value=frac, min=0, max=0.3, step=0.05, description="outliers",
                                      readout_format=".2f", **style),
                "scale": W.FloatSlider(value=scale, min=1, max=10, step=0.5, description="outlier scale",
                                       readout_format=".1f", **style)}
    fig, axes = plots.new_figure(2, width=4.6, height=3.4)
    a, b = axes[0, 0], axes[0, 1]
    g = torch.Generator().manual_seed(0)
    base, noise, u = 0.3 * torch.randn(64, generator=g), torch.randn(64, generator=g), torch.rand(64, generator=g)
    mse_dots = a.scatter([0], [0], s=14, color=COLORS["mse"], label="MSE: ∝ r")
    cs_dots = a.scatter([0], [0], s=14, color=COLORS["cs"], label="CS: autograd")
    a.set(xlabel="residual r = ŷ − y", ylabel="gradient / its largest", title="per-sample gradient", ylim=(-1.1, 1.1))
    a.legend(fontsize=8, loc="upper left")
    w_dots = b.scatter([0], [0], s=14, color=COLORS["cs"], label="inliers")
    o_dots = b.scatter([0], [0], s=22, marker="x", color=COLORS["mse"], label="outliers")
    b.set(xlabel="residual r", ylabel="weight softmax(−r²/2σ²)", title="CS weight per sample")
    b.legend(fontsize=8)

    def draw(v):
        out = u < v["frac"]
        r = torch.where(out, v["scale"] * noise, base).double()
        grad = residual_gradients(r, v["sigma"])
        w = correntropy_weights(r, v["sigma"])
        lim = float(r.abs().max()) * 1.05 + 1e-6
        mse_dots.set_offsets(np.c_[r, r / r.abs().max()])
        cs_dots.set_offsets(np.c_[r, grad / grad.abs().max()])
        w_dots.set_offsets(np.c_[r[~out], w[~out]])
        o_dots.set_offsets(np.c_[r[out], w[out]] if out.any() else np.empty((0, 2)))
        a.set_xlim(-lim, lim)
        b.set_xlim(-lim, lim)
        b.set_ylim(0, float(w.max()) * 1.1)
        share = float(w[out].sum())
        return {"outlier_weight": share, "outlier_count": float(out.float().mean()), "status": f"outliers: {int(out.sum())} of 64 carry {share:.3g} of the CS weight (MSE: {float((r[out] ** 2).sum() / (r ** 2).sum()):.3g} of its squared gradient)"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, loss: str = "cs", beta: float = 0.0, seed: int = 0, epochs: int = 60, autorun: bool = True):
    """Train button over :func:`train_run`: loss, target shape (through ``cs_1d``), β, σ, outliers, seed.
    Draws the test-RMSE curve and predictions against clean test targets."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {"loss": W.Dropdown(options=[*LOSSES, "cs_1d"], value=loss, description="loss",
                                   layout=W.Layout(width="160px")),
                "beta": W.FloatLogSlider(value=max(beta, 1e-4), base=10, min=-4, max=0, description="β (if CS)",
                                         readout_format=".2g", **style),
                "use_beta": W.Checkbox(value=beta > 0, description="add β·I_CS"),
                "sigma": W.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1, description="kernel σ",
                                       readout_format=".2f", **style),
                "frac": W.FloatSlider(value=0.15, min=0, max=0.3, step=0.05, description="outliers",
                                      readout_format=".2f", **style),
                "seed": W.IntSlider(value=seed, min=0, max=9, description="seed", **style)}

    def run(v, progress):
        beta = float(v["beta"]) if v["use_beta"] and v["loss"].startswith("cs") else 0.0
        return train_run(v["loss"], int(v["seed"]), beta=beta, sigma=float(v["sigma"]), epochs=epochs,
                         outlier_frac=float(v["frac"]), progress=progress)

    def draw(axes, res, v):
        h = res["history"]
        axes[0, 0].plot(h["iter"], h["test_rmse"], color=COLORS.get(v["loss"], "k"))
        axes[0, 0].axhline(res["rmse0"], color=plots.MUTED, ls="--", label="predict 0")
        axes[0, 0].set(xlabel="epoch", ylabel="clean test RMSE", title=v["loss"], yscale="log")
        axes[0, 0].legend(fontsize=8)
        prediction_view(axes[0, 1], res, v["loss"])
        return {"status": f"{v['loss']}: test RMSE {res['rmse']:.3f}, I_CS(x;t) {res['ics']:.3f}"}

    return widgets.run_panel(controls, run, draw, ncols=2, width=4.6, height=3.4, autorun=autorun)


def prediction_view(ax, res: dict, name: str) -> None:
    """Predictions against the clean test targets, with the line y = x."""
    y = res["target"]
    ax.scatter(y, res["pred"], s=6, color=COLORS.get(name, "k"), alpha=0.6)
    ax.plot([y.min(), y.max()], [y.min(), y.max()], color=plots.MUTED)
    ax.set(xlabel="clean test target", ylabel="prediction", title=f"{name}: RMSE {res['rmse']:.3f}")
