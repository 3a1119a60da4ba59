r"""The InfoNCE family written on the similarity matrix with a temperature: ``loss(S, labels, tau=...)``.

Each loss is a softmax cross-entropy over one anchor's row of ``S / tau``: the positive (or
positives) in the numerator, the anchor's other samples in the denominator.  Written on ``S`` like
the pair losses of :mod:`lossviz.pairs`, so that ``|dL/dS_ij|`` is again a pair weight
(:func:`lossviz.pair_weights`), and with the same conventions:

* ``S`` is B x B with ``labels`` (B,) int, or A x N with ``anchors=`` (A,) (a block of anchors
  scored against a whole batch, as on one rank of :mod:`lossviz.distributed`);
* ``P_i`` = same label, ``j != i`` (self excluded by index); ``N_i`` = different label;
* O(B^2) memory, log-sum-exp throughout (no ``exp(S / tau)`` is ever formed, so ``tau = 0.01`` is
  safe in float32); half-precision inputs are computed in float32; no host sync when value checks
  are off (:func:`lossviz.validation`).

The reductions are **not** the mean over all anchors of :mod:`lossviz.pairs`: NT-Xent averages over
positive *pairs*, SupCon over the anchors that *have* a positive (each paper's own reduction, and
pytorch-metric-learning's).  With ``anchors=`` a block's loss is therefore that mean over the
block's own pairs (anchors); to recombine blocks, weight each by its share of the pairs (anchors).
"""

from __future__ import annotations

import math

import torch

from . import checks
from .pairs import _working
from .similarity import pair_batch


def _temperature(tau) -> float:
    """``tau`` as a finite float > 0, or a ValueError that names it (a temperature of 0 would
    divide S by zero; a negative one would reward pushing positives apart)."""
    tau = checks.finite(tau, "tau (the temperature)")
    if tau == 0:
        raise ValueError("tau (the temperature) must be > 0; got 0: a temperature of 0 divides S by "
                         "zero. Typical values are 0.05 to 0.5")
    return checks.positive(tau, "tau (the temperature)")


def nt_xent_loss(S, labels, *, tau: float = 0.1, anchors=None) -> torch.Tensor:
    r"""NT-Xent (normalised temperature-scaled cross-entropy; SimCLR, Chen et al. 2020), for any labels.

    .. math::
        L = \frac{1}{|\mathcal P|} \sum_{(i, p) \in \mathcal P}
            -\log \frac{e^{S_{ip}/\tau}}{e^{S_{ip}/\tau} + \sum_{n \in N_i} e^{S_{in}/\tau}}

    where :math:`\mathcal P` is the set of all positive pairs (i, p), ``p in P_i``.  SimCLR is the
    special case where every label appears exactly twice (the two views of one image).  The other
    positives of anchor i are *not* in the denominator of pair (i, p).  An anchor without negatives
    contributes terms of exactly 0 (``-log 1``) that still count in the mean.

    Pair weights (``|dL/dS|``, before the ``1/|P|`` of the mean): within the term of (i, p), let
    ``q`` be the softmax of ``S/tau`` over ``{p} ∪ N_i``.  Negative n of anchor i gets
    ``q_n / tau`` from each of its anchor's positive pairs (summed over p); the positive gets
    ``(1 - q_p) / tau``.  Hard negatives and hard positives dominate, more sharply as ``tau -> 0``.

    Computed per row: with ``LSE_i = log sum_{n in N_i} e^{S_in / tau}``, the term of (i, p) is
    ``logaddexp(S_ip / tau, LSE_i) - S_ip / tau``.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    tau = _temperature(tau)
    z = _working(S) / tau
    has_neg = neg.any(dim=1, keepdim=True)
    # Outside N_i a row holds -inf; a row without negatives holds 0 instead (its terms are masked
    # out below), so that logsumexp's gradient stays finite rather than 0 * NaN.
    fill = torch.where(has_neg, -math.inf, 0.0)
    lse_neg = torch.logsumexp(torch.where(neg, z, fill), dim=1, keepdim=True)
    terms = torch.logaddexp(z, lse_neg) - z
    total = torch.where(pos & has_neg, terms, 0.0).sum()
    return total / pos.sum().clamp(min=1)


def supcon_loss(S, labels, *, tau: float = 0.1, anchors=None) -> torch.Tensor:
    r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020, eq. 2, :math:`L^{sup}_{out}`).

    .. math::
        L = \frac{1}{|I^+|} \sum_{i \in I^+} \frac{1}{|P_i|} \sum_{p \in P_i}
            -\log \frac{e^{S_{ip}/\tau}}{\sum_{k \ne i} e^{S_{ik}/\tau}}

    where :math:`I^+` is the set of anchors with at least one positive (anchors without one, e.g.
    the only sample of its class, are left out of the mean).  Unlike NT-Xent, the denominator holds
    *every* other sample, the anchor's other positives included.

    Pair weights (``|dL/dS|``, before the ``1/|I^+|``): with ``q`` the softmax of ``S_i. / tau`` over
    ``k != i``, sample k of anchor i gets ``|q_k - [k in P_i] / |P_i|| / tau``: a negative ``q_k / tau``,
    a positive ``(1/|P_i| - q_k) / tau`` (it is pushed *away* when ``q_k > 1/|P_i|``, sign flipped).
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    tau = _temperature(tau)
    z = _working(S) / tau
    # Every row has at least one k != i (pair_batch asks for >= 2 columns), so no row is all -inf.
    lse = torch.logsumexp(torch.where(pos | neg, z, -math.inf), dim=1, keepdim=True)
    n_pos = pos.sum(dim=1)
    per_anchor = torch.where(pos, lse - z, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    return per_anchor.sum() / (n_pos > 0).sum().clamp(min=1)

