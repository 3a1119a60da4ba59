r"""AnyLoss: a confusion-matrix metric turned into a loss (Han, Moniz & Chawla, *AnyLoss:
Transforming Classification Metrics into Loss Functions*, KDD 2024), in miniature.

F1, balanced accuracy or G-mean are read off a confusion matrix of hard 0/1 decisions, which has
no gradient.  AnyLoss sharpens each predicted probability ``p_i = sigmoid(f(x_i))`` towards 0 or 1
with a steep sigmoid, the **amplifier**

.. math::
    A(p) = \frac{1}{1 + e^{-L (p - 1/2)}} \qquad (L = 73 \text{ in the paper}),

fills a *soft* confusion matrix with it (labels ``y_i`` in {0, 1})

.. math::
    TP = \sum_i y_i A_i, \quad FN = \sum_i y_i (1 - A_i), \quad FP = \sum_i (1 - y_i) A_i, \quad
    TN = \sum_i (1 - y_i)(1 - A_i),

and minimises ``1 - metric(TN, FP, FN, TP)`` over each batch.  For ``1 - F1`` with
``D = sum y + sum A``, ``d(1 - F1)/dA_i = -2 (D - TP)/D^2`` on a positive and ``+2 TP/D^2`` on a
negative: the positives get ``(sum y + FP)/TP`` times the negatives' weight, ``1 + N/n_pos`` at
initialisation.  The loss re-weights the classes by itself.

* :func:`amplify`, :func:`soft_confusion`, :func:`metric_value` and the loss :func:`anyloss`
  (``L=None``: the "pure" soft metric without the amplifier); the baselines :func:`bce_loss` and
  :func:`wbce_loss` (per-batch class weights, as in the author code); :func:`hard_scores` (F1,
  balanced accuracy, G-mean, accuracy at threshold 1/2).
* Logits are one score per sample (B,) or two-class logits (B x 2, ``f = z_1 - z_0``): the second
  form is what :func:`lossviz.logit_weights` / :func:`lossviz.sample_weights` read, so the
  per-sample weight view of Part IV applies unchanged.
* :func:`task_data` (the imbalanced two-Gaussian task, and an MLP task from sklearn's
  ``make_classification``), :func:`train_anyloss` (all seeds at once in a :class:`StackedMLP`, on
  :class:`lossviz.train.Trainer` + :func:`lossviz.train.memo`), the pictures and the panels
  :func:`weights_panel` (pure maths) and :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, models, plots
from ..train import Run, Trainer, memo
from ..weights import sample_weights

#: The metrics a soft confusion matrix turns into a loss (the paper's Table 1).
METRICS = ("accuracy", "f1", "fbeta", "gmean", "bacc")
METRIC_NAMES = {"accuracy": "accuracy", "f1": "F1", "fbeta": "F_β", "gmean": "G-mean", "bacc": "balanced accuracy"}
#: The paper's amplification and the author code's smoothing of the denominators.
L_PAPER, EPS = 73.0, 1e-5
#: Every loss :func:`train_anyloss` knows: ``(metric, amplified)`` for the metric losses, None for BCE / WBCE.
LOSSES = {"bce": None, "wbce": None, "soft_f1": ("f1", False), "any_f1": ("f1", True), "any_bacc": ("bacc", True),
          "any_gmean": ("gmean", True), "any_acc": ("accuracy", True), "any_fbeta": ("fbeta", True),
          "soft_bacc": ("bacc", False)}
NAMES = {"bce": "BCE", "wbce": "WBCE", "soft_f1": "soft F1 (no A)", "any_f1": "Any-F1", "any_bacc": "Any-BAcc",
         "any_gmean": "Any-Gmean", "any_acc": "Any-Acc", "any_fbeta": "Any-Fβ", "soft_bacc": "soft BAcc (no A)"}
#: One colour per loss (never the pull / push pair colours).
COLORS = {"bce": "#000000", "wbce": "#7F7F7F", "soft_f1": "#56B4E9", "any_f1": "#009E73", "any_bacc": "#CC79A7",
          "any_gmean": "#5D3A9B", "any_acc": "#E69F00", "any_fbeta": "#8C6D1F", "soft_bacc": "#F0C75E"}
#: The two classes in every picture: positives (the rare class) and negatives.
POS_CLASS_COLOR, NEG_CLASS_COLOR = plots.POS_COLOR, plots.NEG_COLOR
#: The tasks of :func:`task_data`: a linear model on two Gaussians, an MLP on make_classification.
TASKS = {"gauss": "two Gaussians, linear model", "mlp": "make_classification, MLP 10-64-64-1"}


# ------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------

class Confusion(NamedTuple):
    """A (soft or hard) confusion matrix: each entry a tensor (a number, or one per row of a stack)."""

    tn: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    tp: torch.Tensor


def amplify(p, L: float = L_PAPER) -> torch.Tensor:
    r"""The amplifier :math:`A(p) = 1/(1 + e^{-L (p - 1/2)})`: a sigmoid of slope ``L/4`` at 1/2 that
    pushes a probability towards 0 or 1 (``L`` > 0; large ``L`` approaches the step ``[p > 1/2]``)."""
    p = torch.as_tensor(p)
    return torch.sigmoid(checks.positive(L, "L (the amplification)") * (p - 0.5))


def probabilities(logits) -> torch.Tensor:
    """``p = sigmoid(f)`` from one score per sample (B,) or from two-class logits (B x 2, ``f = z_1 - z_0``)."""
    f = _scores(logits)
    return torch.sigmoid(f)


def _scores(logits) -> torch.Tensor:
    z = torch.as_tensor(logits)
    if z.ndim not in (1, 2) or (z.ndim == 2 and z.shape[1] != 2):
        raise ValueError("logits must be one score per sample (shape (B,)) or two-class logits (shape (B, 2)); "
                         f"got shape {tuple(z.shape)}")
    z = checks.as_float_tensor(z, "logits", z.ndim)
    if len(z) == 0:
        raise ValueError("logits hold no sample: a confusion matrix needs a batch of at least one")
    return z if z.ndim == 1 else z[:, 1] - z[:, 0]


def _binary_labels(labels, n: int, device) -> torch.Tensor:
    y = checks.check_labels(labels, n, device)
    if checks.validation_enabled() and bool(((y != 0) & (y != 1)).any()):
        raise ValueError("labels must be 0 (negative) or 1 (positive) for a binary confusion matrix; "
                         f"got values {sorted(set(y.unique().tolist()))[:6]}")
    return y


def _confusion(p: torch.Tensor, y: torch.Tensor) -> Confusion:
    """The confusion matrix of predictions ``p`` (soft or 0/1) against 0/1 labels, over the last dimension."""
    y = y.to(p.dtype)
    tp, fp = (y * p).sum(-1), ((1 - y) * p).sum(-1)
    n_pos = y.sum(-1)
    return Confusion(tn=(1 - y).sum(-1) - fp, fp=fp, fn=n_pos - tp, tp=tp)


def soft_confusion(logits, labels, *, L: float | None = L_PAPER) -> Confusion:
    """The soft confusion matrix of a batch: ``A(p)`` (``L=None``: ``p`` itself) in place of the
    0/1 decision.  ``TP + FN`` is the number of positives and ``TN + FP`` of negatives, exactly."""
    f = _scores(logits)
    y = _binary_labels(labels, len(f), f.device)
    p = torch.sigmoid(f)
    return _confusion(p if L is None else amplify(p, L), y)


def metric_value(cm: Confusion, metric: str = "f1", *, beta: float = 1.0, eps: float = EPS) -> torch.Tensor:
    r"""A metric of a (soft or hard) confusion matrix, with ``eps`` in the denominators (the author code's ``s``).

    * accuracy :math:`(TP + TN)/N`
    * F_β :math:`(1 + β^2) TP / ((1 + β^2) TP + β^2 FN + FP + ε)`, F1 at β = 1
    * G-mean :math:`\sqrt{TPR \cdot TNR}`, :math:`TPR = TP/(TP + FN + ε)`, :math:`TNR = TN/(TN + FP + ε)`
    * balanced accuracy :math:`(TPR + TNR)/2`

    The root of the G-mean is taken of ``max(TPR TNR, eps^2)``, so its gradient stays finite when a
    class has no soft mass at all.  (The author code minimises ``1 - TPR TNR``, the square.)"""
    metric = checks.choice(metric, "metric", METRICS)
    beta = checks.positive(beta, "beta (the F-beta weight of recall)")
    eps = checks.non_negative(eps, "eps (the smoothing of the denominators)")
    tn, fp, fn, tp = cm
    if metric == "accuracy":
        return (tp + tn) / (tp + tn + fp + fn)
    if metric in ("f1", "fbeta"):
        b2 = 1.0 if metric == "f1" else beta ** 2
        return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + eps)
    tpr, tnr = tp / (tp + fn + eps), tn / (tn + fp + eps)
    if metric == "bacc":
        return (tpr + tnr) / 2
    return torch.sqrt((tpr * tnr).clamp(min=eps ** 2))


def anyloss(logits, labels, *, metric: str = "f1", L: float | None = L_PAPER, beta: float = 1.0,
            eps: float = EPS) -> torch.Tensor:
    r"""AnyLoss: :math:`1 - \text{metric}` of the soft confusion matrix of the batch (a scalar).

    ``logits``: one score per sample (B,) or two-class logits (B x 2); ``labels``: 0/1 integers.
    ``L`` is the amplification (``None``: no amplifier, the "pure" soft metric of the author code).
    The loss is one number for the whole batch, not a mean of per-sample terms: every sample's
    gradient depends on the whole batch through TP, FP, FN, TN.  A batch without a positive is
    legal, but F1 is then 0 whatever the predictions, and its gradient is exactly 0."""
    f = _scores(logits)
    y = _binary_labels(labels, len(f), f.device)
    if L is not None:
        L = checks.positive(L, "L (the amplification)")
    return _metric_loss(f, y, metric=metric, L=L, beta=beta, eps=eps)


def _metric_loss(f, y, *, metric, L, beta=1.0, eps=EPS) -> torch.Tensor:
    """``1 - metric`` per row of stacked scores ``f`` (..., B): the one code path of :func:`anyloss` and training."""
    p = torch.sigmoid(f)
    return 1 - metric_value(_confusion(p if L is None else torch.sigmoid(L * (p - 0.5)), y), metric,
                            beta=beta, eps=eps)


def bce_loss(logits, labels) -> torch.Tensor:
    """Binary cross-entropy of the batch, ``mean_i -[y_i log p_i + (1 - y_i) log(1 - p_i)]`` (from the logits, stable)."""
    f = _scores(logits)
    return _bce(f, _binary_labels(labels, len(f), f.device), weighted=False)


def wbce_loss(logits, labels) -> torch.Tensor:
    """Weighted BCE with per-batch class weights (the author code): positives weighted ``w_1 = n_0/N``,
    negatives ``w_0 = n_1/N``, then the mean over the N samples of the batch."""
    f = _scores(logits)
    return _bce(f, _binary_labels(labels, len(f), f.device), weighted=True)


def _bce(f, y, *, weighted: bool) -> torch.Tensor:
    yf = y.to(f.dtype)
    terms = F.binary_cross_entropy_with_logits(f, yf, reduction="none")
    if weighted:
        frac_pos = yf.mean(-1, keepdim=True)
        terms = terms * torch.where(y == 1, 1 - frac_pos, frac_pos)
    return terms.mean(-1)


def _loss_rows(name: str, f, y, *, L: float, beta: float) -> torch.Tensor:
    """The loss ``name`` of :data:`LOSSES` for each row of stacked scores (S x B): S numbers."""
    spec = LOSSES[name]
    if spec is None:
        return _bce(f, y, weighted=name == "wbce")
    metric, amplified = spec
    return _metric_loss(f, y, metric=metric, L=L if amplified else None, beta=beta)


def loss_fn(name: str, *, L: float = L_PAPER, beta: float = 1.0):
    """The loss ``name`` of :data:`LOSSES` as ``loss(logits, labels)``, for :func:`lossviz.sample_weights`."""
    name = checks.choice(name, "loss", LOSSES)
    spec = LOSSES[name]
    if spec is None:
        return bce_loss if name == "bce" else wbce_loss
    metric, amplified = spec
    return lambda logits, labels: anyloss(logits, labels, metric=metric, L=L if amplified else None, beta=beta)


def hard_scores(logits, labels) -> dict:
    """F1, balanced accuracy, G-mean and accuracy at threshold 1/2 (``f >= 0``), over the last
    dimension (stacked rows give one number per row).  No smoothing: F1 is 0 when there is no true
    positive; a class that is absent counts as recalled perfectly."""
    pred, pos = torch.as_tensor(logits) >= 0, torch.as_tensor(labels) == 1
    tn, fp, fn, tp = ((a & b).sum(-1).double() for a, b in ((~pred, ~pos), (pred, ~pos), (~pred, pos), (pred, pos)))
    f1 = torch.where(tp > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.zeros_like(tp))
    tpr = torch.where(tp + fn > 0, tp / (tp + fn).clamp(min=1), torch.ones_like(tp))
    tnr = torch.where(tn + fp > 0, tn / (tn + fp).clamp(min=1), torch.ones_like(tn))
    return {"f1": f1, "bacc": (tpr + tnr) / 2, "gmean": (tpr * tnr).sqrt(), "acc": (tp + tn) / (tp + tn + fp + fn),
            "tpr": tpr, "tnr": tnr}


def two_class_logits(f) -> torch.Tensor:
    """Scores ``f`` (B,) as two-class logits ``[0, f]`` (B x 2): the same probabilities, and the
    shape :func:`lossviz.logit_weights` wants.  ``d/dz_1 = d/df = -d/dz_0``."""
    f = torch.as_tensor(f)
    return torch.stack([torch.zeros_like(f), f], dim=1)


def positive_share(weights, labels) -> float:
    """The positives' share of a batch's total per-sample weight (e.g. :func:`lossviz.sample_weights`)."""
    w = torch.as_tensor(weights).detach().abs()
    pos = torch.as_tensor(labels) == 1
    return float(w[pos].sum() / w.sum().clamp(min=torch.finfo(w.dtype).tiny))


# ------------------------------------------------------------------------------------------------
# Data and a fixed batch for the pictures
# ------------------------------------------------------------------------------------------------

@dataclass
class Task:
    """Stacked data of several seeds: ``x_train`` (S x n x d), ``y_train`` (S x n, 0/1), the same for test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def two_gaussians(n: int, *, pos_rate: float = 0.05, delta: float = 2.0, dim: int = 2, generator=None):
    """``n`` samples ``x ~ N(0, I)``, each positive with probability ``pos_rate``, positives shifted by
    ``delta`` along the first axis: ``(x (n x dim) float32, y (n,) long)``."""
    y = (torch.rand(n, generator=generator) < pos_rate).long()
    x = torch.randn(n, dim, generator=generator)
    x[:, 0] += delta * y
    return x, y


def bayes_logits(x, *, pos_rate: float = 0.05, delta: float = 2.0) -> torch.Tensor:
    r"""The calibrated log-odds of :func:`two_gaussians`, :math:`\Delta x_1 - \Delta^2/2 + \log\frac{\pi}{1-\pi}`:
    what BCE learns in the limit (a perfectly calibrated linear model)."""
    x = torch.as_tensor(x)
    return delta * x[:, 0] - delta ** 2 / 2 + math.log(pos_rate / (1 - pos_rate))


def calibrated_scores(seeds=range(8), *, pos_rate: float = 0.05) -> dict:
    """Test scores at threshold 1/2 of the calibrated model (:func:`bayes_logits`, the limit of BCE on
    the two-Gaussian task) on each seed's test set of :func:`task_data`: ``{name: one number per seed}``."""
    data = task_data("gauss", seeds, pos_rate=pos_rate)
    f = bayes_logits(data.x_test.reshape(-1, data.x_test.shape[-1]), pos_rate=pos_rate).reshape(data.y_test.shape)
    return {k: v.numpy() for k, v in hard_scores(f, data.y_test).items()}


def _one_task(task: str, seed: int, pos_rate: float, n_train: int, n_test: int):
    g = torch.Generator().manual_seed(seed)
    if task == "gauss":
        x, y = two_gaussians(n_train + n_test, pos_rate=pos_rate, generator=g)
    else:
        from sklearn.datasets import make_classification

        xs, ys = make_classification(n_samples=n_train + n_test, n_features=10, n_informative=4, n_redundant=2,
                                     n_clusters_per_class=2, class_sep=0.5, weights=[1 - pos_rate], flip_y=0.0,
                                     random_state=seed)
        x, y = torch.as_tensor(xs, dtype=torch.float32), torch.as_tensor(ys, dtype=torch.long)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def task_data(task: str = "gauss", seeds=range(8), *, pos_rate: float = 0.05, n_train: int = 2000,
              n_test: int = 20000) -> Task:
    """The training and test sets of every seed, stacked.  ``"gauss"``: :func:`two_gaussians` (d = 2,
    shift 2), train and test from one generator seeded by the seed.  ``"mlp"``: sklearn's
    ``make_classification`` (10 features, 4 informative, 2 clusters per class, class_sep 0.5), the
    harder task of the spec, seeded by the seed."""
    task = checks.choice(task, "task", TASKS)
    pos_rate = checks.fraction(pos_rate, "pos_rate (the share of positives)", zero_ok=False, high=0.5)
    parts = [_one_task(task, s, pos_rate, n_train, n_test) for s in seeds]
    return Task(*(torch.stack([p[k] for p in parts]) for k in range(4)))


def demo_batch(n: int = 200, *, pos_rate: float = 0.05, model: str = "calibrated", seed: int = 0):
    """A fixed batch for the pictures: ``n`` two-Gaussian samples with exactly ``round(pos_rate n)``
    positives (at least one), and their logits from ``model``: ``"calibrated"`` (:func:`bayes_logits`,
    what BCE converges to) or ``"init"`` (all ``p`` near 1/2, a fresh network).
    Returns ``(f (n,) float64, y (n,) long)``."""
    model = checks.choice(model, "model", ("calibrated", "init"))
    g = torch.Generator().manual_seed(seed)
    n_pos = max(1, round(pos_rate * n))
    y = torch.zeros(n, dtype=torch.long)
    y[:n_pos] = 1
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x[:, 0] += 2.0 * y
    f = bayes_logits(x, pos_rate=max(pos_rate, 1e-3)) if model == "calibrated" else 1e-3 * x[:, 0]
    return f, y


# ------------------------------------------------------------------------------------------------
# Training: every seed at once
# ------------------------------------------------------------------------------------------------

class StackedMLP(models.StackedMLP):
    """S independent networks ``sizes[0] -> ... -> 1`` (``sizes=(d,)`` is a linear model), one per
    seed, on stacked inputs (S x n x d -> S x n): a :class:`lossviz.models.StackedMLP` initialised as
    Keras' ``Dense`` layers of the author code (Glorot-uniform weights, zero biases; network s from
    its own seed).  (Zero biases matter for AnyLoss: the decision line starts through the data,
    where the amplifier has a gradient.)"""

    def __init__(self, seeds, sizes=(2,)):
        super().__init__((*sizes, 1), seeds, init="glorot")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[..., 0]


@dataclass(repr=False)
class AnyRun(Run):
    """The runs of one loss over several paired seeds: ``history`` (iter, loss and pos_share, the
    positives' share of the gradient ``|dL/df|``, both averaged over seeds), ``evals`` (epoch and
    test f1, bacc, per eval x seed), ``scores`` (final test f1, bacc, gmean, acc, tpr, tnr: one
    number per seed) and the trained ``network`` (a :class:`StackedMLP`)."""

    network: nn.Module | None = None

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        L = f", L = {p['L']:.3g}" if LOSSES[p["loss"]] and LOSSES[p["loss"]][1] else ""
        return (f"AnyRun({NAMES[p['loss']]}{L}, {p['task']}, {len(p['seeds'])} seeds: test F1 "
                f"{s['f1'].mean():.3f} ± {s['f1'].std():.3f}, balanced accuracy {s['bacc'].mean():.3f} ± "
                f"{s['bacc'].std():.3f})")


def train_anyloss(loss: str = "any_f1", *, task: str = "gauss", L: float = L_PAPER, beta: float = 1.0,
                  pos_rate: float = 0.05, batch_size: int = 100, epochs: int = 30, lr: float = 1e-2,
                  seeds=tuple(range(8)), progress=True, cache: bool = True) -> AnyRun:
    """Train one network per seed with loss ``loss`` (:data:`LOSSES`) on :func:`task_data`, all seeds
    at once (:class:`StackedMLP`: a linear model for ``"gauss"``, 10-64-64-1 for ``"mlp"``).  Adam
    (``lr``), batches of ``batch_size`` from a fresh random permutation every epoch (no stratified
    sampler), ``epochs`` epochs; the test set is scored at threshold 1/2 before training and after
    every epoch.  Seed s fixes the data, the initialisation and the batch order, so two losses
    trained with the same seeds are paired.  Cached by its parameters (:func:`lossviz.train.memo`)."""
    loss = checks.choice(loss, "loss", LOSSES)
    task = checks.choice(task, "task", TASKS)
    seeds = tuple(checks.integer(s, "seed") for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must list at least one seed, each once; got {seeds}")
    params = dict(loss=loss, task=task, L=float(checks.positive(L, "L (the amplification)")),
                  beta=float(checks.positive(beta, "beta")),
                  pos_rate=float(checks.fraction(pos_rate, "pos_rate", zero_ok=False, high=0.5)),
                  batch_size=checks.integer(batch_size, "batch_size", 2), epochs=checks.integer(epochs, "epochs", 1),
                  lr=float(checks.positive(lr, "lr")), seeds=seeds)
    return memo("anyloss", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> AnyRun:
    data = task_data(p["task"], p["seeds"], pos_rate=p["pos_rate"], n_test=20000 if p["task"] == "gauss" else 5000)
    x, y = data.x_train, data.y_train
    S, n, d = x.shape
    sizes = (d,) if p["task"] == "gauss" else (d, 64, 64)
    trainer = Trainer(lambda: StackedMLP(p["seeds"], sizes), lr=p["lr"], seed=p["seeds"][0])
    orders = [torch.Generator().manual_seed(10_000 + s) for s in p["seeds"]]
    rows, per_epoch, batches = torch.arange(S)[:, None], n // min(p["batch_size"], n), []

    def step(_it: int) -> dict:
        if not batches:                                                   # a new epoch: each seed's own order
            perms = torch.stack([torch.randperm(n, generator=g) for g in orders])
            batches.extend(perms[:, :per_epoch * min(p["batch_size"], n)].split(min(p["batch_size"], n), dim=1))
        idx = batches.pop(0)
        f = trainer.model(x[rows, idx])
        f.retain_grad()
        yb = y[rows, idx]
        per_seed = _loss_rows(p["loss"], f, yb, L=p["L"], beta=p["beta"])
        trainer.update(per_seed.sum())                                    # the networks share nothing
        g = f.grad.abs()
        share = (g * yb).sum(1) / g.sum(1).clamp(min=1e-30)
        return {"loss": per_seed.detach().mean(), "pos_share": share.mean()}

    def evaluate() -> dict:
        s = hard_scores(trainer.model(data.x_test), data.y_test)
        return {"f1": s["f1"].numpy(), "bacc": s["bacc"].numpy()}

    history, evals, seconds = trainer.run(step, p["epochs"] * per_epoch, evaluate=evaluate, eval_every=per_epoch,
                                          desc=f"{NAMES[p['loss']]}, {S} seeds", progress=progress)
    evals["epoch"] = evals["iter"] // per_epoch
    with torch.no_grad():
        scores = {k: v.numpy() for k, v in hard_scores(trainer.model(data.x_test), data.y_test).items()}
    return AnyRun(params=p, history=history, evals=evals, scores=scores, seconds=seconds, network=trainer.model)


def compare(losses, **knobs) -> dict:
    """``{loss: AnyRun}`` for every loss in ``losses``, same knobs and seeds (paired), each cached."""
    return {name: train_anyloss(name, **knobs) for name in losses}


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def plot_amplifier(ax, Ls=(1, 5, 10, 30, 73, 150)) -> dict:
    """``A(p)`` for several ``L`` next to the hard step at 1/2.  Returns ``{L: (p, A)}``."""
    p = torch.linspace(0, 1, 401, dtype=torch.float64)
    ax.plot([0, 0.5, 0.5, 1], [0, 0, 1, 1], color="k", ls="--", lw=1.2, label="step [p > ½]")
    cmap = plots.mpl.colormaps["viridis"]
    out = {}
    for k, L in enumerate(Ls):
        a = amplify(p, L)
        ax.plot(p, a, color=cmap(k / max(len(Ls) - 1, 1)), label=f"L = {L:g}")
        out[L] = (p, a)
    ax.set(xlabel="probability p = σ(f)", ylabel="A(p)", title="the amplifier A(p)")
    ax.legend(loc="upper left", fontsize=8)
    return out


def plot_soft_confusion_vs_L(ax, f, y, Ls=None) -> dict:
    """Soft TPR = TP/n_pos and FPR = FP/n_neg of a batch as ``L`` grows (log axis), the hard
    values dashed, the pure soft metric (no A) at the left edge as a marker.  Returns the curves."""
    Ls = np.logspace(0, np.log10(500), 60) if Ls is None else np.asarray(Ls)
    hard = _confusion((torch.as_tensor(f) >= 0).double(), y.double())
    n_pos, n_neg = float(hard.tp + hard.fn), float(hard.tn + hard.fp)
    cms = [soft_confusion(f, y, L=float(L)) for L in Ls]
    tpr = np.array([float(c.tp) / n_pos for c in cms])
    fpr = np.array([float(c.fp) / n_neg for c in cms])
    pure = soft_confusion(f, y, L=None)
    for vals, hv, pv, name, color in ((tpr, hard.tp / n_pos, pure.tp / n_pos, "TPR", POS_CLASS_COLOR),
                                      (fpr, hard.fp / n_neg, pure.fp / n_neg, "FPR", NEG_CLASS_COLOR)):
        ax.plot(Ls, vals, color=color, label=f"soft {name}")
        ax.axhline(float(hv), color=color, ls="--", lw=1.2, label=f"hard {name}")
        ax.plot([Ls[0]], [float(pv)], "o", color=color, mfc="none", ms=8)
    ax.axvline(L_PAPER, color=plots.MUTED, lw=1, ls=":")
    ax.set(xscale="log", xlabel="amplification L", ylabel="rate", ylim=(-0.02, 1.02),
           title="soft rates approach the hard ones")
    ax.legend(loc="center right", fontsize=8)
    return {"L": Ls, "tpr": tpr, "fpr": fpr, "hard_tpr": float(hard.tp) / n_pos, "hard_fpr": float(hard.fp) / n_neg}


def plot_sample_weights(ax, f, y, loss: str, *, L: float = L_PAPER, normalise: bool = True) -> float:
    """Every sample's ``|dL/dz_y|`` (:func:`lossviz.sample_weights` on two-class logits), samples
    sorted by ``p``, positives and negatives coloured; scaled to mean 1 over the batch, log scale
    (weights under 1e-4 fall below the axis).  Returns the positives' share of the total."""
    z = two_class_logits(f)
    w = sample_weights(loss_fn(loss, L=L), z, y)
    share = positive_share(w, y)
    if normalise:
        w = w / w.mean()
    o = torch.argsort(torch.as_tensor(f))
    pos = (y[o] == 1).numpy()
    ax.bar(np.arange(len(o)), w[o].clamp(min=1e-12).numpy(), width=1.0,
           color=np.where(pos, POS_CLASS_COLOR, NEG_CLASS_COLOR))
    ax.set(xlabel="samples, by predicted p", ylabel="|dL/dz| (batch mean = 1)", yscale="log",
           ylim=(1e-4, max(float(w.max()) * 3, 10.0)), title=f"{NAMES[loss]}: positives get {share:.0%}")
    return share


def boundary_lines(run: AnyRun, seed_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The decision line ``f(x) = 0`` of a linear (``"gauss"``) run's network ``seed_index``, as x1 over x0 in [-4, 6]."""
    w = run.network.weights[0][seed_index, :, 0].detach().double().numpy()
    b = float(run.network.biases[0][seed_index, 0, 0].detach())
    x0 = np.array([-4.0, 6.0])
    if abs(w[1]) < 1e-12:
        return np.array([-b / w[0]] * 2), np.array([-4.0, 4.0])
    return x0, -(b + w[0] * x0) / w[1]


def plot_boundaries(ax, runs: dict, *, seed_index: int = 0, n_points: int = 2000) -> None:
    """The training points of seed ``seed_index`` (positives blue) and each run's decision line."""
    params = next(iter(runs.values())).params
    data = task_data("gauss", params["seeds"][seed_index:seed_index + 1], pos_rate=params["pos_rate"], n_test=1)
    x, y = data.x_train[0, :n_points].numpy(), data.y_train[0, :n_points].numpy()
    ax.scatter(x[y == 0, 0], x[y == 0, 1], s=4, color=NEG_CLASS_COLOR, alpha=0.25, label="negative")
    ax.scatter(x[y == 1, 0], x[y == 1, 1], s=10, color=POS_CLASS_COLOR, label="positive")
    for name, run in runs.items():
        ax.plot(*boundary_lines(run, seed_index), color=COLORS[name], lw=2, label=NAMES[name])
    ax.set(xlim=(-4, 6), ylim=(-4, 4), xlabel="$x_1$", ylabel="$x_2$",
           title=f"decision lines, seed {params['seeds'][seed_index]}")
    ax.legend(loc="lower left", fontsize=7, ncol=2)


def plot_seed_scores(ax, runs: dict, key: str = "f1") -> None:
    """Each loss's final test ``key`` on every seed (dots, one grey line per seed joins the losses)."""
    names = list(runs)
    vals = np.array([runs[n].scores[key] for n in names])
    for j in range(vals.shape[1]):
        ax.plot(range(len(names)), vals[:, j], color=plots.MUTED, lw=0.7, alpha=0.6)
    for i, n in enumerate(names):
        ax.plot([i] * vals.shape[1], vals[i], "o", color=COLORS[n], ms=5)
    ax.set_xticks(range(len(names)), [NAMES[n] for n in names], rotation=30, ha="right", fontsize=9)
    label = {"f1": "test F1", "bacc": "balanced accuracy"}[key]
    ax.set(ylabel=f"test {label}" if key == "bacc" else label, title=f"{label}, {vals.shape[1]} seeds")


def plot_curves(axes, runs: dict) -> None:
    """Test F1 and balanced accuracy over epochs (mean over seeds, band min-max) and the positives'
    share of the gradient over steps."""
    for name, run in runs.items():
        c, e = COLORS[name], run.evals["epoch"]
        for ax, key in zip(axes[:2], ("f1", "bacc")):
            v = run.evals[key]
            ax.plot(e, v.mean(1), color=c, label=NAMES[name])
            ax.fill_between(e, v.min(1), v.max(1), color=c, alpha=0.15, lw=0)
        h = run.history
        k = max(1, len(h["iter"]) // 60)
        axes[2].plot(h["iter"][k - 1::k], np.convolve(h["pos_share"], np.ones(k) / k, "valid")[::k], color=c,
                     label=NAMES[name])
    pos_rate = next(iter(runs.values())).params["pos_rate"]
    axes[0].set(xlabel="epoch", ylabel="test F1", title="test F1 (band: min-max over seeds)", ylim=(0, 1))
    axes[1].set(xlabel="epoch", ylabel="balanced accuracy", title="test balanced accuracy", ylim=(0.45, 1))
    axes[2].axhline(pos_rate, color=plots.MUTED, ls=":", lw=1.2)
    axes[2].set(xlabel="step", ylabel="positives' share of |dL/df|", ylim=(0, 1.02),
                title="gradient on the positives")
    axes[0].legend(loc="lower right", fontsize=8)


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def weights_panel(*, metric: str = "f1", L: float = L_PAPER, beta: float = 1.0, pos_rate: float = 0.05,
                  model: str = "calibrated", n: int = 200):
    """Pure maths on a fixed batch (:func:`demo_batch`): the metric, ``L``, β, the positive rate and
    the model that gives the logits.  Left: ``A(p)`` at this ``L`` with the batch's samples on it.
    Middle: the soft rates TPR, FNR, FPR, TNR (bars) against the hard ones (black ticks).  Right:
    each sample's weight on BCE's gradient (:func:`lossviz.sample_weights`, ``relative_to_ce=True``,
    scaled to batch mean 1: BCE is the flat line at 1), positives blue, negatives vermillion."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "metric": W.Dropdown(options=[(METRIC_NAMES[m], m) for m in METRICS], value=metric, description="metric",
                             layout=W.Layout(width="230px")),
        "L": W.FloatLogSlider(value=L, base=10, min=0, max=np.log10(150), step=0.02, description="L",
                              readout_format=".3g", **style),
        "beta": W.FloatSlider(value=beta, min=0.5, max=2.0, step=0.1, description="β (Fβ)", readout_format=".2f",
                              **style),
        "pos_rate": W.FloatLogSlider(value=pos_rate, base=10, min=-2, max=np.log10(0.5), step=0.05,
                                     description="pos. rate", readout_format=".3g", **style),
        "model": W.ToggleButtons(options=[("calibrated", "calibrated"), ("fresh (p ≈ ½)", "init")], value=model,
                                 description="logits", style={"button_width": "100px"}),
    }
    grid = torch.linspace(0, 1, 201, dtype=torch.float64)
    fig, axes = plots.new_figure(3, width=3.3, height=3.4)
    ax_a, ax_cm, ax_w = axes[0]
    ax_a.plot([0, 0.5, 0.5, 1], [0, 0, 1, 1], color="k", ls="--", lw=1.1)
    (a_line,) = ax_a.plot(grid, grid, color="#009E73", lw=2)
    rug_pos = ax_a.scatter([], [], marker="|", s=60, color=POS_CLASS_COLOR, label="positives")
    rug_neg = ax_a.scatter([], [], marker="|", s=60, color=NEG_CLASS_COLOR, alpha=0.4, label="negatives")
    ax_a.set(xlim=(0, 1), ylim=(-0.1, 1.05), xlabel="p = σ(f)", ylabel="A(p)")
    ax_a.legend(loc="center right", fontsize=8)
    names = ["TPR", "FNR", "FPR", "TNR"]
    bars = ax_cm.bar(range(4), [0] * 4, color=[POS_CLASS_COLOR, POS_CLASS_COLOR, NEG_CLASS_COLOR, NEG_CLASS_COLOR],
                     alpha=0.7, label="soft")
    (hard_marks,) = ax_cm.plot(range(4), [0] * 4, "_", color="k", ms=26, mew=2.5, label="hard")
    ax_cm.set_xticks(range(4), names)
    ax_cm.set(ylim=(0, 1.05), ylabel="rate")
    ax_cm.legend(loc="center left", fontsize=8)
    ax_w.axhline(1.0, color="k", ls="--", lw=1.1, label="BCE (all 1)")
    w_pos = ax_w.scatter([], [], s=14, color=POS_CLASS_COLOR, zorder=3, label="positives")
    w_neg = ax_w.scatter([], [], s=8, color=NEG_CLASS_COLOR, alpha=0.5, label="negatives")
    ax_w.set(xlim=(0, 1), yscale="log", xlabel="p = σ(f)", ylabel="weight on BCE's gradient")
    ax_w.legend(loc="lower right", fontsize=8)
    batches: dict = {}

    def draw(v):
        key = (round(v["pos_rate"], 6), v["model"])
        if key not in batches:
            batches[key] = demo_batch(n, pos_rate=v["pos_rate"], model=v["model"])
        f, y = batches[key]
        controls["beta"].layout.display = None if v["metric"] == "fbeta" else "none"
        p, pos = torch.sigmoid(f), y == 1
        a_line.set_ydata(amplify(grid, v["L"]).numpy())
        rug_pos.set_offsets(np.column_stack([p[pos].numpy(), np.full(int(pos.sum()), -0.05)]))
        rug_neg.set_offsets(np.column_stack([p[~pos].numpy(), np.full(int((~pos).sum()), -0.05)]))
        ax_a.set_title(f"A(p), L = {v['L']:.3g}")
        soft = soft_confusion(f, y, L=v["L"])
        hard = _confusion((f >= 0).double(), y.double())
        n_pos, n_neg = float(pos.sum()), float((~pos).sum())
        rates = lambda c: [float(c.tp) / n_pos, float(c.fn) / n_pos, float(c.fp) / n_neg, float(c.tn) / n_neg]  # noqa: E731
        for bar, h in zip(bars, rates(soft)):
            bar.set_height(h)
        hard_marks.set_ydata(rates(hard))
        loss = float(1 - metric_value(soft, v["metric"], beta=v["beta"]))
        hard_m = float(metric_value(hard, v["metric"], beta=v["beta"], eps=0.0)) if float(hard.tp) > 0 or \
            v["metric"] in ("accuracy", "bacc") else 0.0
        name = METRIC_NAMES[v["metric"]]
        ax_cm.set_title(f"1 − soft {name} = {loss:.3f}", fontsize=11)
        fn = lambda z, t: anyloss(z, t, metric=v["metric"], L=v["L"], beta=v["beta"])  # noqa: E731
        w = sample_weights(fn, two_class_logits(f), y, relative_to_ce=True)
        w = w / w.mean().clamp(min=1e-300)
        w_pos.set_offsets(np.column_stack([p[pos].numpy(), w[pos].clamp(min=1e-6).numpy()]))
        w_neg.set_offsets(np.column_stack([p[~pos].numpy(), w[~pos].clamp(min=1e-6).numpy()]))
        ax_w.set_ylim(max(float(w.clamp(min=1e-6).min()) / 3, 1e-6), max(float(w.max()) * 3, 3.0))
        pull = sample_weights(fn, two_class_logits(f), y)
        share = positive_share(pull, y)
        share_bce = positive_share(sample_weights(bce_loss, two_class_logits(f), y), y)
        ratio = float(w[pos].mean() / w[~pos].mean().clamp(min=1e-300))
        ax_w.set_title(f"positives ×{ratio:.3g} the negatives", fontsize=11)
        return {"f": f, "labels": y, "soft": soft, "hard": hard, "loss": loss, "w": w, "ratio": ratio,
                "share": share, "share_bce": share_bce,
                "status": f"{name}: soft loss {loss:.3f}, hard {name} {hard_m:.3f}; the positives "
                          f"({n_pos:.0f} of {len(y)}) get {share:.0%} of the gradient |dL/dz| (BCE: {share_bce:.0%})"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_anyloss`: the loss, ``L``, β, the task, the positive rate,
    the batch size and the epochs.  Every press trains the loss and the BCE and WBCE baselines with
    the same knobs on 8 paired seeds (each cached) and draws the test F1 and balanced accuracy of
    every seed, and the test F1 over epochs."""
    import ipywidgets as W

    from .. import widgets

    d = dict(loss="any_f1", L=L_PAPER, beta=1.0, task="gauss", pos_rate=0.05, batch_size=100, epochs=30) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    options = [(NAMES[k], k) for k in LOSSES if k not in ("bce", "wbce")]
    controls = {
        "loss": W.Dropdown(options=options, value=d["loss"], description="loss", layout=W.Layout(width="210px")),
        "task": W.Dropdown(options=[(v, k) for k, v in TASKS.items()], value=d["task"], description="task",
                           layout=W.Layout(width="330px")),
        "L": W.FloatLogSlider(value=d["L"], base=10, min=0, max=np.log10(150), step=0.02, description="L",
                              readout_format=".3g", **style),
        "beta": W.FloatSlider(value=d["beta"], min=0.5, max=2.0, step=0.1, description="β (Fβ)",
                              readout_format=".2f", **style),
        "pos_rate": W.FloatLogSlider(value=d["pos_rate"], base=10, min=-2, max=np.log10(0.5), step=0.05,
                                     description="pos. rate", readout_format=".3g", **style),
        "batch_size": W.Dropdown(options=[32, 100, 300, 1000], value=d["batch_size"], description="batch",
                                 layout=W.Layout(width="150px")),
        "epochs": W.IntSlider(value=d["epochs"], min=10, max=60, step=10, description="epochs", **style),
    }

    def knobs(v) -> dict:
        return dict(task=v["task"], L=float(v["L"]), beta=float(v["beta"]), pos_rate=float(v["pos_rate"]),
                    batch_size=v["batch_size"], epochs=v["epochs"])

    def run(v, progress):
        return compare(("bce", "wbce", v["loss"]), progress=progress, **knobs(v))

    def draw(axes, runs, _v):
        ax, ax_f1, ax_bacc = axes[0]
        plot_seed_scores(ax_f1, runs, "f1")
        plot_seed_scores(ax_bacc, runs, "bacc")
        for name, r in runs.items():
            ax.plot(r.evals["epoch"], r.evals["f1"].mean(1), color=COLORS[name], label=NAMES[name])
            ax.fill_between(r.evals["epoch"], r.evals["f1"].min(1), r.evals["f1"].max(1), color=COLORS[name],
                            alpha=0.15, lw=0)
        ax.set(xlabel="epoch", ylabel="test F1", ylim=(0, 1), title="test F1 (band: min-max)")
        ax.legend(loc="lower right", fontsize=8)
        main = runs[list(runs)[-1]]
        return {"runs": runs, "status": f"{main!r} in {main.seconds:.1f} s"}

    def show_relevant(v):
        controls["beta"].layout.display = None if v["loss"] == "any_fbeta" else "none"
        controls["L"].layout.display = None if LOSSES[v["loss"]][1] else "none"

    return widgets.run_panel(controls, run, draw, ncols=3, width=3.3, height=3.4, autorun=autorun,
                             describe=lambda runs: repr(runs[list(runs)[-1]]), on_change=show_relevant)
