r"""Learning by sorting: GroCo (Shvetsova, Petersen, Kukleva, Schiele, Kuehne, ICCV 2023), in miniature.

A contrastive loss asks for an *ordering*: each view should be more similar to its other views
(positives) than to any other image (negatives).  GroCo trains on that ordering directly.  For one
anchor it sorts its similarities with a **differentiable sorting network** and penalises the
probability that a positive ends up among the negatives' ranks.

The pieces, each checked against a loop in ``tests/test_groco.py``:

* **Sorting networks** (:func:`sorting_network`): the odd-even transposition network (n layers of
  neighbour comparators, the one GroCo uses) and the bitonic network (``log2(n)(log2(n)+1)/2``
  layers), as lists of layers of comparators ``(lo, hi)``: the min goes to wire ``lo``, the max to
  wire ``hi``.
* **The relaxed comparator** (:func:`soft_step`): with ``v = steepness * (b - a)`` for the values
  ``a`` on wire lo and ``b`` on wire hi, ``alpha = F(v)`` is the probability that the pair is
  already in order, with ``F`` a Cauchy CDF (``atan(v)/pi + 1/2``, GroCo's choice) or a logistic one
  (``sigmoid(v)``).  Then ``min' = alpha a + (1 - alpha) b``, ``max' = (1 - alpha) a + alpha b``.
* **The soft permutation** (:func:`soft_sort`): the same alpha mixes the two wires' columns of
  ``P_soft`` (which starts as the identity).  ``P_soft[i, r]`` is the probability that input ``i``
  ends at rank ``r`` (0 = smallest).  Every comparator is a doubly stochastic mix, so every row
  and every column of ``P_soft`` sums to 1.  As ``steepness -> inf`` it becomes the hard permutation.
* **The GroCo loss** (:func:`groco_loss`), written ``loss(S, labels, **knobs)`` on the similarity
  matrix like every loss of lossviz, so that :func:`lossviz.pair_weights` gives its pair weights.
* **The official control** (:func:`topk_nt_xent_loss`): NT-Xent over each anchor's top-k negatives
  with stop-grad (the repository's ``simclr_2views_top10neg_stop_grad`` baseline): GroCo's selection
  of hard negatives without its sorting.
* **The paper's k-NN evaluation** (:func:`weighted_knn_accuracy`): 20 neighbours voting with weight
  ``exp(s / 0.07)``, not a majority vote.
* **Training** (:func:`train_groco`): SimCLR-style self-supervised runs with V views on digits or
  MNIST-1D, GroCo, NT-Xent or the control, with or without stop-grad, on :class:`lossviz.train.Trainer`
  and :func:`lossviz.train.memo`.
* **Pictures and panels**: :func:`draw_network`, :func:`permutation_heatmap`, :func:`sorting_panel`
  (pure maths), :func:`training_panel` (a Train button).

We follow the official code (``ninatu/learning_by_sorting``, ``losses/groco.py``, which calls
``diffsort``'s ``DiffSortNet('odd_even', n, steepness, interpolation_type='cauchy')``) where the
paper leaves details open.  Its defaults: two views (one positive), the top 10 negatives, steepness 1,
stop-grad on.  Our network is vectorised over anchors: a few index operations per layer on one ``[A, n, n + 1]``
tensor (values and permutations together), no ``n x n`` split matrices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .. import augment, checks, contrastive, data, metrics, plots
from ..similarity import masked_logsumexp, pair_batch, similarity, upcast
from ..models import encoder_projector
from ..train import Run, Trainer, memo

#: The relaxed step functions F of a comparator (the CDF of a symmetric distribution).
INTERPOLATIONS = ("cauchy", "logistic")
#: The sorting networks.
NETWORKS = ("odd_even", "bitonic")
#: Which negatives an anchor ranks: the other images of its own view (the official code) or of all views.
NEGATIVES = ("same_view", "all")
#: The losses :func:`train_groco` knows: GroCo, SimCLR's NT-Xent, and the official repository's control
#: (NT-Xent over each anchor's top-k negatives, with stop-grad: :func:`topk_nt_xent_loss`).
LOSSES = ("groco", "nt_xent", "topk_nt_xent")
#: Display names and colours (never the pair colours, which mean pull / push).
NAMES = {"groco": "GroCo", "nt_xent": "NT-Xent (SimCLR)", "topk_nt_xent": "NT-Xent top-k + stop-grad"}
COLORS = {"groco": "#009E73", "nt_xent": plots.LOSS_COLORS["infonce"], "topk_nt_xent": "#5D3A9B"}
#: The temperature of each NT-Xent of the official configs: SimCLR's 0.1 (``configs/baselines/simclr_2views_100ep``)
#: and 0.5 for the top-10 + stop-grad control (``configs/baselines/simclr_2views_top10neg_stop_grad``).
DEFAULT_TAU = {"nt_xent": 0.1, "topk_nt_xent": 0.5}
#: The official k-NN evaluation (``learning_by_sorting/evaluators/knn.py``, after Wu et al. 2018): 20 neighbours,
#: each voting with weight ``exp(s / 0.07)``.
KNN_K, KNN_T = 20, 0.07


# ------------------------------------------------------------------------------------------------
# Sorting networks
# ------------------------------------------------------------------------------------------------

def odd_even_network(n: int) -> tuple:
    """The odd-even transposition network on ``n`` wires: ``n`` layers, layer ``t`` compares the
    neighbours ``(i, i + 1)`` for ``i = t mod 2, t mod 2 + 2, ...``.  A wire without a partner in
    a layer passes through unchanged.  Sorts any input of length n (Knuth, TAOCP 3, 5.3.4)."""
    n = checks.integer(n, "n (the number of wires)", 1)
    return tuple(tuple((i, i + 1) for i in range(t % 2, n - 1, 2)) for t in range(n))


def bitonic_network(n: int) -> tuple:
    """Batcher's bitonic network on ``n`` wires: ``m(m+1)/2`` layers with ``m = ceil(log2 n)``.

    Built on ``N = 2^m`` wires of which the lowest ``N - n`` are dropped, as ``diffsort`` does: a
    comparator that touches a dropped wire is left out.  In a block that sorts downwards the min
    goes to the upper wire, so a comparator here can be ``(lo, hi)`` with ``lo > hi``."""
    n = checks.integer(n, "n (the number of wires)", 1)
    m = math.ceil(math.log2(n)) if n > 1 else 0
    N, off = 2 ** m, 2 ** m - n
    layers = []
    for block in range(m):
        for step in range(block + 1):
            gap = 2 ** (block - step)
            layer = []
            for start in range(0, N, 2 * gap):
                for j in range(gap):
                    a, b = start + j, start + j + gap
                    if a < off or b < off:
                        continue                              # a dropped wire: pass through
                    if ((start + j) // 2 ** (block + 1)) % 2 == 1:
                        a, b = b, a                           # this block sorts downwards
                    layer.append((a - off, b - off))
            layers.append(tuple(layer))
    return tuple(layers)


def sorting_network(n: int, network: str = "odd_even") -> tuple:
    """The layers of comparators ``(lo, hi)`` of ``network`` (one of :data:`NETWORKS`) on ``n`` wires."""
    checks.choice(network, "network", NETWORKS)
    return odd_even_network(n) if network == "odd_even" else bitonic_network(n)


@lru_cache(maxsize=64)
def _layer_indices(n: int, network: str, device: torch.device) -> tuple:
    """Per layer ``(lo, hi)``: the wires that receive each comparator's min and max, as index tensors."""
    return tuple(tuple(torch.as_tensor([c[j] for c in layer], dtype=torch.long, device=device) for j in (0, 1))
                 for layer in sorting_network(n, network))


def soft_step(v, interpolation: str = "cauchy") -> torch.Tensor:
    r"""The relaxed comparator: ``alpha = F(v)``, the probability that a pair with scaled gap
    ``v = steepness * (b - a)`` is already in order (``a`` on the lower wire).

    .. math::  F_{\text{cauchy}}(v) = \tfrac{1}{\pi}\arctan(v) + \tfrac12, \qquad
               F_{\text{logistic}}(v) = \sigma(v) = \frac{1}{1 + e^{-v}}

    Both are symmetric, ``F(-v) = 1 - F(v)``, and tend to the step ``1[v > 0]`` as the steepness grows.
    The Cauchy CDF has heavy tails: two items far apart still swap with probability ``~ 1/(pi |v|)``,
    while the logistic's ``e^{-|v|}`` vanishes fast.  Petersen et al. (ICLR 2022) prefer the Cauchy
    because with it the relaxed sort is monotone (raising an input never lowers a sorted output);
    with the logistic it is not."""
    checks.choice(interpolation, "interpolation", INTERPOLATIONS)
    if interpolation == "cauchy":
        return torch.atan(v) / math.pi + 0.5
    return torch.sigmoid(v)


def network_steps(x: torch.Tensor, steepness: float = 1.0, interpolation: str = "cauchy",
                  network: str = "odd_even"):
    """Run the relaxed network on rows ``x`` ``[A, n]``; yield ``(x, P)`` after every layer.  The inner
    loop of :func:`soft_sort` and :func:`permutation_trace`, which check its arguments.

    The values and the columns of ``P`` are mixed by the same alpha, so they travel together as one
    tensor ``Y[A, wire, item + 1]``: ``Y[a, w, :n] = P[a, :, w]`` and ``Y[a, w, n]`` = the value on wire
    w.  A layer then reads its wire pairs, computes one alpha, and writes ``lo' = b + alpha (a - b)``,
    ``hi' = a - alpha (a - b)`` back (half the operations of updating x and P apart, no ``n x n`` split
    matrices; out-of-place ``index_copy``, so autograd sees every layer)."""
    A, n = x.shape
    Y = torch.cat([torch.eye(n, dtype=x.dtype, device=x.device).expand(A, n, n), x[:, :, None]], 2)
    for lo, hi in _layer_indices(n, network, x.device):
        a, b = Y.index_select(1, lo), Y.index_select(1, hi)
        alpha = soft_step(steepness * (b[..., n:] - a[..., n:]), interpolation)   # P(the pair is in order)
        D = alpha * (a - b)
        Y = Y.index_copy(1, lo, b + D).index_copy(1, hi, a - D)       # min' to wire lo, max' to wire hi
        yield Y[..., n], Y[..., :n].transpose(1, 2)


def _check_knobs(steepness, interpolation, network) -> float:
    """The sorter's knobs, or a ValueError that names the bad one; returns the steepness as a float."""
    checks.choice(interpolation, "interpolation", INTERPOLATIONS)
    checks.choice(network, "network", NETWORKS)
    return checks.positive(steepness, "steepness (of the relaxed comparators)")


def _sort_args(x, steepness, interpolation, network) -> tuple[torch.Tensor, float, bool]:
    x = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    squeeze = x.ndim == 1
    x = checks.as_float_tensor(x[None] if squeeze else x, "x (the values to sort, A x n or n)", 2)
    if x.shape[1] < 1:
        raise ValueError("x must hold at least one value per row")
    return upcast(x), _check_knobs(steepness, interpolation, network), squeeze


def soft_sort(x, *, steepness: float = 1.0, interpolation: str = "cauchy",
              network: str = "odd_even") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Differentiable sorting of each row of ``x`` (``A x n``, or one row ``n``), ascending.

    Returns ``(x_sorted, P_soft)``: the relaxed sorted values and the soft permutation matrices
    (``A x n x n``), ``P_soft[a, i, r]`` = probability that input ``i`` of row ``a`` ends at rank ``r``.
    Each comparator ``(lo, hi)`` of each layer, with ``a = x_lo``, ``b = x_hi``:

    .. math::  \alpha = F(\text{steepness}\,(b - a)),\quad
               x'_{lo} = \alpha a + (1-\alpha) b,\quad x'_{hi} = (1-\alpha) a + \alpha b,\quad
               P'_{:,lo} = \alpha P_{:,lo} + (1-\alpha) P_{:,hi},\quad P'_{:,hi} = (1-\alpha) P_{:,lo} + \alpha P_{:,hi}

    with ``F`` = :func:`soft_step`.  ``x_sorted = x P_soft`` (per row), rows and columns of ``P_soft``
    sum to 1, and for large steepness ``P_soft`` is the hard permutation (``diffsort``'s ``DiffSortNet``
    computes the same values with split / combine matrices).
    """
    x, steepness, squeeze = _sort_args(x, steepness, interpolation, network)
    xs, P = x, torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)
    for xs, P in network_steps(x, steepness, interpolation, network):
        pass
    return (xs[0], P[0]) if squeeze else (xs, P)


def permutation_trace(x, *, steepness: float = 1.0, interpolation: str = "cauchy",
                      network: str = "odd_even") -> torch.Tensor:
    """``P_soft`` after each layer, for pictures: ``(L + 1) x n x n`` for one row ``x`` (``n``), the
    identity first.  Row ``i`` of entry ``t`` is where input ``i`` is (in probability) after layer t."""
    x, steepness, squeeze = _sort_args(x, steepness, interpolation, network)
    if not squeeze:
        raise ValueError("permutation_trace takes one row x (a 1-D tensor of n values)")
    n = x.shape[1]
    return torch.stack([torch.eye(n, dtype=x.dtype, device=x.device)]
                       + [P[0] for _, P in network_steps(x, steepness, interpolation, network)])


def hard_permutation(x) -> torch.Tensor:
    """The hard permutation of the ascending sort of each row: ``P[..., i, r] = 1`` when input ``i``
    has rank ``r`` (ties by index), the limit of :func:`soft_sort` as the steepness grows."""
    x = torch.as_tensor(x)
    ranks = torch.argsort(torch.argsort(x, dim=-1, stable=True), dim=-1)
    return F.one_hot(ranks, x.shape[-1]).to(x.dtype if x.is_floating_point() else torch.float32)


# ------------------------------------------------------------------------------------------------
# The GroCo loss
# ------------------------------------------------------------------------------------------------

def group_ordering_loss(x, k: int, *, steepness: float = 1.0, interpolation: str = "cauchy",
                        network: str = "odd_even", reduction: str = "mean") -> torch.Tensor:
    r"""GroCo's loss on pre-ordered rows ``x = [negatives (k, ascending), positives (P, ascending)]``.

    .. math::
        p^+_i = \operatorname{clip}\Big(\sum_{r \ge k} P^{soft}_{ir}, 0, 1\Big),\quad
        p^-_i = \operatorname{clip}\Big(\sum_{r < k} P^{soft}_{ir}, 0, 1\Big),\quad
        L = \tfrac12\big[\operatorname{BCE}(p^+, y) + \operatorname{BCE}(p^-, 1 - y)\big]

    with ``y_i = 1`` for the positives (the last P inputs), BCE = torch's binary cross-entropy (its
    log clamped at -100), averaged over rows and items.  ``p^+_i`` is the probability that input ``i``
    lands in the top P ranks; the loss is ~0 exactly when every positive ranks above every negative
    (at large steepness).  ``p^- = 1 - p^+`` up to rounding, so both terms are equal; the official
    code computes both and so do we.  ``reduction="none"`` gives one loss per row.
    """
    x, steepness, _ = _sort_args(x, steepness, interpolation, network)
    n = x.shape[1]
    k = checks.integer(k, "k (the number of negatives in each row)", 1, n - 1)
    checks.choice(reduction, "reduction", ("mean", "none"))
    _, P = soft_sort(x, steepness=steepness, interpolation=interpolation, network=network)
    p_pos = P[:, :, k:].sum(2).clamp(0, 1)               # P(input i lands in the top P ranks)
    p_neg = P[:, :, :k].sum(2).clamp(0, 1)
    y = (torch.arange(n, device=x.device) >= k).to(x.dtype).expand_as(p_pos)
    bce = F.binary_cross_entropy(p_pos, y, reduction="none") + F.binary_cross_entropy(p_neg, 1 - y, reduction="none")
    per_row = bce.mean(1) / 2
    return per_row.mean() if reduction == "mean" else per_row


def view_index(labels) -> torch.Tensor:
    """Which view each sample is: the ``v``-th occurrence of a label (in batch order) is view ``v``.
    For :func:`lossviz.augment.two_view_labels` (``0..B-1, 0..B-1``) that is 0 for the first B, 1 after."""
    labels = torch.as_tensor(labels)
    same = labels[:, None] == labels[None, :]
    return torch.tril(same, diagonal=-1).sum(1)


def groco_rows(S, labels, *, topk_neg: int = 10, negatives: str = "same_view") -> tuple[torch.Tensor, int]:
    """The sorting network's input for every anchor (row of ``S``): ``(x, k)`` with
    ``x = [top-k negatives ascending, positives ascending]`` (``A x (k + P)``).

    ``labels`` are instance labels, each item seen the same number V >= 2 of times (V views: P = V - 1
    positives per anchor), as :func:`lossviz.augment.two_view_labels` makes them.  The negatives of an
    anchor are the other items *of its own view* (``negatives="same_view"``, the official code: the
    anchor against the other anchors) or of every view (``"all"``, as SimCLR)."""
    S, pos, neg = pair_batch(S, labels)
    checks.choice(negatives, "negatives", NEGATIVES)
    labels = checks.check_labels(labels, S.shape[0], S.device)
    n_pos = pos.sum(1)
    P = int(n_pos[0])
    if not bool((n_pos == P).all()):
        raise ValueError("GroCo needs every item seen the same number of times (V views of each: labels like "
                         "lossviz.augment.two_view_labels), so that every anchor has the same V - 1 positives")
    if negatives == "same_view":
        view = view_index(labels)
        neg = neg & (view[:, None] == view[None, :])
    available = int(neg.sum(1).min())
    k = checks.integer(topk_neg, "topk_neg (negatives ranked per anchor)", 1)
    if k > available:
        raise ValueError(f"topk_neg={k} but an anchor has only {available} negatives ({negatives}); "
                         f"use topk_neg <= {available} or a larger batch")
    S = upcast(S)
    pos_sims = S[pos].view(S.shape[0], P).sort(dim=1).values                          # ascending
    neg_sims = S.masked_fill(~neg, -math.inf).topk(k, dim=1).values.flip(1)           # top-k, ascending
    return torch.cat([neg_sims, pos_sims], 1), k


def groco_loss(S, labels, *, steepness: float = 1.0, topk_neg: int = 10, interpolation: str = "cauchy",
               network: str = "odd_even", negatives: str = "same_view") -> torch.Tensor:
    r"""The GroCo loss (group ordering constraints) on the similarity matrix ``S`` of V views of B items.

    For each anchor (row) ``a``: its ``P = V - 1`` positive similarities and its ``k`` most similar
    negatives go, in the order ``[negatives ascending, positives ascending]``, through the soft
    sorting network (:func:`soft_sort`); then :func:`group_ordering_loss` asks every positive to land
    in the top ``P`` ranks and every negative below them:

    .. math::  L = \frac{1}{|A|} \sum_a \frac{1}{2(k + P)} \sum_i
               \big[\operatorname{BCE}(p^+_{ai}, y_i) + \operatorname{BCE}(p^-_{ai}, 1 - y_i)\big]

    The mean over all anchors equals the official code's mean over the V views' losses (each view
    has the same B anchors).  Defaults are the official code's: ``steepness=1``, ``topk_neg=10``,
    Cauchy relaxation, odd-even network, negatives from the anchor's own view.

    **Stop-grad** (on by default in the official code: the positives and negatives are detached, only
    the anchor moves) is not a property of this function of ``S`` but of how ``S`` is built: pass
    :func:`anchor_similarity` (``f f_detached^T``) instead of :func:`lossviz.similarity`.
    ``lossviz.pair_weights(groco_loss, S, labels)`` reads its pair weights: non-zero only on each
    anchor's positives and its top-k negatives.
    """
    _check_knobs(steepness, interpolation, network)                  # knob errors before any work
    x, k = groco_rows(S, labels, topk_neg=topk_neg, negatives=negatives)
    return group_ordering_loss(x, k, steepness=steepness, interpolation=interpolation, network=network)


def topk_nt_xent_loss(S, labels, *, tau: float = 0.5, topk_neg: int = 10) -> torch.Tensor:
    r"""The official repository's control for GroCo: NT-Xent where each anchor keeps only its
    ``topk_neg`` most similar negatives (``losses/nt_xent.py`` with ``topk_neg=10``, ``stop_grad=True``,
    temperature 0.5 in ``configs/baselines/simclr_2views_top10neg_stop_grad.yaml``).

    .. math::
        L = \frac{1}{|\mathcal P|} \sum_{(i, p) \in \mathcal P}
            -\log \frac{e^{S_{ip}/\tau}}{e^{S_{ip}/\tau} + \sum_{n \in T_i} e^{S_{in}/\tau}},
        \qquad T_i = \text{the } k \text{ negatives } n \in N_i \text{ with the largest } S_{in}

    It keeps GroCo's *selection* (the k hardest negatives only) and its *stop-grad* but scores them with
    a softmax instead of a sorting network, so that it separates what the sorting adds from what the
    selection adds.  As in the official code the negatives come from all views (every other sample
    but the anchor's positives), unlike GroCo's same-view negatives.  The selection is a mask read
    from ``S`` without gradient: the kept negatives' similarities carry gradient, the choice does not.
    Stop-grad, as for :func:`groco_loss`, is how ``S`` is built (:func:`anchor_similarity`).
    With every negative kept it is :func:`lossviz.nt_xent_loss`.
    """
    S, pos, neg = pair_batch(S, labels)
    tau = checks.temperature(tau)
    available = int(neg.sum(1).min())
    k = checks.integer(topk_neg, "topk_neg (negatives kept per anchor)", 1)
    if k > available:
        raise ValueError(f"topk_neg={k} but an anchor has only {available} negatives; "
                         f"use topk_neg <= {available} or a larger batch")
    z = upcast(S) / tau
    top = z.detach().masked_fill(~neg, -math.inf).topk(k, dim=1).indices
    kept = torch.zeros_like(neg).scatter_(1, top, True)                   # T_i: the k hardest negatives
    lse_neg = masked_logsumexp(z, kept, keepdim=True)                    # log sum_{n in T_i} e^{S_in / tau}
    terms = torch.logaddexp(z, lse_neg) - z                              # -log softmax of each positive
    return torch.where(pos, terms, 0.0).sum() / pos.sum()


def weighted_knn_accuracy(f_train, y_train, f_test, y_test, *, k: int = KNN_K, T: float = KNN_T) -> float:
    """The paper's k-NN accuracy (official evaluator): :func:`lossviz.metrics.knn_accuracy` with ``k = 20``
    neighbours voting with weight ``exp(s / 0.07)``, far from a plain majority vote."""
    return metrics.knn_accuracy(f_train, y_train, f_test, y_test, k=k, T=T)


def anchor_similarity(z) -> torch.Tensor:
    """``S = f sg(f)^T`` with ``f`` the L2-normalised rows of ``z``: the values of the cosine matrix, but
    row ``i`` carries gradient to ``z_i`` only (the others are detached, "stop-grad").  Each sample
    moves only as an anchor, as in GroCo's official code."""
    z = checks.as_float_tensor(z, "z (embeddings, B x D)", 2)
    f = F.normalize(z, dim=1)
    return f @ f.detach().T


def anchor_groco_weights(s_pos, s_neg, *, topk_neg: int | None = None, **knobs) -> tuple[torch.Tensor, torch.Tensor]:
    """One anchor's signed gradients ``(dl/ds_pos, dl/ds_neg)`` (float64, in the order given) of its
    GroCo loss, for positives ``s_pos`` and negatives ``s_neg``; ``topk_neg`` defaults to all of
    them, and a negative outside the top k gets 0.  ``knobs``: steepness, interpolation, network.
    Negative on a positive = pull, positive on a negative = push (the sign can flip at high steepness)."""
    s_pos = torch.as_tensor(s_pos, dtype=torch.float64).reshape(-1).clone().requires_grad_(True)
    s_neg = torch.as_tensor(s_neg, dtype=torch.float64).reshape(-1).clone().requires_grad_(True)
    if len(s_pos) < 1 or len(s_neg) < 1:
        raise ValueError("the anchor needs at least one positive and one negative similarity")
    k = len(s_neg) if topk_neg is None else checks.integer(topk_neg, "topk_neg", 1, len(s_neg))
    x = torch.cat([s_neg.topk(k).values.flip(0), s_pos.sort().values])[None]
    with torch.enable_grad():
        loss = group_ordering_loss(x, k, **knobs)
        g_pos, g_neg = torch.autograd.grad(loss, (s_pos, s_neg))
    return g_pos, g_neg


def ordering_accuracy(S, labels, *, negatives: str = "same_view") -> float:
    """The fraction of anchors (rows of ``S``) whose positives *all* rank above *all* their negatives:
    the hard constraint GroCo relaxes (``min_pos > max_neg``, whatever the top-k).  With one positive
    and ``negatives="all"`` it is the top-1 accuracy of retrieving the anchor's other view."""
    S, pos, neg = _ordering_masks(S, labels, negatives)
    return float(_ordered_fraction(S, pos, neg))


def _ordering_masks(S, labels, negatives: str = "same_view"):
    """``(S, pos, neg)`` for :func:`ordering_accuracy`, checked; a training run computes them once."""
    S, pos, neg = pair_batch(S, labels)
    checks.choice(negatives, "negatives", NEGATIVES)
    if negatives == "same_view":
        view = view_index(labels).to(S.device)
        neg = neg & (view[:, None] == view[None, :])
    return S, pos, neg


def _ordered_fraction(S, pos, neg) -> torch.Tensor:
    """The fraction of rows whose lowest positive beats their highest negative (a 0-d tensor, no checks)."""
    S = S.detach()
    lowest_pos = S.masked_fill(~pos, math.inf).amin(1)
    highest_neg = S.masked_fill(~neg, -math.inf).amax(1)
    return (lowest_pos > highest_neg).double().mean()


# ------------------------------------------------------------------------------------------------
# Self-supervised training
# ------------------------------------------------------------------------------------------------

def ssl_network(in_dim: int = 64, hidden: int = 128, dim: int = 32, *, bn_head: bool = True) -> torch.nn.Sequential:
    """Notebook 09's MLP encoder ``in_dim -> hidden -> hidden`` (h) and a projector to ``dim`` (z, unit rows).

    ``bn_head=True``: the official code's projection head in miniature, ``Linear (no bias) -> BatchNorm
    -> ReLU -> Linear -> BatchNorm (no affine)``.  The last BatchNorm centres every output dimension
    over the batch, so the views never start (or end) bunched in one direction.  ``bn_head=False``:
    notebook 09's plain head (:func:`lossviz.models.encoder_projector`)."""
    net = encoder_projector(in_dim, hidden, dim)
    if not bn_head:
        return net
    nn = torch.nn
    return nn.Sequential(*net[:4], nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, dim), nn.BatchNorm1d(dim, affine=False), net[-1])


@dataclass(repr=False)
class SortRun(Run):
    """One self-supervised run: per-step ``history`` (loss, order_acc: the batch's
    :func:`ordering_accuracy`) and ``evals`` at a few epochs (iter; map_at_r and recall_at_1 of the
    test projections z; map_at_r_h of the encoder's h; knn: the paper's weighted 20-NN accuracy of h,
    :func:`weighted_knn_accuracy`, test against train),
    with the last evaluation's test projections and the trained network."""

    z_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    model: torch.nn.Module | None = None        # the trained network (eval mode)

    def __repr__(self) -> str:
        p = self.params
        if p["loss"] == "groco":
            knobs = f"steepness={p['steepness']:.3g}, k={p['topk_neg']}, {p['interpolation']}"
        else:
            knobs = f"τ={p['tau']:.3g}" + (f", k={p['topk_neg']}" if p["loss"] == "topk_nt_xent" else "")
        return (f"SortRun({NAMES[p['loss']]}, {knobs}, {p['views']} views, stop-grad {p['stop_grad']}: "
                f"MAP@R(z) {self.final('map_at_r'):.3f}, MAP@R(h) {self.final('map_at_r_h'):.3f}, "
                f"R@1(z) {self.final('recall_at_1'):.3f}, 20-NN(h) {self.final('knn'):.3f})")


def train_groco(loss: str = "groco", *, dataset: str = "digits", views: int = 2, epochs: int = 30,
                batch_size: int = 128, steepness: float = 1.0, topk_neg: int = 10, interpolation: str = "cauchy",
                tau: float | None = None, stop_grad: bool | None = None, bn_head: bool = True, lr: float = 1e-3,
                seed: int = 0, eval_every: int = 5, progress=True, cache: bool = True) -> SortRun:
    """Self-supervised training with ``views`` random views of each training item (labels unused).

    The network is :func:`ssl_network` (an MLP encoder to h, a projector to z, L2-normalised),
    trained with Adam on ``batch_size`` items per step, one epoch = ``len(train) // batch_size``
    steps.  ``loss="groco"`` reads ``steepness``, ``topk_neg``, ``interpolation``; ``"nt_xent"`` reads
    ``tau`` (:func:`lossviz.nt_xent_loss` on all views); ``"topk_nt_xent"`` (the official control,
    :func:`topk_nt_xent_loss`) reads ``tau`` and ``topk_neg``.  ``tau`` defaults to the official
    configs' value for each (:data:`DEFAULT_TAU`: 0.1 for SimCLR, 0.5 for the control).  ``stop_grad``
    (default: on for GroCo and the control, as in the official code; off for NT-Xent, as SimCLR) builds
    ``S`` with :func:`anchor_similarity`.  Evaluated
    at step 0, every ``eval_every`` epochs and at the end (see :class:`SortRun`).  Cached by its
    parameters (:func:`lossviz.train.memo`).
    """
    checks.choice(loss, "loss", LOSSES)
    checks.choice(dataset, "dataset", ("digits", "mnist1d"))
    views = checks.integer(views, "views", 2)
    epochs = checks.integer(epochs, "epochs", 1)
    batch_size = checks.integer(batch_size, "batch_size", 2)
    eval_every = checks.integer(eval_every, "eval_every", 1)
    stop_grad = (loss != "nt_xent") if stop_grad is None else bool(stop_grad)
    if loss == "groco":
        knobs = dict(steepness=checks.positive(steepness, "steepness"),
                     interpolation=checks.choice(interpolation, "interpolation", INTERPOLATIONS),
                     topk_neg=checks.integer(topk_neg, "topk_neg", 1, batch_size - 1))       # same-view negatives
    else:
        knobs = dict(tau=checks.temperature(DEFAULT_TAU[loss] if tau is None else tau))
        if loss == "topk_nt_xent":
            knobs["topk_neg"] = checks.integer(topk_neg, "topk_neg", 1, views * (batch_size - 1))   # all views
    params = dict(loss=loss, dataset=dataset, views=views, epochs=epochs, batch_size=batch_size,
                  stop_grad=stop_grad, bn_head=bool(bn_head), lr=checks.positive(lr, "lr"), seed=seed,
                  eval_every=eval_every, **knobs)
    full = dict(steepness=steepness, topk_neg=topk_neg, interpolation=interpolation, tau=tau) | params
    return memo("groco", params, lambda: _train(full, knobs, progress), cache=cache)


def _train(p: dict, knobs: dict, progress) -> SortRun:
    split = data.load(p["dataset"])
    kind, x_train, B, V = p["dataset"], split.x_train, p["batch_size"], p["views"]
    if B > len(x_train):
        raise ValueError(f"batch_size {B} is larger than the {len(x_train)} training items")
    trainer = Trainer(lambda: ssl_network(x_train.shape[1], bn_head=p["bn_head"]), lr=p["lr"], seed=p["seed"])
    model = trainer.model
    encoder = model[:4]                                              # h: the representation kNN reads
    # One generator draws the epochs' orders, then every step's views (drawn after the optimiser, as before).
    g = torch.Generator().manual_seed(p["seed"])
    per_epoch = len(x_train) // B
    order = torch.cat([torch.randperm(len(x_train), generator=g)[:per_epoch * B] for _ in range(p["epochs"])])
    labels = torch.arange(B).repeat(V)                               # two_view_labels, for V views
    _, pos, neg = _ordering_masks(torch.zeros(V * B, V * B), labels)  # the same every step: built once
    loss_fn = {"groco": groco_loss, "nt_xent": contrastive.nt_xent_loss, "topk_nt_xent": topk_nt_xent_loss}[p["loss"]]
    last = {}

    def evaluate() -> dict:
        last["z"], h_test, h_train = model(split.x_test), encoder(split.x_test), encoder(x_train)
        scores = metrics.retrieval_scores(last["z"], split.y_test)
        return {"map_at_r": scores["map_at_r"], "recall_at_1": scores["recall_at_1"],
                "map_at_r_h": metrics.map_at_r(h_test, split.y_test),
                "knn": weighted_knn_accuracy(h_train, split.y_train, h_test, split.y_test)}

    def step(it: int) -> dict:
        idx = order[(it - 1) * B: it * B]
        z = torch.cat([model(augment.augment(x_train[idx], kind, g)) for _ in range(V)])   # BN: per view
        S = anchor_similarity(z) if p["stop_grad"] else similarity(z)
        value = loss_fn(S, labels, **knobs)
        trainer.update(value)
        return {"loss": value.detach(), "order_acc": _ordered_fraction(S, pos, neg)}

    history, evals, seconds = trainer.run(step, per_epoch * p["epochs"], evaluate=evaluate,
                                          eval_every=per_epoch * p["eval_every"],
                                          desc=f"{NAMES[p['loss']]} {knobs}", progress=progress)
    return SortRun(params=p, history=history, evals=evals, seconds=seconds, z_test=last["z"].numpy(),
                   y_test=split.y_test.numpy(), model=model.eval())


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def running_mean(y, width: int = 7) -> np.ndarray:
    """A running mean (for noisy per-batch curves), same length as ``y``."""
    y = np.asarray(y, dtype=float)
    kernel = np.ones(width) / width
    pad = np.concatenate([np.full(width // 2, y[0]), y, np.full(width - 1 - width // 2, y[-1])])
    return np.convolve(pad, kernel, mode="valid")


def _columns(layer) -> list[float]:
    """Horizontal offsets within a layer's column so that comparators whose spans overlap do not
    hide each other (greedy: each takes the first slot free over its span)."""
    slots, out = [], []
    for lo, hi in layer:
        span = (min(lo, hi), max(lo, hi))
        slot = next((j for j, used in enumerate(slots) if all(b < span[0] or a > span[1] for a, b in used)), None)
        if slot is None:
            slots.append([])
            slot = len(slots) - 1
        slots[slot].append(span)
        out.append(slot)
    width = max(len(slots) - 1, 1)
    return [0.0 if len(slots) == 1 else 0.5 * (j / width - 0.5) for j in out]


def draw_network(ax, n: int, *, network: str = "odd_even", x=None, k: int | None = None, track: int | None = None,
                 steepness: float = 1.0, interpolation: str = "cauchy", title: str | None = None):
    """The sorting network as a picture: wires are horizontal lines (rank 0, the smallest, at the
    bottom), each comparator an arrow between its two wires pointing to the wire that gets the
    larger value, one column per layer.  With values ``x`` (one row, ``n``) the inputs are written on
    the left (the first ``k`` as negatives in the negative-pair colour, the rest as positives in blue)
    and the relaxed sorted values on the right.  ``track=i`` draws input i's probability of being on
    each wire between layers as discs (area = probability), from :func:`permutation_trace`."""
    layers = sorting_network(n, network)
    L = len(layers)
    for w in range(n):
        ax.plot([-0.6, L - 0.4], [w, w], color=plots.MUTED, lw=1, zorder=1)
    for t, layer in enumerate(layers):
        for (lo, hi), dx in zip(layer, _columns(layer)):
            ax.annotate("", (t + dx, hi), (t + dx, lo), zorder=2,
                        arrowprops=dict(arrowstyle="-|>", lw=1.5, color="black", shrinkA=2, shrinkB=2))
            ax.scatter([t + dx], [lo], color="black", s=12, zorder=3)
    if x is not None:
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
        k = 0 if k is None else k
        out, _ = soft_sort(x, steepness=steepness, interpolation=interpolation, network=network)
        for i, v in enumerate(x.tolist()):
            ax.text(-0.8, i, f"{v:.2f}", ha="right", va="center", fontsize=9,
                    color=plots.NEG_COLOR if i < k else plots.POS_COLOR)
        for r, v in enumerate(out.tolist()):
            ax.text(L - 0.2, r, f"{v:.2f}", ha="left", va="center", fontsize=9, color="black")
        if track is not None:
            trace = permutation_trace(x, steepness=steepness, interpolation=interpolation, network=network)
            color = plots.NEG_COLOR if track < k else plots.POS_COLOR
            for t in range(L + 1):
                ax.scatter(np.full(n, t - 0.5), np.arange(n), s=260 * trace[t, track].numpy(), color=color,
                           alpha=0.55, zorder=4, edgecolors="none")
    ax.set(xlim=(-1.9, L + 0.9), ylim=(-0.7, n - 0.3), xlabel="layer", ylabel="wire (rank, 0 = smallest)",
           title=title or f"{network.replace('_', '-')} sorting network, n = {n}: {L} layers")
    ax.set_xticks(range(L))
    ax.set_yticks(range(n))
    ax.grid(False)
    return ax


def permutation_heatmap(ax, P, k: int, *, title: str = "soft permutation", colorbar: bool = True):
    """``P_soft`` (n x n) as a heat-map: row i = input i (the first ``k`` are the negatives, labelled
    in the negative-pair colour, the rest the positives, in blue), column r = rank.  The dashed line
    separates the negatives' ranks (left) from the top ``P`` ranks GroCo wants the positives in.
    Returns the image; :func:`move_permutation_heatmap` shows another ``P`` in it."""
    im = ax.imshow(np.zeros((1, 1)), cmap="Greys", vmin=0, vmax=1, aspect="equal")
    ax.axvline(0, color="black", ls="--", lw=1.2, gid="permutation cut")
    ax.axhline(0, color=plots.MUTED, ls=":", lw=1, gid="permutation cut")
    ax.set(xlabel="rank r (0 = least similar)", ylabel="input item i", title=title)
    ax.grid(False)
    move_permutation_heatmap(im, P, k)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label="P(item i at rank r)")
    return im


def move_permutation_heatmap(im, P, k: int) -> None:
    """Show ``P`` (n x n, the first ``k`` rows the negatives) in the image of :func:`permutation_heatmap`,
    in place: its pixels, the two cut lines and the ticks (every other one past 16 rows, so that
    9-point labels never overlap)."""
    P = plots.as_numpy(P)
    n, ax = P.shape[0], im.axes
    im.set_data(P)
    im.set_extent((-0.5, n - 0.5, n - 0.5, -0.5))
    vline, hline = (line for line in ax.lines if line.get_gid() == "permutation cut")
    vline.set_xdata([k - 0.5, k - 0.5])
    hline.set_ydata([k - 0.5, k - 0.5])
    step = -(-n // 16)
    rows = sorted(range(k - 1, -1, -step)) + list(range(k, n))        # every positive, n1 and every step-th negative
    names = [f"n{k - i}" for i in range(k)] + [f"p{i + 1}" for i in range(n - k)]
    ax.set_yticks(rows, [names[i] for i in rows], fontsize=9)
    for tick, i in zip(ax.get_yticklabels(), rows):
        tick.set_color(plots.NEG_COLOR if i < k else plots.POS_COLOR)
    ax.set_xticks(sorted(range(n - 1, -1, -step)))
    ax.tick_params(axis="x", labelsize=9)


def weights_view(ax, s_pos, s_neg, g_pos, g_neg, *, title: str, ylabel: str):
    """One anchor's signed gradients against similarity: :func:`lossviz.plots.anchor_weights_view`
    with the raw signed ``dl/ds`` (a negative whose gradient turned negative points down)."""
    plots.anchor_weights_view(ax, s_pos, s_neg, -torch.as_tensor(g_pos), g_neg, title=title)
    ax.set_ylabel(ylabel)
    return ax


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------



def sorting_panel(s_pos, s_neg, *, steepness: float = 1.0, topk_neg: int = 10, views: int = 2,
                  interpolation: str = "cauchy", tau: float = 0.1):
    """Pure maths on one anchor with positives ``s_pos`` (1 to 3) and negatives ``s_neg``: its soft
    permutation (left), GroCo's signed gradients next to NT-Xent's (middle two), and the loss as the
    first positive's similarity sweeps [-1, 1] (right).  Knobs: steepness, top-k, views (P = V - 1
    positives), relaxation."""
    import ipywidgets as W

    from .. import widgets

    s_pos = torch.as_tensor(s_pos, dtype=torch.float64).reshape(-1)
    s_neg = torch.as_tensor(s_neg, dtype=torch.float64).reshape(-1)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "steepness": W.FloatLogSlider(value=steepness, base=10, min=-1, max=3, step=0.05, description="steepness",
                                      readout_format=".3g", **style),
        "topk_neg": W.IntSlider(value=min(topk_neg, len(s_neg)), min=1, max=min(32, len(s_neg)),
                                description="top-k negatives", **style),
        "views": W.IntSlider(value=views, min=2, max=len(s_pos) + 1, description="views V", **style),
        "interpolation": W.ToggleButtons(options=list(INTERPOLATIONS), value=interpolation, description="relaxation",
                                         style={"button_width": "80px"}),
    }
    fig, axes = plots.new_figure(4, width=4.0, height=3.7)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    grid = torch.linspace(-1, 1, 101, dtype=torch.float64)
    # The artists, made once (for the largest shape) and then only moved.
    n_max = controls["topk_neg"].max + len(s_pos)
    image = permutation_heatmap(axes[0, 0], torch.zeros(n_max, n_max), controls["topk_neg"].max)
    groco_stems = plots.anchor_weights_view(axes[0, 1], s_pos, s_neg, s_pos * 0, s_neg * 0)
    axes[0, 1].set(title="GroCo: signed dℓ/ds", ylabel="dℓ/ds")
    nt_stems = plots.anchor_weights_view(axes[0, 2], s_pos[:1], s_neg, s_pos[:1] * 0, s_neg * 0)
    axes[0, 2].set(title=f"NT-Xent (τ = {tau:.3g}), nearest positive", ylabel="dℓ/ds (× τ)")
    ax = axes[0, 3]
    (curve_line,) = ax.plot(grid.numpy(), grid.numpy() * 0, color=COLORS["groco"], lw=2)
    ax.axvline(float(s_neg.max()), color=plots.NEG_COLOR, ls="--", lw=1, label="hardest negative")
    ax.axvline(float(s_pos[0]), color=plots.POS_COLOR, ls=":", lw=1.5, label="this positive now")
    ax.set(xlabel="similarity of the first positive", ylabel="GroCo loss of the anchor",
           title="loss as the positive moves")
    ax.legend(loc="upper right", fontsize=9)

    def draw(v):
        knobs = dict(steepness=v["steepness"], interpolation=v["interpolation"])
        k, sp = v["topk_neg"], s_pos[:v["views"] - 1]
        x = torch.cat([s_neg.topk(k).values.flip(0), sp.sort().values])
        _, P = soft_sort(x, **knobs)
        g_pos, g_neg = anchor_groco_weights(sp, s_neg, topk_neg=k, **knobs)
        n_pos, n_neg = contrastive.anchor_nt_xent_weights(float(sp.max()), s_neg, tau=tau)
        move_permutation_heatmap(image, P, k)
        axes[0, 0].set_title(f"P_soft, steepness {v['steepness']:.3g}")
        plots.move_anchor_weights(axes[0, 1], groco_stems, sp, s_neg, -g_pos, g_neg)
        plots.move_anchor_weights(axes[0, 2], nt_stems, sp.max(), s_neg, n_pos, n_neg)
        rows = torch.cat([s_neg.topk(k).values.flip(0).expand(len(grid), k),
                          torch.cat([grid[:, None], sp[1:].expand(len(grid), -1)], 1).sort(dim=1).values], 1)
        curve = group_ordering_loss(rows, k, reduction="none", **knobs)
        curve_line.set_ydata(curve.numpy())
        axes[0, 3].set_ylim(0, max(1.0, float(curve.max()) * 1.05))
        loss = float(group_ordering_loss(x[None], k, **knobs))
        p_in_top = P[k:, k:].sum(1)
        return {"P": P, "g_pos": g_pos, "g_neg": g_neg, "loss": loss, "curve": curve,
                "status": f"loss {loss:.4f}; P(positive in the top {len(sp)} ranks) = "
                          + ", ".join(f"{float(p):.2f}" for p in p_in_top)
                          + f"; pull on the positive(s) {float(-g_pos.sum()):.3g}, total push {float(g_neg.sum()):.3g}"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, reference_runs: dict | None = None, autorun: bool = True, **defaults):
    """A Train button over :func:`train_groco`: loss, steepness, top-k, relaxation, views, stop-grad,
    τ (the NT-Xents; choosing a loss sets it to :data:`DEFAULT_TAU`), epochs and seed.  Draws the training loss, the batches' ordering accuracy and the test
    MAP@R against iterations, with ``reference_runs`` (``{name: SortRun}``, already trained) in grey."""
    import ipywidgets as W

    from .. import widgets

    d = dict(loss="groco", steepness=1.0, topk_neg=10, interpolation="cauchy", views=2, stop_grad=True,
             tau=0.1, epochs=15, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "loss": W.Dropdown(options=[(NAMES[k], k) for k in LOSSES], value=d["loss"], description="loss",
                           layout=W.Layout(width="230px")),
        "steepness": W.FloatLogSlider(value=d["steepness"], base=10, min=-1, max=2, step=0.1,
                                      description="steepness", readout_format=".3g", **style),
        "topk_neg": W.IntSlider(value=d["topk_neg"], min=1, max=32, description="top-k", **style),
        "interpolation": W.Dropdown(options=list(INTERPOLATIONS), value=d["interpolation"], description="relaxation",
                                    layout=W.Layout(width="200px")),
        "tau": W.FloatLogSlider(value=d["tau"], base=10, min=-2, max=0, step=0.05, description="τ (NT-Xents)",
                                readout_format=".3g", **style),
        "views": W.IntSlider(value=d["views"], min=2, max=4, description="views", **style),
        "stop_grad": W.Checkbox(value=d["stop_grad"], description="stop-grad", indent=False),
        "epochs": W.IntSlider(value=d["epochs"], min=5, max=60, step=5, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def official_tau(change):                     # choosing an NT-Xent sets its official temperature
        if change["new"] in DEFAULT_TAU:
            controls["tau"].value = DEFAULT_TAU[change["new"]]

    controls["loss"].observe(official_tau, names="value")

    def run(values, progress):
        return train_groco(progress=progress, **values)

    def draw(axes, result, values):
        chosen = dict(reference_runs or {}) | {"this run": result}
        for name, r in chosen.items():
            color = COLORS[r.params["loss"]] if name == "this run" else plots.MUTED
            ls = "-" if name == "this run" else "--"
            h = r.history
            axes[0, 0].plot(h["iter"], h["loss"] / h["loss"][0], color=color, ls=ls, lw=1, label=name)
            axes[0, 1].plot(h["iter"], running_mean(h["order_acc"]), color=color, ls=ls, lw=1.2, label=name)
            axes[0, 2].plot(r.evals["iter"], r.evals["map_at_r"], color=color, ls=ls, marker=".", label=name)
        axes[0, 0].set(xlabel="iteration", ylabel="loss / its first value", title="training loss (relative)")
        axes[0, 1].set(xlabel="iteration", ylabel="fraction of anchors (running mean)", ylim=(0, None),
                       title="positive above every negative")
        axes[0, 2].set(xlabel="iteration", ylabel="MAP@R", title="test MAP@R of z")
        axes[0, 2].legend(loc="lower right", fontsize=9)
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.3, height=3.5, autorun=autorun)

