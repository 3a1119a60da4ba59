r"""Negatives weighted by how likely they are to be *true* negatives: MEOW and AdaMEOW (Yu et al.,
SDM 2023 / TKDE 2024), in miniature.

InfoNCE pushes every negative with a softmax weight set by similarity alone, so a *false* negative
(same class as the anchor, hence similar) is pushed hardest.  MEOW multiplies each negative's term in
the denominator by a weight ``w_ij`` that falls when i and j keep landing in the same k-means cluster;
AdaMEOW learns soft weights with a small network.  The paper works on heterogeneous graphs (two
meta-path views of each node); lossviz uses the two augmented views of notebook 09 instead
(:mod:`lossviz.augment`), where the false negatives are known exactly because the labels are.

* :func:`weighted_info_nce_loss` ``(S, labels, *, weights, tau)``: InfoNCE on the similarity matrix
  with a weight on every term of the denominator; :func:`lossviz.pair_weights` gives its pair weights
  and all-ones weights give :func:`lossviz.nt_xent_loss` exactly.
* :func:`kmeans`, :func:`clusterings`, :func:`cluster_weights`: MEOW's hard weights
  ``w_ij = max(1 - (1/M) sum_m [c_m(i) = c_m(j)], floor)`` from M seeded torch k-means runs.
* :func:`proto_nce_loss`: the prototype term that full MEOW adds (``lam_proto``).
* :class:`AdaWeights`: AdaMEOW's ``w_ij = sigmoid(MLP(z_i + z_j))``.
* :func:`false_negative_share`: the share of the push (General Pair Weighting) that lands on
  same-class negatives -- the quantity the paper wants to lower.
* :func:`train_meow` (on :class:`lossviz.train.Trainer` + :func:`lossviz.train.memo`), its downstream
  :func:`encoder_scores`, :func:`paired_runs` (the same runs over paired seeds and temperatures), and
  the panels :func:`weights_panel` (pure maths) and :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import augment, checks, cluster, data, plots
from ..metrics import knn_accuracy
from ..models import encoder_projector
from ..similarity import masked_logsumexp, pair_batch, pair_masks, similarity, upcast
from ..train import Run, Trainer, memo

#: The three weight modes: none (plain InfoNCE), hard cluster weights (MEOW), learned weights (AdaMEOW).
MODES = ("infonce", "meow", "ada")
NAMES = {"infonce": "InfoNCE (all w = 1)", "meow": "MEOW (cluster weights)", "ada": "AdaMEOW (learned w)",
         "oracle": "label oracle (w = [y_i != y_j])"}
#: The ceiling for MEOW's weights (not one of the paper's methods): ``w_ij = 0`` exactly on the
#: same-class pairs, i.e. cluster weights from the true labels (``train_meow("oracle")``).
ORACLE = "oracle"
#: One colour per mode (never the pair colours, which mean pull / push).
COLORS = {"infonce": plots.LOSS_COLORS["infonce"], "meow": "#009E73", "ada": "#5D3A9B"}


# ------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------

def weighted_info_nce_loss(S, labels, *, weights, tau: float = 0.4) -> torch.Tensor:
    r"""InfoNCE with a weight on every term of the denominator (MEOW eq. for :math:`L_{info}`,
    AdaMEOW's weighted InfoNCE), in the NT-Xent convention of :func:`lossviz.nt_xent_loss`.

    .. math::
        L = \frac{1}{|\mathcal P|} \sum_{(i, p) \in \mathcal P}
            -\log \frac{e^{S_{ip}/\tau}}{w_{ip}\, e^{S_{ip}/\tau} + \sum_{n \in N_i} w_{in}\, e^{S_{in}/\tau}}

    ``weights`` is a B x B tensor ``w >= 0`` (it may require grad, as AdaMEOW's do).  All ones gives
    :func:`lossviz.nt_xent_loss` exactly.  MEOW's cluster weights give ``w_ip = 0`` (an item shares
    every cluster with itself), so the positive leaves the denominator, as in the official code
    (``w_ii = 0`` there); AdaMEOW keeps it (``w_ip = sigmoid(...) > 0``).  Multiplying every weight by
    a constant ``c`` adds ``log c`` to the loss when ``w_ip = 0`` and changes no gradient (the
    official MEOW weights are ``M`` times those of :func:`cluster_weights`).

    The denominator is ``logsumexp(S/tau + log w)`` with ``log 0 = -inf`` (the spec's guard), so no
    ``exp(S/tau)`` is ever formed.  A positive pair whose denominator has no weight at all (``w_ip``
    and every ``w_in`` zero) would make the loss infinite and is refused with a ValueError.  A term
    with ``w = 0`` exactly is dropped, so its ``dL/dw`` reads 0 (learned weights are > 0 anyway).
    The pair weights ``dL/dS`` (:func:`lossviz.pair_weights`): negative n of anchor i is pushed with
    ``w_in e^{S_in/tau} / den`` per positive pair, over ``tau |P|``.
    """
    S, pos, neg = pair_batch(S, labels)
    tau = checks.temperature(tau)
    z = upcast(S) / tau
    w = _check_weights(weights, z)
    live = w > 0
    logw = torch.where(live, w.clamp(min=torch.finfo(z.dtype).tiny).log(), -math.inf)
    has_neg = (neg & live).any(dim=1, keepdim=True)
    lse_neg = masked_logsumexp(z + logw, neg & live, keepdim=True)     # log sum_n w_in e^{S_in / tau}
    a = torch.where(live, z + logw, -math.inf)                         # log(w_ip e^{S_ip / tau})
    log_den = torch.where(has_neg, torch.logaddexp(a, lse_neg), a)
    dead = pos & ~has_neg & ~live
    if checks.validation_enabled() and bool(dead.any()):
        i, p = (int(v) for v in dead.nonzero()[0])
        raise ValueError(f"positive pair ({i}, {p}) has an empty denominator: its own weight and the weights of "
                         f"all of anchor {i}'s negatives are 0, so the loss would be infinite. Use floor > 0 "
                         "in cluster_weights, or fewer clusterings")
    terms = torch.where(pos, log_den - z, 0.0)
    return terms.sum() / pos.sum().clamp(min=1)


def _check_weights(weights, z: torch.Tensor) -> torch.Tensor:
    w = checks.as_float_tensor(weights, "weights (the B x B pair weights w_ij)", 2)
    if w.shape != z.shape:
        raise ValueError(f"weights must have the shape of S, {tuple(z.shape)}; got {tuple(w.shape)}")
    if checks.validation_enabled() and bool((w < 0).any()):
        raise ValueError("weights must be >= 0 (a weight scales a term of the denominator); got a negative one")
    return w.to(device=z.device, dtype=z.dtype)


# ------------------------------------------------------------------------------------------------
# MEOW's weights: repeated k-means
# ------------------------------------------------------------------------------------------------

@torch.no_grad()
def kmeans(z, K: int, *, iters: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the rows of ``z`` (detached): ``(assign (N,), centroids (K x d))``, from K
    distinct rows drawn with ``seed``, one start (:func:`lossviz.cluster.kmeans` with
    ``init="random"``).  The official code uses faiss with 20 iterations and 5 restarts; 10
    iterations of plain Lloyd are plenty at this size."""
    return cluster.kmeans(z, K, n_init=1, iters=iters, seed=seed, init="random")


@dataclass
class Clustering:
    """M k-means clusterings of the same points: ``assign`` (M x N), and per clustering the unit-norm
    ``centroids`` (K_m x d) and the ``density`` phi (K_m,) of ProtoNCE."""

    assign: torch.Tensor
    centroids: list
    density: list


def clusterings(z, Ks=(10, 30), *, tau: float = 0.4, iters: int = 10, seed: int = 0) -> Clustering:
    """MEOW's repeated clustering: one :func:`kmeans` per ``K`` in ``Ks`` (seeds ``seed, seed+1, ...``,
    as the official code seeds clustering m with m), with the concentration of each cluster

        phi_k = mean_{i in k} ||z_i - c_k|| / log(n_k + 5),

    a one-point cluster taking the largest phi, clipped to the 10th-90th percentiles and rescaled to
    mean ``tau`` (PCL's density, which MEOW reuses; the official code reads its distances from an
    inner-product index, i.e. similarities, where we use Euclidean distances as PCL does)."""
    z = checks.as_float_tensor(z, "z (the embeddings to cluster, N x d)", 2).detach()
    Ks = tuple(Ks)
    if not Ks:
        raise ValueError("Ks must list at least one number of clusters, e.g. (10, 30)")
    tau = checks.temperature(tau)
    assign, cents, dens = [], [], []
    for m, K in enumerate(Ks):
        a, c = kmeans(z, K, iters=iters, seed=seed + m)
        d = (z - c[a]).norm(dim=1)
        n = torch.bincount(a, minlength=K)
        phi = torch.zeros(K, dtype=z.dtype, device=z.device).index_add_(0, a, d) / n.clamp(min=1)
        phi = phi / torch.log(n.to(z.dtype) + 5)
        phi = torch.where(n > 1, phi, phi.max())
        lo, hi = torch.quantile(phi, torch.tensor([0.1, 0.9], dtype=z.dtype, device=z.device))
        phi = phi.clamp(float(lo), float(hi)).clamp(min=torch.finfo(z.dtype).eps)
        assign.append(a)
        cents.append(torch.nn.functional.normalize(c, dim=1))
        dens.append(tau * phi / phi.mean())
    return Clustering(torch.stack(assign), cents, dens)


def cluster_weights(assign, *, floor: float = 0.0, dtype=None) -> torch.Tensor:
    r"""MEOW's hard pair weights from M clusterings ``assign`` (M x N cluster ids, or (N,) for M = 1).

    .. math::
        w_{ij} = \max\Big(1 - \frac{1}{M}\sum_{m=1}^{M} [c_m(i) = c_m(j)],\ \text{floor}\Big)
        \in \{0, \tfrac1M, \dots, 1\}

    A pair that never shares a cluster gets 1 (a sure negative), one that shares every clustering
    gets ``floor`` (the official code: 0).  ``floor = 1`` makes every weight 1, i.e. plain InfoNCE.
    The official code uses ``M`` times these weights (``M - sum``, in ``{0, ..., M}``): the same
    gradients (see :func:`weighted_info_nce_loss`).  Returns N x N (``w_ii = floor``) in ``dtype``:
    a torch dtype, or a tensor whose dtype to follow (e.g. the similarity matrix ``S``, so float64 in
    gives float64 out); default torch's default dtype (float32 unless changed).  The values are
    multiples of ``1/M`` computed in float64, so every dtype holds the same weights up to rounding."""
    a = torch.as_tensor(assign)
    if a.dtype == torch.bool or a.is_floating_point() or a.is_complex():
        raise ValueError(f"assign must hold integer cluster ids; got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"assign must be M x N (one row of cluster ids per clustering); got {tuple(a.shape)}")
    floor = checks.non_negative(floor, "floor (the smallest weight)")
    if floor > 1:
        raise ValueError(f"floor (the smallest weight) must be in [0, 1]; got {floor}")
    if dtype is None:
        dtype = torch.get_default_dtype()
    elif isinstance(dtype, torch.Tensor):
        dtype = dtype.dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype or a floating tensor to follow; got {dtype!r}")
    agree = (a[:, :, None] == a[:, None, :]).double().mean(dim=0)
    return (1 - agree).clamp(min=floor).to(dtype)


def proto_nce_loss(z, clustering: Clustering, items=None) -> torch.Tensor:
    r"""ProtoNCE (PCL, as used by MEOW), averaged over the M clusterings:

    .. math::
        L_{proto} = \frac{1}{M}\sum_m \frac{1}{N}\sum_i -\log \frac{e^{z_i \cdot c_{k(i)} / \phi_{k(i)}}}
            {\sum_k e^{z_i \cdot c_k / \phi_k}}

    ``z`` (N x d) are embeddings of the items ``items`` (indices into the clustered points; all of
    them, in order, by default).  The official code multiplies the denominator by N / K (it takes a
    mean over prototypes times N): a constant we leave out."""
    z = checks.as_float_tensor(z, "z (embeddings, N x d)", 2)
    total = z.new_zeros(())
    for a, c, phi in zip(clustering.assign, clustering.centroids, clustering.density):
        k = a if items is None else a[items]
        if len(k) != len(z):
            raise ValueError(f"z has {len(z)} rows but the clustering assigns {len(k)} items; pass items=")
        logits = (z @ c.to(z.dtype).T) / phi.to(z.dtype)
        total = total + (torch.logsumexp(logits, dim=1) - logits.gather(1, k[:, None])[:, 0]).mean()
    return total / len(clustering.assign)


# ------------------------------------------------------------------------------------------------
# AdaMEOW's learned weights
# ------------------------------------------------------------------------------------------------

class AdaWeights(nn.Module):
    """AdaMEOW's weight network: ``w_ij = sigmoid(MLP(z_i + z_j))`` with
    ``MLP = Linear(d, hidden) - Tanh - Linear(hidden, 1)`` (hidden = 16 in the official code).

    ``forward(z_anchor, z=None)`` returns the len(z_anchor) x len(z) matrix (``z`` defaults to
    ``z_anchor``).  The loss's gradient ``dL/dw_ij > 0`` on every term of the denominator, so gradient
    descent lowers every weight: only the sigmoid and the shared MLP bound the drift."""

    def __init__(self, dim: int = 32, hidden: int = 16):
        super().__init__()
        dim, hidden = checks.integer(dim, "dim", 1), checks.integer(hidden, "hidden", 1)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, z_anchor: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z = z_anchor if z is None else z
        return torch.sigmoid(self.mlp(z_anchor[:, None, :] + z[None, :, :]))[..., 0]


# ------------------------------------------------------------------------------------------------
# The quantity to watch
# ------------------------------------------------------------------------------------------------

def false_negative_share(W, labels, classes) -> float:
    """Share of the total push that lands on *false* negatives: ``sum |W_ij|`` over negative pairs
    (different ``labels``, e.g. different images) whose ``classes`` agree, over ``sum |W_ij|`` over all
    negative pairs.  ``W`` is a pair-weight matrix ``dL/dS`` (:func:`lossviz.pair_weights`, or a
    training step's ``S.grad``).  0 when the negatives get no weight at all."""
    W = checks.as_float_tensor(W, "W (pair weights dL/dS)", 2)
    labels = checks.check_labels(labels, W.shape[0], W.device)
    classes = checks.check_labels(classes, W.shape[0], W.device)
    _, neg = pair_masks(labels)
    push = torch.where(neg, W.detach().abs(), 0.0)
    fn = classes[:, None] == classes[None, :]
    return float(push[fn].sum() / push.sum().clamp(min=torch.finfo(push.dtype).tiny))


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class MeowRun(Run):
    """One self-supervised run: ``history`` holds iter, loss, fn_share, w_neg, w_false, w_true per
    step; ``scores`` knn, probe, nmi (test split, encoder features, :func:`encoder_scores`)."""

    def __repr__(self) -> str:
        s = self.scores
        return (f"MeowRun({self.params['mode']}, tau={self.params['tau']:.3g}: kNN {s['knn']:.3f}, "
                f"linear probe {s['probe']:.3f}, NMI {s['nmi']:.3f})")


def train_meow(mode: str = "meow", *, tau: float = 0.4, Ks=(10, 30), floor: float = 0.0, lam_proto: float = 0.0,
               epochs: int = 30, batch_size: int = 128, dim: int = 32, lr: float = 1e-3, seed: int = 0,
               progress=True, cache: bool = True) -> MeowRun:
    """Two-view self-supervised training on digits (the kit of notebook 09) with weighted negatives.

    ``mode``: ``"infonce"`` (all weights 1), ``"meow"`` (:func:`cluster_weights` from k-means with
    ``Ks`` on the clean training images' embeddings, re-clustered once per epoch; ``lam_proto`` adds
    :func:`proto_nce_loss`) or ``"ada"`` (:class:`AdaWeights`, trained by the same Adam).  Class
    labels are used only to measure: the share of the push on false negatives each step, the mean
    weight on false and on true negatives, and at the end the test kNN accuracy (k = 5), a linear
    probe and the NMI of k-means (K = 10), all on the encoder's features (the paper evaluates the
    embedding before its projection head too).  ``mode="oracle"`` (:data:`ORACLE`) is MEOW's ceiling,
    not a method: the weights come from the true labels, ``w_ij = max([y_i != y_j], floor)``."""
    checks.choice(mode, "mode", MODES + (ORACLE,))
    tau = checks.temperature(tau)
    Ks = tuple(checks.integer(k, "each K in Ks", 2) for k in Ks)
    floor = checks.non_negative(floor, "floor")
    lam_proto = checks.non_negative(lam_proto, "lam_proto")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("dim", dim, 2)):
        checks.integer(value, name, low)
    lr = checks.positive(lr, "lr")
    params = dict(mode=mode, tau=tau, Ks=Ks, floor=floor, lam_proto=lam_proto, epochs=epochs,
                  batch_size=batch_size, dim=dim, lr=lr, seed=seed)
    return memo("meow", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> MeowRun:
    split = data.load("digits")

    def build():
        model = encoder_projector(split.x_train.shape[1], dim=p["dim"])
        return (model, AdaWeights(p["dim"])) if p["mode"] == "ada" else model

    trainer = Trainer(build, lr=p["lr"], seed=p["seed"])           # AdaMEOW's weights share the Adam
    model, ada = trainer.model if p["mode"] == "ada" else (trainer.model, None)
    sampler = augment.TwoViewSampler(split.x_train, "digits", p["batch_size"], seed=p["seed"])
    per_epoch = len(split.x_train) // p["batch_size"]
    clusters = {}
    need_clusters = p["mode"] == "meow" or p["lam_proto"] > 0

    def step(it: int) -> dict:
        if need_clusters and (it - 1) % per_epoch == 0:            # re-cluster once per epoch
            clusters["c"] = trainer.evaluating(
                lambda: clusterings(model(split.x_train), p["Ks"], tau=p["tau"], seed=p["seed"] + it))
        views, labels, idx = sampler.sample()
        items = idx.repeat(2)
        z = model(views)
        S = similarity(z)
        S.retain_grad()
        if p["mode"] == "meow":
            w = cluster_weights(clusters["c"].assign[:, items], floor=p["floor"], dtype=S)
        elif p["mode"] == ORACLE:                                  # the ceiling: clusters = the true classes
            w = cluster_weights(split.y_train[items], floor=p["floor"], dtype=S)
        elif p["mode"] == "ada":
            w = ada(z)
        else:
            w = torch.ones_like(S)
        value = weighted_info_nce_loss(S, labels, weights=w, tau=p["tau"])
        if p["lam_proto"] > 0:
            value = value + p["lam_proto"] * proto_nce_loss(z, clusters["c"], items)
        trainer.update(value)
        classes = split.y_train[items]
        _, neg = pair_masks(labels)
        same = classes[:, None] == classes[None, :]
        wd = w.detach()
        return {"loss": value.detach(), "fn_share": false_negative_share(S.grad, labels, classes),
                "w_neg": wd[neg].mean(), "w_false": wd[neg & same].mean(), "w_true": wd[neg & ~same].mean()}

    history, _, seconds = trainer.run(step, p["epochs"] * per_epoch, desc=NAMES[p["mode"]], progress=progress)
    scores = trainer.evaluating(lambda: encoder_scores(model[:4], split))
    return MeowRun(params=p, history=history, scores=scores, seconds=seconds)


def paired_runs(seeds=range(8), *, taus=(0.4, 0.1), modes=("infonce", "meow", ORACLE), epochs: int = 30,
                progress=False) -> dict:
    """``{tau: {mode: [MeowRun per seed]}}``: :func:`train_meow` for every temperature, mode and seed,
    otherwise at its defaults.  Seed s gives every mode the same network, views and batches, so the
    runs are paired by seed; runs already trained come from the cache.  Compare them seed by seed with
    :func:`lossviz.metrics.paired_difference` on ``run.scores["probe"]`` (or ``"knn"``, ``"nmi"``)."""
    seeds = [checks.integer(s, "seed", 0) for s in seeds]
    if not seeds:
        raise ValueError("paired_runs needs at least one seed")
    for mode in modes:
        checks.choice(mode, "mode", MODES + (ORACLE,))
    return {tau: {mode: [train_meow(mode, tau=tau, epochs=epochs, seed=s, progress=progress) for s in seeds]
                  for mode in modes} for tau in taus}


def encoder_scores(encoder: nn.Module, split) -> dict:
    """Downstream scores of an encoder's features on ``split`` (labels used here only): test kNN accuracy
    (k = 5, cosine), a logistic-regression probe fitted on the training features, and the NMI
    (:func:`lossviz.cluster.nmi`) between the test classes and k-means (K = 10) of the test features."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with torch.no_grad():
        f_tr, f_te = encoder(split.x_train), encoder(split.x_test)
    y_tr, y_te = split.y_train, split.y_test
    with threadpool_limits(1):              # BLAS threads on a busy small machine: 50x slower, not faster
        probe = LogisticRegression(max_iter=2000).fit(f_tr.numpy(), y_tr.numpy()).score(f_te.numpy(), y_te.numpy())
    unit = torch.nn.functional.normalize(f_te, dim=1)
    return dict(knn=knn_accuracy(f_tr, y_tr, f_te, y_te, k=5), probe=float(probe),
                nmi=cluster.nmi(y_te.numpy(), kmeans(unit, 10, seed=0)[0].numpy()))


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def plot_runs(axes, runs: dict, *, smooth: int = 7) -> None:
    """Three panels over iterations for ``{mode: MeowRun}``: the loss, the share of the push on false
    negatives, and the mean weight on false (dashed) and true (solid) negatives (a moving mean over
    ``smooth`` steps, one epoch)."""
    kernel = np.ones(smooth) / smooth
    sm = lambda v: np.convolve(v, kernel, mode="valid")  # noqa: E731
    for mode, run in runs.items():
        h, c = run.history, COLORS[mode]
        it = h["iter"][smooth - 1:]
        axes[0].plot(h["iter"], h["loss"], color=c, lw=1, label=NAMES[mode])
        axes[1].plot(it, sm(h["fn_share"]), color=c, label=NAMES[mode])
        axes[2].plot(it, sm(h["w_true"]), color=c, label=f"{mode}: true negatives")
        axes[2].plot(it, sm(h["w_false"]), color=c, ls="--", label=f"{mode}: false negatives")
    axes[0].set(xlabel="iteration", ylabel="loss (nats)", title="training loss")
    axes[1].set(xlabel="iteration", ylabel="share of the push", ylim=(0, None),
                title="push on same-class negatives")
    axes[2].set(xlabel="iteration", ylabel="mean weight $w_{ij}$", ylim=(0, 1.05), title="weights on negatives")
    axes[0].legend(loc="upper right", fontsize=9)
    axes[2].legend(loc="center right", fontsize=9)


def weights_panel(S, labels, classes, items, pool, *, tau: float = 0.4, K: int = 10, M: int = 2,
                  floor: float = 0.0, seed: int = 0):
    """Pure maths on one two-view batch: ``S`` (2B x 2B), instance ``labels``, ``classes`` (for the
    picture only), ``items`` (each view's row in ``pool``) and ``pool`` (the points k-means clusters).
    Knobs: K (clusters of the first clustering; clustering m has ``K * 3^m``), M clusterings, the
    weight floor and tau.  Draws w_ij sorted by class, the push of the weighted loss, and the share
    of the push on same-class negatives with and without the weights.  The artists are made once and
    updated in place; the k-means assignments are computed once per set of K's."""
    import ipywidgets as W

    from .. import widgets
    from ..weights import pair_weights

    S = torch.as_tensor(S, dtype=torch.float64).detach()
    labels, classes, items = (torch.as_tensor(t) for t in (labels, classes, items))
    pool = torch.as_tensor(pool)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "K": W.IntSlider(value=K, min=2, max=40, description="K (clusters)", **style),
        "M": W.IntSlider(value=M, min=1, max=3, description="M (clusterings)", **style),
        "floor": W.FloatSlider(value=floor, min=0.0, max=1.0, step=0.05, description="weight floor", **style),
        "tau": W.FloatLogSlider(value=tau, base=10, min=-1, max=0, step=0.05, description="τ",
                                readout_format=".3g", **style),
    }
    fig, axes = plots.new_figure(3, width=4.4, height=3.9)
    o = plots.class_order(classes)
    im_w = axes[0, 0].imshow(np.zeros((len(S), len(S))), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im_w, ax=axes[0, 0], shrink=0.8, label="$w_{ij}$")
    plots.outline_classes(axes[0, 0], classes.numpy()[o])
    axes[0, 0].grid(False)
    axes[0, 0].set(title="cluster weights $w_{ij}$", xlabel="view j (sorted by class)", ylabel="anchor i")
    im_g = plots.weight_heatmap(axes[0, 1], torch.zeros_like(S), classes, title="push on negatives (weighted)")
    ax = axes[0, 2]
    bars = ax.bar([0, 1], [0.0, 0.0], color=[COLORS["infonce"], COLORS["meow"]])
    labels_on_bars = [ax.text(x, 0.02, "", ha="center") for x in (0, 1)]
    ax.set_xticks([0, 1], ["InfoNCE", "weighted"])
    ax.set(ylim=(0, 1), ylabel="share of the push", title="push on same-class negatives")
    assignments: dict = {}        # Ks -> the M clusterings' assignments (k-means: the slow part; tau leaves it)
    plain: dict = {}              # tau -> InfoNCE's pair weights (the weights leave them)

    def draw(v):
        Ks = tuple(v["K"] * 3 ** m for m in range(v["M"]) if v["K"] * 3 ** m <= len(pool))
        if Ks not in assignments:
            assignments[Ks] = clusterings(pool, Ks, tau=v["tau"], seed=seed).assign
        if v["tau"] not in plain:
            plain[v["tau"]] = pair_weights(weighted_info_nce_loss, S, labels, signed=True, weights=torch.ones_like(S),
                                           tau=v["tau"])
        w = cluster_weights(assignments[Ks][:, items], floor=v["floor"], dtype=torch.float64)
        G0 = plain[v["tau"]]
        G1 = pair_weights(weighted_info_nce_loss, S, labels, signed=True, weights=w, tau=v["tau"])
        im_w.set_data(w.numpy()[np.ix_(o, o)])
        plots.set_weight_image(im_g, G1.clamp(min=0), classes)        # the push only: the pull would dwarf it
        shares = [false_negative_share(G, labels, classes) for G in (G0, G1)]
        for bar, text, s_ in zip(bars, labels_on_bars, shares):
            bar.set_height(s_)
            text.set_y(s_ + 0.02)
            text.set_text(f"{s_:.0%}")
        return {"w": w, "G": G1, "shares": tuple(shares), "Ks": Ks,
                "status": f"Ks = {Ks}, floor {v['floor']:.2f}, τ = {v['tau']:.3g}: the push on same-class negatives "
                          f"goes from {shares[0]:.0%} (InfoNCE) to {shares[1]:.0%} (weighted)"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_meow`: mode, tau, K (clusterings K and 3K), floor, lam_proto,
    epochs, seed.  Draws the three panels of :func:`plot_runs` for the run."""
    import ipywidgets as W

    from .. import widgets

    d = dict(mode="meow", tau=0.4, K=10, floor=0.0, lam_proto=0.0, epochs=30, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "mode": W.Dropdown(options=list(MODES), value=d["mode"], description="weights", layout=W.Layout(width="200px")),
        "tau": W.FloatLogSlider(value=d["tau"], base=10, min=-1, max=0, step=0.05, description="τ",
                                readout_format=".3g", **style),
        "K": W.IntSlider(value=d["K"], min=2, max=40, description="K (then 3K)", **style),
        "floor": W.FloatSlider(value=d["floor"], min=0.0, max=1.0, step=0.05, description="floor", **style),
        "lam_proto": W.FloatSlider(value=d["lam_proto"], min=0.0, max=1.0, step=0.1, description="λ proto", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=5, max=60, step=5, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return train_meow(v["mode"], tau=v["tau"], Ks=(v["K"], 3 * v["K"]), floor=v["floor"],
                          lam_proto=v["lam_proto"], epochs=v["epochs"], seed=v["seed"], progress=progress)

    def draw(axes, result, _v):
        plot_runs(axes[0], {result.params["mode"]: result})
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.4, height=3.6, autorun=autorun)
