r"""Hyperspherical embeddings for novel classes (Pereira, Joly, Valduriez, Porto, arXiv 2102.03243):
a normalised softmax with a fixed scale ``s``, and new classes added by *imprinting*.

The loss is NormFace / the normalised softmax (:func:`lossviz.margins.normface_loss`): features and
the ``K`` class weights live on the unit sphere, the bias is 0, and

    L = -log( e^{s cos θ_y} / Σ_k e^{s cos θ_k} ),    cos θ_k = <e/|e|, w_k>,  |w_k| = 1.

A class never seen in training gets the weight ``w_new = μ / |μ|``, where ``μ`` is the mean of the
*normalised* embeddings of a few of its examples (:func:`imprint`): no pairs, no fine-tuning.
*Joint* scenario: the imprinted rows are appended to the trained weights (a (K + new)-way
classifier); *disjoint*: the classifier holds only the new classes (:func:`novel_class_accuracy`).

Capacity bound (:func:`capacity_bound`, as in the NormFace analysis): with K unit weights, the
class-balanced loss of any features is at least ``log(1 + (K-1) e^{-sK/(K-1)})``; equality needs the
weights on a regular simplex and every feature on its class weight.  A small ``s`` can never fit.

Where the official code (Keras; GPL-3.0, re-implemented here, not copied) and a usual PyTorch port
differ: Keras keeps ``|w_k| = 1`` by a kernel constraint, a projection *after* each optimiser step
(``mode="project"``, the default here); normalising ``W`` inside the forward pass
(``mode="forward"``) gives the same logits but a different gradient.  ``mode="none"`` is the plain
softmax (raw features, raw weights, no bias, no scale) with raw-mean imprinting.

The digits splits ``"digits_8+2"`` and ``"digits_5+5"`` (:func:`lossviz.data.digits_novel`) are
datasets of :data:`lossviz.data.DATASETS`, so :func:`lossviz.train.train` trains the pair-loss
baselines on exactly the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib as mpl
import numpy as np
import torch
import torch.nn.functional as F

from .. import checks, data, margins, models, plots
from .. import train as T
from ..train import Run, Trainer

#: Training modes of :func:`train_classifier`: the unit-norm constraint on ``W`` applied after each
#: step (Keras, the paper's code), inside the forward pass, or not at all (plain softmax).
MODES = ("project", "forward", "none")
MODE_LABELS = {"project": "normalised, projected after each step", "forward": "normalised in the forward pass",
               "none": "unnormalised softmax"}
#: One colour per method, the same in every figure of the lesson (never the pull / push colours).
METHOD_COLORS = {"normalised softmax": "#009E73", "unnormalised softmax": "#7F7F7F", "untrained network": "#FFFFFF",
                 "raw pixels": "#D9D9D9", **{k: plots.LOSS_COLORS[k] for k in ("triplet", "contrastive", "ms")}}

#: Base / novel splits of digits: name -> number of base classes (trained on), the rest are novel.
#: Digits with novel classes, in :data:`lossviz.data.DATASETS` (:func:`lossviz.data.digits_novel`).
NOVEL_SPLITS = {"digits_8+2": 8, "digits_5+5": 5}


def novel_classes(split: data.Split) -> list[int]:
    """The test classes that never appear in training."""
    return sorted(set(split.y_test.tolist()) - set(split.y_train.tolist()))


# --------------------------------------------------------------------------------------------------
# The capacity bound
# --------------------------------------------------------------------------------------------------

def capacity_bound(s, K: int):
    r"""The best a normalised softmax with ``K`` classes and scale ``s`` can do: ``(p_y, floor)``.

    .. math::
        L_{\text{balanced}} \ \ge\ \log\big(1 + (K-1)\, e^{-sK/(K-1)}\big), \qquad
        p_y^{\star} = \frac{1}{1 + (K-1)\, e^{-sK/(K-1)}} = e^{-\text{floor}}

    ``L_balanced`` is the mean over classes of each class's mean loss, for *any* unit features and
    unit weights (two Jensen steps; Wang et al. 2017 give the same bound).  Equality: the weights on
    a regular simplex (non-target cosines ``-1/(K-1)``) and each feature on its class weight.
    ``s`` may be a number or an array; the results have its shape.
    """
    checks.integer(K, "K (the number of classes)", 2)
    s_arr = np.asarray(s, dtype=float)
    if s_arr.size == 0 or not np.isfinite(s_arr).all() or (s_arr <= 0).any():
        raise ValueError(f"s (the scale) must be finite and > 0; got {s}")
    floor = np.logaddexp(0.0, math.log(K - 1) - s_arr * K / (K - 1))   # log(1 + (K-1) e^{-sK/(K-1)}), stably
    p_y = np.exp(-floor)
    if np.ndim(s) == 0:
        return float(p_y), float(floor)
    return p_y, floor


def class_balanced_loss(cos, labels, *, s: float) -> torch.Tensor:
    """The quantity :func:`capacity_bound` bounds: the normalised-softmax loss averaged within each
    class, then over the classes (a mini-batch with unequal classes can dip below the bound)."""
    cos, labels = margins.cosine_batch(cos, labels)
    s = checks.positive(s, "s (the scale)")
    if bool((torch.bincount(labels, minlength=cos.shape[1]) == 0).any()):
        raise ValueError("class_balanced_loss needs at least one sample of every class (column of cos)")
    return _class_mean(F.cross_entropy(s * cos, labels.long(), reduction="none"), labels, cos.shape[1])


def _class_mean(per_sample: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """Mean within each of the ``K`` classes, then over the classes."""
    per_class = per_sample.new_zeros(K).index_add_(0, labels, per_sample)
    return (per_class / torch.bincount(labels, minlength=K)).mean()


# --------------------------------------------------------------------------------------------------
# Imprinting and novel-class accuracy
# --------------------------------------------------------------------------------------------------

def imprint(emb, labels, *, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Class weights from examples: ``(weights C x D, classes (C,))``, one row per class, sorted.

    ``normalize=True`` (the paper): :math:`w_c = \mu_c / \lVert\mu_c\rVert` with
    :math:`\mu_c = \frac{1}{n_c}\sum_{i: y_i = c} e_i/\lVert e_i\rVert` -- normalise each embedding,
    average, normalise the mean.  Averaging raw embeddings first gives another direction (long
    embeddings pull the mean).  ``normalize=False``: the raw mean :math:`\frac{1}{n_c}\sum e_i`, the
    weight of an unnormalised softmax, whose norm need not match the trained weights'.
    """
    emb = checks.as_float_tensor(emb, "emb (embeddings, N x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device)
    if emb.shape[0] == 0:
        raise ValueError("imprint needs at least one example")
    if normalize:
        if checks.validation_enabled() and bool((emb.norm(dim=1) == 0).any()):
            raise ValueError("an embedding row is all zeros: its direction is undefined, so it cannot be imprinted")
        emb = F.normalize(emb, dim=1)
    classes, inverse = torch.unique(labels, return_inverse=True)
    sums = emb.new_zeros(len(classes), emb.shape[1]).index_add_(0, inverse, emb)
    mu = sums / torch.bincount(inverse, minlength=len(classes))[:, None].to(emb.dtype)
    return (F.normalize(mu, dim=1) if normalize else mu), classes


def support_query(labels, shots: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``shots`` support examples per class (to imprint from) and of the rest (queries),
    drawn with ``seed``; the same for every method, so their accuracies compare on the same queries."""
    labels = checks.check_labels(labels, len(labels), torch.device("cpu"))
    checks.integer(shots, "shots", 1)
    g = torch.Generator().manual_seed(seed)
    support = []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) <= shots:
            raise ValueError(f"class {int(c)} has {len(idx)} examples: {shots} shots would leave no query; lower shots")
        support.append(idx[torch.randperm(len(idx), generator=g)[:shots]])
    support = torch.cat(support).sort().values
    is_support = torch.zeros(len(labels), dtype=torch.bool)
    is_support[support] = True
    return support, torch.nonzero(~is_support).flatten()


def novel_class_accuracy(emb, labels, novel, *, scenario: str = "joint", shots: int = 5, base_weights=None,
                         normalize: bool = True, seed: int = 0) -> dict:
    """Classify test embeddings with imprinted weights for the ``novel`` classes.

    Every class of ``labels`` gives ``shots`` support examples (:func:`support_query`); the rest are
    the queries.  ``scenario="joint"``: all classes compete; the base classes (those not in
    ``novel``) use ``base_weights`` (rows in sorted class order: a trained classifier) or, when it is
    ``None`` (a metric-learning embedding has no classifier), imprinted weights too.
    ``scenario="disjoint"``: only the novel classes, on their queries.  ``normalize``: cosine scores
    with normalised imprinting (the paper), or raw dot products with raw-mean imprinting.

    Returns ``accuracy``, ``novel_accuracy`` and (joint) ``base_accuracy``, the ``confusion`` matrix
    (rows true, columns predicted, in the order of ``classes``), ``classes`` and ``weights``.
    """
    emb = checks.as_float_tensor(emb, "emb (embeddings, N x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device).cpu()
    checks.choice(scenario, "scenario", ("joint", "disjoint"))
    present = torch.unique(labels)
    novel = torch.as_tensor(sorted({int(c) for c in novel}), dtype=labels.dtype)
    if len(novel) == 0 or not bool(torch.isin(novel, present).all()):
        raise ValueError(f"novel must name classes present in labels {present.tolist()}; got {novel.tolist()}")
    base = present[~torch.isin(present, novel)]
    support, query = support_query(labels, shots, seed=seed)
    from_novel = support[torch.isin(labels[support], novel)]
    w_novel, _ = imprint(emb[from_novel], labels[from_novel], normalize=normalize)
    if scenario == "disjoint":
        weights, classes = w_novel, novel
        query = query[torch.isin(labels[query], novel)]
    elif base_weights is None:
        weights, classes = imprint(emb[support], labels[support], normalize=normalize)
    else:
        base_weights = checks.as_float_tensor(base_weights, "base_weights (K x D)", 2).to(emb)
        if base_weights.shape != (len(base), emb.shape[1]):
            raise ValueError(f"base_weights must be {len(base)} x {emb.shape[1]} (one row per base class "
                             f"{base.tolist()}); got {tuple(base_weights.shape)}")
        weights, classes = torch.cat([base_weights, w_novel]), torch.cat([base, novel])
    q = emb[query]
    scores = (F.normalize(q, dim=1) @ F.normalize(weights, dim=1).T) if normalize else q @ weights.T
    pred = classes[scores.argmax(dim=1).cpu()]
    truth = labels[query]
    correct = pred == truth
    row = (truth[:, None] == classes[None, :]).int().argmax(dim=1)     # position of each class in `classes`
    col = (pred[:, None] == classes[None, :]).int().argmax(dim=1)
    confusion = torch.bincount(row * len(classes) + col, minlength=len(classes) ** 2)
    confusion = confusion.reshape(len(classes), len(classes)).numpy()
    is_novel = torch.isin(truth, novel)
    out = {"accuracy": float(correct.double().mean()), "novel_accuracy": float(correct[is_novel].double().mean()),
           "confusion": confusion, "classes": classes.numpy(), "weights": weights.detach()}
    if scenario == "joint":
        out["base_accuracy"] = float(correct[~is_novel].double().mean()) if bool((~is_novel).any()) else math.nan
    return out


# --------------------------------------------------------------------------------------------------
# Training a normalised-softmax classifier
# --------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class ClassifierRun(Run):
    """A trained embedding network and its class weights (rows in the order of ``classes``):
    ``history`` per step (loss, norm_err, max_logit), ``evals`` (iter, train_loss, mean_weight,
    cos_y, base_acc, joint_acc / disjoint_acc) and the per-sample weights of each evaluation."""

    net: torch.nn.Module | None = None
    weight: torch.Tensor | None = None
    classes: np.ndarray | None = None
    snapshots: dict = field(default_factory=dict)   # iteration -> per-sample weights over the training split

    @property
    def normalized(self) -> bool:
        return self.params["mode"] != "none"

    def embed(self, x) -> torch.Tensor:
        """Embeddings of ``x`` (unit-norm unless the mode is ``"none"``)."""
        self.net.eval()
        with torch.no_grad():
            return self.net(x)

    def novel(self, split: data.Split, *, scenario: str = "joint", shots: int = 5, seed: int = 0) -> dict:
        """:func:`novel_class_accuracy` of this run on ``split``'s test images."""
        return novel_class_accuracy(self.embed(split.x_test), split.y_test, novel_classes(split), scenario=scenario,
                                    shots=shots, base_weights=self.weight, normalize=self.normalized, seed=seed)

    def centre_cosine(self, split: data.Split) -> float:
        """Mean over the trained classes of the cosine between a class's trained weight and its
        imprinted weight (the mean direction of its training embeddings): 1 when every weight sits
        in the middle of its cluster."""
        w_imprinted, _ = imprint(self.embed(split.x_train), split.y_train, normalize=self.normalized)
        return float(F.cosine_similarity(w_imprinted, self.weight, dim=1).mean())

    def __repr__(self) -> str:
        p = self.params
        accs = ", ".join(f"{k[:-4]} acc {self.final(k):.3f}" for k in ("joint_acc", "disjoint_acc") if k in self.evals)
        return (f"ClassifierRun({p['data']}, {p['mode']}, s={p['s']:.3g}, d={p['dim']}, {p['iters']} it: "
                f"balanced train loss {self.final('train_loss'):.3f}, {accs})")


def train_classifier(data_name: str = "digits_8+2", *, s: float = 10.0, dim: int = 32, iters: int = 300,
                     lr: float = 2e-3, batch: int = 128, mode: str = "project", seed: int = 0,
                     eval_every: int = 25, shots: int = 5, progress=True, cache: bool = True) -> ClassifierRun:
    """Train the lessons' network (:func:`lossviz.models.model_for`: MLP 64 -> 128 -> ``dim`` for
    digits) with a normalised softmax at scale ``s`` on the training classes (Adam, random batches).

    ``mode`` (:data:`MODES`): ``"project"`` renormalises ``W`` after every step and computes the
    logits with ``W`` as it is (Keras' unit-norm constraint, the paper's code); ``"forward"``
    normalises ``W`` inside the logits (:meth:`lossviz.margins.CosineClassifier.forward`);
    ``"none"``: plain softmax on raw features and weights (no bias; ``s`` is not used).

    Every iteration records the mini-batch ``loss``, ``norm_err`` (``max_k ||w_k| - 1|``) and
    ``max_logit`` (``max |logit|`` of the batch) in ``history``.  Before training, every
    ``eval_every`` iterations and at the end, ``evals`` records ``train_loss``
    (:func:`class_balanced_loss` over the whole training split, float64), ``mean_weight`` (mean
    per-sample weight ``s (1 - p_y)``, ``1 - p_y`` for ``"none"``), ``cos_y`` (mean cosine of a
    training feature and its own class weight), test ``base_acc`` (trained classes only) and
    ``joint_acc`` / ``disjoint_acc`` (with ``shots``-shot imprinting); ``snapshots[it]`` keeps the
    per-sample weights of each evaluation.  Cached by parameters
    (:func:`lossviz.train.memo`).
    """
    checks.choice(data_name, "dataset", sorted(data.DATASETS))
    checks.choice(mode, "mode", MODES)
    params = dict(data=data_name, s=checks.positive(s, "s (the scale)"), dim=checks.integer(dim, "dim", 1),
                  iters=checks.integer(iters, "iters", 1), lr=checks.positive(lr, "lr"), batch=checks.integer(batch, "batch", 1),
                  mode=mode, seed=seed, eval_every=checks.integer(eval_every, "eval_every", 1),
                  shots=checks.integer(shots, "shots", 1))
    return T.memo("hypersphere.train_classifier", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> ClassifierRun:
    split = data.load(p["data"])
    classes = torch.unique(split.y_train)
    y = torch.searchsorted(classes, split.y_train)            # class ids -> rows of W
    trainer = Trainer(lambda: _network(split.x_train, p["dim"], len(classes), p["mode"]), lr=p["lr"], seed=p["seed"])
    net, clf = trainer.model
    g = torch.Generator().manual_seed(p["seed"])
    s, mode = p["s"], p["mode"]
    scale = 1.0 if mode == "none" else s                      # logits = scale * head(e)
    head = _head(clf, mode)
    weights = []                                             # per-sample weights of each evaluation

    def evaluate() -> dict:
        row, w = _evaluate(net, clf, head, scale, split, y, classes, p["shots"], mode)
        weights.append(w)
        return row

    def step(it: int) -> dict:
        idx = torch.randperm(len(y), generator=g)[:p["batch"]]
        out = head(net(split.x_train[idx]))
        loss = F.cross_entropy(out, y[idx]) if mode == "none" else margins.normface_loss(out, y[idx], s=s)
        trainer.update(loss)
        if mode == "project":
            clf.project()
        with torch.no_grad():
            return {"loss": loss.detach(), "norm_err": (clf.weight.norm(dim=1) - 1).abs().max(),
                    "max_logit": scale * out.abs().max()}

    history, evals, seconds = trainer.run(step, p["iters"], evaluate=evaluate, eval_every=p["eval_every"],
                                          desc=MODE_LABELS[mode] + ("" if mode == "none" else f", s={s:g}"),
                                          progress=progress)
    net.eval()
    return ClassifierRun(params=p, history=history, evals=evals, seconds=seconds, net=net,
                         weight=clf.weight.detach().clone(), classes=classes.numpy(),
                         snapshots=dict(zip(evals["iter"].tolist(), weights)))


def _network(x: torch.Tensor, dim: int, K: int, mode: str) -> tuple[torch.nn.Module, margins.CosineClassifier]:
    """The embedding network and the K class weights of :func:`train_classifier`."""
    net = models.model_for(x, dim)
    if mode == "none":
        net = net[:-1]                                         # drop the L2 normalisation
    return net, margins.CosineClassifier(dim, K)


def _head(clf: margins.CosineClassifier, mode: str):
    """``head(e)``: cos θ (B x K) in the normalised modes, raw logits e W^T for "none"."""
    if mode == "none":
        return lambda e: e @ clf.weight.T
    if mode == "project":                                     # W is unit-norm after every step: use it as it is
        return lambda e: F.normalize(e, dim=1) @ clf.weight.T
    return clf


def _evaluate(net, clf, head, scale: float, split: data.Split, y, classes, shots: int,
              mode: str) -> tuple[dict, np.ndarray]:
    """One evaluation of :func:`train_classifier` (the network in eval mode, no gradient): the row
    of ``evals`` and the per-sample weights ``scale (1 - p_y)`` over the training split."""
    base_test = torch.isin(split.y_test, classes)
    novel = novel_classes(split)
    e_train = net(split.x_train)
    logits = scale * head(e_train).double()
    K = len(classes)
    w = scale * (1 - logits.softmax(dim=1).gather(1, y[:, None]).squeeze(1))          # -dL/dcos θ_y
    cos = F.normalize(e_train, dim=1) @ F.normalize(clf.weight, dim=1).T
    row = {"train_loss": _class_mean(F.cross_entropy(logits, y, reduction="none"), y, K),   # class_balanced_loss
           "mean_weight": w.mean(), "cos_y": cos.gather(1, y[:, None]).mean()}
    e_test = net(split.x_test)
    if bool(base_test.any()):
        pred = classes[head(e_test[base_test]).argmax(dim=1)]
        row["base_acc"] = (pred == split.y_test[base_test]).double().mean()
    for sc in [sc for sc, ok in (("joint", bool(base_test.any())), ("disjoint", True)) if ok and novel]:
        row[f"{sc}_acc"] = novel_class_accuracy(e_test, split.y_test, novel, scenario=sc, shots=shots,
                                                base_weights=clf.weight, normalize=mode != "none")["accuracy"]
    return {key: float(v) for key, v in row.items()}, w.numpy()


# --------------------------------------------------------------------------------------------------
# The comparison of the claim
# --------------------------------------------------------------------------------------------------

#: The pair-loss baselines and their knobs (similarity form of lossviz.pairs): semi-hard triplet with
#: margin 0.1 on cosines (= FaceNet's 0.2 on squared distances of unit vectors, d^2 = 2 - 2S) and
#: contrastive with threshold 0.5 on cosines (= a margin of 1 on distances, d = 1 <=> S = 0.5).
PAIR_BASELINES = {"triplet": dict(margin=0.1, mining="semihard"), "contrastive": dict(lam=0.5)}
#: What :func:`novel_benchmark` can report: the accuracy over all queries, or over those of one kind.
BENCHMARK_METRICS = ("accuracy", "novel_accuracy", "base_accuracy")


def novel_benchmark(data_name: str = "digits_8+2", *, scenario: str = "joint", seeds=tuple(range(8)), shots: int = 5,
                    s: float = 10.0, dim: int = 32, iters: int = 300, lr: float = 2e-3, batch: int = 128,
                    pair_losses: dict | None = None, metric: str = "accuracy", eval_every: int | None = None) -> dict:
    """Novel-class accuracy of each method, one value per seed, on the same images with the same
    budget (network, initialisation, ``iters`` Adam steps at ``lr``, about ``batch`` images a step):

    * normalised softmax (:func:`train_classifier`, ``mode="project"``) + imprinting, the paper;
    * unnormalised softmax (``mode="none"``) + raw-mean imprinting;
    * each pair loss of ``pair_losses`` (``{name: knobs}``; default: the triplet of
      :data:`PAIR_BASELINES`), trained by
      :func:`lossviz.train.train` on P x K batches (``P = min(#classes, batch // 4)``,
      ``K = batch // P``); they have no classifier, so every class is imprinted;
    * the untrained network: the normalised softmax's network at its initialisation (the same
      seed), every class imprinted the same way -- the control that says whether training helped;
    * raw pixels (no training), imprinted the same way.

    Seed ``i`` sets the initialisation, the batches and the support examples (``shots`` per class,
    the same for every method), so the methods compare seed by seed (:func:`lossviz.metrics.paired_difference`).
    The classifier runs evaluate every ``eval_every`` steps (default: only before and after
    training, which is all the benchmark reads; evaluations do not change the training).  Returns ``{method: array of one number per seed}``: ``metric``
    (:data:`BENCHMARK_METRICS`) of :func:`novel_class_accuracy`.  Every run is cached, so asking
    for another metric costs no training.
    """
    checks.choice(metric, "metric", BENCHMARK_METRICS)
    split = data.load(data_name)
    novel = novel_classes(split)
    n_base = len(torch.unique(split.y_train))
    p = min(n_base, max(batch // 4, 2))
    k = max(batch // p, 2)
    pair_losses = {"triplet": PAIR_BASELINES["triplet"]} if pair_losses is None else pair_losses
    out = {"normalised softmax": [], "unnormalised softmax": [], **{name: [] for name in pair_losses},
           "untrained network": [], "raw pixels": []}
    for seed in seeds:
        for mode, name in (("project", "normalised softmax"), ("none", "unnormalised softmax")):
            run = train_classifier(data_name, s=s, dim=dim, iters=iters, lr=lr, batch=batch, mode=mode, seed=seed,
                                   shots=shots, eval_every=iters if eval_every is None else eval_every, progress=False)
            out[name].append(run.novel(split, scenario=scenario, shots=shots, seed=seed)[metric])
        for loss, knobs in pair_losses.items():
            run = T.train(loss, data=data_name, dim=dim, iters=iters, p=p, k=k, lr=lr, seed=seed, eval_every=iters,
                          progress=False, **knobs)
            out[loss].append(novel_class_accuracy(run.emb_after, run.y_test, novel, scenario=scenario, shots=shots,
                                                  seed=seed)[metric])
        out["untrained network"].append(novel_class_accuracy(_untrained(split.x_train, dim, seed)(split.x_test),
                                                             split.y_test, novel, scenario=scenario, shots=shots,
                                                             seed=seed)[metric])
        out["raw pixels"].append(novel_class_accuracy(split.x_test, split.y_test, novel, scenario=scenario,
                                                      shots=shots, seed=seed)[metric])
    return {name: np.asarray(v) for name, v in out.items()}


def _untrained(x: torch.Tensor, dim: int, seed: int) -> torch.nn.Module:
    """The network :func:`train_classifier` starts from with ``seed`` (the same draws: the Trainer
    seeds torch, then builds the network first), in eval mode, without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = models.model_for(x, dim).eval()
    return net.requires_grad_(False)


# --------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------

def class_color(c: int):
    """The colour of digit / class ``c`` (tab10, as :func:`lossviz.plots.circle`)."""
    return mpl.colormaps["tab10"](int(c) % 10)


def proxy_heatmap(ax, weights, labels, *, title: str = "per-proxy weights", colorbar: bool = True):
    r"""Signed sample-proxy weights :math:`\partial L/\partial\cos\theta_{ik}` (B x K): blue pulls a
    sample towards its own class weight (outlined), vermillion pushes it from the others."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    Wn = plots.as_numpy(weights)
    y = plots.as_numpy(labels).astype(int)
    vmax = max(np.abs(Wn).max(), 1e-12)
    im = ax.imshow(Wn, cmap=plots.WEIGHT_CMAP, norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto")
    for i, c in enumerate(y):
        ax.add_patch(Rectangle((c - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=plots.POS_COLOR, lw=1.2))
    ax.set(title=title, xlabel="class weight (proxy) k", ylabel="sample i")
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=r"$\partial L/\partial \cos\theta_{ik}$")
    return im


def bound_view(ax, Ks=(8, 10), *, what: str = "floor", s_max: float = 64.0, measured: dict | None = None):
    """:func:`capacity_bound` against ``s`` (log axis) for each ``K``: the loss floor (log axis) or
    ``p_y`` at the optimum.  ``measured`` = ``{K: (s values, class-balanced training losses)}``
    marks trained runs on the floor."""
    s = np.logspace(0, np.log10(s_max), 200)
    for K, ls in zip(Ks, ("-", "--", ":", "-.")):
        p_y, floor = capacity_bound(s, K)
        ax.plot(s, floor if what == "floor" else p_y, ls=ls, color=plots.POS_COLOR if what == "p" else "k",
                label=f"bound, K = {K}")
        if measured and K in measured and what == "floor":
            ms, ml = measured[K]
            ax.plot(ms, ml, ls="none", marker="o" if ls == "-" else "s", mfc="none", color=plots.NEG_COLOR,
                    label=f"measured, K = {K}")
    ax.set_xscale("log")
    if what == "floor":
        ax.set_yscale("log")
        ax.set(ylim=(1e-4, 3), ylabel="class-balanced loss", title="capacity bound: the loss floor")
    else:
        ax.set(ylim=(0, 1.02), ylabel="$p_y$ at the optimum", title="best reachable $p_y$")
    ax.set(xlabel="scale s")
    ax.legend(loc="lower right" if what == "p" else "upper right")
    return ax


#: Line style of each accuracy in :func:`curves`.
ACC_STYLES = {"base_acc": ":", "joint_acc": "-", "disjoint_acc": "--"}


def curves(axes, runs: dict, *, bound: bool = True):
    """Learning curves of :class:`ClassifierRun` s (``{label: run}``), three panels: the
    mini-batch loss (thin) and the class-balanced training loss (dots) with the capacity bound
    (dashed); test accuracy (trained classes, and 10-way joint / novel-only with imprinting); the
    mean per-sample weight ``s (1 - p_y)``."""
    axes = np.ravel(axes)
    colors = mpl.colormaps["viridis"](np.linspace(0, 0.85, max(len(runs), 1)))
    for color, (label, run) in zip(colors, runs.items()):
        h, e, p = run.history, run.evals, run.params
        axes[0].plot(h["iter"], h["loss"], color=color, lw=0.6, alpha=0.5)
        axes[0].plot(e["iter"], e["train_loss"], ".-", color=color, label=label)
        if bound and run.normalized:
            axes[0].axhline(capacity_bound(p["s"], len(run.classes))[1], color=color, ls="--", lw=1)
        if len(axes) > 1:
            for key, ls in ACC_STYLES.items():
                if key in e and (key != "disjoint_acc" or "joint_acc" not in e):
                    axes[1].plot(e["iter"], e[key], ls=ls, marker=".", color=color)
        if len(axes) > 2:
            axes[2].plot(e["iter"], e["mean_weight"], ".-", color=color, label=label)
    axes[0].set(yscale="log", xlabel="iteration", ylabel="loss", title="training loss (dashed: bound)")
    axes[0].legend(loc="best")
    if len(axes) > 1:
        axes[1].set(ylim=(0, 1.02), xlabel="iteration", ylabel="test accuracy",
                    title="accuracy (base: trained classes only)")
        shown = [k for k in ACC_STYLES if any(k in r.evals for r in runs.values())]
        if "joint_acc" in shown and "disjoint_acc" in shown:
            shown.remove("disjoint_acc")
        for key in shown:                                      # line styles say which accuracy
            axes[1].plot([], [], ls=ACC_STYLES[key], color="k", label=key[:-4])
        axes[1].legend(loc="lower right")
    if len(axes) > 2:
        axes[2].set(yscale="log", xlabel="iteration", ylabel="mean of $s(1-p_y)$",
                    title="per-sample weight, training split")
    return axes


def weight_histograms(axes, runs: dict, iterations=None):
    """Histograms of the per-sample weight ``s (1 - p_y)`` over the training split, one panel per
    run (``{label: run}``), one line per recorded iteration: how fast samples stop contributing."""
    bins = np.logspace(-6, np.log10(64), 41)
    for ax, (label, run) in zip(np.ravel(axes), runs.items()):
        its = iterations or sorted(run.snapshots)[:: max(1, len(run.snapshots) // 3)]
        colors = mpl.colormaps["viridis"](np.linspace(0, 0.85, len(its)))
        for color, it in zip(colors, its):
            w = np.clip(run.snapshots[it], bins[0], None)
            ax.hist(w, bins=bins, histtype="step", color=color, lw=1.5, label=f"iteration {it}")
        ax.axvline(run.params["s"], color=plots.MUTED, ls=":", lw=1)
        ax.set(xscale="log", xlabel="$s(1-p_y)$ (per-sample weight)", ylabel="training images", title=label)
    np.ravel(axes)[0].legend(loc="upper left", fontsize=9)
    return axes


def sphere_view(ax, run: ClassifierRun, split: data.Split, *, shots: int = 5, seed: int = 0, title: str = ""):
    """A 2-D embedding with its class weights: the test images, the trained weights (solid arrows)
    and the imprinted novel weights (dashed).  Normalised runs: on the circle, with the class of
    each direction as a coloured ring (the class sectors).  Unnormalised runs: in the plane, the
    coloured background is the predicted class, arrows drawn to one common scale (norms matter)."""
    from matplotlib.patches import Circle, Wedge

    if run.params["dim"] != 2:
        raise ValueError(f"sphere_view draws 2-D embeddings; this run has dim = {run.params['dim']}")
    res = run.novel(split, scenario="joint", shots=shots, seed=seed)
    W, classes = plots.as_numpy(res["weights"]), res["classes"]
    novel = set(novel_classes(split))
    emb, y = run.embed(split.x_test), split.y_test
    if run.normalized:
        dots = plots.circle(ax, emb, y, title=title or "normalised: on the circle")
        ang = np.linspace(-np.pi, np.pi, 721)
        owner = classes[(np.stack([np.cos(ang), np.sin(ang)], 1) @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T).argmax(1)]
        edges = np.flatnonzero(np.diff(owner)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(ang) - 1]):
            ax.add_patch(Wedge((0, 0), 1.53, np.degrees(ang[a]), np.degrees(ang[b]), width=0.1,
                               color=class_color(owner[a]), alpha=0.9))
        arrows = W / np.linalg.norm(W, axis=1, keepdims=True) * 0.9
    else:
        z = plots.as_numpy(emb)
        r = np.percentile(np.linalg.norm(z, axis=1), 95) * 1.15
        g = np.linspace(-r, r, 161)
        gx, gy = np.meshgrid(g, g)
        owner = classes[(np.stack([gx.ravel(), gy.ravel()], 1) @ W.T).argmax(1)].reshape(gx.shape)
        ax.imshow(owner, origin="lower", extent=(-r, r, -r, r), cmap="tab10", vmin=0, vmax=9, alpha=0.22)
        dots = ax.scatter(z[:, 0], z[:, 1], c=plots.as_numpy(y), cmap="tab10", vmin=0, vmax=9, s=9, alpha=0.7)
        ax.add_patch(Circle((0, 0), 0.02 * r, color="k"))
        ax.set(xlim=(-r, r), ylim=(-r, r), aspect="equal", xlabel="embedding $e_1$", ylabel="embedding $e_2$",
               title=title or "unnormalised: in the plane")
        ax.grid(False)
        arrows = W / np.linalg.norm(W, axis=1).max() * 0.9 * r
    for c, a in zip(classes, arrows):
        dashed = int(c) in novel
        ax.annotate("", xy=a, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", lw=2.2, color=class_color(c),
                                                               ls="--" if dashed else "-", shrinkA=0, shrinkB=0))
        ax.text(*(a * 1.1), str(int(c)) + ("*" if dashed else ""), ha="center", va="center", fontsize=10,
                fontweight="bold" if dashed else "normal")
    return dots, res


def weight_norm_view(ax, result: dict, novel, *, title: str = "class-weight norms"):
    """Bar chart of the norms of the classifier's rows in :func:`novel_class_accuracy`'s result:
    trained base weights (filled) and imprinted novel weights (hatched)."""
    norms = plots.as_numpy(result["weights"].norm(dim=1))
    classes = result["classes"]
    for c, v in zip(classes, norms):
        new = int(c) in set(novel)
        ax.bar(str(int(c)) + ("*" if new else ""), v, color=class_color(c), hatch="//" if new else None,
               edgecolor="k" if new else class_color(c))
    ax.set(xlabel="class (* = imprinted)", ylabel="$\\|w_k\\|$", title=title)
    return norms


def confusion_view(ax, result: dict, novel, *, title: str = "joint scenario: confusion"):
    """Row-normalised confusion matrix of :func:`novel_class_accuracy`, the novel classes' rows and
    columns set apart by lines: base<->novel errors lie off the diagonal blocks."""
    conf = result["confusion"] / np.maximum(result["confusion"].sum(1, keepdims=True), 1)
    classes = list(result["classes"])
    im = ax.imshow(conf, cmap="Greys", vmin=0, vmax=1)
    n_base = sum(int(c) not in set(novel) for c in classes)
    if 0 < n_base < len(classes):
        for f in (ax.axhline, ax.axvline):
            f(n_base - 0.5, color=plots.NEG_COLOR, lw=1.5)
    ticks = range(len(classes))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=classes, yticklabels=classes, xlabel="predicted digit",
           ylabel="true digit", title=f"{title} (acc {result['accuracy']:.3f})")
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="fraction of the row")
    return im


def benchmark_view(axes, tables: dict, *, chance: dict | None = None):
    """One panel per :func:`novel_benchmark` result (``{title: {method: per-seed values}}``): the
    mean of each method as a bar, each seed as a dot (seeds in order, left to right, so the same
    seed sits at the same place in every bar); ``chance[title]`` as a dashed line."""
    for ax, (title, table) in zip(np.ravel(axes), tables.items()):
        for i, (name, values) in enumerate(table.items()):
            ax.bar(i, values.mean(), color=METHOD_COLORS.get(name, plots.MUTED), edgecolor="k", lw=0.6)
            ax.plot(i + np.linspace(-0.25, 0.25, len(values)) * (len(values) > 1), values, "o", color="k", ms=3)
        if chance and title in chance:
            ax.axhline(chance[title], color=plots.MUTED, ls="--", lw=1)
            ax.text(len(table) - 0.5, chance[title], "chance", ha="right", va="bottom", fontsize=8, color=plots.MUTED)
        ax.set_xticks(range(len(table)), [n.replace(" ", "\n", 1) for n in table], fontsize=9)
        ax.set(ylim=(0, 1.02), ylabel="test accuracy", title=title)
    return axes


# --------------------------------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------------------------------

def example_cosines(K: int) -> tuple[torch.Tensor, int]:
    """One sample's cosines to ``K`` class weights, for the pure-maths panel: the target (class 0)
    at 0.6, one close wrong class at 0.5, the others spread down to -0.3."""
    wrong = torch.linspace(0.5, -0.3, K - 1, dtype=torch.float64)
    return torch.cat([torch.tensor([0.6], dtype=torch.float64), wrong]), 0


def bound_panel(s: float = 10.0, K: int = 8):
    """Pure maths, (s, K): the best reachable ``p_y`` (:func:`capacity_bound`), the per-proxy
    weights ``dL/dcos θ_k = s (p_k - 1[k=y])`` of one sample (:func:`lossviz.margins.proxy_weights`),
    and its per-sample weight ``s (1 - p_y)`` as its target cosine moves."""
    import ipywidgets as W

    from ..widgets import Panel

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {"s": W.FloatLogSlider(value=s, base=10, min=0, max=np.log10(64), step=0.02, description="scale s",
                                      readout_format=".3g", **style),
                "K": W.IntSlider(value=K, min=2, max=20, description="classes K", **style)}
    fig, axes = plots.new_figure(3, width=4.0, height=3.4)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
    K_max = controls["K"].max
    # The artists, made once; a control change only moves them.
    ax_p, ax_w, ax_s = axes[0]
    bound_view(ax_p, (K,), what="p")
    (bound_line,), bound_label = ax_p.get_lines(), ax_p.get_legend().get_texts()[0]
    (here,) = ax_p.plot([s], [0.0], "o", color=plots.POS_COLOR)
    bars = ax_w.bar(range(K_max), np.zeros(K_max), color=[plots.POS_COLOR] + [plots.NEG_COLOR] * (K_max - 1))
    ax_w.set(xlabel="class k (0 = target; cos falls with k)", ylabel=r"$\partial L/\partial\cos\theta_k$",
             title="per-proxy weights of one sample")
    (sample_line,) = ax_s.plot(grid.numpy(), np.zeros(len(grid)), color=plots.POS_COLOR)
    ax_s.axvline(float(example_cosines(K)[0][1]), color=plots.NEG_COLOR, ls=":", label="closest wrong class")
    ax_s.set(xlabel=r"target cosine $\cos\theta_y$", ylabel="$s(1-p_y)$", title="per-sample weight")
    ax_s.legend(loc="upper right")

    def draw(v):
        s_, K_ = float(v["s"]), int(v["K"])
        p_y, floor = capacity_bound(s_, K_)
        bound_line.set_ydata(capacity_bound(bound_line.get_xdata(), K_)[0])
        bound_label.set_text(f"bound, K = {K_}")
        here.set_data([s_], [p_y])
        ax_p.set_title(f"best $p_y$ = {p_y:.4f}, loss floor {floor:.2g}")
        cos, y = example_cosines(K_)
        w = margins.proxy_weights(margins.normface_loss, cos[None], torch.tensor([y]), signed=True, s=s_)[0]
        for k, bar in enumerate(bars):
            bar.set_height(float(w[k]) if k < K_ else 0.0)
            bar.set_visible(k < K_)
        ax_w.set(xlim=(-0.4 - 0.05 * K_, K_ - 0.6 + 0.05 * K_), ylim=(-1.05 * s_, 1.05 * s_))
        cols = cos.repeat(len(grid), 1)
        cols[:, y] = grid
        per_sample = margins.proxy_weights(margins.normface_loss, cols, torch.full((len(grid),), y), s=s_)[:, y]
        per_sample = per_sample * len(grid)                    # proxy_weights differentiates the batch mean
        sample_line.set_ydata(per_sample.numpy())
        ax_s.set_ylim(0, 1.05 * s_)
        return {"p_y": p_y, "floor": floor, "weights": w, "per_sample": per_sample,
                "status": f"s = {s_:.3g}, K = {K_}: the target proxy gets {float(w[y]):.3g}, the closest wrong "
                          f"class {float(w[1]):.3g} of the {float(w[1:].sum()):.3g} pushed in all"}

    return Panel(controls, fig, draw)


def training_panel(data_name: str = "digits_8+2", *, s: float = 10.0, dim: int = 32, shots: int = 5,
                mode: str = "project", iters: int = 300, seed: int = 0, autorun: bool = True):
    """A Train button over :func:`train_classifier` (:func:`lossviz.widgets.run_panel`): scale,
    embedding dimension, imprinting shots and the normalisation switch.  Draws the learning curves
    and, for ``dim = 2``, the circle (or plane) with the weights; otherwise the joint confusion."""
    import ipywidgets as W

    from ..widgets import run_panel

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {"s": W.FloatLogSlider(value=s, base=10, min=0, max=np.log10(64), step=0.02, description="scale s",
                                      readout_format=".3g", **style),
                "dim": W.Dropdown(options=sorted({2, 8, 16, 32, 64, dim}), value=dim, description="dim",
                                  layout=W.Layout(width="140px")),
                "shots": W.IntSlider(value=shots, min=1, max=20, description="imprinting shots", **style),
                "mode": W.Dropdown(options=[(MODE_LABELS[m], m) for m in MODES], value=mode, description="W")}
    split = data.load(data_name)
    novel = novel_classes(split)

    def run(values, progress):
        return train_classifier(data_name, s=values["s"], dim=values["dim"], mode=values["mode"], iters=iters,
                                seed=seed, progress=progress)

    def draw(axes, result, values):
        curves(axes[0, :2], {MODE_LABELS[values["mode"]]: result})
        if values["dim"] == 2:
            _, res = sphere_view(axes[0, 2], result, split, shots=values["shots"])
        else:
            res = result.novel(split, scenario="joint", shots=values["shots"])
            confusion_view(axes[0, 2], res, novel)
        return {"joint": res, "status": f"{result!r}; joint accuracy with {values['shots']} shots: "
                                        f"{res['accuracy']:.3f} (novel images {res['novel_accuracy']:.3f})"}

    return run_panel(controls, run, draw, ncols=3, width=4.2, height=3.6, autorun=autorun)
