r"""Bring your own loss: a pytorch-metric-learning loss as a function ``L(S, labels)``.

The losses people train with are objects of pytorch-metric-learning (PML) that take embeddings:
``loss(embeddings, labels)``.  Almost all of them first turn the embeddings into a matrix, the
cosine similarities (``CosineSimilarity``) or the Euclidean distances of the normalised embeddings
(``LpDistance``), and read nothing else.  :func:`from_pml` hands such a loss the similarity matrix
``S`` itself, so that its value is a function of ``S`` and its pair weights ``dL/dS_ij`` come from
autograd like those of every lossviz loss::

    from pytorch_metric_learning import losses, miners
    W = lv.pair_weights(lv.from_pml(losses.MultiSimilarityLoss()), S, labels)
    W = lv.pair_weights(lv.from_pml(losses.TripletMarginLoss(), miners.TripletMarginMiner()), S, labels)

How: during the call the loss's (and the miner's) distance object is swapped for a copy whose matrix
is built from ``S``: ``S`` for a similarity (``CosineSimilarity``, ``DotProductSimilarity`` of unit
vectors), ``sqrt(2 - 2 S)`` for ``LpDistance(p=2)`` of normalised embeddings (the Euclidean
distance of unit vectors), raised to the distance's ``power``.  The embeddings PML receives are a
B x 1 placeholder of zeros: PML reads their shape, dtype and device (and builds its "no pair
mined" zero loss as ``sum(embeddings * 0)``, which stays 0).

Not served, with a ``ValueError`` that says why: losses that compare the batch with something else
than itself (classification losses and proxies: ArcFace, CosFace, NormalizedSoftmax, ProxyAnchor,
SoftTriple, ...: they have their own weight matrix; ``CrossBatchMemory``: a memory bank), losses on
another distance (``SNRDistance``, ``LpDistance`` without normalisation or with ``p != 2``), and
losses with an embedding regulariser.  PML is imported only when :func:`from_pml` is called.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch

from . import checks
from .similarity import pair_batch


def from_pml(loss, miner=None) -> Callable[..., torch.Tensor]:
    """A pytorch-metric-learning ``loss`` (and optional ``miner``) as ``fn(S, labels) -> scalar``.

    ``S`` is B x B (cosine similarities of a batch), ``labels`` (B,) integers, as for every lossviz
    loss; the batch must hold a positive pair.  The returned function works with
    :func:`lossviz.pair_weights` and the weight panels.  On a batch where every anchor has a positive
    and a negative, ``from_pml(MultiSimilarityLoss(alpha, beta, base))`` equals
    ``lv.ms_loss(..., mining=False)``, ``from_pml(NTXentLoss(t))`` equals ``lv.nt_xent_loss(tau=t)``
    and ``from_pml(SupConLoss(t))`` equals ``lv.supcon_loss(tau=t)``, in value and pair weights
    (tests/test_pml.py).
    """
    for name, obj in (("loss", loss), ("miner", miner)):
        if obj is None and name == "miner":
            continue
        if not callable(obj) or not hasattr(obj, "distance"):
            raise ValueError(f"{name} must be a pytorch-metric-learning {name} with a distance "
                             f"(e.g. losses.MultiSimilarityLoss()); got {type(obj).__name__}")
        _check_distance(obj.distance, f"{type(obj).__name__}")
    if getattr(loss, "embedding_regularizer", None) is not None:
        raise ValueError(f"{type(loss).__name__} has an embedding regulariser, which reads the embeddings "
                         "themselves, not S: build the loss without it")

    def fn(S, labels) -> torch.Tensor:
        S, _, _ = pair_batch(S, labels)
        labels = checks.check_labels(labels, S.shape[0], S.device)
        placeholder = S.new_zeros(S.shape[0], 1)
        parts = [loss] + ([miner] if miner is not None else [])
        originals = [p.distance for p in parts]
        try:
            for p, d in zip(parts, originals):
                p.distance = _distance_from(S, d, type(p).__name__)
            indices = None if miner is None else miner(placeholder, labels)
            value = loss(placeholder, labels, indices)
        finally:
            for p, d in zip(parts, originals):
                p.distance = d
        return value

    fn.__name__ = fn.__qualname__ = f"from_pml({type(loss).__name__}" + (
        f", {type(miner).__name__})" if miner is not None else ")")
    return fn


def _kind(distance) -> str:
    """``"similarity"`` (the matrix is S), ``"euclidean"`` (sqrt(2 - 2S)), or a reason it is neither."""
    name = type(distance).__name__
    if name in ("CosineSimilarity", "DotProductSimilarity") and distance.is_inverted:
        return "similarity"
    if name == "LpDistance" and distance.p == 2 and distance.normalize_embeddings:
        return "euclidean"
    if name == "LpDistance":
        return "an LpDistance of un-normalised embeddings or with p != 2 is not a function of S"
    return f"{name} is not a function of the cosine similarity matrix"


def _check_distance(distance, owner: str) -> None:
    kind = _kind(distance)
    if kind not in ("similarity", "euclidean"):
        raise ValueError(f"{owner} uses {kind}: from_pml serves losses on CosineSimilarity, "
                         "DotProductSimilarity or LpDistance(p=2, normalize_embeddings=True)")


def _distance_from(S: torch.Tensor, original, owner: str):
    """A copy of PML's ``original`` distance (same knobs, same class, so PML's own type checks
    pass) whose matrix is computed from ``S`` instead of from embeddings."""
    kind, power = _kind(original), original.power

    def forward(query_emb, ref_emb=None):
        if ref_emb is not None and ref_emb is not query_emb:
            raise ValueError(f"{owner} compares the batch with other embeddings (class weights, proxies or a "
                             "memory bank): from_pml serves losses on the batch's own S only")
        # a fresh tensor every call: PML's miners write into the matrix they get (MultiSimilarityMiner does)
        mat = S.clone() if kind == "similarity" else _unit_distance(S)
        return mat if power == 1 else mat ** power

    twin = copy.copy(original)
    twin.forward = forward
    return twin


def _unit_distance(S: torch.Tensor) -> torch.Tensor:
    """``|f_i - f_j| = sqrt(2 - 2 S_ij)`` for unit vectors, with gradient 0 where the distance is 0
    (as ``torch.cdist``), not the infinite slope of the square root there."""
    d2 = (2 - 2 * S).clamp(min=0)
    zero = d2 == 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, d2).sqrt())
