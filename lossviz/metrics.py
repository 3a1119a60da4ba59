"""Retrieval metrics on embeddings: every query is removed from its own gallery (leave-one-out).

Similarity is the cosine, as in training.  Ties are broken by index (``torch.topk`` order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import checks


def _ranked_matches(emb, labels, depth: int):
    """For each query, whether each of its ``depth`` nearest gallery items shares its label."""
    emb = checks.as_float_tensor(emb, "emb (embeddings, N x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device)
    if emb.shape[0] < 2:
        raise ValueError("retrieval needs at least 2 embeddings (a query and a gallery)")
    f = F.normalize(emb.detach(), dim=1)
    S = f @ f.T
    S.fill_diagonal_(float("-inf"))  # the query is not in its own gallery
    idx = S.topk(depth, dim=1).indices
    return labels[idx] == labels[:, None], labels


def recall_at_k(emb, labels, k: int = 1) -> float:
    """Recall@K: the fraction of queries with at least one same-class item among their K nearest
    neighbours (the metric of the deep metric learning literature, Song et al. 2016)."""
    n = len(emb)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, {n - 1}] for {n} embeddings; got {k!r}")
    matches, _ = _ranked_matches(emb, labels, k)
    return float(matches.any(dim=1).double().mean())


def map_at_r(emb, labels) -> float:
    """MAP@R (Musgrave et al. 2020): for a query with R same-class items in the gallery,
    ``AP@R = 1/R * sum_{i<=R} P@i * [item i is relevant]``; the mean over queries with R >= 1."""
    return retrieval_scores(emb, labels)["map_at_r"]


def _map_at_r(matches: torch.Tensor, R: torch.Tensor) -> float:
    rank = torch.arange(1, matches.shape[1] + 1, device=matches.device)
    hits = (matches & (rank[None, :] <= R[:, None])).double()
    ap = (hits.cumsum(dim=1) / rank * hits).sum(dim=1) / R.clamp(min=1)
    return float(ap[R >= 1].mean())


def retrieval_scores(emb, labels) -> dict:
    """``{"recall_at_1": ..., "map_at_r": ...}`` from one ranking (what the training loop logs)."""
    labels_t = checks.check_labels(labels, len(emb), torch.device("cpu"))
    _, inverse, counts = torch.unique(labels_t, return_inverse=True, return_counts=True)
    R = counts[inverse] - 1
    if int(R.max()) < 1:
        raise ValueError("retrieval scores need at least one class with two or more samples")
    matches, _ = _ranked_matches(emb, labels, int(R.max()))
    return {"recall_at_1": float(matches[:, 0].double().mean()), "map_at_r": _map_at_r(matches, R.to(matches.device))}
