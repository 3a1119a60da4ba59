r"""The Z-loss: a shift and scale invariant classification loss of the spherical family (de Brébisson
& Vincent, *The Z-loss: a shift and scale invariant classification loss belonging to the Spherical
Family*, arXiv:1604.08859, 2016).

With outputs (pre-activations) ``o`` in R^D and the correct class ``c``,

.. math::
    \mu = \tfrac1D \sum_k o_k, \qquad \sigma^2 = \tfrac1D \sum_k o_k^2 - \mu^2, \qquad
    z = \frac{o - \mu}{\sqrt{\sigma^2 + \varepsilon}},

    L_Z(o, c) = \tfrac1a\,\mathrm{softplus}\big(a\,(b - z_c)\big),

    \frac{\partial L_Z}{\partial o_k} = -\,\mathrm{sigmoid}\big(a(b - z_c)\big)\,
        \frac{\delta_{kc} - 1/D - z_c z_k / D}{\sqrt{\sigma^2 + \varepsilon}} .

``a > 0`` is the sharpness, ``b`` the target z-score (reachable only up to ``sqrt(D - 1)``).  The loss
reads ``o`` only through ``(o_c, sum_k o_k, sum_k o_k^2)``: it is *spherical*, so for a linear output
layer ``o = W h`` it costs O(d^2) per example whatever D is (:func:`z_loss_factored`).

* losses: :func:`z_loss` and the baselines of the experiment, :func:`ce_loss`, :func:`mse_loss`,
  :func:`taylor_softmax_loss`, :func:`spherical_softmax_loss` (all ``loss(logits, labels, ...)``);
* :func:`z_scores`, :func:`spherical_sums`, :func:`z_loss_from_sums`, :func:`z_loss_factored`,
  :func:`time_losses` (naive against factored cost as D grows);
* :func:`train_losses` (seeds trained together, cached with :func:`lossviz.train.memo`), :func:`train_one`;
* pictures :func:`plot_loss_curves`, :func:`plot_class_gradients`, :func:`plot_sample_weights`,
  :func:`plot_z_histogram`; panels :func:`invariance_panel` (pure maths), :func:`training_panel` (Train).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, data, plots
from ..models import StackedClassifier as StackedMLP  # the stack of seeded MLPs the runs train
from ..train import Run, SeededEpochs, Trainer, memo, paired_memo
from ..weights import logit_weights, sample_weights

#: Small constant inside the square root of the variance (constant outputs do not divide by 0).
EPS = 1e-6
#: The losses of the experiment: name -> (loss function key, knobs).
SETTINGS = {
    "CE": ("ce", {}),
    "Z (a=1, b=3)": ("z", {"a": 1.0, "b": 3.0}),
    "Z (a=5, b=1)": ("z", {"a": 5.0, "b": 1.0}),
    "MSE": ("mse", {}),
    "Taylor softmax": ("taylor", {}),
    "spherical softmax": ("spherical", {}),
}
COLORS = {"ce": "#000000", "z": "#0072B2", "mse": "#009E73", "taylor": "#E69F00", "spherical": "#CC79A7"}
#: The top-k accuracies every run records.
KS = (1, 2, 3, 4, 5)
EVAL_EVERY = 3


# ------------------------------------------------------------------------------------------------
# The losses
# ------------------------------------------------------------------------------------------------

def _check(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    o = checks.as_float_tensor(logits, "logits (B x D, one row of class outputs per sample)", 2)
    if o.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes (columns); got shape {tuple(o.shape)}")
    y = checks.check_labels(labels, o.shape[0], o.device)
    if checks.validation_enabled() and len(y) and (int(y.min()) < 0 or int(y.max()) >= o.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {o.shape[1] - 1}] (one per logit column); "
                         f"got values from {int(y.min())} to {int(y.max())}")
    return o, y


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    checks.choice(reduction, "reduction", ("mean", "sum", "none"))
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def _knobs(a, b, eps) -> tuple[float, float, float]:
    a = checks.positive(a, "a (the Z-loss sharpness)")
    b = checks.finite(b, "b (the target z-score)")
    eps = checks.positive(eps, "eps (added to the variance)")
    return a, b, eps


def z_scores(logits, *, eps: float = EPS) -> torch.Tensor:
    r"""``z = (o - mu) / sqrt(sigma^2 + eps)`` row by row, with the population variance ``sigma^2``."""
    o = checks.as_float_tensor(logits, "logits", 2)
    eps = checks.positive(eps, "eps (added to the variance)")
    mu = o.mean(dim=1, keepdim=True)
    var = o.var(dim=1, unbiased=False, keepdim=True)
    return (o - mu) / torch.sqrt(var + eps)


def z_loss(logits, labels, *, a: float = 1.0, b: float = 3.0, eps: float = EPS,
           reduction: str = "mean") -> torch.Tensor:
    r"""The Z-loss :math:`\frac1a \mathrm{softplus}(a (b - z_c))` of the correct class's z-score ``z_c``."""
    o, y = _check(logits, labels)
    a, b, eps = _knobs(a, b, eps)
    z_c = z_scores(o, eps=eps).gather(1, y[:, None])[:, 0]
    return _reduce(F.softplus(a * (b - z_c)) / a, reduction)


def spherical_sums(logits, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three numbers a spherical loss reads: ``(o_c, sum_k o_k, sum_k o_k^2)`` per sample."""
    o, y = _check(logits, labels)
    return o.gather(1, y[:, None])[:, 0], o.sum(dim=1), (o * o).sum(dim=1)


def z_loss_from_sums(o_c, s1, s2, D: int, *, a: float = 1.0, b: float = 3.0, eps: float = EPS,
                     reduction: str = "mean") -> torch.Tensor:
    r"""The Z-loss from the spherical sums alone: ``mu = s1/D``, ``sigma^2 = s2/D - mu^2``."""
    a, b, eps = _knobs(a, b, eps)
    D = checks.integer(D, "D (the number of classes)", 2)
    mu = s1 / D
    var = (s2 / D - mu * mu).clamp_min(0.0)                               # rounding can make it -1e-9
    z_c = (o_c - mu) / torch.sqrt(var + eps)
    return _reduce(F.softplus(a * (b - z_c)) / a, reduction)


def z_loss_factored(h, W, labels, *, a: float = 1.0, b: float = 3.0, eps: float = EPS, Q=None, w_bar=None,
                    reduction: str = "mean") -> torch.Tensor:
    r"""The Z-loss of a linear output layer ``o = W h`` without forming ``o``: with ``Q = W^T W`` and
    ``w_bar = W^T 1`` (pass them precomputed; they change only when ``W`` does),
    ``o_c = W_c . h``, ``sum_k o_k = w_bar . h``, ``sum_k o_k^2 = h^T Q h``.  O(d^2) per example, any D."""
    h = checks.as_float_tensor(h, "h (B x d hidden features)", 2)
    W = checks.as_float_tensor(W, "W (D x d output weights)", 2)
    if W.shape[1] != h.shape[1]:
        raise ValueError(f"W must be D x d with d = {h.shape[1]} (h's width); got {tuple(W.shape)}")
    y = checks.check_labels(labels, h.shape[0], h.device)
    Q = W.T @ W if Q is None else Q
    w_bar = W.sum(dim=0) if w_bar is None else w_bar
    o_c = (W[y] * h).sum(dim=1)
    return z_loss_from_sums(o_c, h @ w_bar, ((h @ Q) * h).sum(dim=1), W.shape[0], a=a, b=b, eps=eps,
                            reduction=reduction)


def ce_loss(logits, labels, *, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy (log-softmax), the baseline; not spherical (``logsumexp`` reads every output)."""
    o, y = _check(logits, labels)
    return F.cross_entropy(o, y, reduction=reduction)


def mse_loss(logits, labels, *, reduction: str = "mean") -> torch.Tensor:
    """Squared error to the one-hot target, summed over classes: ``sum_k o_k^2 - 2 o_c + 1``."""
    o, y = _check(logits, labels)
    return _reduce(((o - F.one_hot(y, o.shape[1]).to(o.dtype)) ** 2).sum(dim=1), reduction)


def taylor_softmax_loss(logits, labels, *, reduction: str = "mean") -> torch.Tensor:
    """``-log`` of the Taylor softmax ``(1 + o_c + o_c^2/2) / sum_k (1 + o_k + o_k^2/2)`` (every term > 0)."""
    o, y = _check(logits, labels)
    t = 1 + o + o * o / 2
    return _reduce(torch.log(t.sum(dim=1)) - torch.log(t.gather(1, y[:, None])[:, 0]), reduction)


def spherical_softmax_loss(logits, labels, *, eps: float = EPS, reduction: str = "mean") -> torch.Tensor:
    """``-log`` of the spherical softmax ``(o_c^2 + eps) / sum_k (o_k^2 + eps)``."""
    o, y = _check(logits, labels)
    eps = checks.positive(eps, "eps")
    t = o * o + eps
    return _reduce(torch.log(t.sum(dim=1)) - torch.log(t.gather(1, y[:, None])[:, 0]), reduction)


LOSSES = {"ce": ce_loss, "z": z_loss, "mse": mse_loss, "taylor": taylor_softmax_loss,
          "spherical": spherical_softmax_loss}


def logits_with_z(z_c: float, n: int = 64, D: int = 10, *, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """``n`` random standardised output vectors (mean 0, variance 1) whose class 0 has z-score ``z_c``
    (``|z_c| <= sqrt(D - 1)``): the other classes have mean ``-z_c/(D-1)`` and the rest of the variance."""
    D = checks.integer(D, "D", 3)
    if abs(z_c) > math.sqrt(D - 1):
        raise ValueError(f"|z_c| must be <= sqrt(D - 1) = {math.sqrt(D - 1):.3g}; got {z_c}")
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, D - 1, generator=g, dtype=dtype)
    w = (w - w.mean(1, keepdim=True)) / w.std(1, unbiased=False, keepdim=True)
    m = -z_c / (D - 1)
    spread = math.sqrt(max((D - z_c ** 2 - (D - 1) * m * m) / (D - 1), 0.0))
    return torch.cat([torch.full((n, 1), float(z_c), dtype=dtype), m + spread * w], dim=1)


# ------------------------------------------------------------------------------------------------
# Cost: naive against factored
# ------------------------------------------------------------------------------------------------

def time_losses(Ds=(1000, 10000, 50000), *, d: int = 64, B: int = 32, repeats: int = 5, seed: int = 0) -> dict:
    """Seconds (best of ``repeats``) of the Z-loss of a linear layer computed naively (``o = h W^T``,
    O(D d) per example) and factored (:func:`z_loss_factored` with ``Q`` precomputed, O(d^2)), and the
    largest difference of the two values.  Returns ``{"D": [...], "naive": [...], "factored": [...],
    "max_diff": [...]}``.  Timings move with the machine's load: compare them, never assert a shape."""
    g = torch.Generator().manual_seed(seed)
    out = {"D": [], "naive": [], "factored": [], "max_diff": []}
    for D in Ds:
        W = torch.randn(D, d, generator=g) / math.sqrt(d)
        h = torch.randn(B, d, generator=g)
        y = torch.randint(0, D, (B,), generator=g)
        Q, w_bar = W.T @ W, W.sum(dim=0)
        with checks.validation(False), torch.no_grad():
            naive = lambda: z_loss(h @ W.T, y, reduction="none")                    # noqa: E731
            fact = lambda: z_loss_factored(h, W, y, Q=Q, w_bar=w_bar, reduction="none")  # noqa: E731
            t = {}
            for key, fn in (("naive", naive), ("factored", fact)):
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - start)
                t[key] = best
            diff = float((naive() - fact()).abs().max())
        out["D"].append(int(D))
        out["naive"].append(t["naive"])
        out["factored"].append(t["factored"])
        out["max_diff"].append(diff)
    return out


# ------------------------------------------------------------------------------------------------
# Training: digits, an MLP, the six losses, seeds trained together
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits(seed: int = 0) -> Digits:
    """scikit-learn digits, stratified 67/33 split (``random_state=seed``), standardised with the
    training split's statistics."""
    x_tr, x_te, y_tr, y_te = data.digits_split(0.33, stratify=True, seed=seed)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std == 0] = 1.0
    f = lambda v: torch.as_tensor((v - mean) / std, dtype=torch.float32)  # noqa: E731
    i = lambda v: torch.as_tensor(v, dtype=torch.long)                     # noqa: E731
    return Digits(f(x_tr), i(y_tr), f(x_te), i(y_te))


@dataclass(repr=False)
class ZRun(Run):
    """One run: ``history`` the loss per step; ``evals`` every :data:`EVAL_EVERY` epochs (``epoch``, 0
    before training) the test accuracies ``top1`` .. ``top5``; ``scores`` the final ones;
    ``test_logits`` (594 x 10) and ``y_test`` at the end, for the z-score pictures."""

    test_logits: np.ndarray | None = None
    y_test: np.ndarray | None = None

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        return (f"ZRun({label(p['loss'], p['a'], p['b'])}, {p['epochs']} epochs, seed {p['seed']}: "
                f"top-1 {s['top1']:.3f}, top-3 {s['top3']:.3f})")


def color(loss: str, b: float = 3.0) -> str:
    """The colour of a loss in every picture: a Z-loss with a loose target (b < 2.5) is light blue."""
    return "#56B4E9" if loss == "z" and b < 2.5 else COLORS[loss]


def label(loss: str, a: float = 1.0, b: float = 3.0) -> str:
    """A readable name: ``"Z (a=1, b=3)"``, ``"CE"``, ..."""
    names = {"ce": "CE", "mse": "MSE", "taylor": "Taylor softmax", "spherical": "spherical softmax"}
    return f"Z (a={a:.3g}, b={b:.3g})" if loss == "z" else names[loss]


def _params(loss, a, b, epochs, lr, batch_size, hidden) -> dict:
    checks.choice(loss, "loss", tuple(LOSSES))
    a, b, _ = _knobs(a, b, EPS)
    if loss != "z":
        a, b = 1.0, 3.0                                                   # not read: one cache entry per loss
    for arg, value in (("epochs", epochs), ("batch_size", batch_size), ("hidden", hidden)):
        checks.integer(value, arg, 1)
    return dict(loss=loss, a=float(a), b=float(b), epochs=epochs, lr=float(checks.positive(lr, "lr")),
                batch_size=batch_size, hidden=hidden)


def train_losses(loss: str = "z", *, a: float = 1.0, b: float = 3.0, seeds=range(8), epochs: int = 30,
                 lr: float = 1e-3, batch_size: int = 128, hidden: int = 64, progress=True) -> list:
    """One :class:`ZRun` per seed for ``loss`` (a key of :data:`LOSSES`; ``a``, ``b`` for ``"z"``):
    MLP 64-hidden-hidden-10, Adam, mini-batches in a seeded order, ``epochs`` epochs on
    :func:`digits` of each seed.  Seed ``s`` fixes the split, the initialisation and the batch order,
    so runs of different losses with the same seed are paired.  The seeds train together
    (:class:`StackedMLP`); the group and each run are cached (:func:`lossviz.train.memo`)."""
    base = _params(loss, a, b, epochs, lr, batch_size, hidden)
    return paired_memo("z_loss", base, seeds, lambda group_seeds: _train_group(base, group_seeds, progress),
                       at_least=1)


def train_one(loss: str = "z", *, seed: int = 0, **kw) -> ZRun:
    """One seed of :func:`train_losses` (a run already trained in a group comes from the cache)."""
    base = _params(loss, kw.get("a", 1.0), kw.get("b", 3.0), kw.get("epochs", 30), kw.get("lr", 1e-3),
                   kw.get("batch_size", 128), kw.get("hidden", 64))
    progress = kw.get("progress", True)
    return memo("z_loss", base | {"seed": checks.integer(seed, "seed")},
                lambda: _train_group(base, [seed], progress)[0])


def _topk(logits: torch.Tensor, y: torch.Tensor) -> dict:
    """``{"top1": (S,), ...}``: share of samples whose label is among the k largest outputs."""
    rank = (logits > logits.gather(-1, y[..., None])).sum(-1)             # classes strictly above the label
    return {f"top{k}": (rank < k).float().mean(-1) for k in KS}


def _train_group(p: dict, seeds: list, progress) -> list:
    data = [digits(s) for s in seeds]
    stack = lambda key: torch.stack([getattr(d, key) for d in data])     # noqa: E731
    x, y, x_test, y_test = stack("x_train"), stack("y_train"), stack("x_test"), stack("y_test")
    S, n = y.shape
    per_epoch = math.ceil(n / p["batch_size"])
    fn, knobs = LOSSES[p["loss"]], ({"a": p["a"], "b": p["b"]} if p["loss"] == "z" else {})
    trainer = Trainer(lambda: StackedMLP(seeds, x.shape[2], p["hidden"]), lr=p["lr"], seed=seeds[0])
    next_batch = SeededEpochs(n, seeds, p["batch_size"])
    rows = torch.arange(S)[:, None]

    def step(it: int) -> dict:
        idx = next_batch()
        out = trainer.model(x[rows, idx])
        per_seed = fn(out.flatten(0, 1), y[rows, idx].flatten(), reduction="none", **knobs).view(S, -1).mean(1)
        trainer.update(per_seed.sum())
        return {"loss": per_seed.mean(), **{f"loss_{i}": v for i, v in enumerate(per_seed.detach())}}

    def evaluate() -> dict:
        acc = _topk(trainer.model(x_test), y_test)
        return {f"{k}_{i}": float(v[i]) for k, v in acc.items() for i in range(S)}

    history, evals, seconds = trainer.run(step, p["epochs"] * per_epoch, evaluate=evaluate,
                                          eval_every=EVAL_EVERY * per_epoch,
                                          desc=f"{label(p['loss'], p['a'], p['b'])}, {S} seed{'s' * (S > 1)}",
                                          progress=progress)
    with torch.no_grad():
        final = trainer.model(x_test)
    runs = []
    for i, s in enumerate(seeds):
        ev = {"iter": evals["iter"], "epoch": evals["iter"] // per_epoch}
        ev |= {k[:-len(f"_{i}")]: v for k, v in evals.items() if k.endswith(f"_{i}")}
        runs.append(ZRun(params=p | {"seed": s}, history={"iter": history["iter"], "loss": history[f"loss_{i}"]},
                         evals=ev, scores={f"top{k}": float(ev[f"top{k}"][-1]) for k in KS}, seconds=seconds / S,
                         test_logits=final[i].numpy(), y_test=y_test[i].numpy()))
    return runs


def correct_z(run: ZRun) -> np.ndarray:
    """The z-score of the correct class on every test sample, at the end of ``run``."""
    z = z_scores(torch.as_tensor(run.test_logits, dtype=torch.float64))
    return z.gather(1, torch.as_tensor(run.y_test)[:, None])[:, 0].numpy()


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def plot_loss_curves(ax, ab=((1, 3), (5, 3), (1, 1), (5, 1), (0.5, 2)), *, D: int = 10) -> dict:
    """The Z-loss against ``z_c`` for several ``(a, b)``; the reachable bound ``sqrt(D-1)`` dotted.
    Computed by :func:`z_loss` on :func:`logits_with_z` vectors.  Returns ``{(a, b): (z_c, loss)}``."""
    zc = np.linspace(-math.sqrt(D - 1), math.sqrt(D - 1), 121)
    o = torch.cat([logits_with_z(float(v), 1, D) for v in zc])
    y = torch.zeros(len(zc), dtype=torch.long)
    cmap, out = plots.mpl.colormaps["viridis"], {}
    for j, (a, b) in enumerate(ab):
        loss = z_loss(o, y, a=a, b=b, reduction="none").numpy()
        ax.plot(zc, loss, color=cmap(j / max(len(ab) - 1, 1)), label=f"a={a:g}, b={b:g}")
        out[(a, b)] = (zc, loss)
    ax.axvline(math.sqrt(D - 1), color=plots.MUTED, ls=":", lw=1.2)
    ax.set(xlabel="$z_c$ (z-score of the correct class)", ylabel="$L_Z$", ylim=(0, 6),
           title=f"Z-loss, D = {D} (dotted: $\\sqrt{{D-1}}$)")
    ax.legend(fontsize=8, loc="upper right")
    return out


def plot_class_gradients(ax_z, ax_ce, zcs=(-1.0, 1.0, 2.5), *, D: int = 10, a: float = 1.0, b: float = 3.0) -> dict:
    """``dL/do_k`` of the other classes against their ``z_k`` (:func:`lossviz.logit_weights`), for
    outputs whose correct class sits at each ``z_c``: the Z-loss (left) and cross-entropy on the same
    outputs (right).  Returns ``{z_c: (z_k, dZ/do_k, dCE/do_k)}`` of the wrong classes."""
    cmap, out = plots.mpl.colormaps["plasma"], {}
    for j, zc in enumerate(zcs):
        o = logits_with_z(zc, 40, D, seed=j)
        y = torch.zeros(len(o), dtype=torch.long)
        gz = logit_weights(z_loss, o, y, a=a, b=b, reduction="none")[:, 1:]
        gc = logit_weights(ce_loss, o, y, reduction="none")[:, 1:]
        zk = o[:, 1:]
        c = cmap(j / max(len(zcs) - 1, 1) * 0.85)
        ax_z.scatter(zk.flatten(), gz.flatten(), s=5, color=c, label=f"$z_c$ = {zc:g}")
        ax_ce.scatter(zk.flatten(), gc.flatten(), s=5, color=c, label=f"$z_c$ = {zc:g}")
        out[zc] = (zk, gz, gc)
    for ax in (ax_z, ax_ce):
        ax.axhline(0, color=plots.MUTED, lw=0.8)
        ax.set(xlabel="$z_k$ of a wrong class $k$")
    ax_z.set(ylabel=r"$\partial L / \partial o_k$", title=f"Z-loss (a={a:g}, b={b:g}): wrong classes")
    ax_ce.set(ylabel=r"$p_k$", title="cross-entropy on the same outputs")
    ax_z.legend(fontsize=8, loc="upper left")
    return out


def plot_sample_weights(ax, logits, labels, settings=(("CE", "ce", {}), ("Z (a=1, b=3)", "z", {"a": 1.0, "b": 3.0}),
                                                      ("Z (a=5, b=1)", "z", {"a": 5.0, "b": 1.0}))) -> dict:
    """Each sample's pull ``|dL/do_c|`` (:func:`lossviz.sample_weights`) against its ``z_c``, one colour
    per loss (each scaled by its largest pull, so the shapes compare).  Returns ``{name: (z_c, pull)}``."""
    zc = z_scores(logits).gather(1, torch.as_tensor(labels)[:, None])[:, 0].detach()
    cmap, out = plots.mpl.colormaps["viridis"], {}
    for j, (nm, key, knobs) in enumerate(settings):
        w = sample_weights(LOSSES[key], logits, labels, reduction="none", **knobs)
        color = "k" if key == "ce" else cmap(0.15 + 0.6 * j / len(settings))
        ax.scatter(zc, w / w.max(), s=8, color=color, label=nm, alpha=0.7)
        out[nm] = (zc, w)
    ax.set(xlabel="$z_c$ of the sample", ylabel=r"pull $|\partial L/\partial o_c|$ (scaled to max 1)",
           title="per-sample weights on a batch")
    ax.legend(fontsize=8)
    return out


def plot_z_histogram(ax, runs: dict, *, D: int = 10) -> dict:
    """Histograms of the correct class's test z-score at the end of each run of ``{name: ZRun}``."""
    bins = np.linspace(-1, math.sqrt(D - 1), 31)
    out = {}
    for nm, run in runs.items():
        zc = correct_z(run)
        ax.hist(zc, bins=bins, histtype="step", lw=1.8, color=color(run.params["loss"], run.params["b"]), label=nm)
        out[nm] = zc
    ax.axvline(math.sqrt(D - 1), color=plots.MUTED, ls=":", lw=1.2)
    ax.set(xlabel="$z_c$ on the test set", ylabel="test samples", title="where the correct class ends up")
    ax.legend(fontsize=8, loc="upper left")
    return out


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def invariance_panel(logits, labels, *, a: float = 1.0, b: float = 3.0):
    """Pure maths on a batch of outputs (B x D).  Knobs: a, b (the Z-loss), and a scale α and shift β
    applied to the outputs, ``o -> α o + β``.  Left: the Z-loss against ``z_c`` with the batch on it.
    Right: each sample's Z-loss and cross-entropy on the transformed outputs: Z does not move."""
    import ipywidgets as W

    from .. import widgets

    o = checks.as_float_tensor(logits, "logits", 2).detach().double()
    y = checks.check_labels(labels, o.shape[0], o.device)
    B, D = o.shape
    root = math.sqrt(D - 1)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "a": W.FloatLogSlider(value=a, base=10, min=-1, max=1, step=0.05, description="a (sharp)",
                              readout_format=".3g", **style),
        "b": W.FloatSlider(value=b, min=0.0, max=round(root + 1, 1), step=0.1, description="b (target)",
                           readout_format=".2f", **style),
        "alpha": W.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05, description="scale α",
                                  readout_format=".3g", **style),
        "beta": W.FloatSlider(value=0.0, min=-10, max=10, step=0.5, description="shift β",
                              readout_format=".2f", **style),
    }
    zc_grid = np.linspace(-root, root, 121)
    grid_o = torch.cat([logits_with_z(float(v), 1, D) for v in zc_grid])
    grid_y = torch.zeros(len(zc_grid), dtype=torch.long)
    zc = z_scores(o).gather(1, y[:, None])[:, 0]
    fig, axes = plots.new_figure(2, width=4.8, height=3.6)
    ax, ax2 = axes[0, 0], axes[0, 1]
    (curve,) = ax.plot(zc_grid, zc_grid * 0, color=COLORS["z"], lw=2)
    dots = ax.scatter(zc.numpy(), zc.numpy() * 0, s=18, color=COLORS["z"], zorder=3, label="the batch")
    b_line = ax.axvline(b, color=COLORS["z"], ls="--", lw=1, label="b")
    ax.axvline(root, color=plots.MUTED, ls=":", lw=1.2, label=r"$\sqrt{D-1}$")
    ax.set(xlabel="$z_c$", ylabel="$L_Z$", xlim=(-root, root + 1.1), ylim=(0, 8))
    ax.legend(fontsize=8, loc="upper right")
    idx = np.arange(B)
    (z_pts,) = ax2.plot(idx, np.ones(B), "o-", color=COLORS["z"], label="Z-loss")
    (ce_pts,) = ax2.plot(idx, np.ones(B), "s-", color=COLORS["ce"], label="cross-entropy")
    ax2.set(xlabel="sample of the batch", ylabel="loss of the sample", yscale="log", ylim=(1e-4, 1e3),
            xticks=idx)
    ax2.yaxis.set_minor_locator(plots.mpl.ticker.NullLocator())          # fewer ticks: a faster redraw
    ax2.legend(fontsize=8, loc="lower right")
    base_z = z_loss(o, y, a=a, b=b, reduction="none")

    def draw(v):
        ka, kb, al, be = float(v["a"]), float(v["b"]), float(v["alpha"]), float(v["beta"])
        moved = al * o + be
        lz = z_loss(moved, y, a=ka, b=kb, reduction="none")
        lce = ce_loss(moved, y, reduction="none")
        curve.set_ydata(z_loss(grid_o, grid_y, a=ka, b=kb, reduction="none").numpy())
        dots.set_offsets(np.column_stack([zc.numpy(), z_loss(o, y, a=ka, b=kb, reduction="none").numpy()]))
        b_line.set_xdata([kb, kb])
        z_pts.set_ydata(lz.numpy())
        ce_pts.set_ydata(lce.clamp_min(1e-4).numpy())
        ax.set_title(f"Z-loss, a = {ka:.3g}, b = {kb:.2f}" + ("  (b unreachable!)" if kb > root else ""))
        ax2.set_title(f"outputs → {al:.3g}·o + {be:.2f}")
        return {"z": lz, "ce": lce, "unreachable": kb > root,
                "status": f"α = {al:.3g}, β = {be:.2f}: mean Z-loss {float(lz.mean()):.3f}, "
                          f"mean cross-entropy {float(lce.mean()):.3f}"}

    panel = widgets.Panel(controls, fig, draw)
    panel.base_z = base_z
    return panel


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_one`: the loss, a and b (Z only), the seed and the k of the
    top-k accuracy (``epochs`` fixed by the caller).  Left: test top-k accuracy over epochs, the chosen loss against cross-entropy
    (dashed) with the same seed; right: where the correct class's test z-score ends up, both runs."""
    import ipywidgets as W

    from .. import widgets

    d = dict(loss="z", a=5.0, b=1.0, seed=0, k=3, epochs=30) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "loss": W.Dropdown(options=[("Z-loss", "z"), ("CE", "ce"), ("MSE", "mse"), ("Taylor", "taylor"),
                                    ("spherical", "spherical")], value=d["loss"], description="loss",
                           layout=W.Layout(width="180px")),
        "a": W.FloatLogSlider(value=d["a"], base=10, min=-1, max=1, step=0.05, description="a (sharp)",
                              readout_format=".3g", **style),
        "b": W.FloatSlider(value=d["b"], min=0.0, max=4.0, step=0.25, description="b (target)",
                           readout_format=".2f", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
        "k": W.IntSlider(value=d["k"], min=1, max=5, description="top-k", **style),
    }

    def run(v, progress):
        knobs = dict(a=v["a"], b=v["b"]) if v["loss"] == "z" else {}
        return {"run": train_one(v["loss"], seed=v["seed"], epochs=d["epochs"], progress=progress, **knobs),
                "ce": train_one("ce", seed=v["seed"], epochs=d["epochs"], progress=progress)}

    def draw(axes, result, v):
        r, ce, k = result["run"], result["ce"], int(v["k"])
        nm = label(r.params["loss"], r.params["a"], r.params["b"])
        ax = axes[0, 0]
        ax.plot(r.evals["epoch"], r.evals[f"top{k}"], color=color(r.params["loss"], r.params["b"]), label=nm)
        ax.plot(ce.evals["epoch"], ce.evals[f"top{k}"], color="k", ls="--", label="CE")
        ax.set(xlabel="epoch", ylabel=f"test top-{k} accuracy", ylim=(0.8, 1.005), title=f"top-{k} accuracy")
        ax.legend(fontsize=8, loc="lower right")
        plot_z_histogram(axes[0, 1], {nm: r, "CE": ce} if nm != "CE" else {"CE": ce})
        return {"status": f"{r!r}; CE: top-{k} {ce.scores[f'top{k}']:.3f}"}

    return widgets.run_panel(controls, run, draw, ncols=2, width=4.6, height=3.4, autorun=autorun,
                             describe=lambda res: repr(res["run"]))
