r"""The temperature of the contrastive loss, measured on real self-supervised runs (Wang & Liu, CVPR 2021).

* :func:`train_two_view`: SimCLR in miniature, two random views of each digit (:mod:`lossviz.augment`),
  an MLP encoder and projector, any ``loss(S, labels, **knobs)`` of the InfoNCE family on the 2B
  views, Adam; class labels are used only to *evaluate* (uniformity, tolerance, alignment, Recall@1
  of the test embeddings).  Every iteration records the loss, how peaked the loss's push over
  the negatives is (the entropy of the relative penalty, :func:`lossviz.contrastive.negative_weight_entropy`)
  and how much of it lands on negatives already closer to the anchor than its positive
  (:func:`closer_share`).  Runs are cached by their parameters (:func:`lossviz.train.memo`) and keep
  their trained network.
* :func:`sweep`: one run per temperature.
* :func:`shrink`, :func:`fixed_batches`, :func:`loss_on_batches`, :func:`shrink_path`: score a trained
  network under *any* loss of the family, its embedding shrunk toward (or inflated away from) its
  mean: which way the loss wants the embedding to go, without training.  :func:`fraction_closer`:
  how many negatives beat the positive, in pixels or through a network.
* :func:`dilemma_plot`, :func:`seeded_dilemma_plot`, :func:`shrink_plot`, :func:`similarity_histograms`:
  the pictures.
* :func:`temperature_panel` (pure maths: one anchor's weights as tau moves) and :func:`training_panel`
  (a Train button over :func:`train_two_view`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import ipywidgets as W
import numpy as np
import torch

from .. import augment, checks, contrastive, data, metrics, plots, widgets
from ..models import encoder_projector
from ..similarity import pair_masks, similarity
from ..train import Run, Trainer, memo

#: The losses :func:`train_two_view` knows by name, with the knobs each reads.
LOSSES = {
    "nt_xent": (contrastive.nt_xent_loss, ("tau",)),
    "hard_nt_xent": (contrastive.hard_nt_xent_loss, ("tau", "frac")),
    "simple": (contrastive.simple_contrastive_loss, ("lam",)),
}
#: The temperatures of the sweep: SimCLR's 0.5 (CIFAR) and 0.1 (ImageNet), MoCo's 0.2, and two extremes.
TAUS = (0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(repr=False)
class TwoViewRun(Run):
    """One self-supervised run: ``history`` (iter, loss, entropy and top_share of the push, see
    :func:`push_entropy`), ``scores`` of the test geometry (uniformity, tolerance, alignment,
    recall_at_1) and the test embeddings."""

    z_test: np.ndarray | None = None              # L2-normalised test embeddings after training
    y_test: np.ndarray | None = None              # class labels (evaluation only)
    model: torch.nn.Module | None = None          # the trained network (eval mode)

    @property
    def uniformity(self) -> float:
        """Uniformity loss of the test embeddings (lower = more uniform)."""
        return self.scores["uniformity"]

    @property
    def tolerance(self) -> float:
        """Mean cosine similarity of same-class test pairs."""
        return self.scores["tolerance"]

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={self.params[k]:.3g}" for k in LOSSES[self.params["loss"]][1])
        s = self.scores
        return (f"TwoViewRun({self.params['loss']}, {knobs}: uniformity {s['uniformity']:.3f}, "
                f"tolerance {s['tolerance']:.3f}, alignment {s['alignment']:.3f})")


def train_two_view(loss: str = "nt_xent", *, tau: float = 0.2, frac: float = 0.5, lam: float = 0.01,
                   dataset: str = "digits", epochs: int = 30, batch_size: int = 128, dim: int = 32,
                   lr: float = 1e-3, seed: int = 0, init: TwoViewRun | None = None, progress=True,
                   cache: bool = True) -> TwoViewRun:
    """Self-supervised training on two views of each training digit, then the test geometry.

    ``loss`` is a name of :data:`LOSSES` (``tau``, ``frac``, ``lam`` go to the losses that read them).
    One epoch is ``len(train) // batch_size`` batches of ``batch_size`` items (2 x batch_size views).
    ``init`` (a run of the same dataset and ``dim``): start from a copy of its trained network
    instead of a fresh one (fine-tuning; ``seed`` still draws the batches).
    Evaluation (labels used only here) on the test split's embeddings z: uniformity (t = 2),
    tolerance, Recall@1, and the alignment of two fresh views of each test item.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
    fn, knob_names = LOSSES[loss]
    knobs = {k: v for k, v in dict(tau=tau, frac=frac, lam=lam).items() if k in knob_names}
    checks.choice(dataset, "dataset", ("digits", "mnist1d"))
    checks.integer(epochs, "epochs", 1)
    checks.integer(dim, "dim", 2)
    lr = checks.positive(lr, "lr")
    params = dict(loss=loss, dataset=dataset, epochs=epochs, batch_size=batch_size, dim=dim, lr=lr,
                  seed=seed, **knobs)
    if init is not None:
        if not isinstance(init, TwoViewRun) or init.model is None:
            raise ValueError("init must be a TwoViewRun that kept its network (one of train_two_view)")
        if (init.params["dataset"], init.params["dim"]) != (dataset, dim):
            raise ValueError(f"init was trained on {init.params['dataset']} with dim {init.params['dim']}; "
                             f"this run asks for {dataset} with dim {dim}")
        params["init"] = tuple(sorted(init.params.items()))           # part of the cache key
    return memo("two_view", params, lambda: _train(fn, params, knobs, progress, init), cache=cache)


def _train(fn: Callable, params: dict, knobs: dict, progress, init: TwoViewRun | None = None) -> TwoViewRun:
    kind = params["dataset"]
    split = data.load(kind)

    def build():
        if init is not None:
            return copy.deepcopy(init.model).train()        # a copy: the init run keeps its network
        return encoder_projector(split.x_train.shape[1], dim=params["dim"])

    trainer = Trainer(build, lr=params["lr"], seed=params["seed"])
    model = trainer.model
    sampler = augment.TwoViewSampler(split.x_train, kind, params["batch_size"], seed=params["seed"])
    iters = params["epochs"] * (len(split.x_train) // params["batch_size"])
    pos, neg = pair_masks(augment.two_view_labels(params["batch_size"]))

    def step(it: int) -> dict:
        views, labels, _ = sampler.sample()
        S = similarity(model(views))
        S.retain_grad()
        value = fn(S, labels, **knobs)
        trainer.update(value)
        H, top = push_entropy(S.grad, neg)
        return {"loss": value.detach(), "entropy": H.mean(), "top_share": top.mean(),
                "closer_share": closer_share(S.grad, S.detach(), pos, neg).mean()}

    def geometry() -> dict:
        z = model(split.x_test)
        v1, v2 = augment.two_views(split.x_test, kind, torch.Generator().manual_seed(10_000 + params["seed"]))
        return dict(z=z, uniformity=metrics.uniformity(z), tolerance=metrics.tolerance(z, split.y_test),
                    alignment=metrics.alignment(model(v1), model(v2)),
                    recall_at_1=metrics.recall_at_k(z, split.y_test, 1))

    history, _, seconds = trainer.run(step, iters, desc=f"{params['loss']} {knobs}", progress=progress)
    scores = trainer.evaluating(geometry)
    z = scores.pop("z")
    return TwoViewRun(params=params, history=history, scores=scores, seconds=seconds, z_test=z.numpy(),
                      y_test=split.y_test.numpy(), model=model.eval())


def push_entropy(grad: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How each anchor's push is shared over its negatives, for *any* loss, from its pair weights
    ``grad = dL/dS`` (General Pair Weighting): with ``r_ik = |grad_ik| / sum_{k' in N_i} |grad_ik'|``,
    returns ``(H_i / log |N_i|, max_k r_ik)``.  For NT-Xent ``r`` is the relative penalty, so ``H`` is
    :func:`lossviz.contrastive.negative_weight_entropy` (normalised); for the simple loss it is 1.
    An anchor whose negatives get no weight at all gets ``(0, 0)``."""
    w = torch.where(neg, grad.abs(), 0.0)
    r = w / w.sum(dim=1, keepdim=True).clamp(min=torch.finfo(w.dtype).tiny)
    H = -torch.where(r > 0, r * r.clamp(min=torch.finfo(w.dtype).tiny).log(), 0.0).sum(dim=1)
    return H / neg.sum(dim=1).clamp(min=2).to(H.dtype).log(), r.max(dim=1).values


def closer_than_positive(S: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` bool: the negatives ``k`` of anchor ``i`` that are *more* similar to it than its
    positive, ``S_ik > S_ip`` (one positive per anchor, as in SimCLR).  The hinge
    ``(S_ik - S_ip)_+`` of these pairs is violated."""
    s_pos = torch.where(pos, S, 0.0).sum(dim=1, keepdim=True)
    return neg & (S > s_pos)


def closer_share(grad: torch.Tensor, S: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per anchor, the share of its push (the pair weights ``|grad|`` over its negatives, as in
    :func:`push_entropy`) that lands on negatives already closer to it than its positive
    (:func:`closer_than_positive`); 0 for an anchor whose negatives get no weight."""
    w = torch.where(neg, grad.abs(), 0.0)
    closer = torch.where(closer_than_positive(S, pos, neg), w, 0.0).sum(dim=1)
    return closer / w.sum(dim=1).clamp(min=torch.finfo(w.dtype).tiny)


def shrink(z: torch.Tensor, factor: float) -> torch.Tensor:
    """Move L2-normalised rows toward their mean (``factor < 1``) or away from it (``factor > 1``)
    and renormalise: ``normalize(m + factor (z - m))`` with ``m`` the mean row.  ``factor = 1``
    gives ``z`` back; ``factor -> 0`` collapses every row onto one direction."""
    factor = checks.positive(factor, "factor")
    m = z.mean(dim=0, keepdim=True)
    return torch.nn.functional.normalize(m + factor * (z - m), dim=1)


def fixed_batches(n: int = 4, *, batch_size: int = 128, dataset: str = "digits", seed: int = 123) -> list:
    """``n`` SimCLR batches of training items (two random views each, ``2 * batch_size`` rows),
    drawn once from ``seed``: the same inputs for every network scored by :func:`loss_on_batches`."""
    split = data.load(dataset)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        idx = torch.randperm(len(split.x_train), generator=g)[:batch_size]
        out.append(torch.cat(augment.two_views(split.x_train[idx], dataset, g)))
    return out


def loss_on_batches(model, batches, loss: str = "nt_xent", *, factor: float = 1.0, **knobs) -> float:
    """The mean of ``loss`` (a name of :data:`LOSSES`, with its knobs) over ``batches`` of two views
    (:func:`fixed_batches`) embedded by ``model`` and :func:`shrink`-ed by ``factor``; float64, no
    gradient.  Scoring one network under another temperature's loss says which embedding that
    loss prefers, without training."""
    return float(shrink_path(model, batches, (factor,), loss, **knobs)[0])


def shrink_path(model, batches, factors, loss: str = "nt_xent", **knobs) -> np.ndarray:
    """:func:`loss_on_batches` at each of ``factors`` (one embedding of the batches, shrunk several
    ways): the loss along the path from a collapsed cloud (factor -> 0) through the trained
    embedding (1) to an inflated one (> 1)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
    fn = LOSSES[loss][0]
    with torch.no_grad():
        zs = [model(views).double() for views in batches]
        labels = [augment.two_view_labels(len(views) // 2) for views in batches]
        return np.array([np.mean([float(fn(similarity(shrink(z, f)), y, **knobs)) for z, y in zip(zs, labels)])
                         for f in factors])


def fraction_closer(batches, model=None) -> float:
    """The mean fraction of an anchor's negatives that are more similar to it than its own positive
    (:func:`closer_than_positive`), over ``batches`` of two views (:func:`fixed_batches`) embedded
    by ``model``, or compared as raw inputs (cosine of the pixels) when ``model`` is None."""
    values = []
    with torch.no_grad():
        for views in batches:
            pos, neg = pair_masks(augment.two_view_labels(len(views) // 2))
            S = similarity((views if model is None else model(views)).double())
            values.append(float((closer_than_positive(S, pos, neg).sum(1) / neg.sum(1)).mean()))
    return float(np.mean(values))


def sweep(taus=TAUS, *, progress=True, **kwargs) -> dict:
    """``{tau: train_two_view(tau=tau, **kwargs)}`` for each temperature (each run cached)."""
    return {tau: train_two_view(tau=tau, progress=progress, **kwargs) for tau in taus}


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def dilemma_plot(ax, runs: dict, *, highlight=None):
    """Uniformity (x, lower = more uniform) against tolerance (y), one point per run, labelled
    by its temperature: the uniformity-tolerance dilemma as a curve."""
    taus = sorted(runs)
    u = [runs[t].uniformity for t in taus]
    tol = [runs[t].tolerance for t in taus]
    colors = plots.mpl.colormaps["viridis"](np.linspace(0.0, 0.85, len(taus)))
    ax.plot(u, tol, color=plots.MUTED, lw=1, zorder=1)
    for t, x, y, c in zip(taus, u, tol, colors):
        ax.scatter([x], [y], color=c, s=60 if t == highlight else 30, zorder=3,
                   edgecolors="k" if t == highlight else "none")
        ax.annotate(f"τ={t:g}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=10)
    ax.set(xlabel="uniformity loss (lower = more uniform)", ylabel="tolerance (mean same-class cosine)",
           title="the uniformity-tolerance dilemma")
    return ax


def seeded_dilemma_plot(ax, seeded: dict, *, reference: dict | None = None):
    """The uniformity-tolerance plane on paired seeds: ``seeded`` maps a label to a list of runs (one
    per seed); each seed is a small dot, the seed mean a large marker.  ``reference`` (``{tau: run}``,
    e.g. the one-seed sweep) is drawn as a grey curve behind them."""
    if reference:
        taus = sorted(reference)
        ax.plot([reference[t].uniformity for t in taus], [reference[t].tolerance for t in taus],
                color=plots.MUTED, lw=1, marker="o", ms=3, zorder=1, label="one-seed sweep over τ")
    colors = plots.mpl.colormaps["viridis"](np.linspace(0.0, 0.85, len(seeded)))
    for (label, rs), c in zip(seeded.items(), colors):
        u, t = np.array([r.uniformity for r in rs]), np.array([r.tolerance for r in rs])
        ax.scatter(u, t, color=c, s=12, alpha=0.6, zorder=2)
        ax.scatter([u.mean()], [t.mean()], color=c, s=90, edgecolors="k", zorder=3, label=f"{label} (mean)")
    ax.set(xlabel="uniformity loss (lower = more uniform)", ylabel="tolerance (mean same-class cosine)",
           title=f"paired seeds ({len(next(iter(seeded.values())))} per setting)")
    ax.legend(loc="best", fontsize=9)
    return ax


def shrink_plot(ax, paths: dict, factors, *, title: str):
    """Losses along the shrink path (:func:`shrink_path`), each relative to its value at factor 1 (the
    trained embedding) and averaged over seeds: ``paths`` maps a label to a (seeds x factors) array.
    A curve that falls to the left rewards shrinking the embedding; one that falls to the right
    rewards spreading it; a minimum at 1 means the trained spread is where the loss wants it."""
    factors = np.asarray(factors, dtype=float)
    one = int(np.argmin(np.abs(factors - 1.0)))
    colors = plots.mpl.colormaps["viridis"](np.linspace(0.0, 0.85, len(paths)))
    for (label, values), c in zip(paths.items(), colors):
        values = np.asarray(values, dtype=float)
        ax.plot(factors, (values - values[:, [one]]).mean(axis=0), color=c, marker="o", ms=3, label=label)
    ax.axhline(0, color=plots.MUTED, lw=0.8)
    ax.axvline(1, color=plots.MUTED, lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="shrink factor (< 1: toward the mean, > 1: away from it)",
           ylabel="loss minus loss as trained", title=title)
    ax.legend(fontsize=9, loc="upper center")
    return ax


def similarity_histograms(ax, z, labels, *, bins: int = 60):
    """Cosine similarities of the test pairs: same class (blue, their mean is the tolerance) and
    different classes (vermillion; a uniform embedding centres them near 0)."""
    z = torch.as_tensor(z, dtype=torch.float64)
    y = torch.as_tensor(labels)
    S = z @ z.T
    i, j = torch.triu_indices(len(y), len(y), offset=1)
    same = y[i] == y[j]
    s = S[i, j].numpy()
    edges = np.linspace(-1, 1, bins + 1)
    ax.hist(s[same.numpy()], bins=edges, density=True, alpha=0.6, color=plots.POS_COLOR, label="same class")
    ax.hist(s[~same.numpy()], bins=edges, density=True, alpha=0.6, color=plots.NEG_COLOR, label="different class")
    ax.axvline(float(s[same.numpy()].mean()), color=plots.POS_COLOR, ls="--", lw=1.2)
    ax.set(xlabel="cosine similarity of a test pair", ylabel="density", title="test pair similarities")
    ax.legend(loc="upper left")
    return ax


def temperature_panel(S, labels, *, tau: float = 0.2, anchor: int = 0) -> widgets.Panel:
    """Pure maths on one anchor of a batch (``S``, ``labels`` with one positive per anchor, as in
    SimCLR): move tau, or pick another anchor, and see the pull on the positive and the push on each
    negative (left), and where tau sits on that anchor's entropy curve (right)."""
    S = torch.as_tensor(S, dtype=torch.float64).detach()
    pos, neg = pair_masks(torch.as_tensor(labels))
    if not bool((pos.sum(dim=1) == 1).all()):
        raise ValueError("temperature_panel needs exactly one positive per anchor (two views of each item)")
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {"tau": W.FloatLogSlider(value=tau, base=10, min=-2, max=math.log10(2), step=0.05,
                                        description="τ (temperature)", readout_format=".3g", **style),
                "anchor": W.IntSlider(value=anchor, min=0, max=len(S) - 1, description="anchor", **style)}
    grid = np.logspace(-2, math.log10(2), 60)
    fig, axes = plots.new_figure(2, width=5.0, height=3.7)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    # The artists, made once (on anchor 0's numbers) and then only moved.
    stems = plots.anchor_weights_view(axes[0, 0], [0.0], [0.0] * int(neg[0].sum()), [0.0], [0.0] * int(neg[0].sum()))
    ax = axes[0, 1]
    (entropy_line,) = ax.plot(grid, np.zeros_like(grid), color="k")
    here = ax.scatter([tau], [0.0], color=plots.NEG_COLOR, s=50, zorder=3)
    ax.set(xscale="log", ylim=(0, 1.05), xlabel="τ (log scale)", ylabel="entropy of r / log |N|")

    def draw(v):
        t, a = v["tau"], v["anchor"]
        s_pos, s_neg = float(S[a, pos[a]]), S[a, neg[a]]
        w_pos, w_neg = contrastive.anchor_nt_xent_weights(s_pos, s_neg, tau=t)
        plots.move_anchor_weights(axes[0, 0], stems, s_pos, s_neg, w_pos, w_neg)
        axes[0, 0].set_title(f"anchor {a}, τ = {t:.3g}")
        H_grid = _entropy(s_neg, grid) / math.log(len(s_neg))
        H = float(_entropy(s_neg, t)) / math.log(len(s_neg))
        entropy_line.set_ydata(H_grid)
        here.set_offsets([[t, H]])
        axes[0, 1].set_title(f"how evenly anchor {a}'s push is shared")
        top = float(w_neg.max() / w_neg.sum())
        return {"w_pos": w_pos, "w_neg": w_neg, "entropy": H, "top_share": top,
                "status": f"τ = {t:.3g}, anchor {a}: pull {float(w_pos):.3f} = total push; the hardest "
                          f"negative gets {top:.0%} of it; normalised entropy {H:.2f}"}

    return widgets.Panel(controls, fig, draw)




def _entropy(s_neg: torch.Tensor, tau):
    """The entropy of the relative penalty ``softmax(s_neg / tau)``: a float for one ``tau``, an
    array for an array of them (one row of the softmax per ``tau``)."""
    taus = torch.as_tensor(np.atleast_1d(tau), dtype=s_neg.dtype)[:, None]
    log_r = torch.log_softmax(s_neg[None] / taus, dim=1)
    H = -(log_r.exp() * log_r).sum(1)
    return float(H[0]) if np.ndim(tau) == 0 else H.numpy()


def training_panel(*, reference_runs: dict | None = None, autorun: bool = True, **defaults) -> widgets.Panel:
    """A Train button over :func:`train_two_view`: loss, tau, hard-negative fraction, epochs, seed.

    Draws the loss and the entropy of the push during training, the test pair similarities, and the
    run on the uniformity-tolerance plane next to ``reference_runs`` (``{tau: run}``, if given)."""
    d = dict(loss="nt_xent", tau=0.2, frac=0.5, epochs=30, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "loss": W.Dropdown(options=list(LOSSES), value=d["loss"], description="loss", layout=W.Layout(width="200px")),
        "tau": W.FloatLogSlider(value=d["tau"], base=10, min=math.log10(0.05), max=0, step=0.05,
                                description="τ", readout_format=".3g", **style),
        "frac": W.FloatLogSlider(value=d["frac"], base=10, min=-2, max=0, step=0.1,
                                 description="hard fraction", readout_format=".2g", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=5, max=60, step=5, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(values, progress):
        return train_two_view(values["loss"], tau=values["tau"], frac=values["frac"], epochs=values["epochs"],
                              seed=values["seed"], progress=progress)

    def draw(axes, result, values):
        h = result.history
        ax = axes[0, 0]
        ax.plot(h["iter"], h["entropy"], color=plots.NEG_COLOR, label="entropy of r / log |N|")
        ax.plot(h["iter"], h["top_share"], color="k", lw=1, label="share of the hardest negative")
        ax.set(xlabel="iteration", ylabel="fraction", ylim=(0, 1.02), title="how the push is shared")
        ax.legend(loc="center right", fontsize=9)
        similarity_histograms(axes[0, 1], result.z_test, result.y_test)
        if reference_runs:
            dilemma_plot(axes[0, 2], reference_runs)
        axes[0, 2].scatter([result.uniformity], [result.tolerance], marker="*", s=220, color=plots.NEG_COLOR,
                           zorder=4, label="this run")
        axes[0, 2].legend(loc="lower right")
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.4, height=3.6, autorun=autorun)
