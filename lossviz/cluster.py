"""Clustering in torch, seeded: k-means (k-means++ or random starts) and clustering scores.

Used where a loss weights or approximates negatives by clusters (PamC's meta-nodes, MEOW's
cluster-disagreement weights).
"""

from __future__ import annotations

import numpy as np
import torch

from . import checks


def kmeans(x, n_clusters: int, *, n_init: int = 10, iters: int = 50, seed: int = 0,
           init: str = "k-means++") -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in torch: ``(assign, centres)``.

    ``init="k-means++"`` seeds each restart with k-means++; ``init="random"`` with ``n_clusters``
    distinct rows drawn at random (with ``n_init=1``: plain Lloyd, as MEOW's code does).

    ``n_init`` restarts (the one with the smallest within-cluster sum of squares wins, as in
    scikit-learn; PamC's code uses 20), each at most ``iters`` Lloyd steps, stopping early when no
    assignment changes.  Seeded by ``seed`` through a private generator (the global RNG is untouched),
    so the result is deterministic.  A cluster that loses all its points keeps its old centre, so
    ``assign`` may use fewer than ``n_clusters`` ids (:func:`meta_nodes` drops empty clusters).
    """
    x = checks.as_float_tensor(x, "x (points to cluster, N x d)", 2).detach()
    n = x.shape[0]
    K = checks.integer(n_clusters, "n_clusters", 1)
    n_init = checks.integer(n_init, "n_init", 1)
    iters = checks.integer(iters, "iters", 1)
    if K > n:
        raise ValueError(f"n_clusters must be <= the number of points ({n}); got {K}")
    if init not in ("k-means++", "random"):
        raise ValueError(f"init must be 'k-means++' or 'random'; got {init!r}")
    g = torch.Generator().manual_seed(int(seed))
    best = None
    for _ in range(n_init):
        start = _kmeans_pp(x, K, g) if init == "k-means++" else x[torch.randperm(n, generator=g)[:K].to(x.device)].clone()
        assign, centres = _lloyd(x, start, iters)
        inertia = float((x - centres[assign]).pow(2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, assign, centres)
    return best[1], best[2]


def _kmeans_pp(x: torch.Tensor, K: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeds: each next centre drawn with probability proportional to its squared distance
    to the nearest centre so far."""
    n = x.shape[0]
    idx = [int(torch.randint(n, (1,), generator=g))]
    d2 = (x - x[idx[0]]).pow(2).sum(1)
    for _ in range(1, K):
        w = d2.double().cpu()
        w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / n)
        idx.append(int(torch.multinomial(w, 1, generator=g)))
        d2 = torch.minimum(d2, (x - x[idx[-1]]).pow(2).sum(1))
    return x[idx].clone()


def _lloyd(x: torch.Tensor, centres: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    K = len(centres)
    assign = torch.cdist(x, centres).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=K).to(x.dtype)[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        new = torch.cdist(x, centres).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign, centres


def _contingency(y_true, y_pred) -> np.ndarray:
    """Counts of (cluster, class) pairs: one row per predicted cluster, one column per class."""
    t = np.unique(np.asarray(y_true), return_inverse=True)[1].ravel()
    p = np.unique(np.asarray(y_pred), return_inverse=True)[1].ravel()
    if len(t) != len(p) or len(t) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and of the same length; got {len(t)} and {len(p)}")
    n_t, n_p = t.max() + 1, p.max() + 1
    return np.bincount(p * n_t + t, minlength=n_p * n_t).reshape(n_p, n_t).astype(float)


def _nmi(table: np.ndarray) -> float:
    P = table / table.sum()
    pp, pt = P.sum(1), P.sum(0)
    nz = P > 0
    mi = float((P[nz] * np.log(P[nz] / np.outer(pp, pt)[nz])).sum())
    h = -(pp * np.log(pp)).sum() - (pt * np.log(pt)).sum()      # H(pred) + H(true), no zero entries
    if table.shape == (1, 1):
        return 1.0
    return 0.0 if h == 0 else max(0.0, min(1.0, 2 * mi / h))


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information of a clustering and the classes, ``2 I(T; P) / (H(T) + H(P))``
    (the arithmetic normalisation, scikit-learn's default): 1 when the clusters are the classes
    (up to renaming), near 0 when they are independent of them."""
    return _nmi(_contingency(y_true, y_pred))


def cluster_scores(y_true, y_pred) -> dict:
    """NMI (:func:`nmi`) and clustering accuracy (the best one-to-one match of clusters to classes,
    Hungarian), from one contingency table: fast enough to run after every training step."""
    from scipy.optimize import linear_sum_assignment

    table = _contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(-table)
    return {"nmi": _nmi(table), "acc": float(table[rows, cols].sum() / table.sum())}
