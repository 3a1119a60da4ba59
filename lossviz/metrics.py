"""Retrieval metrics on embeddings: every query is removed from its own gallery (leave-one-out).

Similarity is the cosine, as in training; ties are broken by index (``torch.topk`` order).
Queries are ranked a block at a time, so no N x N matrix is ever held (Stanford Online Products
has 60,502 test images): memory is ``chunk_elems`` similarities plus N x depth matches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import checks


def retrieval_scores(emb, labels, ks=(1,), *, map_r: bool = True, chunk_elems: int = 2**26) -> dict:
    """Recall@K for each K in ``ks`` and MAP@R, from one ranking: ``{"recall_at_1": ..., "map_at_r": ...}``.

    * Recall@K (Song et al. 2016): the fraction of queries with at least one same-class item among
      their K nearest neighbours.
    * MAP@R (Musgrave et al. 2020): for a query with R same-class items in the gallery,
      ``AP@R = 1/R * sum_{i<=R} P@i * [item i is relevant]``; the mean over queries with R >= 1.
    """
    emb = checks.as_float_tensor(emb, "emb (embeddings, N x D)", 2)
    n = emb.shape[0]
    labels = checks.check_labels(labels, n, emb.device)
    ks = tuple(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
            raise ValueError(f"k must be an integer in [1, {n - 1}] for {n} embeddings; got {k!r}")
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    R = counts[inverse] - 1
    if map_r and int(R.max()) < 1:
        raise ValueError("MAP@R needs at least one class with two or more samples")
    depth = max(ks + ((int(R.max()),) if map_r else ()))
    f = F.normalize(emb.detach(), dim=1)
    chunk = max(1, chunk_elems // n)
    matches = []
    for start in range(0, n, chunk):
        S = f[start:start + chunk] @ f.T
        rows = torch.arange(S.shape[0], device=S.device)
        S[rows, start + rows] = float("-inf")  # the query is not in its own gallery
        idx = S.topk(depth, dim=1).indices
        matches.append(labels[idx] == labels[start:start + chunk, None])
    matches = torch.cat(matches)
    out = {f"recall_at_{k}": float(matches[:, :k].any(dim=1).double().mean()) for k in ks}
    if map_r:
        rank = torch.arange(1, depth + 1, device=matches.device)
        hits = (matches & (rank[None, :] <= R[:, None])).double()
        ap = (hits.cumsum(dim=1) / rank * hits).sum(dim=1) / R.clamp(min=1)
        out["map_at_r"] = float(ap[R >= 1].mean())
    return out


def recall_at_k(emb, labels, k: int = 1) -> float:
    """Recall@K: the fraction of queries with at least one same-class item among their K nearest
    neighbours (the metric of the deep metric learning literature, Song et al. 2016)."""
    return retrieval_scores(emb, labels, ks=(k,), map_r=False)[f"recall_at_{k}"]


def map_at_r(emb, labels) -> float:
    """MAP@R (Musgrave et al. 2020): for a query with R same-class items in the gallery,
    ``AP@R = 1/R * sum_{i<=R} P@i * [item i is relevant]``; the mean over queries with R >= 1."""
    return retrieval_scores(emb, labels, ks=(), map_r=True)["map_at_r"]


def tar_at_fars(emb, labels, fars=(1e-3, 1e-2)) -> dict:
    """Face verification: the true accept rate at each false accept rate of ``fars``, ``{far: tar}``.

    Over all pairs of distinct samples, the threshold for ``far`` is the ``1 - far`` quantile of
    the impostor (different-label) cosines, taken by integer index into the sorted impostors; TAR
    is the fraction of genuine (same-label) pairs above it.  One N x N product for all FARs.
    """
    emb = checks.as_float_tensor(emb, "emb (embeddings, N x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device)
    fars = tuple(fars)
    for far in fars:
        far = checks.positive(far, "far (false accept rate)")
        if far >= 1:
            raise ValueError(f"far must be in (0, 1); got {far}")
    f = F.normalize(emb.detach().double(), dim=1)
    i, j = torch.triu_indices(len(f), len(f), offset=1, device=f.device)
    cos = (f @ f.T)[i, j]
    same = labels[i] == labels[j]
    if not bool(same.any()) or bool(same.all()):
        raise ValueError("TAR@FAR needs both genuine (same-label) and impostor pairs")
    impostor, genuine = cos[~same], cos[same]
    out = {}
    for far in fars:
        k = min(len(impostor) - 1, math.floor((1 - far) * len(impostor)))
        threshold = impostor.kthvalue(k + 1).values  # = sort(impostor)[k]
        out[far] = float((genuine > threshold).double().mean())
    return out


def tar_at_far(emb, labels, far: float = 1e-3) -> float:
    """TAR at one false accept rate: see :func:`tar_at_fars`."""
    return tar_at_fars(emb, labels, (far,))[far]


def _unit_rows(emb, name: str) -> torch.Tensor:
    emb = checks.as_float_tensor(emb, name, 2)
    if checks.validation_enabled() and bool((emb.norm(dim=1) == 0).any()):
        raise ValueError(f"{name} has an all-zero row, whose direction on the sphere is undefined")
    return F.normalize(emb.detach().double(), dim=1)


def uniformity(emb, *, t: float = 2.0) -> float:
    r"""Uniformity loss (Wang & Isola, ICML 2020), lower = more uniform on the sphere.

    .. math::
        \mathcal L_{uniform} = \log \frac{1}{\binom{N}{2}} \sum_{i<j} e^{-t \lVert f_i - f_j \rVert^2}

    over all distinct pairs of the L2-normalised rows ``f`` (as the paper's ``torch.pdist`` code),
    computed as a log-sum-exp.  Its minimum over N points tends to ``-t * 2 * N/(N-1)`` on a large
    sphere (``-4`` at ``t = 2``: all points orthogonal or opposite); it is 0 when all points coincide.
    """
    t = checks.positive(t, "t (the uniformity's scale)")
    f = _unit_rows(emb, "emb (embeddings, N x D)")
    n = f.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 embeddings; got {n}")
    d2 = (2 - 2 * f @ f.T).clamp(min=0)                   # ||f_i - f_j||^2 on the sphere
    i, j = torch.triu_indices(n, n, offset=1, device=f.device)
    return float(torch.logsumexp(-t * d2[i, j], dim=0) - math.log(len(i)))


def alignment(emb1, emb2, *, alpha: float = 2.0) -> float:
    r"""Alignment loss (Wang & Isola, ICML 2020), lower = positive pairs closer.

    .. math::
        \mathcal L_{align} = \frac1N \sum_i \lVert f(x_i) - f(y_i) \rVert^\alpha

    where row i of ``emb1`` and row i of ``emb2`` are a positive pair (two views of one item), both
    L2-normalised.  In [0, 2^alpha].
    """
    alpha = checks.positive(alpha, "alpha (the alignment's exponent)")
    f1 = _unit_rows(emb1, "emb1 (first views, N x D)")
    f2 = _unit_rows(emb2, "emb2 (second views, N x D)")
    if f1.shape != f2.shape:
        raise ValueError(f"emb1 and emb2 must have the same shape (row i of each is a positive pair); "
                         f"got {tuple(f1.shape)} and {tuple(f2.shape)}")
    return float((f1 - f2).norm(dim=1).pow(alpha).mean())


def tolerance(emb, labels) -> float:
    r"""Tolerance (Wang & Liu, CVPR 2021): the mean cosine similarity of same-class pairs.

    .. math::
        T = \frac{1}{|\{(i, j): i \ne j, l_i = l_j\}|} \sum_{i \ne j,\ l_i = l_j} f_i^\top f_j

    The paper writes ``E_{x,y}[f(x)^T f(y) \cdot 1(l(x) = l(y))]``; its reported values (about 0.3 to
    0.8 with ten classes) are the mean over same-class pairs, which we compute, each item paired
    with the *other* items of its class (the self-pair is left out).  Higher = semantically similar
    items are kept close ("tolerant").  Labels are used only here, never in self-supervised training.
    """
    f = _unit_rows(emb, "emb (embeddings, N x D)")
    labels = checks.check_labels(labels, f.shape[0], f.device)
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    if not bool(same.any()):
        raise ValueError("tolerance needs at least one class with two or more samples")
    return float((f @ f.T)[same].mean())


def _scores(x, name) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty: the AUC needs at least one score on each side")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def roc_auc(negative_scores, positive_scores) -> float:
    """ROC-AUC: the probability that a positive scores higher than a negative, ties counted 1/2
    (Mann-Whitney U / (n_pos n_neg), from average ranks)."""
    from scipy.stats import rankdata

    neg, pos = _scores(negative_scores, "negative_scores"), _scores(positive_scores, "positive_scores")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def roc_curve(negative_scores, positive_scores) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the ROC curve, one point per distinct threshold (from (0, 0) to (1, 1))."""
    neg, pos = _scores(negative_scores, "negative_scores"), _scores(positive_scores, "positive_scores")
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.searchsorted(np.sort(-neg), -thresholds, side="right") / len(neg)
    tpr = np.searchsorted(np.sort(-pos), -thresholds, side="right") / len(pos)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def knn_accuracy(f_train, y_train, f_test, y_test, *, k: int = 5, T: float | None = None) -> float:
    r"""k-nearest-neighbour class accuracy: each test point takes the class that wins the vote of its
    ``k`` most cosine-similar training points (ties: the smaller class id).

    ``T=None`` (default): a majority vote, one vote per neighbour.  ``T > 0``: neighbour ``j`` votes with
    weight ``exp(s_j / T)`` (Wu et al., CVPR 2018, sec. 3.4; ``k = 20, T = 0.07`` is the evaluator of
    most self-supervised papers).  At ``T = 0.07`` a neighbour 0.05 more similar counts twice as much;
    as ``T -> inf`` the weighted vote becomes the majority vote.

    .. math::  \hat y = \arg\max_c \sum_{j \in \text{kNN}(x)} e^{s_j / T}\, 1[y_j = c]
    """
    f_tr = F.normalize(checks.as_float_tensor(f_train, "f_train", 2), dim=1)
    f_te = F.normalize(checks.as_float_tensor(f_test, "f_test", 2), dim=1)
    y_train = checks.check_labels(y_train, f_tr.shape[0], f_tr.device)
    y_test = checks.check_labels(y_test, f_te.shape[0], f_te.device)
    if f_tr.shape[1] != f_te.shape[1]:
        raise ValueError(f"f_train and f_test must have the same dimension; got {f_tr.shape[1]} and {f_te.shape[1]}")
    if len(f_te) == 0:
        raise ValueError("f_test is empty: there is no test point to classify")
    k = checks.integer(k, "k (neighbours)", 1, len(f_tr))
    # votes over the classes present (ids 0..C-1 by rank), so that large class ids cost nothing
    classes, y_idx = torch.unique(y_train, return_inverse=True)
    s, idx = (f_te @ f_tr.T).topk(k, dim=1)
    if T is None:
        votes = F.one_hot(y_idx[idx], len(classes)).sum(1)
    else:
        T = checks.positive(T, "T (the temperature of the votes)")
        weights = torch.exp((s - s[:, :1]) / T)                          # e^{s/T}, scaled by the row's largest
        votes = torch.zeros(len(f_te), len(classes), dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, y_idx[idx], weights)
    return float((classes[votes.argmax(1)] == y_test).float().mean())


def singular_spectrum(h, *, center: bool = False) -> torch.Tensor:
    """The singular values of ``h`` (N x D) divided by their sum: a distribution over directions."""
    h = checks.as_float_tensor(h, "h (representations, N x D)", 2).detach().double()
    if min(h.shape) < 1:
        raise ValueError(f"h must have at least one row and one column; got shape {tuple(h.shape)}")
    if center:
        h = h - h.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(h)
    if not float(s.sum()) > 0:
        raise ValueError("h is all zeros (after centring): its spectrum, and its effective rank, are undefined")
    return s / s.sum()


def effective_rank(h, *, center: bool = False) -> float:
    r"""Effective rank of ``h`` (N x D; Roy & Vetterli 2007, RankMe):

    .. math::
        p_k = \frac{\sigma_k}{\sum_l \sigma_l}, \qquad
        \mathrm{erank}(h) = \exp\Big(-\sum_k p_k \log p_k\Big) \in [1, \min(N, D)]

    1 when every row lies on one line (rank 1), ``min(N, D)`` when all singular values are equal
    (an isotropic cloud); k for k equal singular values and the rest 0.  A low value is
    *dimensional collapse*: the representations use few directions.  ``center=True`` removes the
    mean first (then a shared offset does not count as a direction).
    """
    p = singular_spectrum(h, center=center)
    return float(torch.exp(-torch.where(p > 0, p * p.clamp(min=1e-300).log(), 0.0).sum()))


# ------------------------------------------------------------------------------------------------
# Comparing methods over paired seeds
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over seeds that both methods ran on: ``mean``, its standard error ``se``
    (sample standard deviation / sqrt(n)), ``wins`` (seeds where ``a`` is ahead) of ``n``, and the
    ``verdict``: ``"ahead"`` when ``mean - 2 se > 0``, ``"behind"`` when ``mean + 2 se < 0``,
    otherwise ``"a tie"`` (the difference is inside the seed-to-seed spread)."""

    mean: float
    se: float
    wins: int
    n: int
    verdict: str

    def __str__(self) -> str:
        return (f"{self.mean:+.3f} ± {self.se:.3f} (mean ± standard error over {self.n} seeds), "
                f"ahead on {self.wins} of {self.n}: {self.verdict}")


def paired_difference(a, b) -> PairedDifference:
    """Compare two methods seed by seed (:class:`PairedDifference`): ``a`` and ``b`` hold one number
    per seed in the same seed order; ``b`` may be a single number (a method without a seed).  The
    notebooks' rule for a claim: assert "ahead" only when ``mean - 2 se > 0``; else print the verdict."""
    a = np.asarray(a, dtype=float)
    d = a - np.broadcast_to(np.asarray(b, dtype=float), a.shape)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"a must hold one number per seed, at least 2 seeds (b the same, or one number); got {d.shape}")
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    verdict = "ahead" if mean - 2 * se > 0 else "behind" if mean + 2 * se < 0 else "a tie"
    return PairedDifference(mean, se, int((d > 0).sum()), len(d), verdict)
