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

import math

import torch
import torch.nn.functional as F

from . import checks
from .mining import ms_mining, ms_mining_masks
from .similarity import masked_logsumexp, pair_batch, upcast

#: Multi-Similarity hyper-parameters: the paper, the official code (MalongTech/research-ms-loss),
#: pytorch-metric-learning's defaults, and the tuned values of "A Metric Learning Reality Check"
#: (Musgrave et al. 2020, CUB-200, MS + miner).
MS_PRESETS = {
    "paper": dict(alpha=2.0, beta=50.0, lam=1.0, eps=0.1),
    "official_code": dict(alpha=2.0, beta=40.0, lam=0.5, eps=0.1),
    "pml": dict(alpha=2.0, beta=50.0, lam=0.5, eps=0.1),
    "mlrc_cub": dict(alpha=17.97, beta=75.66, lam=0.77, eps=0.39),
}


class _MSLoss(torch.autograd.Function):
    r"""MS's mean over the anchors of ``log(1 + sum_P e^{-alpha (S - lam)}) / alpha +
    log(1 + sum_N e^{beta (S - lam)}) / beta``, with its mining step, in one autograd node.

    The hot path of training, written for few dispatched operations (small batches are dispatch
    bound) and few B x B buffers:

    * mining (eq. 6-7 of the paper, as :func:`lossviz.mining.ms_mining_masks`) gives each anchor's
      hardest positive ``min_pos`` and hardest negative ``max_neg``, which are also the largest
      exponents among the kept pairs, so the soft-max shift costs no extra pass over the matrix:
      ``m = max(0, largest kept exponent)`` (0 when nothing is kept, so the term is exactly 0);
    * ``e = e^{a - m}`` on the kept pairs (exactly 0 elsewhere), ``Z = e^{-m} + sum e``, the term
      is ``m + log Z`` (``log(1 + sum e^a)``, no exponent overflows);
    * the pair weights of eq. 9-10, ``e / Z``, are the gradient: ``dL/dS = (w_neg - w_pos) / A``,
      one B x B buffer saved (positives and negatives are disjoint), so the backward pass is a
      single multiplication.

    :func:`ms_loss_formula` is the readable version (a test holds both equal, values and gradients).
    Learnable knobs (0-d tensors that require grad) also get their gradients, from saved weights.
    """

    @staticmethod
    def forward(ctx, x, pos, neg, alpha, beta, lam, eps, mining):
        inf = math.inf
        s_pos = torch.where(pos, x, _const(inf, x))         # S on positives, +inf elsewhere
        s_neg = torch.where(neg, x, _const(-inf, x))        # S on negatives, -inf elsewhere
        min_pos = s_pos.amin(dim=1, keepdim=True)           # hardest positive (+inf: none)
        max_neg = s_neg.amax(dim=1, keepdim=True)           # hardest negative (-inf: none)
        if mining:                                          # dropped: not kept by eps-mining
            drop_p, drop_n = (s_pos - eps) >= max_neg, (s_neg + eps) <= min_pos
            none_p, none_n = (min_pos - eps) >= max_neg, (max_neg + eps) <= min_pos
        else:
            drop_p, drop_n = pos.logical_not(), neg.logical_not()
            none_p, none_n = min_pos == inf, max_neg == -inf
        del s_pos, s_neg
        # Minus the largest kept exponents: -max(0, -alpha (min_pos - lam)), -max(0, beta (max_neg - lam)).
        nm_p = (min_pos - lam).mul_(alpha).clamp_max_(0).masked_fill_(none_p, 0.0)
        nm_n = (max_neg - lam).mul_(-beta).clamp_max_(0).masked_fill_(none_n, 0.0)
        e_p = _shifted_exp(x, -alpha, nm_p.add(alpha * lam), drop_p)     # e^{a - m} on kept pairs
        e_n = _shifted_exp(x, beta, nm_n.sub(beta * lam), drop_n)
        z_p = e_p.sum(dim=1, keepdim=True).add_(nm_p.exp())              # Z = e^{-m} + sum e^{a - m}
        z_n = e_n.sum(dim=1, keepdim=True).add_(nm_n.exp())
        out_p, out_n = z_p.log().sub_(nm_p), z_n.log().sub_(nm_n)   # log(1 + sum e^a) = m + log Z
        w_n, w_p = e_n.div_(z_n), e_p.div_(z_p)             # the pair weights, eq. 9-10
        ctx.knobs = alpha, beta, lam
        if any(ctx.needs_input_grad[3:6]):
            ctx.save_for_backward(x, w_p, w_n, out_p[:, 0], out_n[:, 0])
        else:
            ctx.save_for_backward(w_n.sub_(w_p))
        if isinstance(alpha, torch.Tensor) or isinstance(beta, torch.Tensor):
            return (out_p / alpha + out_n / beta).mean()
        return torch.add(out_n, out_p, alpha=beta / alpha).mean() / beta

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        saved = ctx.saved_tensors
        if len(saved) == 1:
            return saved[0] * (g / saved[0].shape[0]), *(None,) * 7
        x, w_p, w_n, out_p, out_n = saved
        gs = (g / x.shape[0]).expand(x.shape[0])
        knob_grads = _ms_knob_grads(ctx, gs, x, w_p, w_n, out_p, out_n)
        return (w_n - w_p) * gs[:, None], None, None, *knob_grads, None, None


_CONSTS: dict = {}


def _const(value: float, like: torch.Tensor) -> torch.Tensor:
    """A cached 0-d tensor (``torch.where`` with a tensor is a little faster than with a number)."""
    key = (value, like.dtype, like.device)
    c = _CONSTS.get(key)
    if c is None:
        c = _CONSTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return c


def _shifted_exp(x, scale, shift, drop):
    """``e^{scale x + shift}``, exactly 0 where ``drop``.  Exponents are clamped at -80 first:
    ``exp`` is several times slower on inputs whose result is subnormal (below about -87) or -inf,
    and ``e^-80 ~ 2e-35`` adds nothing next to the ``e^{-m} + ...`` it is summed with."""
    a = x * scale + shift if isinstance(scale, torch.Tensor) else torch.add(shift, x, alpha=scale)
    return a.clamp_min_(-80.0).exp_().masked_fill_(drop, 0.0)


def _ms_knob_grads(ctx, g, x, w_p, w_n, out_p, out_n):
    """The gradients of learnable alpha, beta, lam (tensors that require grad): with w the softmax
    weights above, d(out_p / alpha)/d alpha = -(sum_P w (x - lam)) / alpha - out_p / alpha^2, and
    likewise for beta; d/d lam = sum_P w - sum_N w."""
    alpha, beta, lam = ctx.knobs
    d = x - lam
    grads = ((-(w_p * d).sum(1) / alpha - out_p / alpha ** 2),
             ((w_n * d).sum(1) / beta - out_n / beta ** 2),
             (w_p.sum(1) - w_n.sum(1)))
    return tuple((g * grad).sum() if need else None for grad, need in zip(grads, ctx.needs_input_grad[3:]))


def _ms_traceable(x, pos, neg, alpha, beta, lam, eps, mining) -> torch.Tensor:
    """:class:`_MSLoss` in plain autograd operations, for ``torch.compile``: the fused node works in
    place on its buffers, which a traced graph may not save; the compiler fuses these operations itself."""
    if mining:
        pos, neg = ms_mining_masks(x, pos, neg, eps)
    none = torch.zeros_like(x[:, :1])                               # the 1 in log(1 + sum e^a)
    pull = torch.cat([none, torch.where(pos, (x - lam) * -alpha, -math.inf)], dim=1).logsumexp(dim=1)
    push = torch.cat([none, torch.where(neg, (x - lam) * beta, -math.inf)], dim=1).logsumexp(dim=1)
    return (pull / alpha + push / beta).mean()


def ms_loss_formula(S, labels, *, alpha: float = 2.0, beta: float = 50.0, lam: float = 0.5,
                    eps: float = 0.1) -> torch.Tensor:
    r"""The Multi-Similarity loss as the paper writes it (eq. 4, 6 and 8), to read: mine the
    informative pairs, then one soft-max over each anchor's kept positives and one over its kept
    negatives; autograd gives the backward pass. :func:`ms_loss`, which training uses, returns the
    same value and gradient (a test holds them equal) with a hand-written backward pass."""
    pos, neg = ms_mining(S, labels, eps=eps)                  # P_i and N_i: the pairs mining keeps
    zero = S.new_zeros(len(S), 1)                             # log(1 + sum e^a) = logsumexp([0, a...])
    a_pos = torch.where(pos, -alpha * (S - lam), -math.inf)   # e^-inf = 0: pairs not kept add nothing
    a_neg = torch.where(neg, beta * (S - lam), -math.inf)
    pull = torch.logsumexp(torch.cat([zero, a_pos], dim=1), dim=1) / alpha
    push = torch.logsumexp(torch.cat([zero, a_neg], dim=1), dim=1) / beta
    return (pull + push).mean()                               # the mean over the B anchors


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
    x = upcast(S)
    if weighting and torch.compiler.is_compiling():
        return _ms_traceable(x, pos, neg, alpha, beta, lam, eps, mining)
    if weighting:
        return _MSLoss.apply(x, pos, neg, alpha, beta, lam, eps, mining)
    if mining:
        pos, neg = ms_mining_masks(x, pos, neg, eps)
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
    x = upcast(S)
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
    Computed in O(B^2) memory (no B^3 triplet tensor): each anchor's positives are sorted, and every
    other sample of its row is located among them by binary search.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    margin = checks.non_negative(margin, "margin")
    if mining not in ("all", "semihard"):
        raise ValueError(f"mining must be 'all' or 'semihard'; got {mining!r}")
    x = upcast(S)
    # y[a, j]: the (j+1)-th least similar positive of anchor a; +inf after its last one.
    y = torch.where(pos, x, math.inf).sort(dim=1).values
    if mining == "all":
        # Negative n of anchor a, with t = S_an + margin: sum over the positives with S_ap < t of
        # (t - S_ap) = count * t - (sum of those S_ap), the count by binary search in y and the sum
        # from y's running sums.
        t = x + margin
        count = torch.searchsorted(y, t)                    # positives with S_ap < t (no gradient)
        # Sum of those S_ap: y's running sums, from 0; count never reaches y's +inf entries.
        below = F.pad(y.cumsum(dim=1), (1, 0)).gather(1, count)
        per_anchor = torch.where(neg, count.to(x.dtype) * t - below, 0.0).sum(dim=1)
    else:
        # Row a of y is a's positives; n_star[a, j] is the column of the semi-hard negative of y[a, j].
        # y's +inf entries (no positive) give relu(-inf) = 0, with no gradient.
        n_star, has_neg = _semihard_negatives(x, y, neg)
        hinge = F.relu(x.gather(1, n_star) - y + margin)
        per_anchor = torch.where(has_neg, hinge, 0.0).sum(dim=1)
    return per_anchor.mean()


def _semihard_negatives(x: torch.Tensor, y: torch.Tensor, neg: torch.Tensor):
    """Column of the semi-hard negative of each sorted positive ``y[a, j]`` (rows x N, int64), and
    whether anchor a has a negative at all (rows x 1).

    Every sample k of anchor a's row falls in *bucket* ``c = #{positives with S_ap <= S_ak}``
    (a binary search in ``y``): bucket j lies between a's j-th and (j+1)-th least similar positive.
    The negatives less similar than ``y[a, j]`` (strictly) are those of buckets 0..j, and the buckets
    rise in similarity, so the most similar of them is the top of the last non-empty bucket <= j:
    a running max over the buckets' tops.  When there is none, the least similar negative.
    Index bookkeeping only: no gradient flows here (the caller gathers the similarities)."""
    x = x.detach()
    rows, n = x.shape
    bucket = torch.searchsorted(y, x, right=True)
    s_neg = torch.where(neg, x, -math.inf)
    top = x.new_full((rows, n + 1), -math.inf).scatter_reduce_(1, bucket, s_neg, "amax")  # each bucket's top
    # ... and its column (the first, on a tie; non-negatives, at -inf, only reach empty buckets)
    cols = torch.arange(n, device=x.device)
    at_top = torch.where(s_neg == top.gather(1, bucket), cols, n)
    top_col = bucket.new_full((rows, n + 1), n).scatter_reduce_(1, bucket, at_top, "amin")
    del bucket, s_neg, at_top  # B x B temporaries: free them before the next ones
    best, best_bucket = top[:, :n].cummax(dim=1)        # the most similar negative below y[a, j]
    easiest = torch.where(neg, x, math.inf).argmin(dim=1, keepdim=True)
    n_star = torch.where(best > -math.inf, top_col.gather(1, best_bucket), easiest)
    return n_star, top.amax(dim=1, keepdim=True) > -math.inf


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
    x = upcast(S)
    pos_term = torch.where(pos, F.softplus(-alpha * (x - lam)), 0.0).sum(dim=1) / pos.sum(dim=1).clamp(min=1)
    neg_term = torch.where(neg, F.softplus(beta * (x - lam)), 0.0).sum(dim=1) / neg.sum(dim=1).clamp(min=1)
    return (pos_term + neg_term).mean()


def lifted_structure_loss(S, labels, *, lam: float = 1.0, scale: float = 1.0, anchors=None) -> torch.Tensor:
    r"""Lifted structure loss (Oh Song et al. 2016), in the anchor-wise similarity form of Wang et al.
    (2019, eq. 5), on the scaled similarities ``s S`` (``s = scale``):

    .. math::
        L = \frac1m \sum_i \Big[\log \sum_{k\in P_i} e^{\lambda - s S_{ik}} + \log \sum_{k\in N_i} e^{s S_{ik}}\Big]_+

    Pair weights while the hinge is active: ``s / sum_{k in P_i} e^{s (S_ij - S_ik)}`` on positives and
    ``s / sum_{k in N_i} e^{s (S_ik - S_ij)}`` on negatives (``s`` times a softmax over each set: the
    "N" similarity).  An anchor without positives or without negatives contributes 0.

    ``scale`` is an inverse temperature.  The original loss works on distances between unnormalised
    embeddings, which are unbounded; cosines live in [-1, 1], where at ``scale = 1`` the softmax over
    an anchor's negatives is almost uniform and the loss hardly tells hard pairs from easy ones.  So a
    lifted loss on cosines needs a scale, as MS has its alpha and beta: the MS author's earlier code
    (bnu-wangxun/Deep_Metric) scales its lifted loss's negative cosines by 40 and positive ones by 2.
    ``lam`` is a margin in the scaled units.  The default ``scale = 1`` is the paper's unscaled eq. 5.
    """
    S, pos, neg = pair_batch(S, labels, anchors)
    lam = checks.finite(lam, "lam")
    scale = checks.positive(scale, "scale")
    x = scale * upcast(S)
    # An anchor without positives or without negatives has a -inf term, so relu gives it 0.
    per_anchor = F.relu(masked_logsumexp(lam - x, pos) + masked_logsumexp(x, neg))
    return per_anchor.mean()


#: The pair losses of notebook 01 by short name, for widgets and the training harness.
PAIR_LOSSES = {
    "ms": ms_loss,
    "contrastive": contrastive_loss,
    "triplet": triplet_loss,
    "binomial": binomial_deviance_loss,
    "lifted": lifted_structure_loss,
}

# What each loss's mean is over, read by lossviz.distributed to weight one rank's block of anchors:
# all anchors, those without pairs counting 0 (also the default for a loss without the attribute).
for _fn in (ms_loss, ms_loss_formula, contrastive_loss, triplet_loss, binomial_deviance_loss,
            lifted_structure_loss):
    _fn.reduction = "anchors"
del _fn
