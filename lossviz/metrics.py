"""Retrieval metrics on embeddings: every query is removed from its own gallery (leave-one-out).

Similarity is the cosine, as in training; ties are broken by index (``torch.topk`` order).
Queries are ranked a block at a time, so no N x N matrix is ever held (Stanford Online Products
has 60,502 test images): memory is ``chunk_elems`` similarities plus N x depth matches.
"""

from __future__ import annotations

import math

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


def tar_at_far(emb, labels, far: float = 1e-3) -> float:
    """Face verification: the true accept rate at a false accept rate ``far``.

    Over all pairs of distinct samples, the threshold is the ``1 - far`` quantile of the impostor
    (different-label) cosines; TAR is the fraction of genuine (same-label) pairs above it.
    """
    emb = checks.as_float_tensor(emb, "emb (embeddings, N x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device)
    far = checks.positive(far, "far (false accept rate)")
    if far >= 1:
        raise ValueError(f"far must be in (0, 1); got {far}")
    f = F.normalize(emb.detach().double(), dim=1)
    i, j = torch.triu_indices(len(f), len(f), offset=1, device=f.device)
    cos = (f[i] * f[j]).sum(dim=1)
    same = labels[i] == labels[j]
    if not bool(same.any()) or bool(same.all()):
        raise ValueError("TAR@FAR needs both genuine (same-label) and impostor pairs")
    impostor = cos[~same].sort().values
    threshold = impostor[min(len(impostor) - 1, int(math.floor((1 - far) * len(impostor))))]
    return float((cos[same] > threshold).double().mean())
