"""Margin-based softmax losses on a cosine classifier: NormFace, CosFace, ArcFace.

A classification loss is also a pair loss: each sample is paired with the weight vector (the
*proxy*) of every class, and ``cos θ_ik = <x_i/|x_i|, W_k/|W_k|>`` plays the role of ``S_ij``.
With a scale ``s`` and a margin ``m`` on the target class,

    L = (1/B) Σ_i -log( e^{s ψ(θ_{i,y_i})} / (e^{s ψ(θ_{i,y_i})} + Σ_{k≠y_i} e^{s cos θ_ik}) )

    ψ(θ) = cos θ            NormFace (Wang et al. 2017; Zhai & Wu 2018), no margin
    ψ(θ) = cos θ - m        CosFace (Wang et al. 2018)
    ψ(θ) = cos(θ + m)       ArcFace (Deng et al. 2019)

The General Pair Weighting view: ``dL/dcos θ_ik = (s/B) p_ik`` for a wrong class k, a softmax at
temperature ``1/s`` over the proxies, so the hardest wrong classes get the weight; for the target
the ArcFace factor ``sin(θ+m)/sin θ`` multiplies ``(s/B)(p_iy - 1)``.  :func:`proxy_weights`
reads them by autograd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import checks

#: The margin types of :func:`margin_logits`.
MARGINS = ("normface", "cosface", "arcface")

_COS_LIMIT = 1 - 1e-7  # d acos / dx is infinite at ±1: keep cosines strictly inside


def cosine_logits(emb, weights) -> torch.Tensor:
    """``cos θ_ik``: B x K cosines between the embeddings (B x D) and the class weights (K x D)."""
    emb = checks.as_float_tensor(emb, "emb (embeddings, B x D)", 2)
    weights = checks.as_float_tensor(weights, "weights (class proxies, K x D)", 2)
    if emb.shape[1] != weights.shape[1]:
        raise ValueError(f"embeddings have dimension {emb.shape[1]} but the class weights {weights.shape[1]}")
    return F.normalize(emb, dim=1) @ F.normalize(weights, dim=1).T


def cosine_batch(cos, labels):
    """``(cos, labels)`` checked: a B x K float matrix of cosines to K class weights (K >= 2) and B
    integer labels in ``[0, K)``; the margin losses' input, as :func:`lossviz.similarity.pair_batch`
    is the pair losses'."""
    cos = checks.as_float_tensor(cos, "cos (cosines, B x K)", 2)
    labels = checks.check_labels(labels, cos.shape[0], cos.device)
    if cos.shape[0] == 0:
        raise ValueError("cos is empty (B = 0): a margin loss needs at least one sample")
    if checks.validation_enabled():
        if cos.shape[1] < 2:
            raise ValueError(f"cos needs at least two classes (columns); got {cos.shape[1]}")
        if bool(((labels < 0) | (labels >= cos.shape[1])).any()):
            raise ValueError(f"labels must be class indices in [0, {cos.shape[1] - 1}] (one column of cos per class)")
        if bool((cos.abs() > 1 + 1e-4).any()):
            raise ValueError("cos holds values outside [-1, 1]: pass cosines (see cosine_logits), not raw logits")
    return cos, labels


def margin_logits(cos, labels, *, s: float = 64.0, m: float = 0.5, kind: str = "arcface",
                  easy_threshold: bool = False) -> torch.Tensor:
    """The scaled logits ``s ψ(θ_iy)`` on the target column and ``s cos θ_ik`` elsewhere.

    ``kind`` is one of :data:`MARGINS`; ``m`` is ignored for ``"normface"``.  For ArcFace,
    ``cos(θ + m) = cos θ cos m - sin θ sin m`` with ``sin θ = sqrt(1 - cos²)`` (no acos, so no
    infinite derivative at ±1).  ArcFace's ψ stops decreasing once ``θ + m > π``;
    ``easy_threshold=True`` switches to the common fall-back ``cos θ - m sin m`` there (insightface's
    code; not part of the original formula, off by default).
    """
    cos, labels = cosine_batch(cos, labels)
    s = checks.positive(s, "s (the scale)")
    m = checks.non_negative(m, "m (the margin)")
    if kind not in MARGINS:
        raise ValueError(f"kind must be one of {MARGINS}; got {kind!r}")
    work = cos.float() if cos.dtype in (torch.float16, torch.bfloat16) else cos
    target = work.gather(1, labels[:, None])
    if kind == "normface" or m == 0:
        psi = target
    elif kind == "cosface":
        psi = target - m
    else:
        c = target.clamp(-_COS_LIMIT, _COS_LIMIT)
        sin = (1 - c * c).sqrt()
        cos_m, sin_m = (torch.cos(m), torch.sin(m)) if torch.is_tensor(m) else (math.cos(m), math.sin(m))
        psi = c * cos_m - sin * sin_m                                  # a learnable m keeps its gradient
        if easy_threshold:
            threshold = torch.cos(math.pi - m) if torch.is_tensor(m) else math.cos(math.pi - m)
            psi = torch.where(c > threshold, psi, c - m * sin_m)
    return s * work.scatter(1, labels[:, None], psi)


def margin_softmax_loss(cos, labels, *, s: float = 64.0, m: float = 0.5, kind: str = "arcface",
                        easy_threshold: bool = False) -> torch.Tensor:
    """The margin softmax loss: cross-entropy on :func:`margin_logits`, mean over the batch."""
    logits = margin_logits(cos, labels, s=s, m=m, kind=kind, easy_threshold=easy_threshold)
    return F.cross_entropy(logits, checks.check_labels(labels, logits.shape[0], logits.device).long())


def arcface_loss(cos, labels, *, s: float = 64.0, m: float = 0.5) -> torch.Tensor:
    """ArcFace (Deng et al. 2019), the paper's defaults ``s = 64, m = 0.5``."""
    return margin_softmax_loss(cos, labels, s=s, m=m, kind="arcface")


def cosface_loss(cos, labels, *, s: float = 64.0, m: float = 0.35) -> torch.Tensor:
    """CosFace (Wang et al. 2018), the paper's defaults ``s = 64, m = 0.35``."""
    return margin_softmax_loss(cos, labels, s=s, m=m, kind="cosface")


def normface_loss(cos, labels, *, s: float = 16.0) -> torch.Tensor:
    """Normalised softmax (NormFace, Wang et al. 2017; Zhai & Wu 2018): no margin, scale ``s``."""
    return margin_softmax_loss(cos, labels, s=s, m=0.0, kind="normface")


def proxy_weights(loss_fn, cos, labels, *, signed: bool = False, **knobs) -> torch.Tensor:
    """The sample-proxy weights ``dL/dcos θ_ik`` (B x K) of any ``loss_fn(cos, labels, **knobs)``,
    by autograd: the General Pair Weighting view of a classification loss."""
    cos = checks.as_float_tensor(cos, "cos (cosines, B x K)", 2).detach().clone().requires_grad_(True)
    loss_fn(cos, labels, **knobs).backward()
    return cos.grad if signed else cos.grad.abs()


class CosineClassifier(nn.Module):
    """``K`` class proxies ``W`` (K x D, no bias); ``forward(emb)`` returns ``cos θ`` (B x K).

    ``project()`` renormalises the rows of ``W`` in place: the "weights on the sphere" constraint
    applied after each optimiser step (Keras' unit-norm kernel constraint) rather than inside the
    forward pass; both give the same logits, not the same gradient."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(F.normalize(torch.randn(n_classes, dim), dim=1))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return cosine_logits(emb, self.weight)

    @torch.no_grad()
    def project(self) -> None:
        self.weight.copy_(F.normalize(self.weight, dim=1))
