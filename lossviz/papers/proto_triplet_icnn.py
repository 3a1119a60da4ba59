r"""Few-shot classification with prototypes: ProtoNet cross-entropy, the Proto-Triplet loss and
the ICNN score / loss (Mendez-Ruiz et al., "SuSana Distancia is all you need", arXiv 2305.09062;
code: maumruiz/FSL-Loss, ``algorithms/icnn_loss.py``).

An **episode** holds ``way`` classes, ``shot`` support and ``query`` query samples per class.  The
network embeds everything; class ``k``'s **prototype** ``c_k`` is the mean of its support
embeddings, and a query is classified by its distance to the prototypes.  Every loss of the paper
is then a function of small distance matrices:

* ``D`` (Q x N_way): ``D_qk = sqrt(||f(q) - c_k||^2 + 1e-6)``, the query-prototype distances
  (Euclidean with the official code's epsilon, so the gradient stays finite at distance 0).
  ProtoNet's cross-entropy (:func:`protonet_loss`) uses ``D^2``; the Proto-Triplet loss
  (:func:`proto_triplet_loss`) uses ``D`` itself.  Their weights ``dL/dD`` (General Pair
  Weighting with prototypes as the partners) come from ``lossviz.pair_weights`` unchanged.
* the ICNN neighbour distances (N x ipc): each point's distances to its nearest neighbours
  (:func:`icnn_neighbours`, :func:`icnn_terms`, :func:`icnn_score`, :func:`icnn_loss`).

The episode samplers (:class:`EpisodeSampler`, :func:`episode_index`), :func:`episode_loss` (the
mean of the selected terms, as in the official ``get_icnn_loss``), the lesson's data set
(:func:`noisy_identities`: many classes, so that every training episode is a new task),
:func:`fewshot_accuracy` (accuracy on episodes of held-out classes), :func:`margin_curve` (active
hinges and mean hinge against the margin), :func:`train_fewshot` (episodic training on
:class:`lossviz.train.Trainer`, cached with :func:`lossviz.train.memo`) and the notebook's pictures
and panels live here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks
from ..train import Run, Trainer, memo

#: Added to squared distances before the square root, as in the official ``nearest_neighbors``.
EPS = 1e-6

#: Class colours of the episode pictures: no blue or vermillion, which mean pull and push.
CLASS_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#000000")

#: The loss terms of the official ``--losses`` option.
TERMS = ("cross", "prototriplet", "suppicnn", "queryicnn", "fullicnn")

#: One colour per loss combination of the notebook (never the pull / push colours).
COMBO_COLORS = {"CE": "#000000", "CE+PT": "#CC79A7", "CE+ICNN": "#009E73", "PT": "#E69F00",
                "CE+PT+ICNN": "#56B4E9"}


# ------------------------------------------------------------------------------------------------
# Prototypes, distances, ProtoNet CE, Proto-Triplet
# ------------------------------------------------------------------------------------------------

def prototypes(z_support, y_support, way: int | None = None) -> torch.Tensor:
    r"""Class prototypes :math:`c_k = \frac{1}{|S_k|}\sum_{i \in S_k} f(x_i)` (way x D).

    ``y_support`` holds episode labels ``0 .. way-1``; every class needs at least one support sample.
    """
    z = checks.as_float_tensor(z_support, "z_support", 2)
    y = checks.check_labels(y_support, z.shape[0], z.device)
    way = int(y.max()) + 1 if way is None else way
    counts = torch.bincount(y, minlength=way)
    if checks.validation_enabled() and (int(y.min()) < 0 or len(counts) > way or bool((counts == 0).any())):
        raise ValueError(f"y_support must hold episode labels 0 .. {way - 1}, each at least once "
                         f"(support counts per class: {counts.tolist()})")
    sums = torch.zeros(way, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, y, z)
    return sums / counts[:way, None].to(z.dtype)


def distances(x, c, *, eps: float = EPS) -> torch.Tensor:
    r"""Euclidean distances with the official epsilon: :math:`d(a, b) = \sqrt{\|a-b\|^2 + \epsilon}`.

    ``x`` (Q x D) against ``c`` (N x D) gives Q x N.  The difference is formed explicitly (not
    ``|a|^2 + |b|^2 - 2ab``), so a query on its prototype gets exactly ``sqrt(eps)``, never a
    negative square from cancellation."""
    x = checks.as_float_tensor(x, "x", 2)
    c = checks.as_float_tensor(c, "c", 2)
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"x and c must have the same embedding dimension; got {x.shape[1]} and {c.shape[1]}")
    eps = checks.positive(eps, "eps")
    return ((x[:, None, :] - c[None, :, :]).pow(2).sum(-1) + eps).sqrt()


def _distance_batch(D, y):
    D = checks.as_float_tensor(D, "D (query-prototype distances, Q x N_way)", 2)
    if D.shape[1] < 2:
        raise ValueError(f"an episode needs at least 2 classes (columns of D); got {D.shape[1]}")
    y = checks.check_labels(y, D.shape[0], D.device)
    if checks.validation_enabled() and D.shape[0] and not bool(((y >= 0) & (y < D.shape[1])).all()):
        raise ValueError(f"query labels must be episode labels in [0, {D.shape[1]}), one column of D per class")
    return D, y


def protonet_loss(D, y_query, *, T: float = 1.0) -> torch.Tensor:
    r"""ProtoNet cross-entropy (Snell et al. 2017) over negative **squared** distances.

    .. math:: \ell_{qk} = -D_{qk}^2 / T, \qquad L_{CE} = \frac1Q \sum_q -\log \frac{e^{\ell_{q y_q}}}{\sum_k e^{\ell_{qk}}}

    ``D`` is :func:`distances` (with its epsilon: ``D^2 = ||.||^2 + eps`` shifts every logit of a
    row by the same constant, which the softmax ignores).  Weights: ``dL/dl_qk = (p_qk - [k = y_q])/Q``,
    soft weights on *every* prototype.  T = 1 is the official default.
    """
    D, y = _distance_batch(D, y_query)
    T = checks.positive(T, "T (temperature)")
    return F.cross_entropy(-D.pow(2) / T, y)


def proto_triplet_loss(D, y_query, *, m: float = 0.5) -> torch.Tensor:
    r"""Proto-Triplet loss: a triplet whose positive is the query's own prototype and whose
    negative is the nearest wrong prototype, on Euclidean (not squared) distances.

    .. math:: L_{PT} = \frac1Q \sum_q \big[\, D_{q,y_q} - \min_{k \ne y_q} D_{qk} + m \,\big]_+

    Weights: for an active query (hinge > 0), ``dL/dD = +1/Q`` on its own prototype and ``-1/Q``
    on the nearest wrong one, 0 elsewhere: notebook 01's batch-hard triplet weights with prototypes
    as partners.  Margin m = 0.5 is the official default.
    """
    D, y = _distance_batch(D, y_query)
    m = checks.non_negative(m, "m (margin)")
    own = F.one_hot(y, D.shape[1]).bool()
    d_pos = D.gather(1, y[:, None])[:, 0]
    d_neg = D.masked_fill(own, math.inf).min(dim=1).values   # one k* per query, as the code's .min()
    return F.relu(d_pos - d_neg + m).mean()


def active_queries(D, y_query, m: float = 0.5) -> torch.Tensor:
    """Boolean per query: is its Proto-Triplet hinge active (``D_own - D_nearest_wrong + m > 0``)?"""
    D, y = _distance_batch(D, y_query)
    own = F.one_hot(y, D.shape[1]).bool()
    d_neg = D.masked_fill(own, math.inf).min(dim=1).values
    return D.gather(1, y[:, None])[:, 0] - d_neg + checks.non_negative(m, "m (margin)") > 0


def episode_accuracy(D, y_query) -> float:
    """The fraction of queries whose nearest prototype is their own class."""
    D, y = _distance_batch(D, y_query)
    return float((D.argmin(dim=1) == y).double().mean())


# ------------------------------------------------------------------------------------------------
# ICNN
# ------------------------------------------------------------------------------------------------

@dataclass
class Neighbourhood:
    """Each point's nearest neighbours in the target set, nearest first."""

    D: torch.Tensor          # (N, ipc) distances sqrt(||.||^2 + eps) to the neighbours
    same: torch.Tensor       # (N, ipc) bool: neighbour has the point's label
    index: torch.Tensor      # (N, ipc) the neighbours' rows in the target set
    k: int                   # neighbours used by the score (after the official reduction)
    reduced: bool            # k was reduced because the target set is small: gamma is then 1


def icnn_neighbours(P, labels, target=None, target_labels=None, *, k: int = 4, ipc: int | None = None,
                    drop_first: bool = True) -> Neighbourhood:
    """The neighbourhoods the ICNN score reads, as the official ``modified_score`` builds them.

    * ``k`` (default 4) is reduced to ``|T| - 2`` when ``k + 2 >= |T|`` (``reduced``).
    * ``ipc`` neighbours (default ``k + 1``; ``shot + query`` in the official ``fullicnn``) are
      searched for the nearest different-class one.
    * The ``ipc + 1`` nearest points of the target set are taken and the first is dropped as the
      point itself.  With ``target`` given (queries against supports or prototypes) the first is a
      real neighbour: the official code drops it all the same, and so do we with
      ``drop_first=True`` (the default, for fidelity); ``drop_first=False`` keeps it.
    """
    P = checks.as_float_tensor(P, "P (points, N x D)", 2)
    labels = checks.check_labels(labels, P.shape[0], P.device)
    if target is None:
        target, target_labels = P, labels
    else:
        target = checks.as_float_tensor(target, "target (M x D)", 2)
        if target_labels is None:
            raise ValueError("target_labels are needed with a target set")
        target_labels = checks.check_labels(target_labels, target.shape[0], P.device)
    M = target.shape[0]
    checks.integer(k, "k", 1)
    if M < 3:
        raise ValueError(f"the ICNN score needs a target set of at least 3 points; got {M}")
    reduced = k + 2 >= M
    k = M - 2 if reduced else k
    ipc = k + 1 if ipc is None else ipc
    checks.integer(ipc, "ipc", k)
    skip = 1 if drop_first else 0
    if ipc + skip > M:
        raise ValueError(f"ipc = {ipc} neighbours (+{skip} dropped) need at least {ipc + skip} target points; "
                         f"got {M}. Lower ipc.")
    dist = distances(P, target)
    D, index = dist.topk(ipc + skip, dim=1, largest=False)
    D, index = D[:, skip:], index[:, skip:]
    same = target_labels[index] == labels[:, None]
    return Neighbourhood(D, same, index, k, reduced)


def icnn_terms(D, same, *, k: int, reduced: bool = False) -> dict:
    r"""The ICNN score from neighbour distances ``D`` (N x ipc, nearest first) and ``same`` (N x ipc).

    With ``a_ij = same``, ``b_ij = 1 - a_ij`` and ``delta_i`` the distance to i's nearest
    different-class neighbour among all ipc (none: ``n_ij = 0``, the official ``d / inf``):

    .. math::
        n_{ij} &= \frac{d_{ij}/\delta_i}{\max(1, \max_{j' \le k} d_{ij'}/\delta_i)}, \quad j \le k \\
        \lambda_{same} &= 1 - \operatorname{mean}_{i:\,\sum_j a_{ij} > 0} \frac{\sum_{j\le k} a_{ij} n_{ij}}{\sum_{j \le k} a_{ij}} \\
        e_{ij} &= \frac{b_{ij} d_{ij}}{\max_{i', j' \le k} b_{i'j'} d_{i'j'}}, \qquad
        \lambda_{diff} = \operatorname{mean}_{i:\,\sum_j b_{ij} > 0} \frac{\sum_{j\le k} e_{ij}}{\sum_{j\le k} b_{ij}}
            \ \ (1 \text{ if no point has a different-class neighbour}) \\
        \gamma &= \frac1N \sum_i \frac{\sum_{j \le k} a_{ij}}{k} \ \ (1 \text{ when } k \text{ was reduced}), \qquad
        \text{score} = \frac{(\lambda_{same} + \lambda_{diff})/2 + \gamma}{2} \in [0, 1]

    The official code writes the last case of lambda_diff as ``|mean + o|`` with ``o = -1`` (the
    mean is then 0, so it is 1) and guards its means with ``+1e-7``; counts are integers, so we
    divide by ``max(count, 1)`` instead: an empty mean is exactly 0, never NaN.  gamma is a count
    and carries no gradient.  Returns a dict of 0-d tensors ``lam_same, lam_diff, gamma, score``.
    """
    D = checks.as_float_tensor(D, "D (neighbour distances, N x ipc)", 2)
    same = torch.as_tensor(same, device=D.device)
    if same.dtype != torch.bool or same.shape != D.shape:
        raise ValueError(f"same must be a boolean mask of D's shape {tuple(D.shape)}; got {same.dtype} {tuple(same.shape)}")
    checks.integer(k, "k", 1)
    if k > D.shape[1]:
        raise ValueError(f"k = {k} exceeds the {D.shape[1]} neighbours in D")
    diff = ~same
    has_diff = diff.any(dim=1)
    delta = torch.where(diff, D, math.inf).min(dim=1).values          # inf never enters a product
    r = torch.where(has_diff[:, None], D / torch.where(has_diff, delta, 1.0)[:, None], 0.0)[:, :k]
    n = r / r.max(dim=1, keepdim=True).values.clamp(min=1.0)
    a, b = same[:, :k], diff[:, :k]
    n_same = a.sum(dim=1)
    per_same = torch.where(a, n, 0.0).sum(dim=1) / n_same.clamp(min=1)
    lam_same = 1 - per_same.sum() / (n_same > 0).sum().clamp(min=1)
    bd = torch.where(b, D[:, :k], 0.0)
    top = bd.max()
    e = bd / torch.where(top > 0, top, 1.0)
    n_diff = b.sum(dim=1)
    per_diff = e.sum(dim=1) / n_diff.clamp(min=1)
    lam_diff = torch.where(b.any(), per_diff.sum() / (n_diff > 0).sum().clamp(min=1), 1.0)
    gamma = torch.ones((), dtype=D.dtype, device=D.device) if reduced else (n_same.to(D.dtype) / k).mean()
    score = ((lam_same + lam_diff) / 2 + gamma) / 2
    return {"lam_same": lam_same, "lam_diff": lam_diff, "gamma": gamma, "score": score}


def icnn_score(P, labels, target=None, target_labels=None, *, k: int = 4, ipc: int | None = None,
               drop_first: bool = True) -> torch.Tensor:
    """The ICNN score in [0, 1] (1: every point's k-neighbourhood is pure and far from other
    classes).  See :func:`icnn_neighbours` for the neighbourhoods and :func:`icnn_terms` for the
    formula."""
    nb = icnn_neighbours(P, labels, target, target_labels, k=k, ipc=ipc, drop_first=drop_first)
    return icnn_terms(nb.D, nb.same, k=nb.k, reduced=nb.reduced)["score"]


def icnn_loss(P, labels, target=None, target_labels=None, *, k: int = 4, ipc: int | None = None,
              drop_first: bool = True) -> torch.Tensor:
    r""":math:`L_{ICNN} = -\log(\text{score})` (the score is > 0: lambda_diff > 0 whenever a point
    has a different-class neighbour, and 1 otherwise)."""
    return -torch.log(icnn_score(P, labels, target, target_labels, k=k, ipc=ipc, drop_first=drop_first))


def icnn_weights(P, labels, *, k: int = 4, ipc: int | None = None) -> tuple[Neighbourhood, torch.Tensor, dict]:
    """The ICNN loss's weights on each point's neighbour distances, ``dL_ICNN/dd_ij`` (N x ipc), by
    autograd with the neighbour-distance matrix as a leaf.  Returns ``(neighbourhood, grad, terms)``.

    Non-zero only on the first k neighbours, on each point's nearest different-class neighbour
    (delta_i, through the normalisation) and on the one largest different-class distance (the
    global max of lambda_diff's normalisation); gamma contributes nothing.
    """
    nb = icnn_neighbours(torch.as_tensor(P).detach(), labels, k=k, ipc=ipc)
    leaf = nb.D.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        terms = icnn_terms(leaf, nb.same, k=nb.k, reduced=nb.reduced)
        (grad,) = torch.autograd.grad(-torch.log(terms["score"]), leaf)
    return nb, grad, {key: float(v.detach()) for key, v in terms.items()}


# ------------------------------------------------------------------------------------------------
# One episode's loss: the mean of the selected terms
# ------------------------------------------------------------------------------------------------

def episode_loss(z_support, y_support, z_query, y_query, *, terms=("cross",), weights=None,
                 T: float = 1.0, m: float = 0.5, k: int = 4, query_protos: bool = False) -> tuple:
    r"""The official combination: the **mean of the selected terms** (``get_icnn_loss`` divides the
    sum by their number), e.g. ``("cross", "prototriplet", "fullicnn")`` gives
    :math:`(L_{CE} + L_{PT} + L_{ICNN})/3`.

    ``weights`` (one per term, default 1) generalise it to the weighted mean
    :math:`\sum_t w_t L_t / \sum_t w_t`.  The ICNN variants: ``suppicnn`` (support set alone),
    ``queryicnn`` (queries against supports, or against prototypes with ``query_protos``),
    ``fullicnn`` (supports and queries together, ``ipc = shot + query``).
    Returns ``(loss, parts, D)``: the total, ``{term: value}`` and the query-prototype distances.
    """
    terms = tuple(terms)
    if not terms or any(t not in TERMS for t in terms) or len(set(terms)) != len(terms):
        raise ValueError(f"terms must be distinct names from {TERMS}; got {terms}")
    weights = (1.0,) * len(terms) if weights is None else tuple(weights)
    if len(weights) != len(terms):
        raise ValueError(f"give one weight per term: {len(terms)} terms, {len(weights)} weights")
    weights = tuple(checks.non_negative(w, "weight") for w in weights)
    if sum(weights) <= 0:
        raise ValueError("at least one term needs a weight > 0")
    z_s = checks.as_float_tensor(z_support, "z_support", 2)
    z_q = checks.as_float_tensor(z_query, "z_query", 2)
    y_s = checks.check_labels(y_support, z_s.shape[0], z_s.device)
    y_q = checks.check_labels(y_query, z_q.shape[0], z_q.device)
    c = prototypes(z_s, y_s)
    D = distances(z_q, c)
    way = c.shape[0]
    shot = z_s.shape[0] // way
    parts = {}
    for t in terms:
        if t == "cross":
            parts[t] = protonet_loss(D, y_q, T=T)
        elif t == "prototriplet":
            parts[t] = proto_triplet_loss(D, y_q, m=m)
        elif t == "suppicnn":
            parts[t] = icnn_loss(z_s, y_s, k=k)
        elif t == "queryicnn":
            target = (c, torch.arange(way, device=y_q.device)) if query_protos else (z_s, y_s)
            parts[t] = icnn_loss(z_q, y_q, *target, k=k)
        else:  # fullicnn
            ipc = shot + z_q.shape[0] // way
            parts[t] = icnn_loss(torch.cat([z_s, z_q]), torch.cat([y_s, y_q]), k=k, ipc=ipc)
    total = sum(w * parts[t] for w, t in zip(weights, terms)) / sum(weights)
    return total, parts, D


# ------------------------------------------------------------------------------------------------
# Episodes
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Episode:
    """Indices into a dataset and episode labels ``0 .. way-1`` (grouped by class)."""

    support: torch.Tensor      # (way * shot,) dataset indices
    query: torch.Tensor        # (way * query,)
    y_support: torch.Tensor    # (way * shot,) episode labels: 0,0,..,1,1,..
    y_query: torch.Tensor      # (way * query,)
    classes: torch.Tensor      # (way,) the dataset class behind each episode label


class EpisodeSampler:
    """N-way K-shot episodes: ``way`` classes without replacement, then ``shot + query`` distinct
    samples of each (support and query never share a sample), as the official ``FewShotSampler``.

    Seeded with its own generator, so the same ``seed`` gives the same episodes (the test episodes
    of two runs are then identical: their accuracies compare pair-wise).
    """

    def __init__(self, labels, way: int = 5, shot: int = 1, query: int = 15, *, seed: int = 0):
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError("labels must be a 1-D array of integer class ids")
        self.classes = np.unique(labels)
        checks.integer(shot, "shot", 1)
        checks.integer(query, "query", 1)
        checks.integer(way, "way", 2)
        if way > len(self.classes):
            raise ValueError(f"way must be <= {len(self.classes)}, the number of classes in the data; got {way}")
        self.by_class = {c: np.flatnonzero(labels == c) for c in self.classes}
        smallest = min(len(v) for v in self.by_class.values())
        if shot + query > smallest:
            raise ValueError(f"shot + query = {shot + query} exceeds the smallest class ({smallest} samples)")
        self.way, self.shot, self.query = way, shot, query
        self.rng = np.random.default_rng(seed)

    def sample(self) -> Episode:
        """One episode."""
        chosen = self.rng.choice(self.classes, size=self.way, replace=False)
        picks = np.stack([self.rng.choice(self.by_class[c], size=self.shot + self.query, replace=False)
                          for c in chosen])                      # way x (shot + query)
        lab = torch.arange(self.way)
        return Episode(torch.as_tensor(picks[:, :self.shot].reshape(-1)),
                       torch.as_tensor(picks[:, self.shot:].reshape(-1)),
                       lab.repeat_interleave(self.shot), lab.repeat_interleave(self.query),
                       torch.as_tensor(chosen))

    def __iter__(self):
        while True:
            yield self.sample()


def toy_episode(way: int = 5, shot: int = 1, query: int = 5, *, scale: float = 1.0, spread: float = 0.35,
                dim: int = 2, seed: int = 0) -> tuple:
    """A synthetic episode for the pure-maths pictures: class centres on a circle of radius
    ``scale`` (in ``dim`` dimensions, the rest zero), Gaussian samples of std ``spread`` around them.

    ``scale`` moves the classes apart with the within-class spread fixed.  The same ``seed`` gives
    the same noise at every scale.  Returns ``(z_support, y_support, z_query, y_query)`` (float64).
    """
    checks.integer(way, "way", 2)
    checks.integer(shot, "shot", 1)
    checks.integer(query, "query", 1)
    checks.integer(dim, "dim", 2)
    scale = checks.non_negative(scale, "scale")
    spread = checks.non_negative(spread, "spread")
    g = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.arange(way, dtype=torch.float64) / way
    centres = torch.zeros(way, dim, dtype=torch.float64)
    centres[:, 0], centres[:, 1] = torch.cos(angle), torch.sin(angle)
    noise = torch.randn(way, shot + query, dim, generator=g, dtype=torch.float64) * spread
    z = scale * centres[:, None, :] + noise
    lab = torch.arange(way)
    return (z[:, :shot].reshape(-1, dim), lab.repeat_interleave(shot),
            z[:, shot:].reshape(-1, dim), lab.repeat_interleave(query))


# ------------------------------------------------------------------------------------------------
# Evaluation on held-out classes
# ------------------------------------------------------------------------------------------------

def episode_index(labels, *, way: int = 5, shot: int = 1, query: int = 10, episodes: int = 300,
                  seed: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``episodes`` N-way K-shot episodes over a labelled set, drawn at once:
    ``(support, query)`` of shapes E x (way*shot) and E x (way*query), grouped by episode label
    (the episode's classes in random order).  Distinct samples within an episode; the same ``seed``
    gives the same episodes."""
    labels = np.asarray(labels)
    checks.integer(episodes, "episodes", 1)
    EpisodeSampler(labels, way, shot, query)        # validates way, shot and query against the data
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    chosen = rng.random((episodes, len(classes))).argsort(axis=1)[:, :way]          # E x way
    picks = np.empty((episodes, way, shot + query), dtype=np.int64)
    for ci, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        draw = members[rng.random((episodes, len(members))).argsort(axis=1)[:, :shot + query]]
        e, w = np.nonzero(chosen == ci)
        picks[e, w] = draw[e]
    return (torch.as_tensor(picks[:, :, :shot].reshape(episodes, -1)),
            torch.as_tensor(picks[:, :, shot:].reshape(episodes, -1)))


def fewshot_accuracy(z, labels, *, way: int = 5, shot: int = 1, query: int = 10, episodes: int = 300,
                     seed: int = 1000, index=None) -> np.ndarray:
    """Per-episode accuracy of nearest-prototype classification on episodes of the embeddings
    ``z`` (N x D) of held-out classes (:func:`episode_index`, or the ``index`` it returned).  The
    same ``seed`` draws the same episodes, so two embeddings of one test set compare episode by
    episode.  Vectorised over the episodes."""
    z = checks.as_float_tensor(z, "z (embeddings, N x D)", 2)
    labels = checks.check_labels(labels, z.shape[0], z.device)
    s_idx, q_idx = index if index is not None else episode_index(
        labels.cpu().numpy(), way=way, shot=shot, query=query, episodes=episodes, seed=seed)
    E, way = s_idx.shape[0], s_idx.shape[1] // shot
    with torch.no_grad():
        c = z[s_idx.to(z.device)].reshape(E, way, shot, -1).mean(dim=2)                 # E x way x D
        q = z[q_idx.to(z.device)]                                                        # E x Q x D
        # ||q - c||^2 up to ||q||^2, which is the same for every prototype of a query: a batched
        # matrix product instead of an E x Q x way x D tensor of differences
        d2 = torch.baddbmm(c.pow(2).sum(-1)[:, None, :], q, c.transpose(1, 2), alpha=-2)  # E x Q x way
        y = torch.arange(way, device=z.device).repeat_interleave(q_idx.shape[1] // way)
        acc = (d2.argmin(dim=2) == y).double().mean(dim=1)
    return acc.cpu().numpy()


def episode_stats(z, labels, *, shot: int = 1, query: int = 10, way: int = 5, episodes: int = 50,
                  m: float = 0.5, k: int = 4, seed: int = 7) -> dict:
    """How separable the classes of ``z`` are, episode by episode (means over ``episodes``
    episodes): accuracy, the Proto-Triplet hinge loss ``pt`` and its active fraction at margin
    ``m``, and the ICNN score with its parts on supports + queries (``fullicnn``: ipc = shot + query)."""
    z = checks.as_float_tensor(z, "z (embeddings, N x D)", 2).detach()
    labels = checks.check_labels(labels, z.shape[0], z.device)
    s_idx, q_idx = episode_index(labels.cpu().numpy(), way=way, shot=shot, query=query, episodes=episodes, seed=seed)
    lab = torch.arange(way, device=z.device)
    y_s, y_q = lab.repeat_interleave(shot), lab.repeat_interleave(query)
    rows = []
    with checks.validation(False):
        for e in range(episodes):
            z_s, z_q = z[s_idx[e]], z[q_idx[e]]
            D = distances(z_q, prototypes(z_s, y_s, way))
            nb = icnn_neighbours(torch.cat([z_s, z_q]), torch.cat([y_s, y_q]), k=k, ipc=shot + query)
            t = icnn_terms(nb.D, nb.same, k=nb.k, reduced=nb.reduced)
            rows.append([episode_accuracy(D, y_q), float(proto_triplet_loss(D, y_q, m=m)),
                         float(active_queries(D, y_q, m).double().mean()),
                         *(float(t[key]) for key in ("score", "lam_same", "lam_diff", "gamma"))])
    keys = ("acc", "pt", "active", "score", "lam_same", "lam_diff", "gamma")
    return dict(zip(keys, np.mean(rows, axis=0).tolist()))


def margin_curve(z, labels, ms, *, shot: int = 1, query: int = 10, way: int = 5, episodes: int = 100,
                 seed: int = 7) -> dict:
    r"""How far the queries of ``episodes`` episodes of ``z`` sit from the Proto-Triplet margin.

    With the gap :math:`g_q = D_{q,y_q} - \min_{k \ne y_q} D_{qk}` of every query (negative: the own
    prototype is the nearer), returns, one number per margin in ``ms``:

    * ``active``: the fraction of queries whose hinge is active, :math:`g_q + m > 0` (at m = 0: the
      misclassified queries);
    * ``hinge``: the mean hinge, :math:`\frac1Q\sum_q [g_q + m]_+` (the Proto-Triplet loss at m);

    and, one number each, ``d_own`` and ``d_wrong``, the mean distances to the own and to the nearest
    wrong prototype (the size of the embedding, in which the margin is measured).
    """
    z = checks.as_float_tensor(z, "z (embeddings, N x D)", 2).detach()
    labels = checks.check_labels(labels, z.shape[0], z.device)
    s_idx, q_idx = episode_index(labels.cpu().numpy(), way=way, shot=shot, query=query, episodes=episodes, seed=seed)
    c = z[s_idx].reshape(episodes, way, shot, -1).mean(dim=2)
    D = ((z[q_idx][:, :, None, :] - c[:, None, :, :]).pow(2).sum(-1) + EPS).sqrt()        # E x Q x way
    own = F.one_hot(torch.arange(way, device=z.device).repeat_interleave(query), way).bool()
    d_own = D[:, own].reshape(episodes, -1)
    d_wrong = D.masked_fill(own, math.inf).min(dim=2).values
    gap = (d_own - d_wrong).double()                                                      # E x Q
    ms = [checks.non_negative(m, "m") for m in ms]
    return {"active": np.array([float((gap + m > 0).double().mean()) for m in ms]),
            "hinge": np.array([float((gap + m).clamp(min=0).mean()) for m in ms]),
            "d_own": float(d_own.mean()), "d_wrong": float(d_wrong.mean())}


def project_episode(z, support, query, *, shot: int) -> tuple:
    """One episode of embeddings ``z`` (indices ``support``, ``query``, grouped by class) in 2-D for
    :func:`draw_episode`: PCA fitted on the episode's points, and the true query-prototype distances
    of the full embedding.  Returns ``(p_support, y_support, p_query, y_query, D)``."""
    from ..models import pca_embedding

    z = checks.as_float_tensor(z, "z", 2).detach()
    way = len(support) // shot
    y_s = torch.arange(way).repeat_interleave(shot)
    y_q = torch.arange(way).repeat_interleave(len(query) // way)
    pts = torch.cat([z[support], z[query]])
    flat = pca_embedding(pts, pts, 2).double()
    D = distances(z[query], prototypes(z[support], y_s, way))
    return flat[:len(support)], y_s, flat[len(support):], y_q, D


def ci95(acc) -> float:
    """Half-width of the 95% confidence interval of a mean accuracy (the official ``1.96 std/sqrt(n)``)."""
    acc = np.asarray(acc, dtype=float)
    return float(1.96 * acc.std() / math.sqrt(len(acc)))


# ------------------------------------------------------------------------------------------------
# Data: many identities, so that every training episode is a different task
# ------------------------------------------------------------------------------------------------

def noisy_identities(n_noise: int = 32, noise_std: float = 1.0, *, n_ids: int = 400, n_per_id: int = 20,
                     n_train: int = 300, seed: int = 0):
    """The package's synthetic identities (:func:`lossviz.data.identities`: 32 features, training on
    identities ``0 .. n_train-1``, testing on the others, never seen in training) with ``n_noise``
    extra features of pure Gaussian noise (std ``noise_std``) appended to every sample.

    Why the noise: on the clean features nearest-prototype classification of unseen identities is
    already close to perfect, so there is nothing for a network to learn.  Nuisance features, which
    vary from sample to sample but say nothing about the identity, are what makes raw pixels a poor
    metric for real images; a network can learn from the training identities to ignore them, and
    that skill carries over to new identities.  Deterministic (numpy generator seeded with ``seed``).
    """
    from ..data import Split, identities

    checks.integer(n_noise, "n_noise", 0)
    noise_std = checks.non_negative(noise_std, "noise_std")
    base = identities(n_ids, n_per_id, n_train=n_train, seed=seed)
    rng = np.random.default_rng([seed, 3])
    noise = lambda n: torch.as_tensor(rng.normal(0.0, noise_std, (n, n_noise)), dtype=torch.float32)  # noqa: E731
    return Split("ids_noisy", torch.cat([base.x_train, noise(len(base.x_train))], dim=1), base.y_train,
                 torch.cat([base.x_test, noise(len(base.x_test))], dim=1), base.y_test,
                 f"synthetic identities + {n_noise} noise features (std {noise_std:g}): train on {n_train} "
                 f"identities, test on {n_ids - n_train} unseen ({n_per_id} samples each)")


#: The few-shot lessons' own data set, next to :data:`lossviz.data.DATASETS`.
FEWSHOT_DATA = {"ids_noisy": noisy_identities}


def load_fewshot(name: str):
    """A data split by name: :data:`FEWSHOT_DATA`, or any name :func:`lossviz.data.load` knows.
    Remembered (:func:`lossviz.train.memo`), so the many runs of a lesson build it once."""
    from ..data import load

    return memo("fewshot_data", {"name": name}, lambda: FEWSHOT_DATA[name]() if name in FEWSHOT_DATA else load(name))


# ------------------------------------------------------------------------------------------------
# Episodic training
# ------------------------------------------------------------------------------------------------

#: The notebook's loss combinations: name -> official ``--losses`` terms.
COMBOS = {"CE": ("cross",), "CE+PT": ("cross", "prototriplet"), "CE+ICNN": ("cross", "fullicnn"),
          "PT": ("prototriplet",), "CE+PT+ICNN": ("cross", "prototriplet", "fullicnn")}


@dataclass(repr=False)
class FewShotRun(Run):
    """One episodic training run: ``history`` per iteration (loss, each term, train acc, PT-active
    fraction), ``evals`` (iter, acc: mean test-episode accuracy), ``scores`` after training (``acc``,
    its 95% interval ``ci95``), the accuracy of every test episode and the test embeddings."""

    test_acc: np.ndarray | None = None            # per test episode, after training
    z_test: torch.Tensor | None = None            # test-class embeddings after training
    z_test_before: torch.Tensor | None = None     # ... and before
    y_test: torch.Tensor | None = None
    net: torch.nn.Module | None = None            # the trained network (eval mode)

    @property
    def acc(self) -> float:
        """Mean accuracy over the test episodes (classes never seen in training) after training."""
        return self.final("acc")

    def __repr__(self) -> str:
        p = self.params
        return (f"FewShotRun({'+'.join(p['terms'])}, {p['way']}-way {p['shot']}-shot, {p['iters']} it, "
                f"seed {p['seed']}: test {p['test_way']}-way acc {self.acc:.3f} ± {self.scores['ci95']:.3f})")


def embedder(x: torch.Tensor, dim: int) -> torch.nn.Module:
    """The lessons' network for ``x`` *without* the final L2 normalisation: ProtoNet works with raw
    Euclidean embeddings."""
    from ..models import model_for

    return model_for(x, dim, normalize=False)


def train_fewshot(terms=("cross",), *, data: str = "ids_noisy", way: int = 10, shot: int = 1,
                  query: int = 5, dim: int = 16, iters: int = 300, lr: float = 1e-3, T: float = 1.0,
                  m: float = 0.5, k: int = 4, weights=None, seed: int = 0, test_way: int = 10,
                  test_shot: int | None = None, test_query: int = 10, test_episodes: int = 300,
                  eval_every: int = 50, progress=True, cache: bool = True) -> FewShotRun:
    """Episodic training on the training classes of ``data`` (:func:`load_fewshot`), evaluation on
    episodes of its test classes (never seen in training).  Adam at ``lr``; one episode per
    iteration, ``way`` classes drawn at random from all training classes (all training episodes are
    drawn at once from ``seed``).

    Records per iteration the total loss, each term, the training-episode accuracy and the fraction
    of queries whose Proto-Triplet hinge is active; before training, every ``eval_every``
    iterations and at the end the mean accuracy on ``test_episodes`` fixed test episodes (the same
    for every run: compare pair-wise).  Runs are cached by their parameters (:func:`lossviz.train.memo`).
    """
    terms = tuple(terms)
    test_shot = shot if test_shot is None else test_shot
    for name, value in (("dim", dim), ("eval_every", eval_every), ("iters", iters)):
        checks.integer(value, name, 1)
    params = dict(terms=terms, data=data, way=way, shot=shot, query=query, dim=dim, iters=iters,
                  lr=checks.positive(lr, "lr"), T=T, m=m, k=k, weights=None if weights is None else tuple(weights),
                  seed=seed, test_way=test_way, test_shot=test_shot, test_query=test_query,
                  test_episodes=test_episodes, eval_every=eval_every)
    return memo("fewshot", params, lambda: _train_fewshot(params, progress), cache=cache)


def _train_fewshot(p: dict, progress) -> FewShotRun:
    split = load_fewshot(p["data"])
    trainer = Trainer(lambda: embedder(split.x_train, p["dim"]), lr=p["lr"], seed=p["seed"])
    net = trainer.model
    train_s, train_q = episode_index(split.y_train.numpy(), way=p["way"], shot=p["shot"], query=p["query"],
                                     episodes=p["iters"], seed=p["seed"])
    lab = torch.arange(p["way"])
    y_s, y_q = lab.repeat_interleave(p["shot"]), lab.repeat_interleave(p["query"])
    test = dict(way=p["test_way"], shot=p["test_shot"], query=p["test_query"], episodes=p["test_episodes"])
    index = memo("fewshot_test_episodes", dict(data=p["data"], **test),           # the same for every run
                 lambda: episode_index(split.y_test.numpy(), **test))
    tested = []                                    # (test embeddings, accuracy per test episode) of each evaluation

    def evaluate() -> dict:
        z = net(split.x_test)
        tested.append((z, fewshot_accuracy(z, split.y_test, shot=p["test_shot"], index=index)))
        return {"acc": float(tested[-1][1].mean())}

    def step(it: int) -> dict:
        z = net(split.x_train[torch.cat([train_s[it - 1], train_q[it - 1]])])
        z_s, z_q = z[:len(y_s)], z[len(y_s):]
        loss, parts, D = episode_loss(z_s, y_s, z_q, y_q, terms=p["terms"], weights=p["weights"],
                                      T=p["T"], m=p["m"], k=p["k"])
        trainer.update(loss)
        D = D.detach()
        return {"loss": loss, **parts, "train_acc": episode_accuracy(D, y_q),
                "active": float(active_queries(D, y_q, p["m"]).double().mean())}

    history, evals, seconds = trainer.run(step, p["iters"], evaluate=evaluate, eval_every=p["eval_every"],
                                          desc="+".join(p["terms"]), progress=progress)
    z_after, acc = tested[-1]
    return FewShotRun(params=p, history=history, evals=evals, scores={"acc": float(acc.mean()), "ci95": ci95(acc)},
                      seconds=seconds, test_acc=acc, z_test=z_after, z_test_before=tested[0][0], y_test=split.y_test,
                      net=net.eval())


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def draw_episode(ax, z_support, y_support, z_query, y_query, *, m: float = 0.5, D=None,
                 title: str | None = None) -> dict:
    """The 2-D episode view: prototypes as stars, supports as squares, queries as dots (filled:
    Proto-Triplet hinge active at margin ``m``; hollow: satisfied), a blue line from each query to
    its own prototype and a vermillion one to its hardest wrong prototype.

    The first two coordinates are drawn.  ``D`` (Q x way) gives the true distances when the points
    are a projection (PCA) of higher-dimensional embeddings; by default they are computed in 2-D."""
    return _episode_view(ax, y_support, y_query)(z_support, z_query, m=m, D=D, title=title)


def _episode_view(ax, y_support, y_query):
    """The artists of :func:`draw_episode` for fixed labels, made once; returns
    ``update(z_support, z_query, *, m, D=None, title=None) -> dict``, which moves them in place."""
    from matplotlib.collections import LineCollection

    from .. import plots

    y_s, y_q = np.asarray(y_support), np.asarray(y_query)
    cols = _class_colors(y_q)
    none = np.zeros(0)
    links = ax.add_collection(LineCollection([], colors=[plots.POS_COLOR, plots.NEG_COLOR] * len(y_q),
                                             linewidths=0.9, alpha=0.6, zorder=1))
    active = ax.scatter(none, none, s=36, zorder=3, edgecolors="k", linewidths=0.5)
    hollow = ax.scatter(none, none, facecolors="none", s=36, zorder=3, linewidths=1.4)
    supports = ax.scatter(none, none, marker="s", s=18, zorder=2, alpha=0.6)
    protos = ax.scatter(none, none, marker="*", s=320, edgecolors="k", zorder=4)
    ax.set(xlabel="embedding dim 1", ylabel="embedding dim 2")
    ax.set_aspect("equal", adjustable="datalim")

    def update(z_support, z_query, *, m: float = 0.5, D=None, title: str | None = None) -> dict:
        z_s, z_q = plots.as_numpy(z_support), plots.as_numpy(z_query)
        c = prototypes(torch.as_tensor(z_s), torch.as_tensor(y_s)).numpy()
        D = distances(torch.as_tensor(z_q), torch.as_tensor(c)) if D is None else torch.as_tensor(D).detach().double()
        act = active_queries(D, torch.as_tensor(y_q), m).numpy()
        wrong = D.masked_fill(F.one_hot(torch.as_tensor(y_q), c.shape[0]).bool(), math.inf).argmin(1).numpy()
        z_s, z_q, c = z_s[:, :2], z_q[:, :2], c[:, :2]
        links.set_segments(np.stack([z_q, c[y_q], z_q, c[wrong]], axis=1).reshape(-1, 2, 2))
        active.set_offsets(z_q[act])
        active.set_facecolor(cols[act])
        hollow.set_offsets(z_q[~act])
        hollow.set_edgecolor(cols[~act])
        supports.set_offsets(z_s)
        supports.set_facecolor(_class_colors(y_s))
        protos.set_offsets(c)
        protos.set_facecolor(_class_colors(np.arange(len(c))))
        ax.relim()
        ax.autoscale_view()
        ax.set_title(title or f"episode: {int(act.sum())}/{len(act)} hinges active (m = {m:g})")
        return {"active": act, "wrong": wrong}

    return update


def _class_colors(labels) -> np.ndarray:
    return np.array(CLASS_COLORS, dtype=object)[np.asarray(labels) % len(CLASS_COLORS)].astype(str)


def distance_weight_heatmap(ax, G, y_query, *, title: str = "", colorbar: bool = True):
    """Signed weights on the query-prototype distances, drawn as ``-dL/dD`` so that the colours
    mean what they mean for similarities: blue pulls a query towards a prototype, vermillion
    pushes it away.  Each query's own prototype is outlined."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    from .. import plots

    W = -plots.as_numpy(G)
    vmax = max(np.abs(W).max(), 1e-12)
    im = ax.imshow(W, cmap=plots.WEIGHT_CMAP, norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto")
    for q, k in enumerate(np.asarray(y_query)):
        ax.add_patch(Rectangle((k - 0.5, q - 0.5), 1, 1, fill=False, edgecolor="k", lw=0.8))
    ax.set(title=title, xlabel="prototype k", ylabel="query q")
    ax.set_xticks(range(W.shape[1]))
    ax.set_yticks(range(0, W.shape[0], max(1, W.shape[0] // 10)))
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=r"$-\partial L/\partial D_{qk}$")
    return im


def draw_neighbourhood(ax, P, labels, nb: Neighbourhood, grad=None, *, title: str = "") -> None:
    """The ICNN neighbourhood graph in 2-D: an edge from every point to each of its first k
    neighbours, blue for same class, vermillion for different class; with ``grad`` (from
    :func:`icnn_weights`) the edge width is the size of the loss's weight on that distance."""
    _neighbourhood_view(ax, labels)(P, nb, grad, title=title)


def _neighbourhood_view(ax, labels):
    """The artists of :func:`draw_neighbourhood` for fixed labels, made once; returns
    ``update(P, nb, grad=None, *, title="")``, which moves them in place."""
    from matplotlib.collections import LineCollection

    from .. import plots

    y = np.asarray(labels)
    none = np.zeros(0)
    edges = ax.add_collection(LineCollection([], alpha=0.7, zorder=1))
    points = ax.scatter(none, none, s=30, edgecolors="k", linewidths=0.4, zorder=2)
    ax.set(xlabel="embedding dim 1", ylabel="embedding dim 2")
    ax.set_aspect("equal", adjustable="datalim")

    def update(P, nb: Neighbourhood, grad=None, *, title: str = "") -> None:
        P = plots.as_numpy(P)[:, :2]
        idx, same = nb.index.numpy(), nb.same.numpy()
        g = np.abs(plots.as_numpy(grad)) if grad is not None else np.ones(idx.shape)
        shown = (np.arange(idx.shape[1]) < nb.k)[None, :] | (g > 0)     # the first k, and any weighted one
        i, j = np.nonzero(shown)
        edges.set_segments(np.stack([P[i], P[idx[i, j]]], axis=1))
        edges.set_color(np.where(same[i, j], plots.POS_COLOR, plots.NEG_COLOR))
        edges.set_linewidths(0.4 + 4.0 / max(g.max(), 1e-12) * g[i, j] if grad is not None else 1.0)
        points.set_offsets(P)
        points.set_facecolor(_class_colors(y))
        ax.relim()
        ax.autoscale_view()
        ax.set_title(title)

    return update


#: Colours of the ICNN score and its parts.
SCORE_COLORS = {"score": "#000000", "lam_same": "#0072B2", "lam_diff": "#D55E00", "gamma": "#999999"}
SCORE_LABELS = {"score": "score", "lam_same": "λ_same", "lam_diff": "λ_diff", "gamma": "γ (purity)"}


def score_bars(ax, terms: dict, *, title: str = "ICNN score and its parts"):
    """Bars for λ_same, λ_diff, γ and the score (``terms`` from :func:`icnn_weights`)."""
    keys = ("lam_same", "lam_diff", "gamma", "score")
    values = [float(terms[key]) for key in keys]
    bars = ax.bar([SCORE_LABELS[key] for key in keys], values, color=[SCORE_COLORS[key] for key in keys])
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.02, f"{v:.2f}", ha="center")
    ax.set(ylim=(0, 1.1), ylabel="value (0 = worst, 1 = best)", title=title)
    return bars


def score_curve(ax, scales, curve: dict, *, title: str = "ICNN score as classes separate"):
    """The score and its parts (``{part: values}``) against the between-class scale."""
    lines = []
    for key in ("score", "lam_same", "lam_diff", "gamma"):
        (line,) = ax.plot(scales, curve[key], color=SCORE_COLORS[key], lw=2.4 if key == "score" else 1.4,
                          label=SCORE_LABELS[key])
        lines.append(line)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set(xscale="log", ylim=(0, 1.05), xlabel="radius of the class centres (within-class std 0.35)",
           ylabel="value", title=title)
    ax.set_xticks([t for t in (0.2, 0.5, 1, 2, 5, 10) if min(scales) <= t <= max(scales)])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(loc="lower right")
    return lines


def learning_curves(axes, runs: dict) -> None:
    """Episode accuracy on the held-out classes and the fraction of Proto-Triplet-active training
    queries against iterations, one line per run (``{name: FewShotRun}``; a list of runs per name
    draws their mean)."""
    from .. import plots

    for name, rr in runs.items():
        rr = rr if isinstance(rr, (list, tuple)) else [rr]
        color = COMBO_COLORS.get(name)
        it = rr[0].evals["iter"]
        axes[0].plot(it, np.mean([r.evals["acc"] for r in rr], axis=0), marker=".", color=color, label=name)
        h = np.mean([r.history["active"] for r in rr], axis=0)
        axes[1].plot(rr[0].history["iter"], _smooth(h), color=color, lw=1.2, label=name)
    axes[0].set(title="test episode accuracy (unseen classes)", xlabel="iteration", ylabel="accuracy")
    axes[1].set(title="training queries with active PT hinge", xlabel="iteration", ylabel="fraction (smoothed)",
                ylim=(0, 1.02))
    axes[0].legend(loc="lower right")
    for ax in axes:
        ax.grid(True, color=plots.MUTED, alpha=0.25)


def _smooth(x, w: int = 15) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    w = min(w, len(x))
    return np.convolve(np.pad(x, (w // 2, w - 1 - w // 2), mode="edge"), np.ones(w) / w, mode="valid")


# ------------------------------------------------------------------------------------------------
# Panels (ipywidgets imported inside)
# ------------------------------------------------------------------------------------------------

def knobs_panel(*, way: int = 5, shot: int = 1, query: int = 4, seed: int = 0):
    """Pure maths on a synthetic 2-D episode: margin m, temperature T, the ICNN k, the loss weights
    and the distance between classes.  Left: the episode (active hinges filled).  Middle: the
    weights ``-dL/dD`` of the weighted mean of CE and PT.  Right: the ICNN neighbourhood graph of
    supports + queries (fullicnn), edge width = ICNN weight, with its score parts as the title.
    The artists are made once and updated in place."""
    import ipywidgets as W
    from matplotlib.colors import TwoSlopeNorm

    from .. import plots
    from ..weights import pair_weights
    from ..widgets import Panel

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "m": W.FloatSlider(value=0.5, min=0.0, max=2.0, step=0.05, description="margin m", **style),
        "T": W.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05, description="CE temperature T", **style),
        "k": W.IntSlider(value=4, min=2, max=8, description="ICNN k", **style),
        "w_pt": W.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.1, description="weight of PT", **style),
        "scale": W.FloatLogSlider(value=1.0, base=10, min=-0.7, max=0.7, step=0.05,
                                  description="class distance ×", **style),
    }
    fig, axes = plots.new_figure(3, width=4.3, height=4.0)
    _, y_s, _, y_q = toy_episode(way, shot, query, seed=seed)
    y = torch.cat([y_s, y_q])
    show_episode = _episode_view(axes[0, 0], y_s, y_q)
    heat = distance_weight_heatmap(axes[0, 1], torch.zeros(len(y_q), way, dtype=torch.float64), y_q, colorbar=False)
    show_graph = _neighbourhood_view(axes[0, 2], y)

    def combined(D, y, *, T, m, w_pt):
        return (protonet_loss(D, y, T=T) + w_pt * proto_triplet_loss(D, y, m=m)) / (1 + w_pt)

    def draw(v):
        z_s, _, z_q, _ = toy_episode(way, shot, query, scale=v["scale"], seed=seed)
        show_episode(z_s, z_q, m=v["m"])
        D = distances(z_q, prototypes(z_s, y_s))
        G = pair_weights(combined, D, y_q, signed=True, T=v["T"], m=v["m"], w_pt=v["w_pt"])
        minus_G = -G.numpy()
        vmax = max(np.abs(minus_G).max(), 1e-12)
        heat.set_data(minus_G)
        heat.set_norm(TwoSlopeNorm(0.0, -vmax, vmax))
        axes[0, 1].set_title(f"(CE + {v['w_pt']:.1f}·PT)/{1 + v['w_pt']:.1f}: $-\\partial L/\\partial D$")
        P = torch.cat([z_s, z_q])
        nb, g, t = icnn_weights(P, y, k=v["k"], ipc=max(shot + query, v["k"]))
        show_graph(P, nb, g, title=f"ICNN k={nb.k}: score {t['score']:.2f}\n"
                                   f"λ_same {t['lam_same']:.2f}  λ_diff {t['lam_diff']:.2f}  γ {t['gamma']:.2f}")
        act = active_queries(D, y_q, v["m"])
        return {"G": G, "active": float(act.double().mean()), "icnn": t,
                "status": f"PT hinge active for {float(act.double().mean()):.0%} of queries; "
                          f"ICNN score {t['score']:.3f}"}

    return Panel(controls, fig, draw)


def training_panel(*, data: str = "ids_noisy", iters: int = 300, autorun: bool = True, **fixed):
    """A Train button over :func:`train_fewshot`: the loss combination, shot, margin, ICNN k and
    seed; draws the test-episode accuracy and the PT-active fraction against iterations, next to
    the CE baseline of the same setting (both cached)."""
    import ipywidgets as W

    from ..widgets import run_panel

    style = dict(style={"description_width": "initial"})
    controls = {
        "combo": W.Dropdown(options=list(COMBOS), value="CE+PT", description="loss", layout=W.Layout(width="200px")),
        "shot": W.Dropdown(options=[1, 5], value=1, description="shot", layout=W.Layout(width="130px")),
        "m": W.FloatSlider(value=0.5, min=0.0, max=2.0, step=0.1, description="margin m",
                           continuous_update=False, **style),
        "k": W.IntSlider(value=4, min=2, max=8, description="ICNN k", continuous_update=False, **style),
        "seed": W.BoundedIntText(value=0, min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def settings(v) -> dict:
        return dict(data=data, iters=iters, shot=v["shot"], m=v["m"], k=v["k"], seed=v["seed"], **fixed)

    def run(v, progress):
        s = settings(v)
        return {"run": train_fewshot(COMBOS[v["combo"]], progress=progress, **s),
                "base": train_fewshot(COMBOS["CE"], progress=progress, **s), "combo": v["combo"]}

    def draw(axes, result, v):
        runs = {"CE": result["base"]} if result["combo"] == "CE" else {"CE": result["base"], result["combo"]: result["run"]}
        learning_curves(axes[0], runs)
        gap = result["run"].acc - result["base"].acc
        return {"gap": gap, "status": f"{result['run']!r}; vs CE {gap:+.3f}"}

    panel = run_panel(controls, run, draw, ncols=2, width=4.6, height=3.5, autorun=autorun,
                      describe=lambda r: repr(r["run"]))
    return panel
