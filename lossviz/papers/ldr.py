r"""Label distributionally robust losses: LDR-KL and the adaptive ALDR-KL (Zhu, Ying & Yang, *Label
Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness and
Adaptivity*, ICML 2023; official code Optimization-AI/ICML2023_LDR, ``loss.py``).

With logits ``f`` (one row per sample, K classes), label ``y``, ``delta_k = f_k - f_y`` and a margin
``c_k = c [k != y]`` on the wrong classes, the loss is the worst case over label distributions ``p``
kept near uniform by a KL penalty of strength lambda:

.. math::
    \psi_\lambda(f, y) = \max_{p \in \Delta_K} \sum_k p_k (\delta_k + c_k) - \lambda\,\mathrm{KL}(p \,\|\, 1/K)
                       = \lambda \log \frac{1}{K} \sum_k e^{(\delta_k + c_k)/\lambda} ,

    \frac{\partial \psi_\lambda}{\partial f} = p^* - e_y, \qquad p^* = \mathrm{softmax}((\delta + c)/\lambda).

lambda = 1, c = 0 is cross-entropy minus log K; lambda -> 0 the Crammer-Singer hinge
``max_k (delta_k + c_k)``; lambda -> infinity the symmetric ``mean_k (delta_k + c_k)``.

ALDR-KL keeps one lambda_i per training example, updated on each visit (as the official code does):
``p = softmax(f~ / lambda_i) + 1e-5`` renormalised, ``lambda_i <- lambda_0 (1 - KL(p || u) / (alpha log K))``,
and the loss ``psi_{lambda_i}(f~) - (alpha log K / (2 lambda_0)) (lambda_i - lambda_0)^2`` with lambda_i
detached (so the second term changes the value, never the gradient).

* the maths: :func:`ldr_loss`, :func:`worst_case_p`, :func:`hinge_limit`, :func:`symmetric_limit`,
  :func:`normalise` (the official code's logit normalisations), :func:`aldr_lambda`, :func:`aldr_loss`;
* the data: :func:`flip_labels`, :func:`noisy_digits`;
* training: :func:`train_ldr` and :func:`paired_runs` (seeds trained together by
  :class:`StackedClassifier`, cached with :func:`lossviz.train.memo`);
* pictures: :func:`plot_limits`, :func:`plot_pull_curves`, :func:`plot_run`; panels
  :func:`worst_case_panel` (pure maths) and :func:`training_panel` (a Train button).
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
from ..models import StackedClassifier  # noqa: F401
from ..train import Run, SeededEpochs, Trainer, memo, paired_memo
from ..weights import sample_weights

#: The official code's defaults (``experiment.py``): margin, lambda (and lambda_0), alpha.
DEFAULTS = {"margin": 0.1, "lam": 10.0, "alpha": 2.0}
#: The per-visit smoothing of the official ALDR update.
ALDR_EPS = 1e-5
#: One colour per loss (never the pair colours, which mean pull / push).
COLORS = {"ce": "#000000", "ldr": "#009E73", "aldr": "#5D3A9B"}
#: Samples whose label was flipped, and the others.
FLIP_COLOR, CLEAN_COLOR = "#CC79A7", "#0F7F5F"
#: Runs are evaluated before training and every this many epochs (and at the end).
EVAL_EVERY = 4
#: How many training samples' final logits a run keeps (for the weight pictures).
HEAD = 200
LOSSES = ("ce", "ldr", "aldr")


def name(loss: str, lam: float | None = None) -> str:
    """``"CE"``, ``"LDR-KL (λ = 10)"`` or ``"ALDR-KL (λ₀ = 3)"``."""
    if loss == "ce":
        return "CE"
    return f"LDR-KL (λ = {lam:.3g})" if loss == "ldr" else f"ALDR-KL (λ₀ = {lam:.3g})"


# ------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------

def _check(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    f = checks.as_float_tensor(logits, "logits (B x K, one row of class scores per sample)", 2)
    if f.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes (columns); got shape {tuple(f.shape)}")
    y = checks.check_labels(labels, f.shape[0], f.device)
    if checks.validation_enabled() and len(y) and (int(y.min()) < 0 or int(y.max()) >= f.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {f.shape[1] - 1}] (one per logit column); "
                         f"got values from {int(y.min())} to {int(y.max())}")
    return f, y


def _lam(lam, f: torch.Tensor) -> torch.Tensor:
    """lambda as a scalar or one value per sample (B,), every value > 0, as a (B, 1) or 0-d tensor."""
    if isinstance(lam, torch.Tensor) and lam.ndim == 1:
        if len(lam) != f.shape[0]:
            raise ValueError(f"lam must be a number or one value per sample ({f.shape[0]},); got {tuple(lam.shape)}")
        if checks.validation_enabled() and not bool((torch.isfinite(lam) & (lam > 0)).all()):
            raise ValueError("lam (the KL strength lambda) must be finite and > 0 for every sample")
        return lam.to(f)[:, None]
    lam = checks.positive(lam, "lam (the KL strength lambda: 1 is cross-entropy, -> 0 the hinge)")
    return torch.as_tensor(lam, dtype=f.dtype, device=f.device)


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    checks.choice(reduction, "reduction", ("mean", "sum", "none"))
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def shifted(logits, labels, margin: float = 0.0) -> torch.Tensor:
    """``delta_k + c_k = f_k - f_y + c [k != y]`` for every sample and class (B x K)."""
    f, y = _check(logits, labels)
    c = checks.non_negative(margin, "margin (c, added to the wrong classes)")
    onehot = F.one_hot(y, f.shape[1]).to(f.dtype)
    return f - f.gather(1, y[:, None]) + c * (1 - onehot)


def ldr_loss(logits, labels, *, lam=1.0, margin: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    r"""LDR-KL, :math:`\psi_\lambda = \lambda\,(\mathrm{logsumexp}((\delta + c)/\lambda) - \log K)`.

    ``lam`` is a number or one value per sample (ALDR's lambda_i).  ``margin`` is c.  Stable for any
    lambda > 0 (a log-sum-exp; lambda = 0.01 is a hinge with logits times 100).  ``reduction``:
    ``"mean"``, ``"sum"`` or ``"none"`` (one loss per sample)."""
    d = shifted(logits, labels, margin)
    lam = _lam(lam, d)
    K = d.shape[1]
    per_sample = (lam * (torch.logsumexp(d / lam, dim=1, keepdim=True) - math.log(K)))[:, 0]
    return _reduce(per_sample, reduction)


def worst_case_p(logits, labels, *, lam=1.0, margin: float = 0.0) -> torch.Tensor:
    """The adversarial label distribution ``p* = softmax((delta + c) / lambda)`` (B x K): the ``p``
    that attains the max in :func:`ldr_loss`, and its gradient is ``p* - e_y``."""
    d = shifted(logits, labels, margin).detach()
    return torch.softmax(d / _lam(lam, d), dim=1)


def hinge_limit(logits, labels, *, margin: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """The lambda -> 0 limit, the Crammer-Singer hinge ``max_k (delta_k + c_k)`` (>= 0: k = y gives 0)."""
    return _reduce(shifted(logits, labels, margin).amax(dim=1), reduction)


def symmetric_limit(logits, labels, *, margin: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """The lambda -> infinity limit ``(1/K) sum_k (delta_k + c_k)``: a symmetric loss (its sum over
    all K labels is a constant), the kind that tolerates uniform label noise."""
    return _reduce(shifted(logits, labels, margin).mean(dim=1), reduction)


def normalise(logits, kind: str = "ldr") -> torch.Tensor:
    """The official code's logit normalisation, part of the method in practice.

    ``"ldr"`` (``LDRLoss_V1``): ``softplus(f) / mean_k softplus(f)``; ``"aldr"`` (``ALDRLoss_V1``):
    ``f / (||f||_1 / K)``; ``"none"``: ``f``.  Both put the logits on a scale of about 1 per class,
    whatever the network's output scale, so that lambda = 10 means the same for every network."""
    f = checks.as_float_tensor(logits, "logits", 2)
    checks.choice(kind, "normalisation", ("ldr", "aldr", "none"))
    tiny = torch.finfo(f.dtype).tiny
    if kind == "ldr":
        s = F.softplus(f)
        return s / s.mean(dim=1, keepdim=True).clamp_min(tiny)
    if kind == "aldr":
        return f / f.abs().mean(dim=1, keepdim=True).clamp_min(tiny)
    return f


def aldr_lambda(logits, lam_old, *, lam0: float = 10.0, alpha: float = 2.0) -> torch.Tensor:
    r"""ALDR's per-visit update (detached): ``p = softmax(f / lambda_old) + 1e-5`` renormalised,
    :math:`\lambda_i = \lambda_0 (1 - \mathrm{KL}(p \| u) / (\alpha \log K))`, in
    ``[lambda_0 (1 - 1/alpha), lambda_0]``.  ``logits`` are already normalised (:func:`normalise`)."""
    f = checks.as_float_tensor(logits, "logits", 2).detach()
    lam_old = _lam(lam_old, f)
    lam0 = float(checks.positive(lam0, "lam0 (lambda_0, the reference lambda)"))
    alpha = float(checks.positive(alpha, "alpha (the strength of the pull to lambda_0)"))
    if alpha <= 1:
        raise ValueError(f"alpha must be > 1 (lambda_i stays >= lambda_0 (1 - 1/alpha) > 0); got {alpha}")
    K = f.shape[1]
    p = torch.softmax(f / lam_old, dim=1) + ALDR_EPS
    p = p / p.sum(dim=1, keepdim=True)
    kl = (p * torch.log(p * K)).sum(dim=1)
    return lam0 * (1 - kl / (alpha * math.log(K)))


def aldr_loss(logits, labels, lam_i, *, lam0: float = 10.0, alpha: float = 2.0, margin: float = 0.1,
              reduction: str = "mean") -> torch.Tensor:
    r""":math:`\psi_{\lambda_i}(f) - \frac{\alpha \log K}{2 \lambda_0} (\lambda_i - \lambda_0)^2` with
    lambda_i (one per sample, from :func:`aldr_lambda`) detached: the penalty moves the value, not
    the gradient.  ``logits`` are already normalised."""
    f, y = _check(logits, labels)
    lam_i = torch.as_tensor(lam_i, dtype=f.dtype, device=f.device).detach()
    lam0 = float(checks.positive(lam0, "lam0"))
    alpha = float(checks.positive(alpha, "alpha"))
    penalty = alpha * math.log(f.shape[1]) / (2 * lam0) * (lam_i - lam0) ** 2
    return _reduce(ldr_loss(f, y, lam=lam_i, margin=margin, reduction="none") - penalty, reduction)


def logits_with_margin(margins, n_classes: int = 10, *, dtype=torch.float64) -> torch.Tensor:
    """One row of logits per margin ``m = f_y - max_{k != y} f_k``, label 0, the other classes at 0."""
    m = torch.as_tensor(margins, dtype=dtype).reshape(-1)
    z = torch.zeros(len(m), checks.integer(n_classes, "n_classes", 2), dtype=dtype)
    z[:, 0] = m
    return z


# ------------------------------------------------------------------------------------------------
# Label noise and the data
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class LDRRun(Run):
    """One run: ``history`` the loss per step; ``evals`` (``epoch``; ``test_acc`` on clean test labels,
    ``memorised`` the share of flipped training samples predicted as their noisy label, ``lam_clean``
    and ``lam_flipped`` the mean lambda_i (ALDR; the fixed lambda otherwise) over clean-labelled and
    flipped samples); ``lam_i`` the final per-sample lambdas (ALDR only), ``flipped`` the noise mask,
    ``logits`` the final raw logits (float64) of the first :data:`HEAD` training samples;
    ``scores``: final and best ``test_acc``, best epoch."""

    lam_i: np.ndarray | None = None
    flipped: np.ndarray | None = None
    logits: torch.Tensor | None = None

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        return (f"LDRRun({name(p['loss'], p['lam'])}, noise {p['noise']:.2f}, {p['epochs']} epochs, seed {p['seed']}: "
                f"test accuracy {s['test_acc']:.3f}, best {s['best_test_acc']:.3f} at epoch {s['best_epoch']})")


def _params(loss, lam, noise, epochs, seed, margin, alpha) -> dict:
    checks.choice(loss, "loss", LOSSES)
    lam = float(checks.positive(lam, "lam (lambda, or lambda_0 for ALDR)"))
    if loss == "ce":
        lam, margin, alpha = 1.0, 0.0, 0.0                                 # CE has no knob: one cache key
    elif loss == "ldr":
        alpha = 0.0
    elif float(alpha) <= 1:
        raise ValueError(f"alpha must be > 1; got {alpha}")
    return dict(loss=loss, lam=lam, noise=float(checks.fraction(noise, "noise (the label-noise rate)", high=0.9)),
                epochs=checks.integer(epochs, "epochs", 1), seed=checks.integer(seed, "seed"),
                margin=float(checks.non_negative(margin, "margin")), alpha=float(alpha))


def train_ldr(loss: str = "ldr", lam: float = 10.0, *, noise: float = 0.4, epochs: int = 60, seed: int = 0,
              margin: float = 0.1, alpha: float = 2.0, progress=True, cache: bool = True) -> LDRRun:
    """Train the 64-128-128-10 MLP on :func:`noisy_digits` (``noise``, ``seed``) with ``loss``:
    ``"ce"`` (raw logits), ``"ldr"`` (:func:`ldr_loss` at ``lam`` on ``normalise(f, "ldr")``) or
    ``"aldr"`` (:func:`aldr_loss` with ``lam0 = lam`` on ``normalise(f, "aldr")``, lambda_i starting at
    lambda_0).  Adam 1e-3, batches of 128, ``epochs`` epochs.  ``seed`` fixes split, noise,
    initialisation and batch order (runs with the same seed are paired).  Cached by its parameters."""
    p = _params(loss, lam, noise, epochs, seed, margin, alpha)
    return memo("ldr", p, lambda: _train_group(p, [p["seed"]], progress)[0], cache=cache)


def paired_runs(settings, seeds=range(8), *, epochs: int = 60, progress=True) -> dict:
    """``{(loss, lam, noise): [LDRRun per seed]}``; each setting's seeds train together in one
    :class:`StackedClassifier`, and every run joins the cache as :func:`train_ldr` would store it."""
    out = {}
    for loss, lam, noise in settings:
        base = _params(loss, lam, noise, epochs, 0, DEFAULTS["margin"], DEFAULTS["alpha"])
        out[(loss, lam, noise)] = paired_memo(
            "ldr", base, seeds, lambda group_seeds, base=base: _train_group(base, group_seeds, progress))
    return out


def _batch_loss(p: dict, z: torch.Tensor, y: torch.Tensor, lam_old: torch.Tensor):
    """Per-seed mean loss (S,) of logits ``z`` (S x b x K) and the new lambda_i (S x b; ALDR only)."""
    S, b, K = z.shape
    flat, yf = z.reshape(S * b, K), y.reshape(-1)
    if p["loss"] == "ce":
        return F.cross_entropy(flat, yf, reduction="none").view(S, b).mean(1), None
    if p["loss"] == "ldr":
        per = ldr_loss(normalise(flat, "ldr"), yf, lam=p["lam"], margin=p["margin"], reduction="none")
        return per.view(S, b).mean(1), None
    fn = normalise(flat, "aldr")
    lam_new = aldr_lambda(fn, lam_old.reshape(-1), lam0=p["lam"], alpha=p["alpha"])
    per = aldr_loss(fn, yf, lam_new, lam0=p["lam"], alpha=p["alpha"], margin=p["margin"], reduction="none")
    return per.view(S, b).mean(1), lam_new.view(S, b)


def _train_group(p: dict, seeds: list, progress) -> list:
    """One :class:`LDRRun` per seed of ``seeds``, all with the knobs of ``p``, trained at once."""
    data = [noisy_digits(p["noise"], seed=s) for s in seeds]
    stack = lambda key: torch.stack([getattr(d, key) for d in data])  # noqa: E731
    x, y, flipped = stack("x_train"), stack("y_train"), stack("flipped")
    x_test, y_test = stack("x_test"), stack("y_test")
    S, n = y.shape
    per_epoch = math.ceil(n / 128)
    trainer = Trainer(lambda: StackedClassifier(seeds, x.shape[2]), lr=1e-3, seed=seeds[0])
    next_batch = SeededEpochs(n, seeds, 128)
    rows = torch.arange(S)[:, None]
    lam_state = torch.full((S, n), p["lam"])

    def step(it: int) -> dict:
        idx = next_batch()
        per_seed, lam_new = _batch_loss(p, trainer.model(x[rows, idx]), y[rows, idx], lam_state[rows, idx])
        if lam_new is not None:
            lam_state[rows, idx] = lam_new.float()
        trainer.update(per_seed.sum())
        return {"loss": per_seed.mean(), **{f"loss_{i}": v for i, v in enumerate(per_seed.detach())}}

    fl = flipped.float()

    def evaluate() -> dict:
        pred = trainer.model(x).argmax(2)
        scores = {"test_acc": (trainer.model(x_test).argmax(2) == y_test).float().mean(1),
                  "memorised": ((pred == y) & flipped).float().sum(1) / fl.sum(1).clamp_min(1),
                  "lam_clean": (lam_state * (1 - fl)).sum(1) / (1 - fl).sum(1).clamp_min(1),
                  "lam_flipped": (lam_state * fl).sum(1) / fl.sum(1).clamp_min(1)}
        return {f"{k}_{i}": float(v[i]) for k, v in scores.items() for i in range(S)}

    history, evals, seconds = trainer.run(step, p["epochs"] * per_epoch, evaluate=evaluate,
                                          eval_every=EVAL_EVERY * per_epoch,
                                          desc=f"{name(p['loss'], p['lam'])}, {S} seed{'s' * (S > 1)}",
                                          progress=progress)
    with torch.no_grad():
        head = trainer.model(x[:, :HEAD]).double()
    runs = []
    for i, s in enumerate(seeds):
        ev = {"iter": evals["iter"], "epoch": evals["iter"] // per_epoch}
        ev |= {k[:-len(f"_{i}")]: v for k, v in evals.items() if k.endswith(f"_{i}") and k != "iter"}
        best = int(np.argmax(ev["test_acc"]))
        scores = {"test_acc": float(ev["test_acc"][-1]), "best_test_acc": float(ev["test_acc"][best]),
                  "best_epoch": int(ev["epoch"][best])}
        runs.append(LDRRun(params=p | {"seed": s}, history={"iter": history["iter"], "loss": history[f"loss_{i}"]},
                           evals=ev, scores=scores, seconds=seconds / S,
                           lam_i=lam_state[i].numpy().copy() if p["loss"] == "aldr" else None,
                           flipped=flipped[i].numpy().copy(), logits=head[i].clone()))
    return runs


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def plot_limits(ax, logits, labels, *, margin: float = 0.1, lams=None) -> dict:
    """The mean loss over a batch against lambda (log axis), with its two limits: the hinge (lambda
    -> 0) and the symmetric mean (lambda -> infinity); a dot at lambda = 1 marks CE - log K (c = 0
    only).  Returns ``{"lams", "psi", "hinge", "symmetric"}``."""
    lams = np.logspace(-2, 3, 101) if lams is None else np.asarray(lams, dtype=float)
    psi = np.array([float(ldr_loss(logits, labels, lam=float(lam), margin=margin)) for lam in lams])
    hinge = float(hinge_limit(logits, labels, margin=margin))
    sym = float(symmetric_limit(logits, labels, margin=margin))
    ax.plot(lams, psi, color="k", label=r"$\psi_\lambda$ (batch mean)")
    ax.axhline(hinge, color=COLORS["aldr"], ls="--", lw=1.2, label="hinge (λ → 0)")
    ax.axhline(sym, color=COLORS["ldr"], ls=":", lw=1.5, label="symmetric (λ → ∞)")
    ax.set(xscale="log", xlabel="λ", ylabel="loss", title=f"one loss, three regimes (c = {margin:.2g})")
    ax.legend(fontsize=9, loc="center right")
    return {"lams": lams, "psi": psi, "hinge": hinge, "symmetric": sym}


def plot_pull_curves(ax, lams=(0.1, 1.0, 10.0, 100.0), *, margin: float = 0.0, n_classes: int = 10) -> dict:
    """Each sample's pull ``|d psi / d f_y| = 1 - p*_y`` (from :func:`lossviz.sample_weights`) against
    its margin ``f_y - max_{k != y} f_k`` (the other classes tied), one curve per lambda.  Small lambda
    pulls only the samples inside the margin (a hinge); large lambda pulls every sample the same,
    about ``1 - 1/K``, however wrong its label looks (symmetric).  Returns ``{lam: (m, pull)}``."""
    m = torch.linspace(-6, 6, 121, dtype=torch.float64)
    z = logits_with_margin(m, n_classes)
    y = torch.zeros(len(m), dtype=torch.long)
    cmap = plots.mpl.colormaps["viridis"]
    out = {}
    for j, lam in enumerate(lams):
        pull = sample_weights(ldr_loss, z, y, lam=lam, margin=margin, reduction="none")
        ax.plot(m, pull, color=cmap(j / max(len(lams) - 1, 1)), label=f"λ = {lam:.3g}")
        out[lam] = (m, pull)
    ax.set(xlabel=r"margin $f_y - \max_{k\neq y} f_k$", ylabel=r"pull $|\partial\psi/\partial f_y|$",
           ylim=(-0.02, 1.02), title=f"per-sample pull ({n_classes} classes, c = {margin:.2g})")
    ax.legend(fontsize=9, loc="upper right")
    return out


def pull_share(logits, labels, flipped, lam: float, *, margin: float = 0.0) -> float:
    """The flipped samples' share of the batch's total pull ``sum_i |d psi / d f_{i,y_i}|``
    (:func:`lossviz.sample_weights`)."""
    pull = sample_weights(ldr_loss, logits, labels, lam=lam, margin=margin, reduction="none")
    fl = torch.as_tensor(flipped, dtype=torch.bool)
    return float(pull[fl].sum() / pull.sum().clamp_min(torch.finfo(pull.dtype).tiny))


def plot_pull_share(ax, logits, labels, flipped, *, lams=None, margin: float = 0.0) -> dict:
    """The flipped samples' share of the pull (:func:`pull_share`) against lambda, with their share
    of the batch (dashed): above it, the loss listens to the wrong labels more than to the right ones.
    Returns ``{"lams", "share", "even"}``."""
    lams = np.logspace(-1.5, 2, 36) if lams is None else np.asarray(lams, dtype=float)
    share = np.array([pull_share(logits, labels, flipped, float(lam), margin=margin) for lam in lams])
    even = float(torch.as_tensor(flipped, dtype=torch.float64).mean())
    ax.plot(lams, share, color="k", label="flipped samples' pull")
    ax.axhline(even, color=FLIP_COLOR, ls="--", lw=1.2, label="their share of the batch")
    ax.axvline(1.0, color=plots.MUTED, ls=":", lw=1)
    ax.set(xscale="log", ylim=(0, 1.02), xlabel="λ", ylabel="share of the total pull", title="pull from flipped labels")
    ax.legend(fontsize=9, loc="upper right")
    return {"lams": lams, "share": share, "even": even}


def plot_run(axes, runs: dict) -> None:
    """For ``{label: LDRRun}``: clean test accuracy over epochs (left); mean lambda_i of clean-labelled
    (solid) and flipped (dashed) samples over epochs (right)."""
    for label, run in runs.items():
        c, e = COLORS[run.params["loss"]], run.evals["epoch"]
        ls = "-" if run.params["loss"] != "aldr" or run.params["lam"] >= 10 else "-."
        axes[0].plot(e, run.evals["test_acc"], color=c, ls=ls, label=label)
        if run.params["loss"] == "aldr":
            axes[1].plot(e, run.evals["lam_clean"], color=CLEAN_COLOR, ls=ls, label=f"{label}: clean labels")
            axes[1].plot(e, run.evals["lam_flipped"], color=FLIP_COLOR, ls=ls, label=f"{label}: flipped labels")
    noise = next(iter(runs.values())).params["noise"]
    axes[0].set(xlabel="epoch", ylabel="clean test accuracy", ylim=(0, 1.02), title=f"{noise:.0%} label noise")
    axes[0].legend(fontsize=8, loc="lower right")
    axes[1].set(xlabel="epoch", ylabel=r"mean $\lambda_i$", title="ALDR's adaptive λ")
    if axes[1].lines:
        axes[1].legend(fontsize=8, loc="best")


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def worst_case_panel(logits, labels, *, flipped=None, lam: float = 1.0, margin: float = 0.0, sample: int = 0):
    """Pure maths.  Knobs lambda (log scale, 0.05 to 50) and the margin c.  Left: the worst-case
    label distribution p* of one sample (bars; its label in green), between one-hot on the worst
    class (lambda -> 0) and uniform (lambda -> infinity).  Right: every sample's pull
    ``|d psi / d f_y|`` (:func:`lossviz.sample_weights`) against its margin, with the curve for tied
    other classes; samples whose label was flipped (mask ``flipped``) in pink."""
    import ipywidgets as W

    from .. import widgets

    z, y = _check(logits, labels)
    fl = torch.zeros(len(y), dtype=torch.bool) if flipped is None else torch.as_tensor(flipped, dtype=torch.bool)
    z = z.detach().double()
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "lam": W.FloatLogSlider(value=lam, base=10, min=math.log10(0.05), max=math.log10(50), step=0.05,
                                description="λ", readout_format=".3g", **style),
        "margin": W.FloatSlider(value=margin, min=0.0, max=1.0, step=0.05, description="margin c",
                                readout_format=".2f", **style),
    }
    K = z.shape[1]
    fig, axes = plots.new_figure(2, width=4.8, height=3.6)
    ax, ax2 = axes[0, 0], axes[0, 1]
    bars = ax.bar(np.arange(K), np.full(K, 1 / K), color=plots.MUTED)
    bars[int(y[sample])].set_color(CLEAN_COLOR)
    ax.axhline(1 / K, color="k", ls=":", lw=1, label="uniform 1/K")
    ax.set(xticks=range(K), xlabel="class k", ylabel=r"$p^*_k$", ylim=(0, 1.02))
    ax.legend(fontsize=9, loc="upper right")
    m_grid = torch.linspace(-6, 6, 121, dtype=torch.float64)
    z_grid, y_grid = logits_with_margin(m_grid, K), torch.zeros(len(m_grid), dtype=torch.long)
    (curve,) = ax2.plot(m_grid, m_grid * 0, color="k", lw=2, label="other classes tied")
    dots = ax2.scatter([], [], s=12, color=CLEAN_COLOR, label="clean label", zorder=3)
    flip_dots = ax2.scatter([], [], s=12, color=FLIP_COLOR, label="flipped label", zorder=3)
    top2 = z.topk(2, dim=1).values
    own = z.gather(1, y[:, None])[:, 0]
    sample_margin = (own - torch.where(top2[:, 0] == own, top2[:, 1], top2[:, 0])).numpy()
    ax2.set(xlim=(-6, 6), ylim=(-0.02, 1.02), xlabel=r"margin $f_y - \max_{k\neq y} f_k$",
            ylabel=r"pull $|\partial\psi/\partial f_y| = 1 - p^*_y$")
    ax2.legend(fontsize=9, loc="upper right")

    def draw(v):
        lam_, c = float(v["lam"]), float(v["margin"])
        p = worst_case_p(z[sample:sample + 1], y[sample:sample + 1], lam=lam_, margin=c)[0]
        for bar, h in zip(bars, p.numpy()):
            bar.set_height(h)
        pull = sample_weights(ldr_loss, z, y, lam=lam_, margin=c, reduction="none")
        curve.set_ydata(sample_weights(ldr_loss, z_grid, y_grid, lam=lam_, margin=c, reduction="none").numpy())
        xy = np.column_stack([sample_margin, pull.numpy()])
        dots.set_offsets(xy[~fl.numpy()])
        flip_dots.set_offsets(xy[fl.numpy()] if bool(fl.any()) else np.empty((0, 2)))
        ax.set_title(f"worst case p*, sample {sample} (λ = {lam_:.3g})")
        ax2.set_title(f"per-sample pull (λ = {lam_:.3g}, c = {c:.2f})")
        return {"p": p, "pull": pull, "status": f"λ = {lam_:.3g}, c = {c:.2f}: p* puts {float(p.max()):.2f} on its "
                                                f"top class; mean pull {float(pull.mean()):.3f}"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_ldr`: loss, lambda (lambda_0 for ALDR: 1, 3 or 10 are the
    regimes to compare), noise rate, epochs, seed.  Draws :func:`plot_run` for the run and CE with the same
    noise and seed (both cached); the right panel shows lambda_i for ALDR."""
    import ipywidgets as W

    from .. import widgets

    d = dict(loss="aldr", lam=3.0, noise=0.4, epochs=60, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "loss": W.Dropdown(options=[("CE", "ce"), ("LDR-KL", "ldr"), ("ALDR-KL", "aldr")], value=d["loss"],
                           description="loss", layout=W.Layout(width="170px")),
        "lam": W.SelectionSlider(options=[0.3, 1.0, 3.0, 10.0, 30.0], value=d["lam"], description="λ or λ₀", **style),
        "noise": W.FloatSlider(value=d["noise"], min=0.0, max=0.6, step=0.2, description="noise rate",
                               readout_format=".2f", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=10, max=100, step=10, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        knobs = dict(noise=v["noise"], epochs=v["epochs"], seed=v["seed"])
        return {"run": train_ldr(v["loss"], v["lam"], progress=progress, **knobs),
                "ce": train_ldr("ce", 1.0, progress=progress, **knobs)}

    def draw(axes, result, _v):
        r = result["run"]
        runs = {name(r.params["loss"], r.params["lam"]): r}
        if r.params["loss"] != "ce":
            runs["CE"] = result["ce"]
        plot_run(axes[0], runs)
        return {"status": f"{r!r} in {r.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=2, width=4.6, height=3.4, autorun=autorun,
                             describe=lambda r: repr(r["run"]))
