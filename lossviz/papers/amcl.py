r"""Adaptive Multi-head Contrastive Learning (AMCL; Wang, Koniusz, Gedeon, Zheng, ECCV 2024), in miniature.

AMCL gives a SimCLR network **C projection heads** and every pair of views, in every head, its own
**temperature** ``tau^c_ij``, predicted by one small network ``phi`` shared by the heads and kept in
``[tau_min, tau_max]`` by a sigmoid (:class:`TemperatureNet`, :func:`pair_temperatures`):

.. math::  \tau^c_{ij} = \tau_{min} + (\tau_{max} - \tau_{min})\,\sigma\big(-\langle \phi(z^c_i), \phi(z^c_j)\rangle\big)

The objective (:func:`amcl_loss`) follows the official code's newer version (``amcl/losses.py``,
class ``AMCLNTXentLoss``, "Eq. (2.1) with the practical Top-k approximation"): per head c and anchor i,
with positive p and the k most similar negatives ``TopK_i``,

.. math::  \ell^c_i = -\frac{s_{ip}}{\tau_{ip}} + \frac1k \sum_{n \in TopK_i} \frac{s_{in}}{\tau_{in}}
           + \beta\,\Omega(\tau_{ip}) - \beta \sum_{n \in TopK_i} \big(\log\tau_{in} + \tfrac{1}{\tau_{in}}\big),
           \qquad \Omega(\tau) = \tfrac{d'}{2}\log\tau + \tfrac1\tau ,

averaged over the 2B anchors (the mean of the two directions) and **summed** over the heads.  The
paper's eq. (2.1) keeps only the most similar negative ``n*`` and puts the full ``Ω`` on it,
``+ max_n s_in / τ_in* - β Ω(τ_in*)``: with ``topk=1`` the code's objective differs from it only by
``β (d'/2 - 1) log τ_in*`` per anchor (the code's negative regulariser has no ``d'/2``); the
positive's terms are the same in both.  The code's pair weights (General Pair Weighting) are
``|dL/ds_ij| = 1 / tau_ij`` (``1/(k tau)`` on a negative): a pair the network finds hard to match
gets a large temperature and so a small weight.

**The collapse.** ``dℓ/dτ_ip = (s_ip - β)/τ² + β d'/(2τ) > 0`` whenever ``s_ip > β``: every
positive with a cosine above β (0.01) wants a *smaller* temperature, all the way to ``tau_min``
(1e-5), where its weight is 1e5.  ``bounded=True`` is lossviz's variant (reconstructed, not the
paper's), in which each term is a proper negative log-likelihood with a non-negative residual:

.. math::  \ell^c_i = \frac{1 - s_{ip}}{\tau_{ip}} + \beta\,\Omega(\tau_{ip})
           + \frac1k \sum_{n \in TopK_i} \Big(\frac{1 + s_{in}}{\tau_{in}} + \beta\,\Omega(\tau_{in})\Big),
           \qquad \tau^* = \frac{2\,(1 \mp s + \beta)}{\beta d'}

(:func:`optimal_temperature`): a positive that stays dissimilar, or a negative that stays similar,
settles at a larger temperature, hence a smaller weight, and nothing runs to the floor.

Also here: :func:`temperature_gradient` (closed-form ``dℓ/dτ`` of one pair's term),
:func:`descend_temperatures` (the temperatures alone, as free parameters, on fixed similarities),
:func:`train_amcl` (the digits two-view kit with C heads, on :class:`lossviz.train.Trainer` and cached
by :func:`lossviz.train.memo`; each run also keeps the temperatures its *untrained* temperature network
gives the trained embeddings, the control for what training φ adds), :func:`temperature_ratio` (how
much warmer the worst-matched positives are than the best-matched), and two panels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import augment, checks, data, plots
from ..contrastive import nt_xent_loss
from ..metrics import knn_accuracy
from ..models import encoder_projector, mlp
from ..similarity import pair_masks, similarity, upcast
from ..train import Run, Trainer, memo

#: The official code's defaults (newer version, ``AMCLNTXentLoss``): temperature bounds, β, top-k.
#: Its training script overrides β with 1e-4 for SimCLR and MoCo; the older code uses β = 0.1.
TAU_MIN, TAU_MAX, BETA, TOPK = 1e-5, 2.0, 0.01, 100
#: What :func:`train_amcl` trains: the official objective, the bounded variant, or the SimCLR baseline.
VARIANTS = ("official", "bounded", "simclr")
#: One colour per projection head (the pair colours of lossviz mean positive / negative, never a head).
HEAD_COLORS = ("#000000", "#009E73", "#CC79A7", "#E69F00")
#: Colours of the runs in :func:`knn_curves` (SimCLR is black, dashed).
RUN_COLORS = ("#882255", "#44AA99", "#332288", "#DDCC77")
NAMES = {"official": "AMCL (official)", "bounded": "AMCL (bounded variant)", "simclr": "SimCLR"}


# ------------------------------------------------------------------------------------------------
# Temperatures
# ------------------------------------------------------------------------------------------------

def omega(tau, dim: int):
    r"""The temperature regulariser ``Ω(τ) = (d'/2) log τ + 1/τ`` (``dim`` = d', the head's output size).
    Alone it is minimal at ``τ = 2/d'``; ``β Ω`` is what stops (or, in the official form, fails to
    stop) the temperatures from running away."""
    return 0.5 * dim * torch.log(tau) + 1.0 / tau


def pair_temperatures(score, *, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX) -> torch.Tensor:
    r"""``τ = τ_min + (τ_max - τ_min) σ(-r)`` for pair scores ``r`` (the paper's ``ι/(1 + e^r) + η``):
    a score of 0 gives the middle of the range, a large score the floor, a very negative one the
    ceiling.  Computed in at least float32 (``1/τ`` reaches 1e5 at the default floor)."""
    tau_min, tau_max = checks.temperature_range(tau_min, tau_max)
    score = torch.as_tensor(score)
    if not score.is_floating_point() or score.dtype in (torch.float16, torch.bfloat16):
        score = score.float()
    return tau_min + (tau_max - tau_min) * torch.sigmoid(-score)


class TemperatureNet(nn.Module):
    r"""The shared temperature network: ``φ`` = Linear(d, h) - ReLU - Linear(h, d), and
    ``T = pair_temperatures(Φ Φᵀ)`` with ``Φ = φ(Z)``.

    ``forward(Z)`` takes one head's embeddings (n x d) or all heads' (C x n x d) and returns the
    n x n (or C x n x n) matrix of pair temperatures, symmetric, computed in at least float32.  The
    pair scores are one matrix product, O(n² d), never φ on n² pairs.
    """

    def __init__(self, dim: int, hidden: int | None = None, *, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX):
        super().__init__()
        dim = checks.integer(dim, "dim", 1)
        hidden = dim if hidden is None else checks.integer(hidden, "hidden", 1)
        self.tau_min, self.tau_max = checks.temperature_range(tau_min, tau_max)
        self.phi = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        Z = Z.float() if Z.dtype in (torch.float16, torch.bfloat16) else Z
        P = self.phi(Z.to(self.phi[0].weight.dtype)).to(Z.dtype)
        return pair_temperatures(P @ P.transpose(-1, -2), tau_min=self.tau_min, tau_max=self.tau_max)


class MultiHeadModel(nn.Module):
    """An encoder (the first half of :func:`lossviz.models.encoder_projector`), ``heads``
    projection heads (each :func:`lossviz.models.mlp` ``hidden -> hidden -> dim``, L2-normalised, with
    its own weights), and one :class:`TemperatureNet` shared by the heads.

    ``forward(x)`` returns ``(h, Z)``: the representation (n x hidden) and the heads' embeddings
    (C x n x dim)."""

    def __init__(self, in_dim: int = 64, *, heads: int = 3, hidden: int = 128, dim: int = 32,
                 temperature_hidden: int = 128, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX):
        super().__init__()
        heads = checks.integer(heads, "heads", 1)
        self.encoder = encoder_projector(in_dim, hidden, dim)[:4]
        self.heads = nn.ModuleList([mlp(hidden, dim, hidden) for _ in range(heads)])
        self.temperature = TemperatureNet(dim, temperature_hidden, tau_min=tau_min, tau_max=tau_max)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, torch.stack([head(h) for head in self.heads])


# ------------------------------------------------------------------------------------------------
# The objective
# ------------------------------------------------------------------------------------------------

def _heads(S, labels, tau, topk):
    """Validate and broadcast: ``(S3, T3, pos_col, neg, k)`` with S3, T3 of shape C x n x n."""
    S = torch.as_tensor(S) if not isinstance(S, torch.Tensor) else S
    ndim = S.ndim if S.ndim in (2, 3) else 2
    S = checks.as_float_tensor(S, "S (one head's n x n similarities, or C x n x n for C heads)", ndim)
    S3 = upcast(S if S.ndim == 3 else S[None])
    n = S3.shape[-1]
    if S3.shape[-2] != n:
        raise ValueError(f"S must be square in its last two dimensions (anchors x views); got {tuple(S.shape)}")
    if n < 3:
        raise ValueError(f"a batch needs at least 3 views (an anchor, its positive, a negative); got {n}")
    labels = checks.check_labels(labels, n, S3.device)
    pos, neg = pair_masks(labels)
    if checks.validation_enabled() and not bool((pos.sum(dim=1) == 1).all()):
        raise ValueError("AMCL's SimCLR form needs exactly one positive per anchor (two views of each item): "
                         "use lossviz.augment.two_view_labels(B)")
    if isinstance(tau, torch.Tensor):
        if tau.shape not in (S.shape, S3.shape):
            raise ValueError(f"tau (the pair temperatures) must have the shape of S, {tuple(S.shape)}; "
                             f"got {tuple(tau.shape)}. Pass a float for one temperature shared by all pairs")
        T3 = checks.as_float_tensor(tau, "tau (the pair temperatures)", tau.ndim)
        T3 = T3 if T3.ndim == 3 else T3[None]
        T3 = T3.float() if T3.dtype in (torch.float16, torch.bfloat16) else T3
        if checks.validation_enabled() and not bool((T3 > 0).all()):
            raise ValueError("every temperature in tau must be > 0 (a temperature of 0 divides by zero); "
                             "produce them with pair_temperatures or TemperatureNet")
        T3 = T3.to(S3.device)
    else:
        t = checks.positive(tau, "tau (the temperature)")
        T3 = torch.full_like(S3, t, dtype=torch.promote_types(S3.dtype, torch.float32))
    k = min(checks.integer(topk, "topk", 1), n - 2)
    return S3, T3, pos.float().argmax(dim=1), neg, k


def _select(S3, T3, pos_col, neg, k):
    """Each anchor's positive ``(s_p, t_p)`` (C x n) and its k most similar negatives ``(s_k, t_k)``
    (C x n x k), chosen by similarity as the official code does (the choice passes no gradient)."""
    C, n, _ = S3.shape
    col = pos_col.expand(C, n)[..., None]
    s_p, t_p = S3.gather(2, col)[..., 0], T3.gather(2, col)[..., 0]
    idx = S3.detach().masked_fill(~neg, -math.inf).topk(k, dim=2).indices
    return s_p, t_p, S3.gather(2, idx), T3.gather(2, idx)


def amcl_objective(s_p, t_p, s_k, t_k, *, beta: float, dim: int, bounded: bool) -> torch.Tensor:
    """The formula of :func:`amcl_loss` on the pairs it keeps: per head (C,), the mean over anchors
    of ℓ^c_i (see the module docstring), from each anchor's positive ``s_p``, ``t_p`` (C x n) and its
    top-k negatives ``s_k``, ``t_k`` (C x n x k)."""
    t_p = t_p.to(torch.promote_types(t_p.dtype, s_p.dtype))
    t_k = t_k.to(t_p.dtype)
    if bounded:
        pos = (1 - s_p) / t_p + beta * omega(t_p, dim)
        negs = ((1 + s_k) / t_k + beta * omega(t_k, dim)).mean(dim=2)
    else:
        pos = -s_p / t_p + beta * omega(t_p, dim)
        negs = (s_k / t_k).mean(dim=2) - beta * (torch.log(t_k) + 1.0 / t_k).sum(dim=2)
    return (pos + negs).mean(dim=1)


def amcl_loss(S, labels, *, tau, beta: float = BETA, dim: int = 128, topk: int = TOPK,
              bounded: bool = False, per_head: bool = False) -> torch.Tensor:
    r"""The AMCL objective (SimCLR form) on one head's similarities ``S`` (n x n) or C heads' (C x n x n).

    Official form (``bounded=False``; the newer official code, ``AMCLNTXentLoss``):

    .. math::  \ell^c_i = -\frac{s_{ip}}{\tau_{ip}} + \frac1k \sum_{n \in TopK_i} \frac{s_{in}}{\tau_{in}}
               + \beta\,\Omega(\tau_{ip}) - \beta \sum_{n \in TopK_i} \big(\log \tau_{in} + 1/\tau_{in}\big)

    Bounded variant (``bounded=True``; lossviz's reconstruction, not the paper's):

    .. math::  \ell^c_i = \frac{1 - s_{ip}}{\tau_{ip}} + \beta\,\Omega(\tau_{ip})
               + \frac1k \sum_{n \in TopK_i} \Big(\frac{1 + s_{in}}{\tau_{in}} + \beta\,\Omega(\tau_{in})\Big)

    with ``Ω(τ) = (d'/2) log τ + 1/τ`` (:func:`omega`, ``dim`` = d'), ``p`` the anchor's one positive
    (``labels`` = :func:`lossviz.augment.two_view_labels`), ``TopK_i`` its ``min(topk, n - 2)`` negatives
    of highest ``s`` (chosen by ``s``, as the official code).  ``L = sum_c mean_i ℓ^c_i`` (``per_head=True``:
    the C per-head means).  ``tau`` is the matrix of pair temperatures (shape of ``S``; only row i's
    entries enter anchor i's term) or one float for every pair.  Defaults: the official loss class's
    (β = 0.01, top-k 100, d' = 128).

    Pair weights: ``dL/ds_ip = -1/(n τ_ip)``, ``dL/ds_in = 1/(n k τ_in)`` on the top-k negatives and 0
    on the others: one weight per pair, set by its temperature alone (no softmax over the row).
    """
    beta = checks.non_negative(beta, "beta (the weight of the temperature regulariser)")
    dim = checks.integer(dim, "dim (d', the head's output dimension)", 1)
    S3, T3, pos_col, neg, k = _heads(S, labels, tau, topk)
    per = amcl_objective(*_select(S3, T3, pos_col, neg, k), beta=beta, dim=dim, bounded=bool(bounded))
    return per if per_head else per.sum()


# ------------------------------------------------------------------------------------------------
# dℓ/dτ and where the temperatures go
# ------------------------------------------------------------------------------------------------

def _role(role: str) -> bool:
    return checks.choice(role, "role", ("positive", "negative")) == "positive"


def temperature_gradient(s, tau, *, role: str = "positive", beta: float = BETA, dim: int = 128,
                         topk: int = 1, bounded: bool = False) -> torch.Tensor:
    r"""``dℓ_i/dτ`` of one pair's terms in its anchor's ℓ_i (closed form, float64; elementwise in ``s``, ``tau``).

    ============  ==========================================  ============================================
    pair          official                                    bounded
    ============  ==========================================  ============================================
    positive      ``(s - β)/τ² + β d'/(2τ)``                   ``-(1 - s + β)/τ² + β d'/(2τ)``
    negative      ``(β - s/k)/τ² - β/τ``                       ``(-(1 + s + β)/τ² + β d'/(2τ)) / k``
    ============  ==========================================  ============================================

    Gradient descent moves τ against this sign.  Official, positive: ``> 0`` for every τ once
    ``s > β``, so τ falls to the floor.  Official, negative: ``> 0`` below ``τ = 1 - s/(kβ)`` (a
    maximum of ℓ, not a minimum), so τ runs to the floor or to the ceiling.  Bounded: ``< 0`` below
    τ* and ``> 0`` above (:func:`optimal_temperature`).
    """
    positive = _role(role)
    beta = checks.non_negative(beta, "beta")
    dim = checks.integer(dim, "dim", 1)
    k = checks.integer(topk, "topk", 1)
    s = torch.as_tensor(s, dtype=torch.float64)
    tau = torch.as_tensor(tau, dtype=torch.float64)
    if checks.validation_enabled() and not bool((tau > 0).all()):
        raise ValueError("tau must be > 0")
    if positive:
        return ((-(1 - s + beta) if bounded else s - beta) / tau ** 2) + beta * dim / (2 * tau)
    if bounded:
        return (-(1 + s + beta) / tau ** 2 + beta * dim / (2 * tau)) / k
    return (beta - s / k) / tau ** 2 - beta / tau


def pair_term(s, tau, *, role: str = "positive", beta: float = BETA, dim: int = 128, topk: int = 1,
              bounded: bool = False) -> torch.Tensor:
    """One pair's terms in its anchor's ℓ_i as a function of its similarity ``s`` and temperature
    ``tau`` (float64, elementwise): what :func:`temperature_gradient` differentiates and
    :func:`optimal_temperature` minimises.  A negative's terms include the ``1/k`` of the top-k mean."""
    positive = _role(role)
    beta = checks.non_negative(beta, "beta")
    dim, k = checks.integer(dim, "dim", 1), checks.integer(topk, "topk", 1)
    return _pair_term(torch.as_tensor(s, dtype=torch.float64), torch.as_tensor(tau, dtype=torch.float64),
                      positive, beta, dim, k, bounded)


def _pair_term(s, tau, positive: bool, beta, dim, k, bounded):
    if bounded:
        return ((1 - s) if positive else (1 + s) / k) / tau + (1 if positive else 1 / k) * beta * omega(tau, dim)
    if positive:
        return -s / tau + beta * omega(tau, dim)
    return s / (k * tau) - beta * (torch.log(tau) + 1 / tau)


def optimal_temperature(s, *, role: str = "positive", beta: float = BETA, dim: int = 128, topk: int = 1,
                        bounded: bool = True, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX) -> torch.Tensor:
    r"""The temperature in ``[tau_min, tau_max]`` that minimises one pair's terms (float64, elementwise).

    Bounded: ``τ* = 2(1 - s + β)/(β d')`` for a positive, ``2(1 + s + β)/(β d')`` for a negative (the
    one stationary point, a minimum), clipped to the range.  Official: a positive has an interior
    minimum ``2(β - s)/(β d')`` only when ``s < β``; otherwise, and for every negative (whose only
    stationary point is a maximum), the answer is whichever bound gives the smaller loss: the floor,
    for every positive with ``s > β``.
    """
    positive = _role(role)
    tau_min, tau_max = checks.temperature_range(tau_min, tau_max)
    beta = checks.positive(beta, "beta (the weight of the temperature regulariser)")
    dim, k = checks.integer(dim, "dim", 1), checks.integer(topk, "topk", 1)
    s = torch.as_tensor(s, dtype=torch.float64)
    if bounded:
        return (2 * ((1 - s) if positive else (1 + s)) + 2 * beta).div(beta * dim).clamp(tau_min, tau_max)
    candidates = [torch.full_like(s, tau_min), torch.full_like(s, tau_max)]
    if positive:
        candidates.append(torch.where(s < beta, 2 * (beta - s) / (beta * dim), tau_min).clamp(tau_min, tau_max))
    stacked = torch.stack(candidates)
    losses = _pair_term(s, stacked, positive, beta, dim, k, False)
    return stacked.gather(0, losses.argmin(dim=0, keepdim=True))[0]


def descend_temperatures(S, labels, *, tau0, bounded: bool = False, beta: float = BETA, dim: int = 32,
                         topk: int = 20, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX,
                         steps: int = 200, lr: float = 0.1) -> dict:
    r"""The temperatures alone, as free parameters, on fixed similarities: what the objective asks of them.

    Every pair of every head gets its own score ``r`` (``τ = pair_temperatures(r)``), head c starts
    with every pair at ``tau0[c]``, and Adam (``lr``, on the scores) minimises :func:`amcl_loss` over
    the scores for ``steps`` steps, the similarities ``S`` (C x n x n) frozen.  The heads do not
    interact (the loss is a sum over heads): in a network they share the encoder and φ, here nothing.

    Returns float64 arrays: ``step``; ``tau_pos``, ``tau_neg`` (C x steps+1: the mean temperature of the
    positive pairs and of the top-k negatives); ``s_pos``, ``t_pos`` (C x n: each anchor's positive
    similarity and final temperature); ``s_neg``, ``t_neg`` (C x n x k).
    """
    tau_min, tau_max = checks.temperature_range(tau_min, tau_max)
    beta = checks.non_negative(beta, "beta")
    dim = checks.integer(dim, "dim", 1)
    S = checks.as_float_tensor(torch.as_tensor(S, dtype=torch.float64), "S (C x n x n)", 3).detach()
    tau0 = torch.as_tensor(tau0, dtype=torch.float64).reshape(-1)
    if len(tau0) != S.shape[0]:
        raise ValueError(f"tau0 needs one initial temperature per head ({S.shape[0]}); got {len(tau0)}")
    if not bool(((tau0 > tau_min) & (tau0 < tau_max)).all()):
        raise ValueError(f"each initial temperature must lie strictly between tau_min={tau_min:g} and "
                         f"tau_max={tau_max:g}; got {tau0.tolist()}")
    steps = checks.integer(steps, "steps", 1)
    lr = checks.positive(lr, "lr")
    S3, _, pos_col, neg, k = _heads(S, labels, 1.0, topk)
    s_p, _, s_k, _ = _select(S3, S3, pos_col, neg, k)
    u = (tau0 - tau_min) / (tau_max - tau_min)                       # σ(-r) at the start
    r0 = (torch.log1p(-u) - torch.log(u))[:, None]
    # Every pair's terms depend on its own temperature alone, so the pairs in the loss go into one
    # flat vector, and dL/dτ = A/τ² + B/τ (objective_tau_gradient) gives the gradient in a few
    # elementwise operations a step: the numbers of autograd through amcl_objective, 10x faster.
    A_p, B_p, A_k, B_k = _tau_gradient_coefficients(s_p, s_k, beta=beta, dim=dim, bounded=bounded)
    A, B = torch.cat([A_p.reshape(-1), A_k.reshape(-1)]), torch.cat([B_p.reshape(-1), B_k.reshape(-1)])
    r = torch.cat([r0.expand_as(s_p).reshape(-1), r0[..., None].expand_as(s_k).reshape(-1)])
    m, v = torch.zeros_like(r), torch.zeros_like(r)
    width = tau_max - tau_min
    taus = torch.empty(steps + 1, len(r), dtype=r.dtype, device=r.device)
    for step in range(steps + 1):
        sig = torch.sigmoid(-r)
        t = torch.mul(sig, width).add_(tau_min)                        # τ = τ_min + (τ_max - τ_min) σ(-r)
        taus[step] = t
        if step == steps:
            break
        # dL/dτ · dτ/dr, with dτ/dr = -(τ_max - τ_min) σ (1 - σ)
        g = (A / t).add_(B).div_(t).mul_(sig.mul(sig - 1).mul_(width))
        m.mul_(0.9).add_(g, alpha=0.1)                                 # Adam (β1 0.9, β2 0.999), by hand
        v.mul_(0.999).addcmul_(g, g, value=0.001)
        denom = v.div(1 - 0.999 ** (step + 1)).sqrt_().add_(1e-8)
        r.addcdiv_(m, denom, value=-lr / (1 - 0.9 ** (step + 1)))
    C, n, k = s_k.shape
    t_p, t_k = taus[:, :C * n].reshape(-1, C, n), taus[:, C * n:].reshape(-1, C, n, k)
    return {"step": np.arange(steps + 1), "tau_pos": t_p.mean(dim=2).T.numpy(),
            "tau_neg": t_k.mean(dim=(2, 3)).T.numpy(),
            "s_pos": s_p.numpy(), "t_pos": t_p[-1].numpy(), "s_neg": s_k.numpy(), "t_neg": t_k[-1].numpy()}


def _tau_gradient_coefficients(s_p, s_k, *, beta: float, dim: int, bounded: bool) -> tuple:
    """``(A_p, B_p, A_k, B_k)`` with ``dL/dτ = A/τ² + B/τ`` for each pair in ``L = amcl_objective(...).sum()``
    (positives: shape of ``s_p``, C x n; top-k negatives: shape of ``s_k``, C x n x k)."""
    n, k = s_k.shape[-2], s_k.shape[-1]
    half_bd = 0.5 * beta * dim
    if bounded:         # (1 ∓ s)/τ + β Ω(τ), Ω(τ) = (d'/2) log τ + 1/τ; the negatives' mean over k
        A_p, B_p = (s_p - 1 - beta) / n, torch.full_like(s_p, half_bd / n)
        A_k, B_k = (-1 - s_k - beta) / (n * k), torch.full_like(s_k, half_bd / (n * k))
    else:               # -s/τ + β Ω(τ) for the positive; s/(k τ) - β (log τ + 1/τ) for each negative
        A_p, B_p = (s_p - beta) / n, torch.full_like(s_p, half_bd / n)
        A_k, B_k = (beta - s_k / k) / n, torch.full_like(s_k, -beta / n)
    return A_p, B_p, A_k, B_k


def objective_tau_gradient(s_p, t_p, s_k, t_k, *, beta: float, dim: int, bounded: bool) -> tuple:
    r"""``(dL/dτ_p, dL/dτ_k)`` of ``L = amcl_objective(s_p, t_p, s_k, t_k, ...).sum()``, in closed form:

    .. math::  \frac{\partial L}{\partial \tau} = \frac{A}{\tau^2} + \frac{B}{\tau}

    official: ``A_p = (s - β)/n``, ``B_p = β d'/(2n)``; ``A_k = (β - s/k)/n``, ``B_k = -β/n``;
    bounded: ``A_p = (s - 1 - β)/n``, ``B_p = β d'/(2n)``; ``A_k = -(1 + s + β)/(n k)``, ``B_k = β d'/(2nk)``
    (n anchors, k negatives each).  What :func:`descend_temperatures` steps with; a test holds it
    equal to autograd through :func:`amcl_objective`."""
    A_p, B_p, A_k, B_k = _tau_gradient_coefficients(s_p, s_k, beta=beta, dim=dim, bounded=bounded)
    return (A_p / t_p + B_p) / t_p, (A_k / t_k + B_k) / t_k


def temperature_ratio(s, tau, *, quantile: float = 0.25) -> np.ndarray:
    r"""How much warmer the worst-matched positive pairs are than the best-matched, per head.

    For each head c (rows of ``s`` and ``tau``, C x m: the positives' similarities and temperatures):
    ``exp(mean log τ over the pairs whose s is in the lowest quantile - mean log τ over those in the
    highest)``, the ratio of the two groups' geometric-mean temperatures.  1 means no adaptation; 1.5
    means the worst-matched quarter (``quantile=0.25``) gets 1/1.5 of the best-matched quarter's
    weight ``1/τ``.  A rank correlation says only *whether* τ orders the pairs; this says *how much*."""
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    tau = np.atleast_2d(np.asarray(tau, dtype=np.float64))
    if s.shape != tau.shape:
        raise ValueError(f"s and tau must have the same shape (heads x pairs); got {s.shape} and {tau.shape}")
    q = checks.fraction(quantile, "quantile", zero_ok=False, high=0.5)
    lo = s <= np.quantile(s, q, axis=1, keepdims=True)
    hi = s >= np.quantile(s, 1 - q, axis=1, keepdims=True)
    log_tau = np.log(tau)
    return np.exp((log_tau * lo).sum(1) / lo.sum(1) - (log_tau * hi).sum(1) / hi.sum(1))


def adaptation(run) -> dict:
    """How the learned temperatures follow the match of the positive pairs, measured on a run's
    held-out pairs: ``{"trained": (spearman, ratio), "control": (spearman, ratio)}``, each the mean
    over heads of Spearman(τ_p, 1 - s_p) and the geometric mean of :func:`temperature_ratio`; the
    control is the pre-training temperature network on the same trained embeddings."""
    from scipy.stats import spearmanr

    P = run.pairs
    return {who: (float(np.mean([spearmanr(1 - P["s_pos"][c], P[key][c]).correlation for c in range(run.heads)])),
                  float(np.exp(np.log(temperature_ratio(P["s_pos"], P[key])).mean())))
            for who, key in (("trained", "tau_pos"), ("control", "tau_pos_init"))}


def random_heads(x, *, heads: int = 4, dim: int = 32, seed: int = 0) -> torch.Tensor:
    """Stand-ins for C projection heads on a batch ``x`` (n x D): head c is a random Gaussian
    projection of the inputs to ``dim`` numbers, L2-normalised.  Returns the C x n x dim embeddings
    (float64).  A random projection keeps the inputs' cosines only roughly, so each head sees the
    batch's similarities with its own distortion (an untrained MLP head would put every cosine near 1)."""
    x = checks.as_float_tensor(x, "x (inputs, n x D)", 2).double()
    heads, dim = checks.integer(heads, "heads", 1), checks.integer(dim, "dim", 1)
    g = torch.Generator().manual_seed(seed)
    proj = [torch.randn(x.shape[1], dim, generator=g, dtype=torch.float64) for _ in range(heads)]
    return torch.stack([nn.functional.normalize(x @ P, dim=1) for P in proj])


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class AMCLRun(Run):
    """One self-supervised run: per-iteration ``history`` (loss; per head c the mean temperature of
    the positive pairs ``tau_pos_c`` and of the top-k negatives ``tau_neg_c``, the fraction of each at
    the floor ``floor_pos_c``/``floor_neg_c`` (< 10 τ_min), the mean similarity of the positive pairs
    ``s_pos_c`` and of all negative pairs ``s_neg_c``),
    ``evals`` (iter, ``knn_h``, ``knn_z``: 5-NN test accuracy of the representation h and of the
    heads' concatenated z), and ``pairs``: every head's positive pairs ``s_pos``/``tau_pos`` (C x m)
    and some negatives ``s_neg``/``tau_neg`` (C x m') on held-out test views after training, and
    (AMCL runs) ``tau_pos_init``/``tau_neg_init``: the same pairs' temperatures from the temperature
    network as it was before training (the untrained-φ control)."""

    pairs: dict = field(default_factory=dict)

    @property
    def heads(self) -> int:
        return self.params["heads"]

    def tau_pos(self, head: int | None = None) -> np.ndarray:
        """Mean positive-pair temperature per iteration (head ``head``, or the mean over heads)."""
        heads = range(self.heads) if head is None else [head]
        return np.mean([self.history[f"tau_pos_{c}"] for c in heads], axis=0)

    def tau_neg(self, head: int | None = None) -> np.ndarray:
        """Mean top-k negative temperature per iteration (head ``head``, or the mean over heads)."""
        heads = range(self.heads) if head is None else [head]
        return np.mean([self.history[f"tau_neg_{c}"] for c in heads], axis=0)

    def __repr__(self) -> str:
        p = self.params
        return (f"AMCLRun({NAMES[p['variant']]}, {p['heads']} head(s), {p['epochs']} epochs: final τ_p "
                f"{self.tau_pos()[-1]:.3g}, τ_neg {self.tau_neg()[-1]:.3g}, 5-NN(h) {self.final('knn_h'):.3f}, "
                f"5-NN(z) {self.final('knn_z'):.3f})")


def train_amcl(variant: str = "official", *, heads: int = 3, beta: float = BETA, tau_min: float = TAU_MIN,
               tau_max: float = TAU_MAX, topk: int = 20, tau: float = 0.2, epochs: int = 30,
               batch_size: int = 64, dim: int = 32, lr: float = 1e-3, seed: int = 0,
               progress=True, cache: bool = True) -> AMCLRun:
    """Self-supervised training on two views of each training digit (the digits two-view kit of
    notebook 09: :class:`lossviz.augment.TwoViewSampler`, Adam), with C heads.

    ``variant``: ``"official"`` (:func:`amcl_loss`), ``"bounded"`` (``bounded=True``), or ``"simclr"``
    (the baseline: one head, :func:`lossviz.nt_xent_loss` at the fixed ``tau``; ``heads`` must be 1).
    The temperatures come from the model's shared :class:`TemperatureNet` (hidden 128, as the
    official training script).  One epoch is ``898 // batch_size`` iterations; the 5-NN accuracies are
    measured before training, after every second epoch and at the end.  Cached by parameters
    (:func:`lossviz.train.memo`).
    """
    checks.choice(variant, "variant", VARIANTS)
    heads = checks.integer(heads, "heads", 1)
    if variant == "simclr" and heads != 1:
        raise ValueError("the SimCLR baseline has one head with a fixed temperature: use heads=1")
    params = dict(variant=variant, heads=heads, epochs=checks.integer(epochs, "epochs", 1),
                  batch_size=checks.integer(batch_size, "batch_size", 2), dim=checks.integer(dim, "dim", 2),
                  lr=checks.positive(lr, "lr"), seed=seed)
    if variant == "simclr":
        params["tau"] = checks.positive(tau, "tau (the SimCLR temperature)")
    else:
        tau_min, tau_max = checks.temperature_range(tau_min, tau_max)
        params |= dict(beta=checks.non_negative(beta, "beta"), tau_min=tau_min, tau_max=tau_max,
                       topk=checks.integer(topk, "topk", 1))
    return memo("amcl", params, lambda: _train(params, progress), cache=cache)


def _embed(model: MultiHeadModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, Z = model(x)
    return h, Z.permute(1, 0, 2).reshape(len(x), -1)     # all heads' z side by side


def _train(p: dict, progress) -> AMCLRun:
    split = data.load("digits")
    simclr = p["variant"] == "simclr"

    def build() -> MultiHeadModel:
        return MultiHeadModel(split.x_train.shape[1], heads=p["heads"], dim=p["dim"],
                              tau_min=p.get("tau_min", TAU_MIN), tau_max=p.get("tau_max", TAU_MAX))

    # SimCLR's tau is fixed: its (unused) temperature network stays out of Adam
    def without_temperature_net(m: MultiHeadModel) -> list:
        return [*m.encoder.parameters(), *m.heads.parameters()]

    trainer = Trainer(build, lr=p["lr"], seed=p["seed"], parameters=without_temperature_net if simclr else None)
    model = trainer.model
    untrained_phi = copy.deepcopy(model.temperature)      # the control: φ as it was before training
    sampler = augment.TwoViewSampler(split.x_train, "digits", p["batch_size"], seed=p["seed"])
    per_epoch = len(split.x_train) // p["batch_size"]

    def knn() -> dict:
        (h_tr, z_tr), (h_te, z_te) = _embed(model, split.x_train), _embed(model, split.x_test)
        return {"knn_h": knn_accuracy(h_tr, split.y_train, h_te, split.y_test),
                "knn_z": knn_accuracy(z_tr, split.y_train, z_te, split.y_test)}

    def step(it: int) -> dict:
        views, labels, _ = sampler.sample()
        _, Z = model(views)
        S = torch.stack([similarity(z) for z in Z])
        T = torch.full_like(S, p["tau"]) if simclr else model.temperature(Z)
        _, _, pos_col, neg, k = _heads(S, labels, T, 1 if simclr else p["topk"])
        s_p, t_p, s_k, t_k = _select(S, T, pos_col, neg, k)
        if simclr:
            loss = nt_xent_loss(S[0], labels, tau=p["tau"])
        else:
            loss = amcl_objective(s_p, t_p, s_k, t_k, beta=p["beta"], dim=p["dim"],
                                  bounded=p["variant"] == "bounded").sum()
        trainer.update(loss)
        return {"loss": loss.detach(), **_head_stats(S, neg, s_p, t_p, t_k, floor=10 * p.get("tau_min", 0.0))}

    history, evals, seconds = trainer.run(step, p["epochs"] * per_epoch, evaluate=knn, eval_every=2 * per_epoch,
                                          desc=NAMES[p["variant"]], progress=progress)
    return AMCLRun(params=p, history=history, evals=evals, seconds=seconds,
                   pairs=trainer.evaluating(lambda: _test_pairs(model, split.x_test, p, untrained_phi)))


def _head_stats(S, neg, s_p, t_p, t_k, *, floor: float) -> dict:
    """What one step records per head c: the mean temperature of the positives and of the top-k
    negatives, the fraction of each below ``floor``, and the mean similarity of positives and negatives."""
    out = {}
    for c in range(len(S)):
        out |= {f"tau_pos_{c}": t_p[c].detach().mean(), f"tau_neg_{c}": t_k[c].detach().mean(),
                f"floor_pos_{c}": (t_p[c] < floor).float().mean(), f"floor_neg_{c}": (t_k[c] < floor).float().mean(),
                f"s_pos_{c}": s_p[c].detach().mean(), f"s_neg_{c}": S[c].detach()[neg].mean()}
    return out


def _test_pairs(model: MultiHeadModel, x_test: torch.Tensor, p: dict, untrained_phi: TemperatureNet | None = None,
                n: int = 256) -> dict:
    """Every head's similarity and temperature on held-out views: the n positive pairs, and each
    anchor's first 2 negatives (two fresh views of the first n test digits, a fixed generator).
    With ``untrained_phi`` (the temperature network as it was before training) also ``tau_pos_init``
    and ``tau_neg_init``: the temperatures that network gives the same trained embeddings, the control
    that tells what training φ added.  Call it with the model in eval mode and without gradients
    (:meth:`lossviz.train.Trainer.evaluating`)."""
    v1, v2 = augment.two_views(x_test[:n], "digits", torch.Generator().manual_seed(10_000 + p["seed"]))
    _, Z = model(torch.cat([v1, v2]))
    S = torch.stack([similarity(z) for z in Z]).double()
    simclr = p["variant"] == "simclr"
    T = (torch.full_like(S, p["tau"]) if simclr else model.temperature(Z)).double()
    i = torch.arange(n)
    j = (i[:, None] + torch.arange(1, 3)) % n                        # 2 other items, first views
    out = {"s_pos": S[:, i, i + n], "tau_pos": T[:, i, i + n],
           "s_neg": S[:, i[:, None], j].reshape(len(Z), -1), "tau_neg": T[:, i[:, None], j].reshape(len(Z), -1)}
    if untrained_phi is not None and not simclr:
        T0 = untrained_phi.eval()(Z).double()
        out |= {"tau_pos_init": T0[:, i, i + n], "tau_neg_init": T0[:, i[:, None], j].reshape(len(Z), -1)}
    return {key: value.numpy() for key, value in out.items()}


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def _inverse(t):
    """``1/t`` for a secondary axis (matplotlib also passes 0 and negative values while it lays out)."""
    t = np.asarray(t, dtype=float)
    return 1.0 / np.where(np.abs(t) > 1e-300, t, 1e-300)


def _log_axis(ax, tau_min: float | None, tau_max: float | None) -> None:
    for t, name in ((tau_min, "τ_min"), (tau_max, "τ_max")):
        if t is not None:
            ax.axhline(t, color=plots.MUTED, ls=":", lw=1.2)
            ax.annotate(name, (1.0, t), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                        textcoords="offset points", ha="right", fontsize=9, color=plots.MUTED,
                        annotation_clip=True).set_in_layout(False)      # a zoomed axis hides it
    ax.set_yscale("log")


def _head_legend(ax, heads: int, *, styles=(("-", "positive pairs"), ("--", "top-k negatives")), **kw):
    """One legend entry per head colour, and one per line style (what solid and dashed mean)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=HEAD_COLORS[c % len(HEAD_COLORS)], lw=2, label=f"head {c + 1}")
               for c in range(heads)]
    handles += [Line2D([], [], color=plots.MUTED, ls=ls, lw=1.5, label=label) for ls, label in styles]
    return ax.legend(handles=handles, fontsize=9, **kw)


def temperature_history(ax, run: AMCLRun, *, title: str | None = None):
    """Every head's mean temperature over training: positive pairs solid, top-k negatives dashed."""
    h = run.history
    for c in range(run.heads):
        color = HEAD_COLORS[c % len(HEAD_COLORS)]
        ax.plot(h["iter"], h[f"tau_pos_{c}"], color=color, lw=1.6)
        ax.plot(h["iter"], h[f"tau_neg_{c}"], color=color, lw=1.2, ls="--")
    _log_axis(ax, run.params.get("tau_min"), run.params.get("tau_max"))
    ax.set(xlabel="iteration", ylabel="mean pair temperature τ (log)", title=title or NAMES[run.params["variant"]])
    _head_legend(ax, run.heads, loc="center right")
    return ax


def pair_temperature_scatter(ax, run: AMCLRun, *, title: str | None = None, negatives: bool = True, ylim=None):
    """After training, on held-out views: each pair's temperature against its similarity, one colour per
    head (dots: positive pairs, crosses: negatives, fainter), with the minimiser of its terms (the closed
    form τ* for the bounded variant; the floor or the ceiling for the official one) as lines.  The
    right-hand axis reads the same points as pair weights 1/τ."""
    from matplotlib.lines import Line2D

    p, pairs = run.params, run.pairs
    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
    for c in range(run.heads):
        color = HEAD_COLORS[c % len(HEAD_COLORS)]
        if negatives:
            ax.scatter(pairs["s_neg"][c], pairs["tau_neg"][c], s=7, marker="x", lw=0.5, color=color, alpha=0.15)
    for c in range(run.heads):
        ax.scatter(pairs["s_pos"][c], pairs["tau_pos"][c], s=7, color=HEAD_COLORS[c % len(HEAD_COLORS)], alpha=0.7)
    extra = []
    if p["variant"] != "simclr":
        knobs = dict(beta=p["beta"], dim=p["dim"], topk=p["topk"], bounded=p["variant"] == "bounded",
                     tau_min=p["tau_min"], tau_max=p["tau_max"])
        ax.plot(grid, optimal_temperature(grid, role="positive", **knobs), color=plots.POS_COLOR, lw=2)
        extra.append(Line2D([], [], color=plots.POS_COLOR, lw=2, label="minimiser, positive"))
        if negatives:
            ax.plot(grid, optimal_temperature(grid, role="negative", **knobs), color=plots.NEG_COLOR, lw=2, ls="--")
            extra.append(Line2D([], [], color=plots.NEG_COLOR, lw=2, ls="--", label="minimiser, negative"))
    _log_axis(ax, p.get("tau_min"), p.get("tau_max"))
    weight_axis = ax.secondary_yaxis("right", functions=(_inverse, _inverse))
    weight_axis.set_ylabel("pair weight 1/τ")
    ax.set(xlabel="pair similarity s (cosine)", ylabel="pair temperature τ (log)", xlim=(-1, 1.02),
           title=title or f"{NAMES[p['variant']]}: τ against s (test views)")
    if ylim is not None:                         # a zoom of less than a few decades: plain-number ticks
        from matplotlib.ticker import NullFormatter

        ax.set_ylim(*ylim)
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5) if ylim[0] <= t <= ylim[1]]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        weight_axis.set_yticks([1 / t for t in ticks], [f"{1 / t:g}" for t in ticks])
        for axis in (ax.yaxis, weight_axis.yaxis):
            axis.set_minor_formatter(NullFormatter())
    legend = _head_legend(ax, run.heads, styles=(), loc="lower left")
    if extra:
        ax.add_artist(legend)
        ax.legend(handles=extra, fontsize=9, loc="lower right")
    return ax


def knn_curves(ax, runs: dict, *, key: str = "knn_h"):
    """5-NN test accuracy during training, one line per run (``{label: AMCLRun}``); SimCLR runs dashed."""
    colors = iter(RUN_COLORS)
    for label, run in runs.items():
        simclr = run.params["variant"] == "simclr"
        ax.plot(run.evals["iter"], run.evals[key], marker=".", label=label,
                color="k" if simclr else next(colors), ls="--" if simclr else "-")
    what = "representation h" if key == "knn_h" else "heads' z"
    ax.set(xlabel="iteration", ylabel="5-NN test accuracy", title=f"5-NN accuracy of the {what}")
    ax.legend(loc="best", fontsize=9)
    return ax


def term_curves(ax, s_values, *, role: str = "positive", bounded: bool = False, beta: float = BETA,
                dim: int = 32, topk: int = 20, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX):
    """One pair's terms against its temperature (log x, symlog y), one line per similarity in
    ``s_values``, each with its minimiser over ``[tau_min, tau_max]`` marked (:func:`optimal_temperature`)."""
    taus = torch.logspace(math.log10(tau_min), math.log10(tau_max), 300, dtype=torch.float64)
    knobs = dict(role=role, beta=beta, dim=dim, topk=topk, bounded=bounded)
    colors = plots.mpl.colormaps["viridis"](np.linspace(0.0, 0.85, len(s_values)))
    for s, color in zip(s_values, colors):
        f = pair_term(s, taus, **knobs)
        t_opt = optimal_temperature(s, tau_min=tau_min, tau_max=tau_max, **knobs)
        ax.plot(taus, f, color=color, label=f"s = {s:.3g}")
        ax.scatter([float(t_opt)], [float(pair_term(s, t_opt, **knobs))], color=color, s=60, zorder=3,
                   edgecolors="k")
    ax.set(xscale="log", yscale="symlog", xlabel="pair temperature τ (log)",
           ylabel="the pair's terms in ℓ (symlog)",
           title=f"{'bounded' if bounded else 'official'}, {role} pair (β = {beta:.3g})")
    lo, hi = ax.get_ylim()                      # ticks at 0 and every other power of ten, no crowding
    top = math.ceil(math.log10(max(abs(lo), abs(hi), 10)))
    ticks = [0.0] + [sign * 10.0 ** e for e in range(2, top + 1, 2) for sign in (-1, 1)]
    ax.set_yticks(sorted(t for t in ticks if lo <= t <= hi))
    ax.legend(loc="best", fontsize=9)
    return ax


def negative_shares_view(ax, S, tau, labels, *, anchor: int = 0, topk: int = 20, dim: int = 32,
                         beta: float = BETA, title: str = ""):
    """One anchor's push, shared over its negatives: AMCL's shares (its pair weights by autograd,
    :func:`lossviz.pair_weights`, divided by their total) against NT-Xent's relative penalty at the
    anchor's mean temperature (:func:`lossviz.contrastive.relative_penalty`), against similarity."""
    from ..contrastive import relative_penalty
    from ..weights import pair_weights

    _, neg = pair_masks(torch.as_tensor(labels))
    W = pair_weights(amcl_loss, S, labels, tau=tau, topk=topk, dim=dim, beta=beta)[anchor, neg[anchor]]
    s = S[anchor, neg[anchor]]
    t_bar = float(tau[anchor, neg[anchor]].mean())
    r = relative_penalty(S, labels, tau=t_bar)[anchor, neg[anchor]]
    order = torch.argsort(s)
    ax.plot(s[order], r[order], color=plots.MUTED, marker="o", ms=3, lw=1, label=f"NT-Xent at τ = {t_bar:.2f}")
    ax.vlines(s, 0, W / W.sum(), color=plots.NEG_COLOR, lw=2)
    ax.scatter(s, W / W.sum(), color=plots.NEG_COLOR, s=14, zorder=3, label=f"AMCL, top-{min(topk, len(s))}")
    ax.set(xlabel="similarity of the negative to the anchor", ylabel="share of the anchor's push",
           title=title or f"anchor {anchor}")
    ax.legend(loc="upper left", fontsize=9)
    return W, r


class DescentView:
    """What :func:`descend_temperatures` returns, on two axes: each head's mean temperature over the
    steps (positives solid, top-k negatives dashed), and every positive pair's final temperature
    against its similarity, with the minimiser of the positive's terms (:func:`optimal_temperature`).

    The artists are made once, for up to ``max_heads`` heads; :meth:`update` moves them (what the
    descent panel does on a control change)."""

    def __init__(self, axes, max_heads: int):
        self.axes = axes
        self.grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
        colors = [HEAD_COLORS[c % len(HEAD_COLORS)] for c in range(max_heads)]
        self.pos = [axes[0].plot([], [], color=col)[0] for col in colors]
        self.neg = [axes[0].plot([], [], color=col, ls="--", lw=1.2)[0] for col in colors]
        self.dots = [axes[1].scatter([], [], s=12, color=col, label=f"head {c + 1}") for c, col in enumerate(colors)]
        (self.optimum,) = axes[1].plot(self.grid, self.grid * 0, color=plots.POS_COLOR, lw=2,
                                       label="minimiser of the positive's terms")
        self.bounds = []                                    # per axis: (τ_min line, label), (τ_max line, label)
        for ax in axes:
            pair = []
            for name in ("τ_min", "τ_max"):
                line = ax.axhline(1.0, color=plots.MUTED, ls=":", lw=1.2)
                text = ax.annotate(name, (1.0, 1.0), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                                   textcoords="offset points", ha="right", fontsize=9, color=plots.MUTED,
                                   annotation_clip=True)
                text.set_in_layout(False)                   # a zoomed axis hides it
                pair.append((line, text))
            self.bounds.append(pair)
            ax.set_yscale("log")
        axes[0].set(xlabel="Adam step", ylabel="mean temperature (log)")
        axes[1].set(xlabel="similarity of the positive pair", ylabel="final τ_p (log)", xlim=(-1, 1.02))
        self.heads = None

    def update(self, out: dict, **knobs) -> None:
        """Show ``out`` (``knobs``: the bounded, beta, dim, topk, tau_min, tau_max it was run with)."""
        lo, hi = knobs["tau_min"], knobs["tau_max"]
        heads = len(out["s_pos"])
        for c, (pos, neg, dots) in enumerate(zip(self.pos, self.neg, self.dots)):
            for artist in (pos, neg, dots):
                artist.set_visible(c < heads)
            if c < heads:
                pos.set_data(out["step"], out["tau_pos"][c])
                neg.set_data(out["step"], out["tau_neg"][c])
                dots.set_offsets(np.column_stack([out["s_pos"][c], out["t_pos"][c]]))
        self.optimum.set_ydata(optimal_temperature(self.grid, **knobs).numpy())
        for ax, pair in zip(self.axes, self.bounds):
            for (line, text), t in zip(pair, (lo, hi)):
                line.set_ydata([t, t])
                text.xy = (1.0, t)
            ax.set_ylim(lo / 3, hi * 3)
        self.axes[0].set_xlim(-0.05 * out["step"][-1], 1.05 * out["step"][-1])
        name = "bounded" if knobs["bounded"] else "official"
        self.axes[0].set_title(f"{name}: the temperatures descend")
        self.axes[1].set_title(f"{name}: where each positive ends")
        if heads != self.heads:                             # the legends list the heads shown
            self.heads = heads
            _head_legend(self.axes[0], heads, loc="best")
            self.axes[1].legend(handles=[*self.dots[:heads], self.optimum], loc="best", fontsize=9)


def descent_plot(axes, out: dict, **knobs) -> DescentView:
    """:class:`DescentView` of ``out`` (what :func:`descend_temperatures` returned; ``knobs``: its
    bounded, beta, dim, topk, tau_min, tau_max) on two axes."""
    view = DescentView(axes, len(out["s_pos"]))
    view.update(out, **knobs)
    return view


def descent_panel(S, labels, *, heads: int = 3, bounded: bool = False, beta: float = BETA, dim: int = 32,
                  topk: int = 20, tau0: float = 0.5, spread: float = 2.0, steps: int = 200):
    """Pure maths: the temperatures alone, on fixed similarities ``S`` (C_max x n x n: one matrix per
    possible head), minimised by :func:`descend_temperatures`.  Knobs: number of heads, variant, β,
    top-k, τ_min, τ_max, the initial temperature of head 1 and the ratio between the heads' initial
    temperatures (head c starts at ``tau0 * spread^(c-1)``).  Left: each head's mean temperature
    over the steps; right: every positive pair's final temperature against its similarity."""
    import ipywidgets as W

    from .. import widgets

    S = torch.as_tensor(S, dtype=torch.float64).detach()
    style = dict(continuous_update=False, style={"description_width": "initial"})
    log = lambda v, lo, hi, desc, fmt=".3g": W.FloatLogSlider(
        value=v, base=10, min=math.log10(lo), max=math.log10(hi), step=0.05, description=desc,
        readout_format=fmt, **style)
    controls = {
        "heads": W.IntSlider(value=heads, min=1, max=len(S), description="heads C", **style),
        "variant": W.ToggleButtons(options=[("official", False), ("bounded", True)], value=bool(bounded),
                                   description="objective", style={"button_width": "80px"}),
        "beta": log(beta, 1e-4, 1.0, "β"),
        "topk": W.IntSlider(value=topk, min=1, max=S.shape[-1] - 2, description="top-k", **style),
        "tau_min": log(TAU_MIN, 1e-5, 0.05, "τ_min", ".1e"),
        "tau_max": W.FloatSlider(value=TAU_MAX, min=0.5, max=4.0, step=0.1, description="τ_max", **style),
        "tau0": log(tau0, 0.06, 0.45 * 4.0, "τ₀ of head 1"),
        "spread": W.FloatSlider(value=spread, min=0.25, max=4.0, step=0.25, description="ratio between heads",
                                **style),
    }
    fig, axes = plots.new_figure(2, width=5.0, height=3.8)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    view = DescentView(axes[0], len(S))

    def draw(v):
        C, lo, hi = v["heads"], v["tau_min"], v["tau_max"]
        tau0 = np.clip(v["tau0"] * v["spread"] ** np.arange(C), lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo))
        knobs = dict(bounded=v["variant"], beta=v["beta"], dim=dim, topk=v["topk"], tau_min=lo, tau_max=hi)
        out = descend_temperatures(S[:C], labels, tau0=tau0, steps=steps, **knobs)
        view.update(out, **knobs)
        name = "bounded" if v["variant"] else "official"
        at_floor = float((out["t_pos"] < 10 * lo).mean())
        return {"out": out, "tau0": tau0, "at_floor": at_floor,
                "status": f"{name}, β = {v['beta']:.3g}: {at_floor:.0%} of the positive pairs end within "
                          f"10× the floor τ_min = {lo:.1e}; mean final τ_p {out['t_pos'].mean():.3g}"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, reference_runs: dict | None = None, autorun: bool = True, **defaults):
    """A Train button over :func:`train_amcl`: variant, heads, β, τ_min, top-k, epochs, seed.
    Draws every head's temperatures over training, the 5-NN accuracy of h (with ``reference_runs``,
    ``{name: run}`` such as a SimCLR run, dashed), and the pairs' temperatures against their similarity after training."""
    import ipywidgets as W

    from .. import widgets

    d = dict(variant="bounded", heads=3, beta=BETA, tau_min=TAU_MIN, topk=20, epochs=30, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "variant": W.Dropdown(options=list(VARIANTS), value=d["variant"], description="objective",
                              layout=W.Layout(width="220px")),
        "heads": W.IntSlider(value=d["heads"], min=1, max=4, description="heads C", **style),
        "beta": W.FloatLogSlider(value=d["beta"], base=10, min=-4, max=0, step=0.25, description="β",
                                 readout_format=".3g", **style),
        "tau_min": W.FloatLogSlider(value=d["tau_min"], base=10, min=-5, max=math.log10(0.05), step=0.25,
                                    description="τ_min", readout_format=".1e", **style),
        "topk": W.IntSlider(value=d["topk"], min=5, max=126, description="top-k", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=5, max=60, step=5, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def setting(v) -> dict:
        if v["variant"] == "simclr":
            return dict(variant="simclr", heads=1, epochs=v["epochs"], seed=v["seed"])
        return dict(v)

    def run(v, progress):
        return train_amcl(**setting(v), progress=progress)

    def draw(axes, result, _v):
        temperature_history(axes[0, 0], result)
        runs = {NAMES[result.params["variant"]]: result}
        runs |= {name: r for name, r in (reference_runs or {}).items() if r is not result}
        knn_curves(axes[0, 1], runs)
        pair_temperature_scatter(axes[0, 2], result, title="τ against s after training")
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.6, height=3.7, autorun=autorun, setting=setting)
