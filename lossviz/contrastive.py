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
from .similarity import masked_logsumexp, pair_batch, upcast


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
    tau = checks.temperature(tau)
    return _nt_xent(upcast(S) / tau, pos, neg)


def _nt_xent(z: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """NT-Xent on logits ``z = S / tau`` with the given positive and negative masks."""
    lse_neg = masked_logsumexp(z, neg, keepdim=True)      # -inf for an anchor without negatives ...
    terms = torch.logaddexp(z, lse_neg) - z               # ... whose terms are then exactly 0
    return torch.where(pos, terms, 0.0).sum() / pos.sum().clamp(min=1)


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
    tau = checks.temperature(tau)
    z = upcast(S) / tau
    # Every row has at least one k != i (pair_batch asks for >= 2 columns), so no row is all -inf.
    lse = masked_logsumexp(z, pos | neg, keepdim=True)
    n_pos = pos.sum(dim=1)
    per_anchor = torch.where(pos, lse - z, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    return per_anchor.sum() / (n_pos > 0).sum().clamp(min=1)



# ------------------------------------------------------------------------------------------------
# The per-negative weight view: which negatives the temperature makes the loss push (Wang & Liu 2021)
# ------------------------------------------------------------------------------------------------

def _softmax_rows(z: torch.Tensor, neg: torch.Tensor):
    """``(log_r, lse_neg, has_neg)``: the log-softmax of ``z`` over each row's negatives (0 off the
    negatives, so that ``r log r`` and every gradient stay finite; callers mask it), the row's
    ``log sum_{n in N_i} e^{z_in}`` (-inf without negatives), and which rows have a negative."""
    lse_neg = masked_logsumexp(z, neg, keepdim=True)
    return torch.where(neg, z - lse_neg, 0.0), lse_neg, neg.any(dim=1, keepdim=True)


def relative_penalty(S, labels, *, tau: float = 0.1, anchors=None) -> torch.Tensor:
    r"""The relative penalty of each negative (Wang & Liu, CVPR 2021): a softmax over the
    anchor's negatives only, a Boltzmann distribution at temperature ``tau``.

    .. math::
        r_{ik} = \frac{e^{S_{ik}/\tau}}{\sum_{k' \in N_i} e^{S_{ik'}/\tau}} \quad (k \in N_i),
        \qquad r_{ik} = 0 \text{ otherwise}

    Each row with a negative sums to 1 (a row without one is all 0).  As ``tau -> 0`` the row becomes
    one-hot on the hardest negative; as ``tau -> inf`` it becomes uniform, ``1 / |N_i|``.  For NT-Xent
    this is the *shape* of the push: every positive pair (i, p) spreads its pull ``1 - q_p`` over the
    negatives in exactly these proportions (see :func:`nt_xent_weights`).  Same ``S`` / ``labels`` /
    ``anchors`` conventions as :func:`nt_xent_loss`; no positive pair is needed.
    """
    S, _, neg = pair_batch(S, labels, anchors, need_positive=False)
    tau = checks.temperature(tau)
    log_r, _, _ = _softmax_rows(upcast(S) / tau, neg)
    return torch.where(neg, log_r.exp(), 0.0)


def negative_weight_entropy(S, labels, *, tau: float = 0.1, anchors=None,
                            normalized: bool = False) -> torch.Tensor:
    r"""Entropy (in nats) of each anchor's relative penalties: the hardness measure of the temperature.

    .. math::
        H_i = -\sum_{k \in N_i} r_{ik} \log r_{ik} \in [0, \log |N_i|]

    ``H_i = 0``: all the push goes to the single hardest negative (``tau -> 0``); ``H_i = log |N_i|``:
    every negative is pushed equally, hardness plays no part (``tau -> inf``).  For a fixed row of
    similarities ``H_i`` is non-decreasing in ``tau``.  ``normalized=True`` divides by ``log |N_i|``
    (a number in [0, 1] that compares batches of different sizes; 0 when ``|N_i| <= 1``).  Returns
    one entropy per anchor (row), 0 for an anchor without negatives.
    """
    S, _, neg = pair_batch(S, labels, anchors, need_positive=False)
    tau = checks.temperature(tau)
    log_r, _, _ = _softmax_rows(upcast(S) / tau, neg)
    H = -torch.where(neg, log_r.exp() * log_r, 0.0).sum(dim=1)
    if normalized:
        n_neg = neg.sum(dim=1).to(H.dtype)
        H = torch.where(n_neg > 1, H / n_neg.clamp(min=2).log(), 0.0)
    return H


def nt_xent_weights(S, labels, *, tau: float = 0.1, anchors=None, signed: bool = False) -> torch.Tensor:
    r"""The pair weights of :func:`nt_xent_loss` in closed form (Wang & Liu 2021), B x B.

    For positive pair (i, p) let ``q`` be the softmax of ``S_i. / tau`` over ``{p} ∪ N_i``.  Then

    .. math::
        w_{ip} = 1 - q_p = \frac{\sum_{n \in N_i} e^{S_{in}/\tau}}{e^{S_{ip}/\tau} + \sum_{n \in N_i} e^{S_{in}/\tau}},
        \qquad
        w_{in} = \sum_{p \in P_i} q_n = r_{in} \sum_{p \in P_i} w_{ip}

    (``r`` the :func:`relative_penalty`): the pull on the positives equals the total push on the
    negatives, and the push is shared out by ``r``.  These are the gradients without the loss's
    constant factors::

        pair_weights(nt_xent_loss, S, labels, tau=tau) == nt_xent_weights(S, labels, tau=tau) / (tau * n_pairs)

    with ``n_pairs`` the number of positive pairs (the loss's mean).  ``signed=True`` gives the sign of
    the gradient: ``-w`` on positives (pulled together), ``+w`` on negatives (pushed apart).
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    tau = checks.temperature(tau)
    z = upcast(S) / tau
    log_r, lse_neg, has_neg = _softmax_rows(z, neg)
    w_pos = torch.where(pos & has_neg, torch.sigmoid(lse_neg - z), 0.0)   # 1 - q_p, never 1 - (a rounded 1)
    w_neg = torch.where(neg, log_r.exp(), 0.0) * w_pos.sum(dim=1, keepdim=True)
    return w_neg - w_pos if signed else w_neg + w_pos


def anchor_nt_xent_weights(s_pos, s_neg, *, tau: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One anchor with one positive (similarity ``s_pos``) and negatives ``s_neg``: ``(w_pos, w_neg)``,
    the pull ``1 - q_p`` on the positive and the push ``q_n`` on each negative (float64), as in
    :func:`nt_xent_weights`.  ``w_neg.sum() == w_pos``; ``w_neg / w_pos`` is the relative penalty.
    """
    s_pos = checks.finite(s_pos, "s_pos (the positive's similarity)")
    s_neg = checks.as_float_tensor(torch.as_tensor(s_neg, dtype=torch.float64).reshape(-1),
                                   "s_neg (the negatives' similarities)", 1).double()
    if len(s_neg) < 1:
        raise ValueError("the anchor needs at least one negative similarity in s_neg")
    row = torch.cat([s_neg.new_tensor([1.0, s_pos]), s_neg])[None]      # columns: anchor, positive, negatives
    labels = torch.tensor([0, 0] + [1] * len(s_neg))
    W = nt_xent_weights(row, labels, tau=tau, anchors=torch.tensor([0]))[0]
    return W[1], W[2:]


# ------------------------------------------------------------------------------------------------
# Wang & Liu's two comparison losses: no hardness awareness at all, and explicit hard negatives
# ------------------------------------------------------------------------------------------------

def simple_contrastive_loss(S, labels, *, lam: float = 0.01, anchors=None) -> torch.Tensor:
    r"""The "simple" contrastive loss of Wang & Liu (CVPR 2021): every negative gets the same weight.

    .. math::
        L = \frac{1}{|\mathcal P|} \sum_{(i, p) \in \mathcal P} \Big( -S_{ip} + \lambda \sum_{n \in N_i} S_{in} \Big)

    Its pair weights are constants: 1 on each positive pair, ``lam`` on every negative (times the
    number of the anchor's positive pairs), whatever the similarity, so hard negatives get no
    extra push.  It is NT-Xent's large-temperature limit: as ``tau -> inf`` NT-Xent's weights tend to
    ``(1 - 1/M, 1/M)`` with ``M = |N_i| + 1``, the weights of this loss with ``lam = 1/|N_i|`` up to a
    factor.  Same reduction (a mean over positive pairs) and conventions as :func:`nt_xent_loss`.
    Reconstructed from the paper's description (no official code was published).
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    lam = checks.non_negative(lam, "lam (the weight of each negative)")
    S = upcast(S)
    push = torch.where(neg, S, 0.0).sum(dim=1, keepdim=True)
    total = torch.where(pos, -S + lam * push, 0.0).sum()
    return total / pos.sum().clamp(min=1)


def hard_nt_xent_loss(S, labels, *, tau: float = 0.1, frac: float = 0.1, anchors=None) -> torch.Tensor:
    r"""NT-Xent over each anchor's hardest negatives only: the "hard contrastive loss" of Wang & Liu
    (CVPR 2021).

    .. math::
        L = \frac{1}{|\mathcal P|} \sum_{(i, p)} -\log \frac{e^{S_{ip}/\tau}}
            {e^{S_{ip}/\tau} + \sum_{n \in N_i,\ S_{in} \ge s^{(i)}_{frac}} e^{S_{in}/\tau}}

    with :math:`s^{(i)}_{frac}` the similarity of anchor i's ``ceil(frac * |N_i|)``-th most similar
    negative (ties at the threshold are all kept).  The paper keeps the negatives above a per-anchor
    similarity quantile, to show that explicit hard-negative selection lets a *large* tau keep the
    embedding uniform while staying tolerant; ``frac = 1`` is :func:`nt_xent_loss`.  The selection
    itself passes no gradient (it is a mask).  Reconstructed from the paper's description (no
    official code was published): we keep a fixed fraction of each anchor's negatives.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    tau = checks.temperature(tau)
    frac = checks.positive(frac, "frac (the fraction of negatives kept)")
    if frac > 1:
        raise ValueError(f"frac (the fraction of negatives kept) must be in (0, 1]; got {frac}")
    z = upcast(S) / tau
    n_neg = neg.sum(dim=1, keepdim=True)
    k = (n_neg * frac).ceil().long().clamp(min=1)
    ranked = torch.where(neg, z, -math.inf).detach().sort(dim=1, descending=True).values
    threshold = ranked.gather(1, (k - 1).clamp(max=z.shape[1] - 1))
    return _nt_xent(z, pos, neg & (z.detach() >= threshold))


#: The InfoNCE-family losses by short name: like :data:`lossviz.pairs.PAIR_LOSSES`, each is a
#: function ``loss(S, labels, **knobs)`` (labels may hold any number of samples per class).
CONTRASTIVE_LOSSES = {
    "nt_xent": nt_xent_loss,
    "supcon": supcon_loss,
    "hard_nt_xent": hard_nt_xent_loss,
    "simple_contrastive": simple_contrastive_loss,
}

# What each loss's mean is over, read by lossviz.distributed to weight one rank's block of anchors
# (a block's mean counts its own pairs or anchors, not the whole batch's).
for _fn in (nt_xent_loss, hard_nt_xent_loss, simple_contrastive_loss):
    _fn.reduction = "positive_pairs"      # 1/|P|: all positive pairs (i, p)
supcon_loss.reduction = "anchors_with_positive"   # 1/|I+|: the anchors that have a positive
del _fn
