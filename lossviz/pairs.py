r"""Pair-based losses as functions of the similarity matrix: ``loss(S, labels, **knobs) -> scalar``.

Every loss here is written in the similarity form of Wang et al. (CVPR 2019), so that its General
Pair Weighting view is ``w_ij = |dL/dS_ij|`` (see :mod:`lossviz.weights`).

Conventions shared by all losses:

* ``S`` is B x B (``S_ij`` the similarity of anchor ``i`` and sample ``j``), ``labels`` is (B,) int;
  or, with ``anchors=`` (A,), ``S`` is A x N: A anchors (row ``i`` is column ``anchors[i]``) scored
  against N samples, as on one rank of a distributed batch (:mod:`lossviz.distributed`);
* ``P_i`` = same label, ``j != i`` (self excluded by index); ``N_i`` = different label;
* the loss is the **mean over all B anchors** of a per-anchor term (anchors without pairs count as 0);
* memory is O(B^2): no tensor is indexed by (positive pair x negative pair) or by triplets;
* half-precision inputs (float16, bfloat16, e.g. under ``torch.autocast``) are computed in float32,
  so large scales never overflow; the result is float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import checks
from .mining import ms_mining_masks
from .similarity import pair_batch

#: Multi-Similarity hyper-parameters: the paper, the official code (MalongTech/research-ms-loss),
#: pytorch-metric-learning's defaults, and the tuned values of "A Metric Learning Reality Check"
#: (Musgrave et al. 2020, CUB-200, MS + miner).
MS_PRESETS = {
    "paper": dict(alpha=2.0, beta=50.0, lam=1.0, eps=0.1),
    "official_code": dict(alpha=2.0, beta=40.0, lam=0.5, eps=0.1),
    "pml": dict(alpha=2.0, beta=50.0, lam=0.5, eps=0.1),
    "mlrc_cub": dict(alpha=17.97, beta=75.66, lam=0.77, eps=0.39),
}


def _working(S: torch.Tensor) -> torch.Tensor:
    """Half-precision similarities are upcast: exp(beta * S) must not overflow float16."""
    return S.float() if S.dtype in (torch.float16, torch.bfloat16) else S


def _log1p_sum_exp(a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise ``log(1 + sum_{k in mask} exp(a_k))``, stably: logsumexp over ``[0, a_1, ...]``.

    Exactly 0, with a zero gradient, on a row whose mask is empty."""
    a = a.masked_fill(~mask, float("-inf"))
    return torch.logsumexp(torch.cat([a.new_zeros(a.shape[0], 1), a], dim=1), dim=1)


def ms_loss(S, labels, *, alpha: float = 2.0, beta: float = 50.0, lam: float = 0.5,
            eps: float = 0.1, mining: bool = True, weighting: bool = True, anchors=None) -> torch.Tensor:
    r"""Multi-Similarity loss (Wang et al., CVPR 2019, eq. 8), with its epsilon-mining step.

    .. math::
        L = \frac1m \sum_i \Big\{ \frac1\alpha \log\big[1 + \sum_{k\in P_i} e^{-\alpha(S_{ik}-\lambda)}\big]
            + \frac1\beta \log\big[1 + \sum_{k\in N_i} e^{\beta(S_{ik}-\lambda)}\big] \Big\}

    ``P_i`` and ``N_i`` are the pairs kept by :func:`lossviz.mining.ms_mining` (``mining=True``) or
    all pairs (``mining=False``: the "weighting only" ablation, which is also pytorch-metric-learning's
    ``MultiSimilarityLoss`` without its miner).  ``weighting=False`` gives the "mining only"
    ablation: every mined pair gets the same weight 1, ``L = 1/m sum_i [sum_{P_i} (1 - S_ik) +
    sum_{N_i} (1 + S_ik)]`` (non-negative, and 0 when nothing is mined; ``alpha``, ``beta`` and
    ``lam`` play no part).

    Defaults follow pytorch-metric-learning (alpha 2, beta 50, base 0.5, eps 0.1); see
    :data:`MS_PRESETS` for the paper's (lam = 1) and the official code's (beta = 40) values.
    When mining keeps nothing the loss is exactly 0 with a zero gradient.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    alpha, beta = checks.positive(alpha, "alpha"), checks.positive(beta, "beta")
    lam, eps = checks.finite(lam, "lam"), checks.non_negative(eps, "eps")
    x = _working(S)
    if mining:
        pos, neg = ms_mining_masks(x, pos, neg, eps)
    if weighting:
        pos_term = _log1p_sum_exp(-alpha * (x - lam), pos) / alpha
        neg_term = _log1p_sum_exp(beta * (x - lam), neg) / beta
    else:
        pos_term = torch.where(pos, 1 - x, 0.0).sum(dim=1)
        neg_term = torch.where(neg, 1 + x, 0.0).sum(dim=1)
    return (pos_term + neg_term).mean()


def contrastive_loss(S, labels, *, lam: float = 0.5, anchors=None) -> torch.Tensor:
    r"""Contrastive loss in similarity form (Hadsell et al. 2006; the form of Wang et al. 2019, eq. 3).

    .. math::  L = \frac1m \sum_i \Big[\sum_{j\in P_i} (1 - S_{ij}) + \sum_{j\in N_i} [S_{ij} - \lambda]_+\Big]

    Pair weights: 1 on every positive; 1 on a negative exactly when ``S_ij > lam``.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    lam = checks.finite(lam, "lam")
    x = _working(S)
    per_anchor = torch.where(pos, 1 - x, 0.0).sum(dim=1) + torch.where(neg, F.relu(x - lam), 0.0).sum(dim=1)
    return per_anchor.mean()


def triplet_loss(S, labels, *, margin: float = 0.1, mining: str = "all", anchors=None) -> torch.Tensor:
    r"""Triplet loss on similarities (Weinberger & Saul 2009; Schroff et al. 2015).

    ``mining="all"`` (batch-all): every triplet of anchor ``a``, positive ``p``, negative ``n``,

    .. math::  L = \frac1m \sum_a \sum_{p\in P_a} \sum_{n\in N_a} [S_{an} - S_{ap} + \text{margin}]_+

    ``mining="semihard"``: each (a, p) takes one negative, the most similar one that is still
    *less* similar than the positive (``S_an < S_ap``); if there is none, the least similar negative
    (the rule of FaceNet as implemented in TensorFlow Addons).  ``L = 1/m sum_a sum_p [...]_+``.

    Pair weights (batch-all): a pair's weight is the number of active triplets that contain it.
    Computed in O(B^2) memory by sorting each anchor's positives (no B^3 triplet tensor).
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    margin = checks.non_negative(margin, "margin")
    if mining not in ("all", "semihard"):
        raise ValueError(f"mining must be 'all' or 'semihard'; got {mining!r}")
    x = _working(S)
    inf = float("inf")
    if mining == "all":
        # Row a: sum over negatives n of sum_{p: S_ap < x_n} (x_n - S_ap), with x_n = S_an + margin.
        y, _ = x.masked_fill(~pos, inf).sort(dim=1)            # positives ascending, +inf last
        csum = torch.cat([y.new_zeros(y.shape[0], 1), y.masked_fill(y == inf, 0.0).cumsum(dim=1)], dim=1)
        xn = x + margin
        count = torch.searchsorted(y.detach(), xn.detach())     # number of positives with S_ap < x_n
        hinge_sum = count.to(x.dtype) * xn - csum.gather(1, count)
        per_anchor = torch.where(neg, hinge_sum, 0.0).sum(dim=1)
    else:
        z, _ = x.masked_fill(~neg, inf).sort(dim=1)             # negatives ascending, +inf last
        below = torch.searchsorted(z.detach(), x.detach())      # negatives with S_an < S_ap
        chosen = z.gather(1, (below - 1).clamp(min=0))          # the hardest of them, else the easiest
        has_neg = neg.any(dim=1, keepdim=True)
        chosen = torch.where(has_neg, chosen, 0.0)
        per_anchor = torch.where(pos & has_neg, F.relu(chosen - x + margin), 0.0).sum(dim=1)
    return per_anchor.mean()


def binomial_deviance_loss(S, labels, *, alpha: float = 2.0, beta: float = 40.0,
                           lam: float = 0.5, anchors=None) -> torch.Tensor:
    r"""Binomial deviance loss (Yi et al. 2014) in the similarity form of Wang et al. (2019).

    .. math::
        L = \frac1m \sum_i \Big[\frac{1}{|P_i|}\sum_{j\in P_i} \log(1 + e^{-\alpha(S_{ij}-\lambda)})
            + \frac{1}{|N_i|}\sum_{j\in N_i} \log(1 + e^{\beta(S_{ij}-\lambda)})\Big]

    Pair weights: ``alpha/|P_i| * sigmoid(alpha (lam - S_ij))`` and ``beta/|N_i| * sigmoid(beta (S_ij - lam))``.
    Defaults (2, 40, 0.5) are those of the first author's Deep_Metric code.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    alpha, beta = checks.positive(alpha, "alpha"), checks.positive(beta, "beta")
    lam = checks.finite(lam, "lam")
    x = _working(S)
    pos_term = torch.where(pos, F.softplus(-alpha * (x - lam)), 0.0).sum(dim=1) / pos.sum(dim=1).clamp(min=1)
    neg_term = torch.where(neg, F.softplus(beta * (x - lam)), 0.0).sum(dim=1) / neg.sum(dim=1).clamp(min=1)
    return (pos_term + neg_term).mean()


def lifted_structure_loss(S, labels, *, lam: float = 1.0, anchors=None) -> torch.Tensor:
    r"""Lifted structure loss (Oh Song et al. 2016), in the anchor-wise similarity form of Wang et al. (2019, eq. 5).

    .. math::
        L = \frac1m \sum_i \Big[\log \sum_{k\in P_i} e^{\lambda - S_{ik}} + \log \sum_{k\in N_i} e^{S_{ik}}\Big]_+

    Pair weights while the hinge is active: ``1 / sum_{k in P_i} e^{S_ij - S_ik}`` on positives and
    ``1 / sum_{k in N_i} e^{S_ik - S_ij}`` on negatives (a softmax over each set: the "N" similarity).
    An anchor without positives or without negatives contributes 0.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    lam = checks.finite(lam, "lam")
    x = _working(S)
    valid = (pos.any(dim=1) & neg.any(dim=1))[:, None]
    # Rows of invalid anchors are filled with 0 (not -inf) so that their zero gradient stays finite.
    a = (lam - x).masked_fill(~pos, float("-inf")).masked_fill(~valid, 0.0)
    b = x.masked_fill(~neg, float("-inf")).masked_fill(~valid, 0.0)
    per_anchor = F.relu(torch.logsumexp(a, dim=1) + torch.logsumexp(b, dim=1))
    return torch.where(valid[:, 0], per_anchor, 0.0).mean()


#: The pair losses of notebook 01 by short name, for widgets and the training harness.
PAIR_LOSSES = {
    "ms": ms_loss,
    "contrastive": contrastive_loss,
    "triplet": triplet_loss,
    "binomial": binomial_deviance_loss,
    "lifted": lifted_structure_loss,
}
