r"""Comp-sum losses: one dial tau from sum-exp through cross-entropy and GCE to MAE (Mao, Mohri &
Zhong, *Cross-Entropy Loss Functions: Theoretical Analysis and Applications*, ICML 2023), and the
per-sample weight view of a classification loss that the rest of Part IV reuses.

With logits ``z`` (one row per sample), softmax ``p`` and ``u = sum_{k != y} exp(z_k - z_y) = 1/p_y - 1``,

.. math::
    \ell_\tau = \Phi^\tau(u) = \frac{(1 + u)^{1-\tau} - 1}{1 - \tau} = \frac{p_y^{\tau - 1} - 1}{1 - \tau}
    \quad (\tau \ne 1), \qquad \ell_1 = \log(1 + u) = -\log p_y ,

    \frac{\partial \ell_\tau}{\partial z} = p_y^{\tau - 1}\,(p - e_y) .

tau = 0 is the sum-exponential loss ``1/p_y - 1``, tau = 1 cross-entropy, tau in (1, 2) the
generalised cross-entropy with ``q = tau - 1`` and tau = 2 the mean absolute error ``1 - p_y``.
Every member is cross-entropy's gradient times the **per-sample weight** ``w = p_y^(tau - 1)``:
:func:`lossviz.sample_weights` (``relative_to_ce=True``) reads that weight off any loss by autograd,
and this module never computes it a second way.

* :func:`comp_sum_loss` (the stable form used for training) and :func:`comp_sum_formula` (the
  paper's ``Phi^tau(u)``, written as printed: the lesson shows it);
* :func:`flip_labels` (symmetric label noise, always to *another* class) and :func:`noisy_digits`;
* :func:`train_comp_sum` (on :class:`lossviz.train.Trainer` + :func:`lossviz.train.memo`),
  :func:`paired_runs` over seeds;
* pictures: :func:`plot_weight_curves`, :func:`plot_batch_pull`, :func:`plot_memorisation`; panels
  :func:`weights_panel` (pure maths) and :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, plots
from ..data import NoisyDigits, flip_labels, noisy_digits  # noqa: F401 - the notebook reads them here
from ..models import StackedClassifier, classifier  # noqa: F401
from ..train import Run, SeededEpochs, Trainer, memo, paired_memo
from ..weights import sample_weights

#: The family's named members (the paper's Table 1), by their tau.
TAUS = {"sum-exp": 0.0, "CE": 1.0, "GCE": 1.7, "MAE": 2.0}
#: One colour per family member (never the pair colours, which mean pull / push).
COLORS = {0.0: "#E69F00", 0.5: "#F0C75E", 1.0: "#000000", 1.5: "#56B4E9", 1.7: "#009E73", 2.0: "#5D3A9B"}
#: Samples whose label was flipped, and the others, in every picture of this lesson.
FLIP_COLOR, CLEAN_COLOR = "#CC79A7", "#0F7F5F"
#: Training runs are evaluated before training and every this many epochs (and at the end).
EVAL_EVERY = 4
#: Where the exponent ``(tau - 1) log p_y`` is clamped (tau < 1 only): ``exp(80)`` fits in float32.
MAX_EXPONENT = 80.0


def name(tau: float) -> str:
    """``"CE (τ = 1)"`` for a named member of the family, ``"τ = 0.5"`` otherwise."""
    for key, value in TAUS.items():
        if abs(tau - value) < 1e-9:
            return f"{key} (τ = {value:g})"
    return f"τ = {tau:.3g}"


def color(tau: float) -> str:
    """The colour of ``tau``: its member's colour, else a point on the viridis scale of [0, 2]."""
    for key, value in COLORS.items():
        if abs(tau - key) < 1e-9:
            return value
    import matplotlib as mpl

    return mpl.colors.to_hex(mpl.colormaps["viridis"](min(max(tau / 2, 0.0), 1.0)))


# ------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------

def _check(logits, labels, tau) -> tuple[torch.Tensor, torch.Tensor, float]:
    z = checks.as_float_tensor(logits, "logits (B x C, one row of class scores per sample)", 2)
    if z.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes (columns); got shape {tuple(z.shape)}")
    y = checks.check_labels(labels, z.shape[0], z.device)
    if checks.validation_enabled() and len(y) and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {z.shape[1] - 1}] (one per logit column); "
                         f"got values from {int(y.min())} to {int(y.max())}")
    tau = checks.non_negative(tau, "tau (the comp-sum dial: 0 sum-exp, 1 cross-entropy, 2 MAE)")
    return z, y, tau


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    checks.choice(reduction, "reduction", ("mean", "sum", "none"))
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def comp_sum_loss(logits, labels, *, tau: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    r"""The comp-sum loss :math:`\ell_\tau = (p_y^{\tau-1} - 1)/(1 - \tau)`, ``-log p_y`` at tau = 1.

    Computed stably from ``log p_y = log_softmax(z)[y]`` as ``expm1((tau - 1) log p_y) / (1 - tau)``
    (no ``p_y`` is ever formed, so no ``0 ** negative``), and as ``-log p_y`` when
    ``|tau - 1| < 1e-6``.  For tau < 1 the weight ``p_y^(tau - 1)`` grows without bound as
    ``p_y -> 0``; the exponent is clamped at :data:`MAX_EXPONENT` (80), where the loss is flat: a
    sample that far gone stops pulling.  ``reduction``: ``"mean"`` (default), ``"sum"`` or ``"none"``
    (one loss per sample, what :func:`lossviz.sample_weights` wants).  tau must be >= 0, the
    paper's range; tau = 0 is the sum-exponential loss, tau in (1, 2) GCE with ``q = tau - 1``,
    tau = 2 MAE (``1 - p_y``)."""
    z, y, tau = _check(logits, labels, tau)
    logp = torch.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]        # log p_y
    if abs(tau - 1.0) < 1e-6:
        per_sample = -logp
    else:
        per_sample = torch.expm1(((tau - 1.0) * logp).clamp(max=MAX_EXPONENT)) / (1.0 - tau)
    return _reduce(per_sample, reduction)


def comp_sum_formula(logits, labels, *, tau: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    r"""The paper's form, :math:`\Phi^\tau(u)` with :math:`u = \sum_{k \ne y} e^{z_k - z_y}`:
    ``((1 + u)^(1 - tau) - 1) / (1 - tau)``, ``log(1 + u)`` at tau = 1.  Written as printed, for the
    lesson; it overflows where :func:`comp_sum_loss` does not (``e^{z_k - z_y}`` for a large gap)."""
    z, y, tau = _check(logits, labels, tau)
    diff = z - z.gather(1, y[:, None])                                    # z_k - z_y
    u = torch.exp(diff).sum(dim=1) - 1.0                                  # the k = y term is e^0 = 1
    per_sample = torch.log1p(u) if tau == 1.0 else ((1 + u) ** (1 - tau) - 1) / (1 - tau)
    return _reduce(per_sample, reduction)


def p_true(logits, labels) -> torch.Tensor:
    """``p_y``, the softmax probability of each sample's (given) label."""
    z = checks.as_float_tensor(logits, "logits", 2)
    y = checks.check_labels(labels, z.shape[0], z.device)
    return torch.softmax(z.detach(), dim=1).gather(1, y[:, None])[:, 0]


def logits_with_margin(margins, n_classes: int = 10, *, dtype=torch.float64) -> torch.Tensor:
    """One row of logits per margin ``m = z_y - max_{k != y} z_k``, label 0, the other classes tied at 0:
    then ``p_y = 1 / (1 + (C - 1) e^{-m})``.  For drawing weights against the margin."""
    m = torch.as_tensor(margins, dtype=dtype).reshape(-1)
    n_classes = checks.integer(n_classes, "n_classes", 2)
    z = torch.zeros(len(m), n_classes, dtype=dtype)
    z[:, 0] = m
    return z


# ------------------------------------------------------------------------------------------------
# Label noise and the data
# ------------------------------------------------------------------------------------------------

# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class CompSumRun(Run):
    """One classifier run: ``history`` the loss per step; ``evals`` every :data:`EVAL_EVERY` epochs (``iter`` in
    steps, ``epoch``, 0 before training): ``test_acc`` (clean test labels), ``train_acc`` (against the noisy
    labels it trains on), ``memorised`` and ``corrected`` (the share of flipped training samples
    predicted as their noisy label, and as their true one), ``flipped_pull`` (the share of the total
    pull ``sum_i |dL/dz_{i,y_i}|`` on the training set that comes from flipped samples), ``w_flipped``
    and ``w_clean`` (the mean per-sample weight relative to cross-entropy, ``p_y^(tau-1)``, of flipped
    and of clean training samples).  ``scores``: the final ``test_acc``, the best one and its epoch.
    ``seconds`` is this run's share of the time its group of seeds took (:func:`paired_runs`);
    ``network`` the trained :func:`classifier`."""

    network: nn.Module | None = None

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        return (f"CompSumRun({name(p['tau'])}, noise {p['noise']:.2f}, {p['epochs']} epochs, seed {p['seed']}: "
                f"test accuracy {s['test_acc']:.3f}, best {s['best_test_acc']:.3f} at epoch {s['best_epoch']})")


def _params(tau, noise, epochs, seed, lr, batch_size, hidden) -> dict:
    tau = checks.non_negative(tau, "tau (the comp-sum dial)")
    noise = checks.fraction(noise, "noise (the label-noise rate)", high=0.9)
    for arg, value in (("epochs", epochs), ("batch_size", batch_size), ("hidden", hidden)):
        checks.integer(value, arg, 1)
    return dict(tau=float(tau), noise=float(noise), epochs=epochs, seed=checks.integer(seed, "seed"),
                lr=float(checks.positive(lr, "lr")), batch_size=batch_size, hidden=hidden)


def train_comp_sum(tau: float = 1.0, *, noise: float = 0.4, epochs: int = 60, seed: int = 0, lr: float = 1e-3,
                   batch_size: int = 128, hidden: int = 128, progress=True, cache: bool = True) -> CompSumRun:
    """Train :func:`classifier` with :func:`comp_sum_loss` at ``tau`` on :func:`noisy_digits` (label
    noise ``noise``): Adam (``lr``), mini-batches of ``batch_size`` in a seeded order, ``epochs``
    epochs, evaluated before training and every :data:`EVAL_EVERY` epochs (see :class:`CompSumRun`).  ``seed`` fixes
    the split, the noise, the initialisation and the batch order, so runs with different tau and the
    same seed are paired.  Cached by its parameters (:func:`lossviz.train.memo`)."""
    p = _params(tau, noise, epochs, seed, lr, batch_size, hidden)
    return memo("comp_sum", p, lambda: _train_group(p, [p["seed"]], progress)[0], cache=cache)


def paired_runs(settings, seeds=range(8), *, epochs: int = 60, progress=True) -> dict:
    """``{(tau, noise): [CompSumRun per seed]}`` for every ``(tau, noise)`` in ``settings``.

    Seed s gives every setting the same split, initialisation and batch order (and, at equal noise,
    the same flipped labels), so the runs are paired.  The seeds of one setting train together in
    one :class:`StackedClassifier`; each run then joins the cache under its own parameters, as if
    :func:`train_comp_sum` had trained it (a run already there is kept)."""
    out = {}
    for tau, noise in settings:
        base = _params(tau, noise, epochs, 0, 1e-3, 128, 128)
        out[(base["tau"], base["noise"])] = paired_memo(
            "comp_sum", base, seeds, lambda group_seeds, base=base: _train_group(base, group_seeds, progress))
    return out


def _train_group(p: dict, seeds: list, progress) -> list:
    """One :class:`CompSumRun` per seed of ``seeds``, all with the knobs of ``p``, trained at once."""
    data = [noisy_digits(p["noise"], seed=s) for s in seeds]
    stack = lambda key: torch.stack([getattr(d, key) for d in data])  # noqa: E731
    x, y = stack("x_train"), stack("y_train")
    S, n = y.shape
    per_epoch = math.ceil(n / p["batch_size"])
    trainer = Trainer(lambda: StackedClassifier(seeds, x.shape[2], p["hidden"]), lr=p["lr"], seed=seeds[0])
    next_batch = SeededEpochs(n, seeds, p["batch_size"])
    rows = torch.arange(S)[:, None]

    def step(it: int) -> dict:
        idx = next_batch()
        z = trainer.model(x[rows, idx])
        per_seed = comp_sum_loss(z.flatten(0, 1), y[rows, idx].flatten(), tau=p["tau"],
                                 reduction="none").view(S, -1).mean(dim=1)
        trainer.update(per_seed.sum())                                    # copies share nothing: their own gradients
        return {"loss": per_seed.mean(), **{f"loss_{i}": v for i, v in enumerate(per_seed.detach())}}

    x_test, y_test, y_clean, flipped = stack("x_test"), stack("y_test"), stack("y_clean"), stack("flipped")

    def evaluate() -> dict:                                               # before training, then every epoch
        scores = epoch_scores(trainer.model(x), trainer.model(x_test), y, y_clean, flipped, y_test, p["tau"])
        return {f"{k}_{i}": float(v[i]) for k, v in scores.items() for i in range(S)}

    history, evals, seconds = trainer.run(step, p["epochs"] * per_epoch, evaluate=evaluate,
                                          eval_every=EVAL_EVERY * per_epoch,
                                          desc=f"{name(p['tau'])}, {S} seed{'s' * (S > 1)}", progress=progress)
    runs = []
    for i, s in enumerate(seeds):
        ev = {"iter": evals["iter"], "epoch": evals["iter"] // per_epoch}
        ev |= {k[:-len(f"_{i}")]: v for k, v in evals.items() if k.endswith(f"_{i}") and k != "iter"}
        best = int(np.argmax(ev["test_acc"]))
        scores = {"test_acc": float(ev["test_acc"][-1]), "best_test_acc": float(ev["test_acc"][best]),
                  "best_epoch": int(ev["epoch"][best])}
        runs.append(CompSumRun(params=p | {"seed": s}, history={"iter": history["iter"], "loss": history[f"loss_{i}"]},
                               evals=ev, scores=scores, seconds=seconds / S,
                               network=trainer.model.member(i)))
    return runs


def epoch_scores(z_train, z_test, y_train, y_clean, flipped, y_test, tau: float) -> dict:
    """The per-epoch numbers of :class:`CompSumRun` for S networks at once: training logits
    ``z_train`` (S x n x C) against the noisy labels ``y_train`` (S x n) they train on, with the true
    labels ``y_clean`` and the mask ``flipped``, and test logits ``z_test`` against ``y_test``.
    Returns ``{name: tensor of S numbers}``.  The pulls and the weights come from
    :func:`lossviz.sample_weights`, by autograd on the logits."""
    S, n, C = z_train.shape
    pull = sample_weights(comp_sum_loss, z_train.reshape(S * n, C), y_train.flatten(), tau=tau,
                          reduction="none").view(S, n)
    w = sample_weights(comp_sum_loss, z_train.reshape(S * n, C), y_train.flatten(), relative_to_ce=True, tau=tau,
                       reduction="none").view(S, n)
    pred, fl = z_train.argmax(2), flipped.to(z_train.dtype)
    mean_over = lambda v, m: (v * m).sum(1) / m.sum(1)                    # noqa: E731 - nan where m is empty
    return {"test_acc": (z_test.argmax(2) == y_test).to(z_train.dtype).mean(1),
            "train_acc": (pred == y_train).to(z_train.dtype).mean(1),
            "memorised": mean_over((pred == y_train).to(z_train.dtype), fl),
            "corrected": mean_over((pred == y_clean).to(z_train.dtype), fl),
            "flipped_pull": (pull * fl).sum(1) / pull.sum(1).clamp(min=torch.finfo(pull.dtype).tiny),
            "w_flipped": mean_over(w, fl), "w_clean": mean_over(w, 1 - fl)}


def batch_logits(n: int = 200, *, epochs: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float64) and true labels of the first ``n`` training digits of seed ``seed``, from a
    cross-entropy network trained for ``epochs`` epochs on clean labels: one that has learned the
    digits but memorised nothing, for the weight pictures (flip the labels afterwards)."""
    n = checks.integer(n, "n", 1)
    run = train_comp_sum(1.0, noise=0.0, epochs=checks.integer(epochs, "epochs", 1), seed=seed, progress=False)
    data = noisy_digits(0.0, seed=seed)
    with torch.no_grad():
        z = run.network(data.x_train[:n]).double()
    return z, data.y_clean[:n]


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def plot_weight_curves(axes, taus=(0.0, 0.5, 1.0, 1.5, 2.0), *, n_classes: int = 10) -> dict:
    """Three views of the family, drawn from :func:`lossviz.sample_weights` on synthetic logits:
    the loss against ``p_y``, the weight ``w = p_y^(tau-1)`` against ``p_y`` and against the margin
    ``z_y - max_{k != y} z_k`` (``n_classes`` classes, the others tied).  Returns ``{tau: (p, w)}``."""
    m = torch.linspace(-8, 8, 161, dtype=torch.float64)
    z = logits_with_margin(m, n_classes)
    y = torch.zeros(len(m), dtype=torch.long)
    p = p_true(z, y)
    out = {}
    for tau in taus:
        loss = comp_sum_loss(z, y, tau=tau, reduction="none")
        w = sample_weights(comp_sum_loss, z, y, relative_to_ce=True, tau=tau, reduction="none")
        kw = dict(color=color(tau), label=name(tau))
        axes[0].plot(p, loss, **kw)
        axes[1].plot(p, w, **kw)
        axes[2].plot(m, w, **kw)
        out[tau] = (p, w)
    axes[0].set(xlabel="$p_y$ (probability of the label)", ylabel=r"loss $\ell_\tau$", ylim=(0, 5),
                title="the loss")
    axes[1].set(xlabel="$p_y$", ylabel=r"weight $w = p_y^{\tau-1}$", yscale="log", ylim=(1e-3, 1e3),
                title="weight vs CE's gradient")
    axes[2].set(xlabel=r"margin $z_y - \max_{k\neq y} z_k$", ylabel="weight $w$", yscale="log", ylim=(1e-3, 1e3),
                title=f"weight vs margin ({n_classes} classes)")
    axes[0].legend(loc="upper right", fontsize=9)
    return out


def batch_pull(logits, labels, tau: float) -> torch.Tensor:
    """Each sample's share of the batch's total pull ``|dL/dz_y|`` (:func:`lossviz.sample_weights`)."""
    pull = sample_weights(comp_sum_loss, logits, labels, tau=tau, reduction="none")
    return pull / pull.sum().clamp(min=torch.finfo(pull.dtype).tiny)


def plot_batch_pull(ax, logits, labels, flipped, tau: float) -> float:
    """Bars: every sample's share of the total pull, samples sorted by ``p_y`` of the label they
    carry, flipped ones in :data:`FLIP_COLOR`.  Returns the flipped samples' share of the pull."""
    share = batch_pull(logits, labels, tau)
    o = torch.argsort(p_true(logits, labels))
    fl = torch.as_tensor(flipped)[o].numpy()
    colors = np.where(fl, FLIP_COLOR, CLEAN_COLOR)
    ax.bar(np.arange(len(o)), share[o].numpy(), width=1.0, color=colors)
    total = float(share[torch.as_tensor(flipped)].sum())
    ax.set(xlabel="samples, by $p_y$ of their label", ylabel="share of the total pull",
           title=f"{name(tau)}: flipped get {total:.0%}")
    return total


def plot_memorisation(axes, runs: dict) -> None:
    """Over epochs, for ``{label: CompSumRun}``: clean test accuracy (solid) and training accuracy on
    the noisy labels (dashed); the share of flipped samples fitted to their noisy label; the share of
    the pull that comes from flipped samples."""
    for label, run in runs.items():
        e, c = run.evals["epoch"], color(run.params["tau"])
        axes[0].plot(e, run.evals["test_acc"], color=c, label=f"{label}: clean test")
        axes[0].plot(e, run.evals["train_acc"], color=c, ls="--", label=f"{label}: noisy train")
        axes[1].plot(e, run.evals["memorised"], color=c, label=label)
        axes[2].plot(e, run.evals["flipped_pull"], color=c, label=label)
    noise = next(iter(runs.values())).params["noise"]
    axes[0].set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title=f"accuracy, {noise:.0%} noise")
    axes[1].set(xlabel="epoch", ylabel="share of flipped samples", ylim=(0, 1.02), title="flipped labels memorised")
    axes[2].set(xlabel="epoch", ylabel="share of the total pull", ylim=(0, 1.02), title="pull from flipped samples")
    axes[2].axhline(noise, color=plots.MUTED, ls=":", lw=1.2)
    axes[0].legend(loc="lower right", fontsize=8)
    axes[2].legend(loc="upper left", fontsize=9)


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def weights_panel(logits, labels, *, tau: float = 1.0, noise: float = 0.4, seed: int = 0):
    """Pure maths on one batch: ``logits`` (B x C) of a network that has learned the digits and their
    true ``labels``.  Knobs: tau and the noise rate (:func:`flip_labels`, nested: more noise flips
    more of the same samples).  Left: the weight ``w = p_y^(tau-1)`` against ``p_y`` with every sample
    of the batch on it (flipped ones coloured), from :func:`lossviz.sample_weights`.  Right: the share
    of the batch's pull that flipped samples get, against tau, a dot at the current tau."""
    import ipywidgets as W
    import matplotlib as mpl

    from .. import widgets

    z = checks.as_float_tensor(logits, "logits", 2).detach().double()
    y_true = checks.check_labels(labels, z.shape[0], z.device)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "tau": W.FloatSlider(value=tau, min=0.0, max=2.0, step=0.05, description="τ", readout_format=".2f", **style),
        "noise": W.FloatSlider(value=noise, min=0.0, max=0.6, step=0.05, description="noise rate",
                               readout_format=".2f", **style),
    }
    grid_p = torch.logspace(-4, 0, 121, dtype=torch.float64)
    grid_tau = np.linspace(0.0, 2.0, 41)
    fig, axes = plots.new_figure(2, width=4.9, height=3.8)
    ax, ax2 = axes[0, 0], axes[0, 1]
    for t in (0.0, 1.0, 2.0):                                              # fixed references
        ax.plot(grid_p, grid_p ** (t - 1), color=plots.MUTED, lw=1, ls=":")
    (curve,) = ax.plot(grid_p, grid_p * 0 + 1, color="k", lw=2)
    clean = ax.scatter([], [], s=14, color=CLEAN_COLOR, label="clean label", zorder=3)
    flip = ax.scatter([], [], s=14, color=FLIP_COLOR, label="flipped label", zorder=3)
    ax.set(xscale="log", yscale="log", xlim=(1e-4, 1.5), ylim=(1e-3, 1e3),
           xlabel="$p_y$ of the label the sample carries", ylabel=r"weight $w = p_y^{\tau-1}$")
    ax.minorticks_off()                         # fewer ticks, and plain-text labels (mathtext ones are slow to draw)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.legend(loc="lower left", fontsize=9)
    (share_line,) = ax2.plot(grid_tau, grid_tau * 0, color="k")
    (even_line,) = ax2.plot([0, 2], [0, 0], color=plots.MUTED, ls="--", lw=1.2)    # their share of the samples
    (here,) = ax2.plot([tau], [0], "o", color=FLIP_COLOR, ms=9, zorder=3)
    ax2.set(xlim=(0, 2), ylim=(0, 1.02), xlabel="τ", ylabel="share of the total pull",
            title="pull from flipped (dashed: even)")

    def share_at(t, y, fl):
        pull = sample_weights(comp_sum_loss, z, y, tau=t, reduction="none")
        return float(pull[fl].sum() / pull.sum()) if bool(fl.any()) else 0.0

    curves: dict = {}                                                     # noise -> share against tau (tau-free)

    def draw(v):
        t = float(v["tau"])
        y, fl = flip_labels(y_true, v["noise"], z.shape[1], seed=seed)
        p = p_true(z, y)
        w = sample_weights(comp_sum_loss, z, y, relative_to_ce=True, tau=t, reduction="none")
        curve.set_ydata((grid_p ** (t - 1)).numpy())
        clean.set_offsets(np.column_stack([p[~fl].numpy(), w[~fl].numpy()]))
        flip.set_offsets(np.column_stack([p[fl].numpy(), w[fl].numpy()]) if bool(fl.any()) else np.empty((0, 2)))
        ax.set_title(f"{name(t)}: per-sample weights")
        if v["noise"] not in curves:
            curves[v["noise"]] = np.array([share_at(g, y, fl) for g in grid_tau])
        shares = curves[v["noise"]]
        s = share_at(t, y, fl)
        share_line.set_ydata(shares)
        even_line.set_ydata([float(fl.float().mean())] * 2)
        here.set_data([t], [s])
        return {"w": w, "flipped": fl, "labels": y, "share": s, "shares": shares,
                "status": f"{name(t)}, noise {v['noise']:.2f}: {int(fl.sum())} of {len(y)} labels flipped, "
                          f"they get {s:.0%} of the pull (an even share would be {float(fl.float().mean()):.0%})"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_comp_sum`: tau, noise rate, epochs, seed.  Draws the three
    views of :func:`plot_memorisation` for the run and, when tau is not 1, for cross-entropy with the
    same noise, seed and epochs (dashed reference; both cached)."""
    import ipywidgets as W

    from .. import widgets

    d = dict(tau=2.0, noise=0.4, epochs=60, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "tau": W.FloatSlider(value=d["tau"], min=0.0, max=2.0, step=0.1, description="τ", readout_format=".2f", **style),
        "noise": W.FloatSlider(value=d["noise"], min=0.0, max=0.6, step=0.1, description="noise rate",
                               readout_format=".2f", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=20, max=100, step=10, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        knobs = dict(noise=v["noise"], epochs=v["epochs"], seed=v["seed"])
        ce = train_comp_sum(1.0, progress=progress, **knobs)
        return {"run": train_comp_sum(v["tau"], progress=progress, **knobs), "ce": ce}

    def draw(axes, result, _v):
        runs = {name(result["run"].params["tau"]): result["run"]}
        if result["run"].params["tau"] != 1.0:
            runs["CE (τ = 1)"] = result["ce"]
        plot_memorisation(axes[0], runs)
        return {"status": f"{result['run']!r} in {result['run'].seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=3.3, height=3.4, autorun=autorun,
                             describe=lambda r: repr(r["run"]))
