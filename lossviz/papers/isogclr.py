r"""iSogCLR: a temperature per sample, learned as the dual variable of a robust contrastive loss
(Qiu, Hu, Yuan, Zhou, Zhang, Yang, *Not All Semantics are Created Equal: Contrastive
Self-supervised Learning with Automatic Temperature Individualization*, ICML 2023).

**The objective.**  For anchor i with positive similarity ``s_{i,i+}`` and negatives ``S_i^-``, let
``h_ij = s_ij - s_{i,i+}``.  The robust global contrastive loss with anchor i's own temperature is

.. math::
    F_i(w, \tau_i) = \tau_i \log \frac{1}{|S_i^-|} \sum_{j \in S_i^-} e^{h_{ij}/\tau_i} + \tau_i \rho,
    \qquad \min_{w,\ \tau_i \in [\tau_{min}, \tau_{max}]} \frac1n \sum_i F_i ,

the dual of ``max_p sum_j p_j h_ij`` over distributions ``p`` with ``KL(p || uniform) <= rho``
(:func:`robust_loss`).  Its weight over the negatives is ``p_ij = softmax_j(h_ij / tau_i)``: notebook
09's relative penalty at the anchor's *own* temperature (:func:`dro_weights`), and
``dF_i/dtau_i = rho - KL(p_i || u)`` (:func:`tau_gradient`), so an interior optimum sits where
``KL = rho`` (:func:`tau_star`).

**The algorithm** (the official ``SogCLR_DRO_Loss``, :class:`ISogCLR`): per-sample state vectors
over the dataset, indexed by each item's position -- ``s`` (a moving average of the denominator,
momentum ``gamma``), ``u`` (a moving average of the temperature's gradient, momentum ``beta_u``)
and ``tau``.  The network is trained on a surrogate whose gradient is ``dF/dS`` with the stale
denominator ``s``; the temperatures take a clipped, momentum step of size ``eta``.

Also here: a pure-maths simulation of one anchor's temperature under that update
(:func:`simulate_tau`), a long-tailed version of the two-view data (:func:`long_tailed`), the
training run on :class:`lossviz.train.Trainer` with iSogCLR, SogCLR (a fixed temperature with the
same estimator) and SimCLR (:func:`train_isogclr`), pictures and two panels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import augment, checks, contrastive, data, metrics, plots
from ..metrics import knn_accuracy
from ..models import encoder_projector
from ..similarity import masked_logsumexp, pair_batch, similarity, upcast
from ..train import Run, Trainer, memo

#: The two default sets of the official code (its unimodal README for CIFAR-100, and the class
#: ``SogCLR_DRO_Loss``'s keyword defaults), and the one lossviz uses on digits: the README's with a
#: 10x larger temperature step (each item is visited only once per epoch, 100 times in a run) and
#: ``gamma = 1``, the batch's own denominator at every visit.  With the README's ``gamma = 0.8`` the
#: moving average mixes ``e^{s/tau}`` computed at earlier temperatures, and the temperature
#: gradient, whose error is amplified about ``1/tau``-fold (:func:`tau_gradient_estimate`), no longer tracks tau*.
PRESETS = {
    "readme": dict(rho=0.4, gamma=0.8, tau_init=0.1, beta_u=0.5, eta=0.03, tau_min=0.05, tau_max=1.0),
    "code": dict(rho=6.0, gamma=0.8, tau_init=0.07, beta_u=0.9, eta=0.001, tau_min=0.05, tau_max=1.0),
    "digits": dict(rho=0.4, gamma=1.0, tau_init=0.1, beta_u=0.5, eta=0.3, tau_min=0.05, tau_max=1.0),
}
#: Classes ``0 .. N_HEAD-1`` are the frequent (head) classes of :func:`long_tailed`.
N_HEAD = 5
#: Colours of the two frequency groups (never the pair colours, which mean pull / push).
HEAD_COLOR, TAIL_COLOR = "#009E73", "#CC79A7"
#: One colour per training method.
METHOD_COLORS = {"isogclr": "#000000", "sogclr": "#56B4E9", "simclr": "#E69F00"}
METHODS = ("isogclr", "sogclr", "simclr")


# ------------------------------------------------------------------------------------------------
# The objective, its weights and its temperature gradient
# ------------------------------------------------------------------------------------------------

def _tau_column(tau, S: torch.Tensor) -> torch.Tensor:
    """``tau`` (a number, or one temperature per row of S) as an (n, 1) column in S's dtype."""
    if isinstance(tau, torch.Tensor) and tau.numel() != 1:
        if not tau.is_floating_point():
            raise ValueError(f"tau (the temperatures) must be floating point; got dtype {tau.dtype}")
        if tau.ndim != 1 or tau.shape[0] != S.shape[0]:
            raise ValueError(f"tau must be a number or one temperature per anchor, shape ({S.shape[0]},); "
                             f"got shape {tuple(tau.shape)}")
        if checks.validation_enabled() and not bool((torch.isfinite(tau) & (tau > 0)).all()):
            raise ValueError("every tau (temperature) must be finite and > 0; typical values are 0.05 to 1")
        return tau.to(device=S.device, dtype=S.dtype)[:, None]
    return torch.full((S.shape[0], 1), checks.temperature(tau), dtype=S.dtype, device=S.device)


def robust_loss(S, labels, *, tau=0.1, rho: float = 0.4, reduction: str = "mean") -> torch.Tensor:
    r"""The robust global contrastive loss of iSogCLR, with one temperature per anchor.

    .. math::
        F_i = \tau_i \log \frac{1}{|N_i|} \sum_{j \in N_i} e^{(s_{ij} - s_{i,i+}) / \tau_i} + \tau_i \rho
            = \tau_i \,\mathrm{LSE}_{j \in N_i}(s_{ij}/\tau_i) - \tau_i \log |N_i| - s_{i,i+} + \tau_i \rho

    ``tau`` is a number or a tensor of one temperature per row (it may require grad: then
    ``dF_i/dtau_i = rho - KL(p_i || u)``, :func:`tau_gradient`).  ``s_{i,i+}`` is the positive's
    similarity (SimCLR labels: exactly one positive; with several, their mean similarity).  Unlike
    NT-Xent the positive is not in the denominator, so each anchor pulls its positive with weight
    exactly 1 and pushes its negatives with the weights ``p_ij`` (:func:`dro_weights`), summing to 1.
    ``reduction="mean"`` averages over the anchors that have a positive and a negative (the
    official code sums the two views of an item instead: twice this); ``"none"`` returns F_i per row
    (0 for an anchor without a positive or a negative).
    """
    S, pos, neg = pair_batch(S, labels)
    checks.choice(reduction, "reduction", ("mean", "none"))
    rho = checks.non_negative(rho, "rho (the radius of the KL ball)")
    x = upcast(S)
    tau = _tau_column(tau, x).to(x.dtype)
    n_pos, n_neg = pos.sum(dim=1), neg.sum(dim=1)
    valid = (n_pos > 0) & (n_neg > 0)
    s_pos = torch.where(pos, x, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    lse = torch.where(valid, masked_logsumexp(x / tau, neg), 0.0)      # 0 on rows left out: F stays finite
    t = tau[:, 0]
    F = t * (lse - n_neg.clamp(min=1).to(x.dtype).log()) - s_pos + t * rho
    F = torch.where(valid, F, 0.0)
    return F if reduction == "none" else F.sum() / valid.sum().clamp(min=1)


def dro_weights(S, labels, *, tau=0.1, anchors=None) -> torch.Tensor:
    r"""Each anchor's worst-case distribution over its negatives:
    ``p_ij = softmax_{j in N_i}(s_ij / tau_i)`` (0 off N_i).

    It is notebook 09's relative penalty (:func:`lossviz.contrastive.relative_penalty`) with row i
    at its own temperature: the push of :func:`robust_loss` on negative j is exactly ``p_ij``.
    ``anchors=`` as in :mod:`lossviz.contrastive` (rows scored against a whole set)."""
    S = checks.as_float_tensor(S, "S", 2)
    return contrastive.relative_penalty(S / _tau_column(tau, S), labels, tau=1.0, anchors=anchors)


def kl_to_uniform(S, labels, *, tau=0.1, anchors=None) -> torch.Tensor:
    r"""``KL(p_i || uniform) = log |N_i| - H(p_i)`` for each anchor (0 without negatives), with
    ``p_i`` the :func:`dro_weights` at ``tau_i``: how far the worst case is from the plain average.
    It falls as tau grows, from ``log |N_i|`` (one negative takes all) to 0 (all equal)."""
    S = checks.as_float_tensor(S, "S", 2)
    _, _, neg = pair_batch(S, labels, anchors, need_positive=False)
    H = contrastive.negative_weight_entropy(S / _tau_column(tau, S), labels, tau=1.0, anchors=anchors)
    return torch.where(neg.any(dim=1), neg.sum(dim=1).clamp(min=1).to(H.dtype).log() - H, 0.0)


def tau_gradient(S, labels, *, tau=0.1, rho: float = 0.4, anchors=None) -> torch.Tensor:
    r"""``dF_i / dtau_i = rho - KL(p_i || u)`` in closed form, one value per anchor.

    Gradient descent on tau_i therefore *raises* tau_i (flattens p_i) while ``KL(p_i||u) > rho``
    and lowers it while ``KL < rho``: each anchor's worst case is pushed onto the edge of the ball."""
    rho = checks.non_negative(rho, "rho (the radius of the KL ball)")
    return rho - kl_to_uniform(S, labels, tau=tau, anchors=anchors)


def tau_gradient_estimate(S, labels, *, tau=0.1, rho: float = 0.4, log_s=None) -> torch.Tensor:
    r"""The algorithm's temperature gradient for each anchor, given an estimate ``s_i`` of the mean
    ``g_i = mean_{j in N_i} e^{z_ij}`` (``z = s / tau``; pass ``log_s``, one per row; default: the
    exact ``log g_i``):

    .. math::
        \hat\nabla_{\tau_i} = \log s_i + \rho - \frac{1}{|N_i|} \sum_{j \in N_i} \frac{e^{z_{ij}}}{s_i} z_{ij}
        = \underbrace{\rho - \mathrm{KL}(p_i \| u)}_{\text{exact}}
          + \log c_i + \mathbb E_{p_i}[z_i] \Big(1 - \frac{1}{c_i}\Big), \qquad c_i = s_i / g_i .

    With ``s = g`` it is :func:`tau_gradient`.  A stale ``s`` (``c != 1``) adds an error of about
    ``(c - 1)(1 + E_p[z])``, and ``E_p[z]`` is about ``max_j s_ij / tau``: ten times the mismatch at
    ``tau = 0.1``."""
    S, _, neg = pair_batch(S, labels, need_positive=False)
    rho = checks.non_negative(rho, "rho (the radius of the KL ball)")
    z = upcast(S) / _tau_column(tau, S)
    n_neg = neg.sum(dim=1).clamp(min=1).to(z.dtype)
    if log_s is None:
        log_s = masked_logsumexp(z, neg) - n_neg.log()
    else:
        log_s = checks.as_float_tensor(log_s, "log_s (the log of each anchor's estimated denominator)", 1)
        if log_s.shape[0] != S.shape[0]:
            raise ValueError(f"log_s must hold one value per row of S, shape ({S.shape[0]},); got {tuple(log_s.shape)}")
        log_s = log_s.to(z.dtype)
    _, wz = _push_terms(z, neg, log_s, n_neg)
    return log_s + rho - wz


def _push_terms(z: torch.Tensor, neg: torch.Tensor, log_s: torch.Tensor, n_neg) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, mean_j w_j z_j)`` with ``w_ij = e^{z_ij} / s_i`` on the negatives (0 elsewhere)."""
    w = torch.where(neg, (z - log_s[:, None]).exp(), 0.0)
    return w, (w * torch.where(neg, z, 0.0)).sum(dim=1) / n_neg


def tau_star(S, labels, *, rho: float = 0.4, tau_min: float = 0.05, tau_max: float = 1.0,
             anchors=None, iters: int = 30) -> torch.Tensor:
    r"""Each anchor's optimal temperature ``argmin_{tau in [tau_min, tau_max]} F_i``: the root of
    ``KL(p_tau || u) = rho`` by bisection on ``log tau`` (KL falls as tau grows, and F_i is convex
    in tau).  Pinned at ``tau_min`` when even ``tau_min`` leaves ``KL < rho`` (a rho beyond reach:
    ``KL <= log |N_i|``), at ``tau_max`` when ``KL > rho`` there.  Float64, one value per row."""
    rho = checks.non_negative(rho, "rho (the radius of the KL ball)")
    tau_min, tau_max = checks.temperature_range(tau_min, tau_max)
    S = checks.as_float_tensor(S, "S", 2).detach().double()
    pair_batch(S, labels, anchors, need_positive=False)                     # validate once, not per step
    lo = torch.full((S.shape[0],), math.log(tau_min), dtype=torch.float64, device=S.device)
    hi = torch.full_like(lo, math.log(tau_max))
    with checks.validation(False):
        for _ in range(iters):                                              # 30 halvings: 3e-9 relative
            mid = (lo + hi) / 2
            too_peaked = kl_to_uniform(S, labels, tau=mid.exp(), anchors=anchors) > rho   # dF/dtau < 0: raise tau
            lo, hi = torch.where(too_peaked, mid, lo), torch.where(too_peaked, hi, mid)
    return ((lo + hi) / 2).exp()


def _one_anchor(s_neg, n_rows: int = 1):
    """One anchor's negatives as ``n_rows`` identical rows ``[self, negatives...]`` with their labels
    and anchors (column 0 is the anchor itself), for the row-wise functions above."""
    s = torch.as_tensor(s_neg, dtype=torch.float64).reshape(1, -1)
    row = torch.cat([s.new_ones(1, 1), s], dim=1).expand(n_rows, -1)
    return row, torch.arange(row.shape[1]), torch.zeros(n_rows, dtype=torch.long)


def anchor_kl(s_neg, taus) -> np.ndarray:
    """``KL(p_tau || u)`` of one anchor with negative similarities ``s_neg``, at each tau of ``taus``."""
    taus = torch.as_tensor(np.atleast_1d(taus), dtype=torch.float64)
    row, labels, anchors = _one_anchor(s_neg, len(taus))
    return kl_to_uniform(row, labels, tau=taus, anchors=anchors).numpy()


def anchor_tau_star(s_neg, **knobs) -> float:
    """:func:`tau_star` of one anchor with negative similarities ``s_neg``."""
    row, labels, anchors = _one_anchor(s_neg)
    return float(tau_star(row, labels, anchors=anchors, **knobs)[0])


def negative_spread(S, labels) -> torch.Tensor:
    """Standard deviation of each anchor's similarities to its negatives (uniform weights): for a
    small rho, ``KL(p_tau || u) ~ sigma^2 / (2 tau^2)``, so ``tau* ~ sigma / sqrt(2 rho)``."""
    S, _, neg = pair_batch(S, labels, need_positive=False)
    n = neg.sum(dim=1).clamp(min=1)
    mean = torch.where(neg, S, 0.0).sum(dim=1) / n
    return (torch.where(neg, (S - mean[:, None]) ** 2, 0.0).sum(dim=1) / n).sqrt()


# ------------------------------------------------------------------------------------------------
# The stochastic algorithm: per-sample state s, u, tau over the whole dataset
# ------------------------------------------------------------------------------------------------

class ISogCLR:
    r"""iSogCLR's per-sample state and one training step (the official ``SogCLR_DRO_Loss``).

    ``state = ISogCLR(n, **PRESETS["digits"])`` holds three vectors of length n (the dataset):
    ``s`` (estimated denominators), ``u`` (temperature-gradient momentum) and ``tau``.  Call
    ``loss = state(S, idx)`` on a two-view batch: ``S`` is the 2B x 2B similarity matrix of the views
    ``[view 1 of items idx, view 2 of items idx]`` (:class:`lossviz.augment.TwoViewSampler`), ``idx``
    the B items' dataset positions.  It returns the surrogate to back-propagate and, as a side
    effect, updates the state of those items.  For each view a (negatives ``N_a``: the 2B - 2 views of
    the other items; ``z_aj = s_aj / tau_a``, detached):

    .. math::
        g_a &= \tfrac{1}{|N_a|} \textstyle\sum_{j \in N_a} e^{z_{aj}}, \qquad
        s_a = (1-\gamma)\, s_{i} + \gamma\, g_a \quad (\text{first visit of item } i: s_a = g_a),
        \qquad s_i \leftarrow (s_{a} + s_{a'})/2 \\
        w_{aj} &= e^{z_{aj}} / s_a, \qquad
        \text{loss} = \tfrac{1}{2B} \textstyle\sum_a \big( \tfrac{1}{|N_a|}\sum_{j} w_{aj} s_{aj} - s_{a,a+} \big) \\
        \nabla_{\tau, a} &= \log s_a + \rho - \tfrac{1}{|N_a|}\textstyle\sum_j w_{aj} z_{aj}, \qquad
        G_i = \mathrm{clip}\big((\nabla_{\tau,a} + \nabla_{\tau,a'})/2, \pm c\big) \\
        u_i &\leftarrow (1-\beta_u) u_i + \beta_u G_i, \qquad
        \tau_i \leftarrow \mathrm{clip}(\tau_i - \eta\, u_i, \tau_{min}, \tau_{max})

    With the exact batch denominator (first visit, or ``gamma = 1``) the surrogate's gradient in S
    is that of :func:`robust_loss` and ``nabla_tau`` is ``rho - KL(p||u)`` (:func:`tau_gradient`).
    ``s`` is kept as ``log s`` (a log-sum-exp moving average), so no ``exp(s / tau)`` overflows even
    for ``tau_min`` far below the official 0.05.  Differences from the code: the first-epoch rule is
    per item (the first time an item is seen), since a sampler that drops the last partial batch
    does not show every item in epoch 0; the loss is the mean over views (the code sums the two
    views: twice ours, same direction).  ``eta = 0`` gives SogCLR (fixed temperature, same estimator).
    """

    def __init__(self, n: int, *, rho: float = 0.4, gamma: float = 0.8, tau_init: float = 0.1,
                 beta_u: float = 0.5, eta: float = 0.03, tau_min: float = 0.05, tau_max: float = 1.0,
                 grad_clip: float = 3.0):
        n = checks.integer(n, "n (the dataset size)", 2)
        self.rho = checks.non_negative(rho, "rho (the radius of the KL ball)")
        self.gamma = checks.fraction(gamma, "gamma (the denominator's moving-average weight)", zero_ok=False)
        self.beta_u = checks.fraction(beta_u, "beta_u (the temperature gradient's moving-average weight)", zero_ok=False)
        self.eta = checks.non_negative(eta, "eta (the temperature's step size)")
        self.grad_clip = checks.positive(grad_clip, "grad_clip")
        self.tau_min, self.tau_max = checks.temperature_range(tau_min, tau_max)
        tau_init = checks.positive(tau_init, "tau_init (the initial temperature)")
        if not self.tau_min <= tau_init <= self.tau_max:
            raise ValueError(f"tau_init must lie in [tau_min, tau_max] = [{self.tau_min}, {self.tau_max}]; got {tau_init}")
        self.n = n
        self.log_s = torch.full((n,), -math.inf, dtype=torch.float64)
        self.u = torch.zeros(n, dtype=torch.float64)
        self.tau = torch.full((n,), tau_init, dtype=torch.float64)
        self.seen = torch.zeros(n, dtype=torch.bool)
        self.last: dict = {}

    @property
    def s(self) -> torch.Tensor:
        """The estimated denominators ``s_i`` (0 for an item never seen)."""
        return self.log_s.exp()

    def __call__(self, S, idx) -> torch.Tensor:
        S = checks.as_float_tensor(S, "S (similarities of the 2B views)", 2)
        if S.shape[0] != S.shape[1] or S.shape[0] % 2 or S.shape[0] < 4:
            raise ValueError(f"S must be 2B x 2B with B >= 2 (view 1 of each item, then view 2); got {tuple(S.shape)}")
        B = S.shape[0] // 2
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.shape != (B,):
            raise ValueError(f"idx must hold the B = {B} items' integer dataset positions; "
                             f"got dtype {idx.dtype}, shape {tuple(idx.shape)}")
        x = upcast(S)
        if self.tau.device != x.device:                # the state follows the batch (no host sync per step)
            self.log_s, self.u, self.tau, self.seen = (t.to(x.device) for t in (self.log_s, self.u, self.tau, self.seen))
        idx = idx.to(x.device).long()
        if checks.validation_enabled():
            if not bool(((idx >= 0) & (idx < self.n)).all()):
                raise ValueError(f"idx must be dataset positions in [0, {self.n})")
            if len(torch.unique(idx)) != B:
                raise ValueError("idx holds an item twice: the per-sample state needs distinct items in a batch")
        n_neg = 2 * B - 2
        neg = ~torch.eye(B, dtype=torch.bool, device=x.device).repeat(2, 2)
        tau = self.tau[idx].repeat(2).to(device=x.device, dtype=x.dtype)[:, None]
        z = x.detach() / tau
        log_g = (masked_logsumexp(z, neg) - math.log(n_neg)).double()
        first = (~self.seen[idx]).repeat(2)
        old = self.log_s[idx].repeat(2)
        log_keep = math.log1p(-self.gamma) if self.gamma < 1 else -math.inf
        log_s = torch.where(first, log_g, torch.logaddexp(log_keep + old, math.log(self.gamma) + log_g))
        self.log_s[idx] = torch.logaddexp(log_s[:B], log_s[B:]) - math.log(2)
        ls = log_s.to(device=x.device, dtype=x.dtype)[:, None]
        w, wz = _push_terms(z, neg, ls[:, 0], n_neg)                           # detached weights
        pos_sim = x[torch.arange(2 * B, device=x.device), (torch.arange(2 * B, device=x.device) + B) % (2 * B)]
        loss = ((w * x).sum(dim=1) / n_neg - pos_sim).mean()
        grad_views = (ls[:, 0] + self.rho - wz).double()
        grad = ((grad_views[:B] + grad_views[B:]) / 2).clamp(-self.grad_clip, self.grad_clip)
        self.u[idx] = (1 - self.beta_u) * self.u[idx] + self.beta_u * grad
        self.tau[idx] = (self.tau[idx] - self.eta * self.u[idx]).clamp(self.tau_min, self.tau_max)
        self.seen[idx] = True
        objective = (tau[:, 0] * (ls[:, 0] + self.rho) - pos_sim).mean()     # (1/2B) sum F_a, with s for the mean
        self.last = {"grad_tau": grad, "grad_tau_views": grad_views, "log_s_views": log_s,
                     "objective": objective.detach()}
        return loss


# ------------------------------------------------------------------------------------------------
# Pure maths: one anchor's temperature under the stochastic update
# ------------------------------------------------------------------------------------------------

def simulate_tau(s_neg, *, rho: float = 0.4, gamma: float = 0.8, beta_u: float = 0.5, eta: float = 0.03,
                 tau_init: float = 0.1, tau_min: float = 0.05, tau_max: float = 1.0, grad_clip: float = 3.0,
                 batch: int = 254, steps: int = 100, seed: int = 0) -> dict:
    r"""The temperature update of :class:`ISogCLR` for one anchor whose similarities to the whole
    dataset (``s_neg``, fixed: no network) are seen ``batch`` at a time (a seeded random subset each
    step).  Returns ``{"tau": (steps + 1,), "s": (steps,), "grad": (steps,)}``, float64.

    With ``batch = len(s_neg)`` and ``gamma = 1`` each step uses the exact denominator, so tau
    descends ``F`` and settles at :func:`tau_star` (for a small enough ``eta``).  A small batch makes
    the estimate noisy; ``gamma < 1`` averages it over steps (and makes it lag behind tau)."""
    s_neg = checks.as_float_tensor(torch.as_tensor(s_neg, dtype=torch.float64).reshape(-1), "s_neg", 1).double()
    m = len(s_neg)
    if m < 2:
        raise ValueError("s_neg needs at least 2 negative similarities")
    batch, steps = checks.integer(batch, "batch", 1, m), checks.integer(steps, "steps", 1)
    rho = checks.non_negative(rho, "rho (the radius of the KL ball)")
    gamma = checks.fraction(gamma, "gamma (the denominator's moving-average weight)", zero_ok=False)
    beta_u = checks.fraction(beta_u, "beta_u (the temperature gradient's moving-average weight)", zero_ok=False)
    eta = checks.non_negative(eta, "eta (the temperature's step size)")
    tau_min, tau_max = checks.temperature_range(tau_min, tau_max)
    g = torch.Generator().manual_seed(seed)
    tau, u, log_s = float(checks.positive(tau_init, "tau_init")), 0.0, None
    taus, ss, grads = [tau], [], []
    for _ in range(steps):
        sub = s_neg if batch == m else s_neg[torch.randperm(m, generator=g)[:batch]]
        z = sub / tau
        log_g = float(torch.logsumexp(z, 0)) - math.log(batch)
        log_s = log_g if log_s is None else float(np.logaddexp(
            (math.log1p(-gamma) if gamma < 1 else -math.inf) + log_s, math.log(gamma) + log_g))
        w = (z - log_s).exp()
        grad = min(max(log_s + rho - float((w * z).mean()), -grad_clip), grad_clip)
        u = (1 - beta_u) * u + beta_u * grad
        tau = min(max(tau - eta * u, tau_min), tau_max)
        taus.append(tau), ss.append(math.exp(log_s)), grads.append(grad)
    return {"tau": np.asarray(taus), "s": np.asarray(ss), "grad": np.asarray(grads)}


# ------------------------------------------------------------------------------------------------
# Long-tailed data
# ------------------------------------------------------------------------------------------------

def long_tailed(name: str = "digits", *, imbalance: float = 10.0, n_head: int = N_HEAD, seed: int = 0) -> data.Split:
    """A long-tailed training set: classes ``0 .. n_head-1`` (the head, frequent) kept in full, every
    other class (the tail, rare) subsampled to ``ceil(count / imbalance)`` items (a seeded choice).
    The test split stays balanced.  ``name`` is ``"digits"`` or ``"mnist1d"`` (its 4000/1000 split).
    ``imbalance = 1`` keeps everything."""
    checks.choice(name, "data set name", ("digits", "mnist1d"))
    imbalance = checks.positive(imbalance, "imbalance (head count / tail count)")
    if imbalance < 1:
        raise ValueError(f"imbalance must be >= 1 (head count / tail count); got {imbalance}")
    split = data.load(name)
    n_classes = int(split.y_train.max()) + 1
    n_head = checks.integer(n_head, "n_head", 1, n_classes - 1)
    rng = np.random.default_rng(seed)
    y = split.y_train.numpy()
    keep = []
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        k = len(members) if c < n_head else math.ceil(len(members) / imbalance)
        keep.append(np.sort(rng.choice(members, size=k, replace=False)))
    keep = torch.as_tensor(np.sort(np.concatenate(keep)))
    return data.Split(f"{split.name}_lt", split.x_train[keep], split.y_train[keep], split.x_test, split.y_test,
                      f"{split.name}, long-tailed: classes 0-{n_head - 1} in full, the others 1/{imbalance:g}")


def class_counts(labels) -> np.ndarray:
    """Training items per class (index = class)."""
    return np.bincount(np.asarray(labels))


# ------------------------------------------------------------------------------------------------
# Training: iSogCLR, SogCLR, SimCLR on the same data, network and sampler
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class ISogRun(Run):
    """One self-supervised run on long-tailed data: ``history`` (iter, loss; with per-sample
    temperatures also objective, tau_head, tau_tail, grad_tau), ``evals`` (iter, knn: the test kNN
    accuracy along the way), ``scores`` (knn, knn_head, knn_tail, uniformity, tolerance), and the
    temperatures below."""

    tau: np.ndarray | None = None                  # learned tau_i of each training item (None for SimCLR)
    tau_epochs: np.ndarray | None = None           # epochs x N: tau after each epoch
    tau_star: np.ndarray | None = None             # argmin F_i on the final embeddings (whole set as negatives)
    y_train: np.ndarray | None = None
    head: np.ndarray | None = None                 # boolean: the item's class is frequent

    def group_mean(self, values: np.ndarray) -> tuple[float, float]:
        """Mean of per-item ``values`` over head items and over tail items."""
        return float(values[self.head].mean()), float(values[~self.head].mean())

    def __repr__(self) -> str:
        s = self.scores
        tau = "" if self.tau is None else "tau head {:.3f} / tail {:.3f}, ".format(*self.group_mean(self.tau))
        return (f"ISogRun({self.params['method']}: {tau}kNN {s['knn']:.3f} "
                f"(head {s['knn_head']:.3f}, tail {s['knn_tail']:.3f}))")


def train_isogclr(method: str = "isogclr", *, rho: float = 0.4, eta: float = 0.03, gamma: float = 0.8,
                  beta_u: float = 0.5, tau_init: float = 0.1, tau_min: float = 0.05, tau_max: float = 1.0,
                  grad_clip: float = 3.0, dataset: str = "digits", imbalance: float = 10.0, epochs: int = 100,
                  batch_size: int = 128, dim: int = 32, lr: float = 1e-3, k: int = 5, eval_every: int = 10,
                  seed: int = 0, progress=True, cache: bool = True) -> ISogRun:
    """Self-supervised training on the long-tailed two-view data, then the temperatures and a kNN score.

    ``method``: ``"isogclr"`` (per-sample tau by the DRO dual), ``"sogclr"`` (the same loss and
    estimator, tau fixed at ``tau_init``) or ``"simclr"`` (NT-Xent at the global ``tau_init``).  The
    network is notebook 09's MLP encoder and projector (:func:`lossviz.models.encoder_projector`),
    Adam; one epoch is ``N // batch_size`` batches.  Evaluation (labels only here): kNN accuracy of the
    *encoder's* features on the balanced test split with the long-tailed training set as gallery
    (overall, head classes, tail classes), and uniformity / tolerance of the test projections.  The
    overall kNN accuracy is also measured before training and every ``eval_every`` epochs (``evals``).
    """
    checks.choice(method, "method", METHODS)
    for arg, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("dim", dim, 2),
                            ("k", k, 1), ("eval_every", eval_every, 1)):
        checks.integer(value, arg, low)
    lr = checks.positive(lr, "lr")
    knobs = dict(tau_init=checks.temperature(tau_init))
    if method != "simclr":
        knobs |= dict(rho=rho, gamma=gamma, tau_min=tau_min, tau_max=tau_max, grad_clip=grad_clip)
        ISogCLR(2, beta_u=beta_u, eta=eta, **knobs)                 # validate the knobs before training
    if method == "isogclr":
        knobs |= dict(eta=eta, beta_u=beta_u)
    params = dict(method=method, dataset=dataset, imbalance=float(imbalance), epochs=epochs, batch_size=batch_size,
                  dim=dim, lr=lr, k=k, eval_every=eval_every, seed=seed, **knobs)
    return memo("isogclr", params, lambda: _train(params, progress), cache=cache)


def _train(params: dict, progress) -> ISogRun:
    split = long_tailed(params["dataset"], imbalance=params["imbalance"])
    n, B = len(split.x_train), params["batch_size"]
    if B > n:
        raise ValueError(f"batch_size {B} is larger than the {n} training items")
    head = (split.y_train < N_HEAD).numpy()
    trainer = Trainer(lambda: encoder_projector(split.x_train.shape[1], dim=params["dim"]),
                      lr=params["lr"], seed=params["seed"])
    model = trainer.model
    sampler = augment.TwoViewSampler(split.x_train, params["dataset"], B, seed=params["seed"])
    per_epoch = n // B
    state = None
    if params["method"] != "simclr":
        knobs = {k: params[k] for k in ("rho", "gamma", "tau_init", "tau_min", "tau_max", "grad_clip")}
        state = ISogCLR(n, eta=params.get("eta", 0.0), beta_u=params.get("beta_u", 0.5), **knobs)
    tau_epochs, head_t = [], torch.as_tensor(head)

    def step(it: int) -> dict:
        views, labels, idx = sampler.sample()
        S = similarity(model(views))
        value = (contrastive.nt_xent_loss(S, labels, tau=params["tau_init"]) if state is None else state(S, idx))
        trainer.update(value)
        if state is None:
            return {"loss": value.detach()}
        if it % per_epoch == 0:
            tau_epochs.append(state.tau.numpy().copy())
        return {"loss": value.detach(), "objective": state.last["objective"], "tau_head": state.tau[head_t].mean(),
                "tau_tail": state.tau[~head_t].mean(), "grad_tau": state.last["grad_tau"].mean()}

    def knn() -> dict:
        encoder = model[:4]
        return {"knn": knn_accuracy(encoder(split.x_train), split.y_train, encoder(split.x_test), split.y_test,
                                    k=params["k"])}

    history, evals, seconds = trainer.run(step, params["epochs"] * per_epoch, evaluate=knn,
                                          eval_every=per_epoch * params["eval_every"], desc=params["method"],
                                          progress=progress)
    scores, star = trainer.evaluating(lambda: _final_scores(model, split, params))
    return ISogRun(params=params, history=history, evals=evals, scores=scores, seconds=seconds,
                   tau=None if state is None else state.tau.numpy().copy(),
                   tau_epochs=np.asarray(tau_epochs) if tau_epochs else None, tau_star=star.numpy(),
                   y_train=split.y_train.numpy(), head=head)


def _final_scores(model, split: data.Split, params: dict) -> tuple[dict, torch.Tensor]:
    """The scores after training (kNN of the encoder's features overall, on the head classes and on
    the tail classes; uniformity and tolerance of the test projections) and each training item's tau*
    on the final embeddings, the whole training set as its negatives (at SimCLR's rho and tau range
    when the run has none)."""
    encoder, k = model[:4], params["k"]
    h_tr, h_te = encoder(split.x_train), encoder(split.x_test)
    z_tr, z_te = model(split.x_train), model(split.x_test)
    head_test = split.y_test < N_HEAD
    scores = dict(
        knn=knn_accuracy(h_tr, split.y_train, h_te, split.y_test, k=k),
        knn_head=knn_accuracy(h_tr, split.y_train, h_te[head_test], split.y_test[head_test], k=k),
        knn_tail=knn_accuracy(h_tr, split.y_train, h_te[~head_test], split.y_test[~head_test], k=k),
        uniformity=metrics.uniformity(z_te), tolerance=metrics.tolerance(z_te, split.y_test))
    star = tau_star(similarity(z_tr.double()), torch.arange(len(z_tr)),
                    rho=params.get("rho", PRESETS["readme"]["rho"]), tau_min=params.get("tau_min", 0.05),
                    tau_max=params.get("tau_max", 1.0))
    return scores, star


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def kl_curve(ax, s_neg, *, rho: float = 0.4, tau_min: float = 0.05, tau_max: float = 1.0, tau=None,
             color="k", label: str | None = None, grid=None) -> float:
    """``KL(p_tau || u)`` against tau (log scale) for one anchor's negatives, the line ``KL = rho``
    and the crossing tau* (a dot); the temperatures outside ``[tau_min, tau_max]`` are greyed.
    ``tau`` (optional) marks another temperature (a global one) with a cross.  Returns tau*."""
    return _kl_view(ax, color=color, label=label, grid=grid)(s_neg, rho=rho, tau_min=tau_min, tau_max=tau_max, tau=tau)


def _kl_view(ax, *, color="k", label: str | None = None, grid=None):
    """The artists of :func:`kl_curve`, made once; returns ``update(s_neg, *, rho, tau_min, tau_max,
    tau=None, kl=None, t_star=None) -> tau*``, which moves them in place (``kl``, the curve on the grid,
    and ``t_star``: when the caller has them already)."""
    from matplotlib.patches import Rectangle

    grid = np.logspace(-2.3, 0.5, 120) if grid is None else np.asarray(grid)
    (curve,) = ax.plot(grid, np.zeros_like(grid), color=color, label=label)
    level = ax.axhline(0.0, color=plots.MUTED, ls="--", lw=1)
    outside = [ax.add_patch(Rectangle((grid[0], 0), 0, 1, transform=ax.get_xaxis_transform(), color=plots.MUTED,
                                      alpha=0.15, lw=0)) for _ in range(2)]
    star = ax.scatter([grid[0]], [0.0], color=color, s=45, zorder=4)
    cross = ax.scatter([grid[0]], [0.0], marker="x", color=color, s=50, zorder=4)
    ax.set(xscale="log", xlabel="τ (log scale)", ylabel="KL(p_τ ‖ uniform) (nats)",
           title="where KL = ρ: the anchor's τ*")

    def update(s_neg, *, rho: float = 0.4, tau_min: float = 0.05, tau_max: float = 1.0, tau=None, kl=None,
               t_star=None) -> float:
        if t_star is None:
            t_star = anchor_tau_star(s_neg, rho=rho, tau_min=tau_min, tau_max=tau_max)
        curve.set_ydata(anchor_kl(s_neg, grid) if kl is None else kl)
        level.set_ydata([rho, rho])
        for patch, (a, b) in zip(outside, ((grid[0], tau_min), (tau_max, grid[-1]))):
            patch.set_x(a)
            patch.set_width(b - a)
        star.set_offsets([[t_star, anchor_kl(s_neg, t_star)[0]]])
        cross.set_visible(tau is not None)
        if tau is not None:
            cross.set_offsets([[tau, anchor_kl(s_neg, tau)[0]]])
        ax.relim(visible_only=True)
        ax.autoscale_view()
        return t_star

    return update


def simulation_plot(ax, sim: dict, t_star: float):
    """The temperature of :func:`simulate_tau` (``sim``) over the anchor's visits, against its exact tau*."""
    _simulation_view(ax)(sim, t_star)
    return ax


def _simulation_view(ax):
    """The artists of :func:`simulation_plot`, made once; returns ``update(sim, t_star)``."""
    (path,) = ax.plot([], [], color="k", lw=1.2, label="τ_i (stochastic update)")
    level = ax.axhline(0.0, color=plots.MUTED, ls="--", lw=1, label="τ* (exact)")
    ax.set(xlabel="visits of this anchor (epochs)", ylabel="τ_i", title="the update, negatives resampled")
    ax.legend(loc="best", fontsize=9)

    def update(sim: dict, t_star: float) -> None:
        path.set_data(np.arange(len(sim["tau"])), sim["tau"])
        level.set_ydata([t_star, t_star])
        ax.relim()
        ax.autoscale_view()

    return update


def tau_by_class(ax, tau, labels, *, n_head: int = N_HEAD, title: str = "learned τ per class", star=None):
    """A box per class of the per-sample temperatures, head classes in green, tail in pink, the
    class size under each box; ``star`` (per-sample tau*, optional) adds each class's mean tau* as a
    black diamond."""
    tau, y = np.asarray(tau), np.asarray(labels)
    classes = np.unique(y)
    box = ax.boxplot([tau[y == c] for c in classes], positions=classes, widths=0.6, patch_artist=True,
                     showfliers=False, medianprops=dict(color="k"))
    for c, patch in zip(classes, box["boxes"]):
        patch.set_facecolor(HEAD_COLOR if c < n_head else TAIL_COLOR)
        patch.set_alpha(0.7)
    if star is not None:
        star = np.asarray(star)
        ax.scatter(classes, [star[y == c].mean() for c in classes], marker="D", color="k", s=22, zorder=4,
                   label="mean τ* (final embedding)")
        ax.legend(loc="upper right", fontsize=9)
    counts = class_counts(y)
    ax.set_xticks(classes, [f"{c}\n{counts[c]}" for c in classes], fontsize=9)
    ax.set(xlabel="class / its number of training images", ylabel="τ_i", title=title)
    return box


def tau_trajectories(ax, run: ISogRun, *, title: str = "mean τ of each group during training"):
    """Mean tau over head items and over tail items, per iteration."""
    h = run.history
    ax.plot(h["iter"], h["tau_head"], color=HEAD_COLOR, label="head classes (frequent)")
    ax.plot(h["iter"], h["tau_tail"], color=TAIL_COLOR, label="tail classes (rare)")
    ax.set(xlabel="iteration", ylabel="mean τ_i", title=title)
    ax.legend(loc="best", fontsize=9)
    return ax


def spread_plot(ax, star, sigma, head, *, rho: float):
    """tau* of each item against its small-rho prediction ``sigma / sqrt(2 rho)``, head and tail coloured."""
    star, pred, head = np.asarray(star), np.asarray(sigma) / math.sqrt(2 * rho), np.asarray(head)
    for mask, color, name in ((head, HEAD_COLOR, "head classes"), (~head, TAIL_COLOR, "tail classes")):
        ax.scatter(pred[mask], star[mask], s=10, color=color, alpha=0.6, label=name)
    lim = [min(pred.min(), star.min()), max(pred.max(), star.max())]
    ax.plot(lim, lim, color=plots.MUTED, ls="--", lw=1, label="τ* = σ / √(2ρ)")
    ax.set(xlabel="σ_i / √(2ρ) (spread of the similarities)", ylabel="τ*_i",
           title=f"τ* follows the spread (ρ = {rho:g})")
    ax.legend(loc="upper left", fontsize=9)
    return ax


def learning_curves(axes, runs: dict, *, items: dict):
    """Three panels for ``{label: ISogRun}``: the mean tau of head and tail items against iterations
    (per run with per-sample temperatures), the temperatures of a few single images (``items``:
    ``{name: position in the training set}``) after each epoch, and the test kNN accuracy."""
    styles = ["-", "--", ":", "-."]
    tau_runs = [(label, run) for label, run in runs.items() if run.tau is not None]
    for (label, run), ls in zip(tau_runs, styles):
        h = run.history
        axes[0].plot(h["iter"], h["tau_head"], color=HEAD_COLOR, ls=ls, lw=1.4, label=f"head, {label}")
        axes[0].plot(h["iter"], h["tau_tail"], color=TAIL_COLOR, ls=ls, lw=1.4, label=f"tail, {label}")
        for (name, item), color in zip(items.items(), (HEAD_COLOR, TAIL_COLOR, "k", plots.MUTED)):
            axes[1].plot(np.arange(1, len(run.tau_epochs) + 1), run.tau_epochs[:, item], ls=ls, color=color,
                         lw=1.4 if ls == "-" else 0.8, label=f"{name}, {label}")
    axes[0].set(xlabel="iteration", ylabel="mean τ_i", title="mean temperature of each group")
    axes[0].legend(loc="center right", fontsize=9)
    top = max([float(run.tau_epochs[:, list(items.values())].max()) for _, run in tau_runs], default=1.0)
    axes[1].set(xlabel="epoch", ylabel="τ_i", title="single images' temperatures", ylim=(0, 1.45 * top))
    axes[1].legend(loc="upper left", fontsize=9)
    for (label, run), ls in zip(runs.items(), styles):
        axes[2].plot(run.evals["iter"], run.evals["knn"], marker=".", ls=ls, color=METHOD_COLORS[run.params["method"]],
                     label=label)
    axes[2].set(xlabel="iteration", ylabel="5-NN accuracy", title="test kNN accuracy (balanced test set)")
    axes[2].legend(loc="lower right", fontsize=9)
    return axes


# ------------------------------------------------------------------------------------------------
# Panels (ipywidgets imported inside, so that the module itself needs no widget library)
# ------------------------------------------------------------------------------------------------

def dro_panel(S, labels, *, anchors: dict, rho: float = 0.4, tau: float = 0.1, **defaults):
    """Pure maths on fixed similarities: one anchor's ``KL(p_tau||u)`` curve and tau* (left), its
    weights over the negatives at tau* against those at a global ``tau`` (middle), and the stochastic
    temperature update of :func:`simulate_tau` on its negatives (right).

    ``S``/``labels``: a similarity matrix over a data set (each row's negatives are its pool);
    ``anchors``: ``{name: row}`` to choose from.  Knobs: rho, the tau range, the global tau, and the
    update's gamma, beta_u, eta and batch size.  The artists are made once and updated in place."""
    import ipywidgets as W

    from .. import widgets

    S = torch.as_tensor(S, dtype=torch.float64).detach()
    labels = torch.as_tensor(labels)
    _, _, neg = pair_batch(S, labels, need_positive=False)
    d = PRESETS["digits"] | dict(batch=254) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    log = dict(base=10, readout_format=".3g", **style)
    controls = {
        "anchor": W.Dropdown(options=list(anchors), value=next(iter(anchors)), description="anchor"),
        "rho": W.FloatLogSlider(value=rho, min=-2, max=math.log10(5), step=0.05, description="ρ (KL radius)", **log),
        "tau_min": W.FloatLogSlider(value=d["tau_min"], min=-2.3, max=-0.5, step=0.05, description="τ_min", **log),
        "tau_max": W.FloatLogSlider(value=d["tau_max"], min=-1, max=0.5, step=0.05, description="τ_max", **log),
        "tau": W.FloatLogSlider(value=tau, min=-2, max=0, step=0.05, description="global τ", **log),
        "gamma": W.FloatSlider(value=d["gamma"], min=0.05, max=1.0, step=0.05, description="γ (denominator MA)", **style),
        "beta_u": W.FloatSlider(value=d["beta_u"], min=0.05, max=1.0, step=0.05, description="β_u (τ momentum)", **style),
        "eta": W.FloatLogSlider(value=d["eta"], min=-2.5, max=0, step=0.1, description="η (τ step)", **log),
        "batch": W.IntSlider(value=d["batch"], min=4, max=int(neg.sum(dim=1).min()), step=4,
                             description="negatives per step", **style),
    }
    fig, axes = plots.new_figure(3, width=4.6, height=3.7)
    grid = np.logspace(-2.3, 0.5, 120)
    kl_curves: dict = {}                        # anchor -> its KL curve on the grid (the other knobs leave it)
    stars: dict = {}                            # (anchor, rho, tau range) -> tau* (the update's knobs leave it)
    negatives = {name: S[a, neg[a]] for name, a in anchors.items()}
    show_kl = _kl_view(axes[0, 0], grid=grid)
    lines = plots.temperature_curves(axes[0, 1], negatives[controls["anchor"].value], [tau, tau])
    uniform = axes[0, 1].lines[-1]
    for line, method in zip(lines, ("isogclr", "simclr")):
        line.set(color=METHOD_COLORS[method], ms=2, lw=1)
    axes[0, 1].set(ylim=(1e-6, 1.5), ylabel="push $p_{ij}$")
    texts = axes[0, 1].legend(loc="upper left", fontsize=9).get_texts()
    show_sim = _simulation_view(axes[0, 2])

    def draw(v):
        s_neg = negatives[v["anchor"]]
        if v["anchor"] not in kl_curves:
            kl_curves[v["anchor"]] = anchor_kl(s_neg, grid)
        lo, hi = v["tau_min"], max(v["tau_max"], v["tau_min"] * 1.01)
        key = (v["anchor"], v["rho"], lo, hi)
        if key not in stars:
            stars[key] = anchor_tau_star(s_neg, rho=v["rho"], tau_min=lo, tau_max=hi)
        t_star = show_kl(s_neg, rho=v["rho"], tau_min=lo, tau_max=hi, tau=v["tau"], kl=kl_curves[v["anchor"]],
                         t_star=stars[key])
        s_sorted = torch.sort(s_neg).values
        for line, t in zip(lines, (t_star, v["tau"])):
            line.set_data(s_sorted.numpy(), torch.softmax(s_sorted / t, 0).numpy())
        uniform.set_ydata([1 / len(s_neg)] * 2)
        axes[0, 1].relim()
        axes[0, 1].autoscale_view(scaley=False)
        texts[0].set_text(f"own τ* = {t_star:.3g}")
        texts[1].set_text(f"global τ = {v['tau']:.3g}")
        texts[2].set_text(f"uniform 1/{len(s_neg)}")
        axes[0, 1].set_title(f"anchor '{v['anchor']}': weight per negative")
        sim = simulate_tau(s_neg, rho=v["rho"], gamma=v["gamma"], beta_u=v["beta_u"], eta=v["eta"],
                           tau_init=min(max(d["tau_init"], lo), hi), tau_min=lo, tau_max=hi, batch=v["batch"],
                           steps=100)
        show_sim(sim, t_star)
        top = float(torch.softmax(s_neg / t_star, 0).max())
        return {"tau_star": t_star, "trajectory": sim["tau"], "top_share": top,
                "status": f"τ* = {t_star:.3g} (KL = ρ = {v['rho']:.3g}); after 100 visits τ = {sim['tau'][-1]:.3g}; "
                          f"at τ* the hardest negative takes {top:.1%} of the push"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_isogclr`: method, rho, eta, gamma, beta_u, tau_init, imbalance,
    epochs, seed.  Draws the group-mean temperatures during training, the learned tau per class, and
    the kNN accuracy during training."""
    import ipywidgets as W

    from .. import widgets

    d = PRESETS["digits"] | dict(method="isogclr", imbalance=10.0, epochs=100, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    log = dict(base=10, readout_format=".3g", **style)
    controls = {
        "method": W.Dropdown(options=list(METHODS), value=d["method"], description="method",
                             layout=W.Layout(width="200px")),
        "rho": W.FloatLogSlider(value=d["rho"], min=-1, max=math.log10(3), step=0.05, description="ρ", **log),
        "eta": W.FloatLogSlider(value=d["eta"], min=-2, max=math.log10(0.5), step=0.05, description="η", **log),
        "gamma": W.FloatSlider(value=d["gamma"], min=0.1, max=1.0, step=0.1, description="γ", **style),
        "beta_u": W.FloatSlider(value=d["beta_u"], min=0.1, max=1.0, step=0.1, description="β_u", **style),
        "tau_init": W.FloatLogSlider(value=d["tau_init"], min=math.log10(0.05), max=0, step=0.05,
                                     description="τ_init (SimCLR's τ)", **log),
        "imbalance": W.FloatSlider(value=d["imbalance"], min=1, max=20, step=1, description="imbalance", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=10, max=200, step=10, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        # the log slider's left end is 10**log10(0.05) = 0.0499999...: clamp into the trained [tau_min, tau_max]
        tau_init = min(max(v["tau_init"], PRESETS["readme"]["tau_min"]), PRESETS["readme"]["tau_max"])
        return train_isogclr(v["method"], rho=v["rho"], eta=v["eta"], gamma=v["gamma"], beta_u=v["beta_u"],
                             tau_init=tau_init, imbalance=float(v["imbalance"]), epochs=v["epochs"],
                             seed=v["seed"], progress=progress)

    def draw(axes, result, _v):
        h = result.history
        if result.tau is not None:
            tau_trajectories(axes[0, 0], result)
            tau_by_class(axes[0, 1], result.tau, result.y_train, star=result.tau_star)
        else:
            axes[0, 0].plot(h["iter"], h["loss"], color=METHOD_COLORS["simclr"], lw=1)
            axes[0, 0].set(xlabel="iteration", ylabel="NT-Xent loss", title="SimCLR: training loss (one global τ)")
            tau_by_class(axes[0, 1], result.tau_star, result.y_train, title="τ* on the final embedding")
        axes[0, 2].plot(result.evals["iter"], result.evals["knn"], marker=".",
                        color=METHOD_COLORS[result.params["method"]])
        axes[0, 2].set(xlabel="iteration", ylabel="5-NN accuracy", title="test kNN accuracy (balanced test set)")
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.6, height=3.6, autorun=autorun)
