r"""Hyp-OC (Narayan & Patel, 2024): one-class classification in the Poincaré ball.

A face anti-spoofing model trained on **real faces only** has no negatives to push against.  Hyp-OC
draws *pseudo-negatives* from a Gaussian around a running mean of the real features, maps
everything into the Poincaré ball of curvature ``-c`` (radius ``R = 1/sqrt(c)``), and trains a
hyperbolic multinomial logistic regression (MLR, Ganea et al. 2018) to tell real from pseudo, plus a
pairwise term (Hyp-PC) that pulls the real embeddings together::

    L = Hyp-CE(real = 0, pseudo = 1) + w_pc * Hyp-PC(real embeddings)

This module holds the ball's maths (Möbius addition, exponential maps, distance, projection,
feature clipping, the Riemannian gradient rescaling), the MLR layer and both losses, the
pseudo-negative sampler, a digits miniature of the one-class protocol (live digits, three image
"attacks" never seen in training), the training run (scored by :func:`lossviz.metrics.roc_auc`)
and the notebook's panels.

Where the official code (``Kartik-3004/hyp-oc``, with its copy of ``hyptorch``) differs from a
formula, each docstring says which one we follow and why.  Every function takes the curvature
``c > 0`` explicitly: nothing is stored on a class, so two balls of different curvature never share a
value (see :func:`riemannian_grad`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, data, metrics
from ..train import Run, Trainer, memo

#: The official code's settings (``config.py``, ``models.py``, ``train.py``).
DEFAULTS = dict(c=0.1, clip_r=2.0, alpha=0.8, sigma=1.0, max_grad_norm=3.0, w_pc=1.0)
#: The image transformations that stand in for unseen presentation attacks (test time only).
ATTACKS = ("print", "replay", "mask")
#: Margin of the projection onto the ball: points are kept at ``||z|| <= (1 - 1e-3) / sqrt(c)``.
PROJ_MARGIN = 1e-3
#: ``artanh`` is evaluated at ``min(x, 1 - 1e-5)`` (the official clamp).
ARTANH_CLAMP = 1e-5
#: Smallest norm used as a divisor (the official ``clamp_min(1e-5)`` of ``expmap0`` and ``project``).
MIN_NORM = 1e-5
PC_FORMS = ("arctan", "artanh")
GEOMETRIES = ("hyperbolic", "euclidean")


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------

def _curvature(c) -> float:
    return checks.positive(c, "c (the curvature; the ball has radius 1/sqrt(c))")


def _points(x, name: str) -> torch.Tensor:
    """A floating tensor of points, one per row (any leading shape, at least 1-D)."""
    if not isinstance(x, torch.Tensor):
        x = checks.as_float_tensor(x, name, np.ndim(x))
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {x.dtype}. Use {name}.float().")
    if x.ndim < 1:
        raise ValueError(f"{name} must have at least one dimension (the coordinates); got a scalar")
    if checks.validation_enabled() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf; check the model's output (a learning rate too high?)")
    return x


def _in_ball(z: torch.Tensor, c: float, name: str) -> None:
    if checks.validation_enabled() and z.numel() and float(z.detach().norm(dim=-1).max()) * math.sqrt(c) >= 1:
        raise ValueError(f"{name} must lie inside the Poincaré ball ||{name}|| < 1/sqrt(c) = {1 / math.sqrt(c):.4g}; "
                         f"map Euclidean vectors in with expmap0 (and project)")


def _form(form: str) -> str:
    return checks.choice(form, "form", PC_FORMS)


# --------------------------------------------------------------------------------------------
# The Poincaré ball
# --------------------------------------------------------------------------------------------

def _mobius_add(x, y, c: float, eps: float = 0.0):
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1, keepdim=True)
    xy = (x * y).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return num / (den.clamp_min(1e-30) + eps)


def mobius_add(x, y, c: float = 0.1, *, eps: float = 0.0) -> torch.Tensor:
    r"""Möbius addition on the Poincaré ball of curvature ``-c`` (broadcasts over leading dims):

    .. math:: x \oplus_c y = \frac{(1 + 2c\langle x,y\rangle + c\|y\|^2)\,x + (1 - c\|x\|^2)\,y}
                                  {1 + 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}

    It is the ball's "translation": ``0 ⊕ y = y``, ``(-x) ⊕ x = 0``, and as ``c -> 0`` it becomes
    ``x + y``.  Inside the ball the denominator is at least ``(1 - c||x|| ||y||)^2 > 0``, so we compute
    the formula as printed; the official code adds ``eps = 1e-5`` to the denominator (pass
    ``eps=1e-5`` to reproduce it).  That matters only where the denominator itself is tiny, for
    ``(-x) ⊕ y`` with ``x`` and ``y`` close together near the rim, and there it shrinks the result
    (and the distance) several-fold.
    """
    c = _curvature(c)
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same last dimension; got {tuple(x.shape)} and {tuple(y.shape)}")
    return _mobius_add(x, y, c, checks.non_negative(eps, "eps"))


def _expmap0(u, c: float):
    sqrt_c = math.sqrt(c)
    norm = u.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)
    return torch.tanh((sqrt_c * norm).clamp(max=15)) * u / (sqrt_c * norm)


def expmap0(u, c: float = 0.1) -> torch.Tensor:
    r"""Exponential map at the origin: the point reached by walking the geodesic from 0 along the
    tangent vector ``u`` for a unit of time,

    .. math:: \exp_0^c(u) = \tanh(\sqrt c\,\|u\|)\,\frac{u}{\sqrt c\,\|u\|},
              \qquad d_c(0, \exp_0^c(u)) = 2\|u\|.

    ``||exp0(u)|| < 1/sqrt(c)`` for every ``u``: all of Euclidean space is squeezed into the ball, the
    far away parts ever closer to its boundary.  As in the official code, ``||u||`` is clamped at
    1e-5 (so ``exp0(0) = 0``) and the ``tanh`` input at 15 (beyond that ``tanh`` is 1 in float32 anyway).
    """
    return _expmap0(_points(u, "u"), _curvature(c))


def _lambda(x, c: float):
    """Conformal factor ``lambda_x = 2 / (1 - c||x||^2)``: how much the ball's metric magnifies at x."""
    return 2 / (1 - c * (x * x).sum(-1, keepdim=True)).clamp_min(1e-30)


def _expmap(x, u, c: float):
    sqrt_c = math.sqrt(c)
    norm = u.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)
    step = torch.tanh((sqrt_c / 2 * _lambda(x, c) * norm).clamp(max=15)) * u / (sqrt_c * norm)
    return _mobius_add(x, step, c)


def expmap(x, u, c: float = 0.1) -> torch.Tensor:
    r"""Exponential map at a base point ``x`` of the ball:

    .. math:: \exp_x^c(u) = x \oplus_c \Big(\tanh\big(\tfrac{\sqrt c}{2}\lambda_x\|u\|\big)\frac{u}{\sqrt c\,\|u\|}\Big),
              \qquad \lambda_x = \frac{2}{1 - c\|x\|^2},

    so that ``d_c(x, exp_x(u)) = lambda_x ||u||``.  At ``x = 0`` it is :func:`expmap0`.
    """
    c = _curvature(c)
    x, u = _points(x, "x"), _points(u, "u")
    _in_ball(x, c, "x")
    return _expmap(x, u, c)


def _project(z, c: float, margin: float = PROJ_MARGIN):
    norm = z.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)
    max_norm = (1 - margin) / math.sqrt(c)
    return torch.where(norm > max_norm, z / norm * max_norm, z)


def project(z, c: float = 0.1, *, margin: float = PROJ_MARGIN) -> torch.Tensor:
    """Pull points back to ``||z|| <= (1 - margin) / sqrt(c)``: in floating point, ``tanh`` of a large
    argument rounds to 1 and would put a point *on* the boundary, where distances are infinite.
    On the moved points the gradient has no radial part (they are pinned to the sphere)."""
    c = _curvature(c)
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1); got {margin}")
    return _project(_points(z, "z"), c, margin)


def _artanh(x):
    return torch.atanh(x.clamp(max=1 - ARTANH_CLAMP))


def dist(x, y, c: float = 0.1) -> torch.Tensor:
    r"""Geodesic distance in the ball:

    .. math:: d_c(x, y) = \frac{2}{\sqrt c}\,\operatorname{artanh}\big(\sqrt c\,\|(-x)\oplus_c y\|\big)

    (``artanh`` clamped at ``1 - 1e-5``, as in the official ``pmath.dist``).  From the origin it is
    ``2/sqrt(c) artanh(sqrt(c) ||y||)``; as ``c -> 0`` it becomes ``2 ||x - y||``; it grows without bound
    as a point nears the boundary.
    """
    c = _curvature(c)
    x, y = _points(x, "x"), _points(y, "y")
    _in_ball(x, c, "x")
    _in_ball(y, c, "y")
    sqrt_c = math.sqrt(c)
    return 2 / sqrt_c * _artanh(sqrt_c * _mobius_add(-x, y, c).norm(dim=-1))


def clip_features(x, r: float = 2.0) -> torch.Tensor:
    r"""Feature clipping (Guo et al. 2022), applied to the Euclidean vector *before* the exponential map:

    .. math:: x \leftarrow x\cdot\min\Big(1, \frac{r}{\|x\| + 10^{-5}}\Big)

    Every vector longer than ``r`` is shortened to length ``r``, so after ``exp0`` every point stays
    within :func:`clip_bound` ``= tanh(sqrt(c) r)/sqrt(c)`` of the origin, away from the boundary
    where gradients vanish (see the notebook).
    """
    r = checks.positive(r, "r (the clip radius)")
    x = _points(x, "x")
    return x * torch.clamp(r / (x.norm(dim=-1, keepdim=True) + 1e-5), max=1.0)


def clip_bound(c: float = 0.1, r: float = 2.0) -> float:
    """The largest ``||exp0(clip_features(u, r))||`` over all ``u``: ``tanh(sqrt(c) r) / sqrt(c)``
    (inside the ball's radius ``1/sqrt(c)``; as a geodesic distance from 0 it is ``2 r``)."""
    c, r = _curvature(c), checks.positive(r, "r (the clip radius)")
    return math.tanh(math.sqrt(c) * r) / math.sqrt(c)


class _RiemannianGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``(1 - c||z||^2)^2 / 4 = 1/lambda_z^2``."""

    @staticmethod
    def forward(ctx, z, c):
        ctx.save_for_backward(z)
        ctx.c = c
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        scale = (1 - ctx.c * (z * z).sum(-1, keepdim=True)).pow(2) / 4
        return grad * scale, None


def riemannian_grad(z, c: float = 0.1) -> torch.Tensor:
    r"""``z`` unchanged; in the backward pass the gradient is rescaled to the Riemannian gradient of
    the ball, ``grad * (1 - c||z||^2)^2 / 4``.

    The official code does this with ``pmath.RiemannianGradient``, whose curvature is a **class**
    attribute set by every ``ToPoincare(c)``: two balls with different ``c`` in one process silently
    share the last value.  Here ``c`` travels with each call.  Near the boundary the factor tends to 0:
    the gradient that reaches the network vanishes.
    """
    c = _curvature(c)
    return _RiemannianGradient.apply(_points(z, "z"), c)


class ToPoincare(nn.Module):
    r"""Euclidean features -> the Poincaré ball, as the official ``hyptorch.nn.ToPoincare``:

    1. feature clipping at radius ``clip_r`` (``None``: off);
    2. the exponential map at a learnt base point ``x_p = exp0(xp)`` (``xp`` initialised at 0, so at
       the start this is ``exp0``); ``base_point=False`` uses the origin;
    3. projection to ``||z|| <= (1 - 1e-3)/sqrt(c)``;
    4. the Riemannian gradient rescaling (``riemannian=False``: off).

    With the base point at 0 every output obeys ``||z|| <= tanh(sqrt(c) r)/sqrt(c)``; with a learnt
    base point the bound holds around it: ``d_c(x_p, z) <= lambda_{x_p} r``.
    """

    def __init__(self, c: float = 0.1, dim: int = 2, *, clip_r: float | None = 2.0, base_point: bool = True,
                 riemannian: bool = True):
        super().__init__()
        self.c = _curvature(c)
        self.clip_r = None if clip_r is None else checks.positive(clip_r, "clip_r")
        self.riemannian = riemannian
        self.xp = nn.Parameter(torch.zeros(dim)) if base_point else None

    def base(self) -> torch.Tensor | None:
        """The base point ``x_p`` in the ball (``None`` when the map starts at the origin)."""
        return None if self.xp is None else _project(_expmap0(self.xp, self.c), self.c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip_r is not None:
            x = x * torch.clamp(self.clip_r / (x.norm(dim=-1, keepdim=True) + 1e-5), max=1.0)
        xp = self.base()
        z = _expmap0(x, self.c) if xp is None else _expmap(xp, x, self.c)
        z = _project(z, self.c)
        return _RiemannianGradient.apply(z, self.c) if self.riemannian else z

    def extra_repr(self) -> str:
        return f"c={self.c}, clip_r={self.clip_r}, base_point={self.xp is not None}, riemannian={self.riemannian}"


# --------------------------------------------------------------------------------------------
# Hyperbolic multinomial logistic regression and the two losses
# --------------------------------------------------------------------------------------------

def gyroplane_logits(z, a, p, c: float) -> torch.Tensor:
    """The formula of :func:`mlr_logits`, without its input checks: what :class:`HyperbolicMLR`
    computes (also on grid points beyond the rim, for contour plots)."""
    sqrt_c = math.sqrt(c)
    w = _mobius_add(-p, z[..., None, :], c)                       # (B, K, d): (-p_k) ⊕ z
    a_norm = a.norm(dim=-1).clamp_min(1e-15)                      # (K,)
    num = 2 * sqrt_c * (w * a).sum(-1)                            # (B, K)
    den = (1 - c * (w * w).sum(-1)).clamp_min(1e-15) * a_norm
    lam_p = 2 / (1 - c * (p * p).sum(-1)).clamp_min(1e-15)        # (K,)
    return lam_p * a_norm / sqrt_c * torch.asinh(num / den)


def mlr_logits(z, a, p, c: float = 0.1) -> torch.Tensor:
    r"""Logits of the hyperbolic MLR (Ganea, Bécigneul & Hofmann 2018, eq. 25), ``z`` (B, d) in the
    ball, one gyroplane per class given by a point ``p_k`` (K, d) in the ball and a normal ``a_k`` (K, d):

    .. math:: \zeta_k(z) = \frac{\lambda_{p_k}\|a_k\|}{\sqrt c}\,
              \operatorname{asinh}\!\Big(\frac{2\sqrt c\,\langle(-p_k)\oplus_c z,\ a_k\rangle}
              {(1 - c\|(-p_k)\oplus_c z\|^2)\,\|a_k\|}\Big),\qquad \lambda_{p_k} = \frac{2}{1 - c\|p_k\|^2}.

    ``zeta_k(z)`` is ``||a_k||`` times the signed hyperbolic distance from ``z`` to the gyroplane
    ``{z : <(-p_k) ⊕ z, a_k> = 0}`` (a geodesic: in 2-D an arc of a circle orthogonal to the ball's
    rim).  As ``c -> 0`` it becomes the Euclidean logit ``4 <z - p_k, a_k>``.  We use ``torch.asinh``;
    the official ``Arsinh`` computes ``log(x + sqrt(1 + x^2))`` with the log's argument clamped at
    1e-5, which bounds every logit below at ``lambda ||a|| log(1e-5)/sqrt(c)`` and loses precision for
    large negative arguments.
    """
    c = _curvature(c)
    z, a, p = (checks.as_float_tensor(t, n, 2) for t, n in ((z, "z"), (a, "a"), (p, "p")))
    if not z.shape[1] == a.shape[1] == p.shape[1] or a.shape[0] != p.shape[0]:
        raise ValueError(f"z (B, d), a (K, d) and p (K, d) must agree; got {tuple(z.shape)}, "
                         f"{tuple(a.shape)}, {tuple(p.shape)}")
    _in_ball(z, c, "z")
    _in_ball(p, c, "p")
    return gyroplane_logits(z, a, p, c)


class HyperbolicMLR(nn.Module):
    r"""The hyperbolic MLR layer with Euclidean parameters, as the official ``HyperbolicMLR``:
    ``p_k = exp0(p~_k)``, ``a_k = a~_k (1 - c||p_k||^2)`` (the parallel transport of ``a~_k`` from 0 to
    ``p_k``), logits :func:`mlr_logits`.  Parameters start Kaiming-uniform, as there."""

    def __init__(self, dim: int, n_classes: int = 2, c: float = 0.1):
        super().__init__()
        self.c = _curvature(c)
        self.a_vals = nn.Parameter(torch.empty(n_classes, dim))
        self.p_vals = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.kaiming_uniform_(self.a_vals, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.p_vals, a=math.sqrt(5))

    def gyroplanes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a, p)``: each class's normal and point in the ball."""
        p = _expmap0(self.p_vals, self.c)
        return self.a_vals * (1 - self.c * (p * p).sum(-1, keepdim=True)), p

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a, p = self.gyroplanes()
        return gyroplane_logits(z, a, p, self.c)


def hyp_ce_loss(z, labels, a, p, c: float = 0.1) -> torch.Tensor:
    r"""Hyp-CE: the cross-entropy of the hyperbolic MLR logits, ``mean_i -log softmax(zeta(z_i))_{y_i}``
    (labels: real = 0, pseudo-negative = 1).  Its per-sample, per-class weights are
    ``dL/dzeta = (softmax(zeta) - onehot(y)) / B``, as for any cross-entropy (:func:`logit_weights`)."""
    logits = mlr_logits(z, a, p, c)
    labels = checks.check_labels(labels, logits.shape[0], logits.device)
    if checks.validation_enabled() and labels.numel() and not bool(((labels >= 0) & (labels < logits.shape[1])).all()):
        raise ValueError(f"labels must be class ids in [0, {logits.shape[1]}); got {labels.unique().tolist()}")
    return F.cross_entropy(logits, labels)


def logit_weights(logits, labels) -> torch.Tensor:
    """Per-sample, per-class weights ``dCE/dlogit`` of the cross-entropy, by autograd (B, K)."""
    logits = checks.as_float_tensor(logits, "logits", 2)
    labels = checks.check_labels(labels, logits.shape[0], logits.device)
    leaf = logits.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(leaf, labels), leaf)
    return grad


def pair_term(u, c: float = 0.1, form: str = "arctan") -> torch.Tensor:
    r"""The per-pair term of Hyp-PC as a function of ``u = ||(-a) ⊕ b||``:

    * ``"arctan"`` (the official ``TPC_loss_hyp``): ``(2/sqrt(c)) arctan(sqrt(c) u)``, bounded by
      ``pi/sqrt(c)`` (by ``pi/(2 sqrt(c))`` inside the ball, ``u < 1/sqrt(c)``); its derivative
      ``2/(1 + c u^2)`` is at most 2;
    * ``"artanh"`` (the geodesic distance ``d_c(a, b)``): ``(2/sqrt(c)) artanh(sqrt(c) u)``, whose
      derivative ``2/(1 - c u^2)`` explodes as the pair nears the boundary.

    Both become ``2u`` as ``c -> 0``.
    """
    c, form = _curvature(c), _form(form)
    u = _points(u if isinstance(u, torch.Tensor) else torch.as_tensor(u, dtype=torch.get_default_dtype()), "u")
    sqrt_c = math.sqrt(c)
    f = torch.atan if form == "arctan" else _artanh
    return 2 / sqrt_c * f(sqrt_c * u)


def _halves(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B = z.shape[0]
    if B < 2 or B % 2:
        raise ValueError(f"the pair term pairs the first half of the batch with the second: it needs an even "
                         f"batch of at least 2 real samples; got {B}")
    return z[: B // 2], z[B // 2:]


def _hyp_pc(z, c, form):
    a, b = _halves(z)
    return pair_term(_mobius_add(-a, b, c).norm(dim=-1), c, form).sum() / z.shape[0]


def hyp_pc_loss(z, c: float = 0.1, form: str = "arctan") -> torch.Tensor:
    r"""Hyp-PC, the pairwise confusion of the real embeddings ``z`` (B, d), B even: the first half
    ``a`` is paired with the second half ``b``,

    .. math:: L_{PC} = \frac1B\sum_{i\le B/2}\frac{2}{\sqrt c}\arctan\big(\sqrt c\,\|(-a_i)\oplus_c b_i\|\big).

    The official code uses ``arctan`` (bounded, a robust pull); ``form="artanh"`` gives the geodesic
    distance of :func:`dist` instead (see :func:`pair_term`).  Note the ``1/B``: with B/2 pairs the
    loss is *half* the mean pair term, as in the official code.
    """
    c, form = _curvature(c), _form(form)
    z = checks.as_float_tensor(z, "z (the real embeddings, B x d)", 2)
    _in_ball(z, c, "z")
    return _hyp_pc(z, c, form)


def euclidean_pc_loss(z) -> torch.Tensor:
    r"""The Euclidean baseline's pair term: ``(1/B) sum_{i <= B/2} ||a_i - b_i||`` (the ``c -> 0`` limit
    of Hyp-PC is twice this)."""
    z = checks.as_float_tensor(z, "z (the real embeddings, B x d)", 2)
    a, b = _halves(z)
    return (a - b).norm(dim=-1).sum() / z.shape[0]


def pair_term_weights(u, c: float = 0.1, form: str = "arctan", *, batch: int = 2) -> torch.Tensor:
    r"""The General Pair Weighting view of Hyp-PC: ``dL/du_i`` for pairs at distances-in-gyrovector
    ``u``, by autograd on a leaf ``u``, in a batch of ``batch`` real samples.  Closed forms:
    ``(2/B)/(1 + c u^2)`` (arctan) and ``(2/B)/(1 - c u^2)`` (artanh)."""
    if checks.integer(batch, "batch", 2) % 2:
        raise ValueError(f"batch must be even (the pair term pairs the two halves of the batch); got {batch}")
    u = torch.as_tensor(u, dtype=torch.float64).reshape(-1)
    leaf = u.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(pair_term(leaf, c, form).sum() / batch, leaf)
    return grad


# --------------------------------------------------------------------------------------------
# Pseudo-negatives
# --------------------------------------------------------------------------------------------

class PseudoNegatives:
    r"""Pseudo-negatives: as many samples as real features, from ``N(mu_new, sigma^2 I)`` with

    .. math:: \mu_{new} = \alpha\,\mu_{old} + (1 - \alpha)\,\operatorname{mean}(f_{batch}).

    ``running="official"`` reproduces the official code: ``mu_old`` is the **previous batch's mean**
    (not the previous ``mu_new``) and is reset to 0 at the start of every epoch (:meth:`reset`), so the
    centre jumps.  ``running="ema"`` is the textbook running mean (``mu_old`` = the previous
    ``mu_new``, started at the first batch's mean).

    ``sigma`` is a **standard deviation**.  The official ``std_dev`` argument is passed as the
    covariance scale ``std_dev * I``, i.e. a standard deviation ``sqrt(std_dev)``; the two agree at the
    default 1.  The samples carry no gradient (as ``MultivariateNormal.sample``).
    """

    def __init__(self, alpha: float = 0.8, sigma: float = 1.0, *, running: str = "official"):
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha (the running-mean weight) must be in [0, 1); got {alpha}")
        checks.choice(running, "running", ("official", "ema"))
        self.alpha, self.sigma, self.running = float(alpha), checks.positive(sigma, "sigma (a standard deviation)"), running
        self.reset()

    def reset(self) -> None:
        """Start of an epoch: the official code forgets the previous mean."""
        self._old = None
        self.mean = None

    def __call__(self, features, generator: torch.Generator | None = None) -> torch.Tensor:
        f = checks.as_float_tensor(features, "features (the real batch, B x D)", 2).detach()
        batch_mean = f.mean(0)
        if self._old is None:
            old = torch.zeros_like(batch_mean) if self.running == "official" else batch_mean
        else:
            old = self._old
        self.mean = self.alpha * old + (1 - self.alpha) * batch_mean
        self._old = batch_mean if self.running == "official" else self.mean
        noise = torch.randn(f.shape, generator=generator, dtype=f.dtype, device=f.device)
        return self.mean + self.sigma * noise


# --------------------------------------------------------------------------------------------
# The digits miniature: live digits, attacks made by image transformations
# --------------------------------------------------------------------------------------------

def attack(images, kind: str) -> torch.Tensor:
    """Digits images (N, 64) in [0, 1] turned into a stand-in "presentation attack":

    * ``"print"``: a 3x3 box blur (edge pixels replicated), then contrast ``x * 0.6 + 0.2`` (a washed-out print);
    * ``"replay"``: a moiré pattern ``0.25 sin(2.5 col + 1.7 row)`` added (a screen's interference);
    * ``"mask"``: gamma 0.5 (``sqrt(x)``), and the bottom 3 rows covered by a grey (0.5) occluder.

    Results are clipped to [0, 1].
    """
    x = checks.as_float_tensor(images, "images (N x 64, pixels in [0, 1])", 2)
    if x.shape[1] != 64:
        raise ValueError(f"images must be flattened 8x8 digits (N x 64); got {tuple(x.shape)}")
    checks.choice(kind, "kind", ATTACKS)
    img = x.reshape(-1, 1, 8, 8)
    if kind == "print":
        out = F.avg_pool2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.6 + 0.2
    elif kind == "replay":
        row, col = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        out = img + 0.25 * torch.sin(2.5 * col + 1.7 * row).to(img)
    else:  # mask
        out = img.clamp_min(0).sqrt()
        out[:, :, 5:, :] = 0.5
    return out.clamp(0, 1).reshape(x.shape)


@dataclass
class SpoofData:
    """Backbone features of the miniature: live training digits, live test digits, and each attack
    applied to the test digits.  ``images`` holds the same sets as pixels."""

    train: torch.Tensor
    test_live: torch.Tensor
    test_attacks: dict
    images: dict
    backbone_acc: float

    def __repr__(self) -> str:
        return (f"SpoofData(train live {tuple(self.train.shape)}, test live {tuple(self.test_live.shape)}, "
                f"attacks {list(self.test_attacks)}; backbone test accuracy {self.backbone_acc:.3f})")


def spoof_data(*, seed: int = 0, steps: int = 300, cache: bool = True) -> SpoofData:
    """The one-class miniature on scikit-learn's digits.  Live: all ten digit classes, 1200 train /
    597 test images (stratified).  A stand-in for the identity-trained face network: an MLP
    64 -> 128 -> 64 (ReLU) trained ``steps`` Adam steps (lr 1e-3, batches of 64) as a digit
    classifier on the training images, then frozen; its 64-d ReLU output is the feature ``f``."""
    from .. import train as T

    def compute() -> SpoofData:
        x_tr, x_te, y_tr, y_te = data.digits_split(597, stratify=True, seed=seed)
        x_tr, x_te = x_tr / 16.0, x_te / 16.0
        x_tr, x_te = torch.tensor(x_tr, dtype=torch.float32), torch.tensor(x_te, dtype=torch.float32)
        y_tr, y_te = torch.tensor(y_tr), torch.tensor(y_te)
        g = torch.Generator().manual_seed(seed)
        trainer = T.Trainer(lambda: (nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU()),
                                     nn.Linear(64, 10)), lr=1e-3, seed=seed)
        body, clf = trainer.model

        def step(_it: int) -> dict:
            idx = torch.randint(len(x_tr), (64,), generator=g)
            loss = F.cross_entropy(clf(body(x_tr[idx])), y_tr[idx])
            trainer.update(loss)
            return {"loss": loss}

        trainer.run(step, steps, desc="backbone", progress=False)
        body.requires_grad_(False).eval()
        with torch.no_grad():
            acc = float((clf(body(x_te)).argmax(1) == y_te).float().mean())
            images = {"train": x_tr, "live": x_te, **{k: attack(x_te, k) for k in ATTACKS}}
            feats = {k: body(v) for k, v in images.items()}
        return SpoofData(feats["train"], feats["live"], {k: feats[k] for k in ATTACKS}, images, acc)

    return T.memo("hyperbolic.spoof_data", dict(seed=seed, steps=steps), compute, cache=cache)


# --------------------------------------------------------------------------------------------
# The one-class model and its training run
# --------------------------------------------------------------------------------------------

class OneClassHead(nn.Module):
    """The one-class head: an MLP ``in_dim -> hidden -> dim`` with ReLUs (the official head also ends
    in a ReLU), then either :class:`ToPoincare` + :class:`HyperbolicMLR` (``"hyperbolic"``) or, as the
    Euclidean baseline, nothing + ``Linear(dim, 2)``.  ``forward`` returns ``(z, logits)``.
    ``input_scale`` multiplies the input features (10: features as large as un-normalised VGG ones)."""

    def __init__(self, in_dim: int = 64, dim: int = 16, hidden: int = 64, *, geometry: str = "hyperbolic",
                 c: float = 0.1, clip_r: float | None = 2.0, base_point: bool = True, riemannian: bool = True,
                 input_scale: float = 1.0):
        super().__init__()
        self.geometry, self.input_scale = checks.choice(geometry, "geometry", GEOMETRIES), float(input_scale)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.ReLU())
        if geometry == "hyperbolic":
            self.to_ball = ToPoincare(c, dim, clip_r=clip_r, base_point=base_point, riemannian=riemannian)
            self.classifier = HyperbolicMLR(dim, 2, c)
        else:
            self.to_ball = nn.Identity()
            self.classifier = nn.Linear(dim, 2)

    def features(self, f: torch.Tensor) -> torch.Tensor:
        """The Euclidean head output ``u`` (before the ball map)."""
        return self.mlp(f * self.input_scale)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.to_ball(self.features(f))
        return z, self.classifier(z)


@dataclass(repr=False)
class OneClassRun(Run):
    """One training run: ``history`` per iteration (``loss``, ``ce``, ``pc``, ``grad_norm`` before
    clipping, ``u_norm`` (mean ``||u||`` of the real batch before the ball map), ``radius`` (mean
    ``||z||/R`` of the real batch, ``R = 1/sqrt(c)``; ``R = 1`` for the Euclidean head)); ``evals``
    (``iter``, ``auc_<attack>``: test AUC of live against each attack); ``scores``: the test AUCs
    after training; the test ``p_spoof`` (P(spoof) of every image, per set), test and last-batch
    ``embeddings``, and the trained ``model``."""

    p_spoof: dict = field(default_factory=dict)
    embeddings: dict = field(default_factory=dict)
    model: nn.Module | None = None

    @property
    def auc(self) -> dict:
        """The test AUC of each attack after training: ``{attack: AUC}``."""
        return {k: self.final(f"auc_{k}") for k in ATTACKS}

    @property
    def mean_auc(self) -> float:
        """The mean test AUC over the three attacks."""
        return float(np.mean(list(self.auc.values())))

    def __repr__(self) -> str:
        p = self.params
        aucs = ", ".join(f"{k} {v:.3f}" for k, v in self.auc.items())
        return f"OneClassRun({p['geometry']}, d={p['dim']}, σ={p['sigma']:.3g}, w_pc={p['w_pc']:.3g}: AUC {aucs})"


def _test_outputs(model: OneClassHead, data: SpoofData) -> tuple[dict, dict, dict]:
    """``({attack: AUC}, {set: P(spoof)}, {set: embeddings})`` on the test sets (call without gradients)."""
    out = {k: model(v) for k, v in {"live": data.test_live, **data.test_attacks}.items()}
    p_spoof = {k: torch.softmax(logits, 1)[:, 1] for k, (_, logits) in out.items()}
    auc = {k: metrics.roc_auc(p_spoof["live"], p_spoof[k]) for k in ATTACKS}
    return auc, {k: v.numpy() for k, v in p_spoof.items()}, {k: z.numpy() for k, (z, _) in out.items()}


def train_one_class(geometry: str = "hyperbolic", *, c: float = 0.1, clip_r: float | None = 2.0,
                    sigma: float = 1.0, alpha: float = 0.8, running: str = "official", w_pc: float = 0.1,
                    pc_form: str = "arctan", dim: int = 16, iters: int = 400, batch: int = 32, lr: float = 1e-3,
                    max_grad_norm: float | None = 3.0, base_point: bool = True, input_scale: float = 1.0,
                    seed: int = 0, eval_every: int = 50, progress=True, cache: bool = True) -> OneClassRun:
    """Train the one-class head on the live training features of :func:`spoof_data` (frozen backbone).

    Each step: ``batch`` live features and as many pseudo-negatives (:class:`PseudoNegatives`), loss
    ``CE(real = 0, pseudo = 1) + w_pc * pair term`` (Hyp-PC of ``pc_form``; ``||a - b||`` for the
    Euclidean head), Adam, gradient-norm clipping at ``max_grad_norm`` (``None``: off), as in the
    official ``train.py``.  An epoch is a shuffled pass over the 1200 live images (the last, incomplete
    batch dropped); the running mean of the pseudo-negatives restarts with each.  Test AUC (live
    against each attack, score = P(spoof)) before training, every ``eval_every`` steps and at the
    end.  Cached by parameters (:func:`lossviz.train.memo`); ``progress`` as in :func:`lossviz.train.loop`.

    Defaults: the official ``c``, ``clip_r``, ``alpha``, ``sigma`` and gradient clip; ``lr = 1e-3``
    instead of the official 1e-6 (a head trained from scratch, not a fine-tuned VGG) and ``w_pc = 0.1``
    instead of 1 (the miniature collapses at 1; see the notebook).
    """
    checks.choice(geometry, "geometry", GEOMETRIES)
    _form(pc_form)
    for arg, value, low in (("dim", dim, 1), ("iters", iters, 1), ("batch", batch, 2), ("eval_every", eval_every, 1)):
        checks.integer(value, arg, low)
    if batch % 2:
        raise ValueError(f"batch must be even (Hyp-PC pairs the two halves of the real batch); got {batch}")
    sampler = PseudoNegatives(alpha, sigma, running=running)  # validates alpha, sigma, running
    params = dict(geometry=geometry, c=_curvature(c), clip_r=None if clip_r is None else checks.positive(clip_r, "clip_r"),
                  sigma=sampler.sigma, alpha=sampler.alpha, running=running, w_pc=checks.non_negative(w_pc, "w_pc"),
                  pc_form=pc_form, dim=dim, iters=iters, batch=batch, lr=checks.positive(lr, "lr"),
                  max_grad_norm=None if max_grad_norm is None else checks.positive(max_grad_norm, "max_grad_norm"),
                  base_point=bool(base_point), input_scale=checks.positive(input_scale, "input_scale"),
                  seed=int(seed), eval_every=eval_every)
    return memo("hyperbolic.train_one_class", params, lambda: _train_one_class(params, progress), cache=cache)


def _train_one_class(p: dict, progress) -> OneClassRun:
    data = spoof_data()
    feats, batch, c = data.train, p["batch"], p["c"]
    trainer = Trainer(lambda: OneClassHead(feats.shape[1], p["dim"], geometry=p["geometry"], c=c, clip_r=p["clip_r"],
                                           base_point=p["base_point"], input_scale=p["input_scale"]),
                      lr=p["lr"], seed=p["seed"])
    model = trainer.model
    gen = torch.Generator().manual_seed(p["seed"])
    sampler = PseudoNegatives(p["alpha"], p["sigma"], running=p["running"])
    per_epoch = len(feats) // batch
    labels = torch.cat([torch.zeros(batch, dtype=torch.long), torch.ones(batch, dtype=torch.long)])
    R = 1 / math.sqrt(c) if p["geometry"] == "hyperbolic" else 1.0
    pc_fn = (lambda z: _hyp_pc(z, c, p["pc_form"])) if p["geometry"] == "hyperbolic" else euclidean_pc_loss
    state = {}

    def step(it: int) -> dict:
        k = (it - 1) % per_epoch
        if k == 0:                                   # a new epoch: reshuffle, and the running mean restarts
            state["perm"] = torch.randperm(len(feats), generator=gen)
            sampler.reset()
        f = feats[state["perm"][k * batch:(k + 1) * batch]]
        u = model.features(torch.cat([f, sampler(f, gen)]))
        z = model.to_ball(u)
        ce = F.cross_entropy(model.classifier(z), labels)
        pc = pc_fn(z[:batch])
        loss = ce + p["w_pc"] * pc
        # not trainer.update: the official train.py clips the gradient norm between backward and step
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), p["max_grad_norm"] or math.inf)
        trainer.optimizer.step()
        state["z"] = z.detach()
        return dict(loss=loss.detach(), ce=ce.detach(), pc=pc.detach(), grad_norm=gn,
                    u_norm=u[:batch].detach().norm(dim=1).mean(), radius=state["z"][:batch].norm(dim=1).mean() / R)

    def evaluate() -> dict:
        return {f"auc_{a}": v for a, v in _test_outputs(model, data)[0].items()}

    history, evals, seconds = trainer.run(step, p["iters"], evaluate=evaluate, eval_every=p["eval_every"],
                                          desc=f"{p['geometry']} d={p['dim']}", progress=progress)
    auc, p_spoof, emb = trainer.evaluating(lambda: _test_outputs(model, data))
    emb.update(train_real=state["z"][:batch].numpy(), train_pseudo=state["z"][batch:].numpy())
    return OneClassRun(params=p, history=history, evals=evals, scores={f"auc_{a}": v for a, v in auc.items()},
                       seconds=seconds, p_spoof=p_spoof, embeddings=emb, model=model)


def running_mean_drift(features, *, alpha: float = 0.8, batch: int = 32, epochs: int = 2,
                       running: str = "official", seed: int = 0) -> np.ndarray:
    """``||mu_new - mean(features)||`` at every step of ``epochs`` shuffled epochs: how far the
    pseudo-negatives' centre is from the real data's mean (the official rule jumps at each epoch start)."""
    f = checks.as_float_tensor(features, "features", 2)
    sampler, gen, centre, out = PseudoNegatives(alpha, running=running), torch.Generator().manual_seed(seed), f.mean(0), []
    for _ in range(epochs):
        sampler.reset()
        perm = torch.randperm(len(f), generator=gen)
        for k in range(len(f) // batch):
            sampler(f[perm[k * batch:(k + 1) * batch]], gen)
            out.append(float((sampler.mean - centre).norm()))
    return np.asarray(out)


def boundary_gradients(norms, *, c: float = 0.1, clip_r: float | None = 2.0, dim: int = 16, batch: int = 32,
                       w_pc: float = 0.1, seed: int = 0) -> dict:
    """What reaches the network as its outputs grow: a fixed batch of ``2 batch`` head outputs
    ``u = s * direction`` (random non-negative directions, as after a ReLU; half real, half pseudo),
    through ``ToPoincare(c, clip_r)`` (base point at 0) into a fixed random :class:`HyperbolicMLR`;
    loss Hyp-CE + ``w_pc`` Hyp-PC.  For each ``s`` in ``norms``: the mean gradient norms
    ``||dL/du||`` (what the network receives) and ``||dL/dz||`` (at the ball point, before the
    Riemannian rescale), the loss and the largest ``||z||/R``."""
    c = _curvature(c)
    g = torch.Generator().manual_seed(seed)
    dirs = F.normalize(torch.randn(2 * batch, dim, generator=g, dtype=torch.float64).abs(), dim=1)
    labels = torch.cat([torch.zeros(batch, dtype=torch.long), torch.ones(batch, dtype=torch.long)])
    torch.manual_seed(seed)
    mlr = HyperbolicMLR(dim, 2, c).double()
    to_ball = ToPoincare(c, dim, clip_r=clip_r, base_point=False).double()
    out = {k: [] for k in ("norm", "grad_u", "grad_z", "loss", "radius")}
    for s in np.asarray(norms, dtype=float):
        u = (dirs * s).requires_grad_(True)
        z = to_ball(u)
        z.retain_grad()
        loss = F.cross_entropy(mlr(z), labels) + w_pc * _hyp_pc(z[:batch], c, "arctan")
        loss.backward()
        for key, v in (("norm", s), ("grad_u", u.grad.norm(dim=1).mean()), ("grad_z", z.grad.norm(dim=1).mean()),
                       ("loss", loss.detach()), ("radius", z.detach().norm(dim=1).max() * math.sqrt(c))):
            out[key].append(float(v))
    return {k: np.asarray(v) for k, v in out.items()}


def clip_report(run: OneClassRun, sets=("live", *ATTACKS)) -> dict:
    """How the clipping bound shapes a trained hyperbolic head, on the test features: the head outputs
    ``u``, the fraction longer than ``r`` (clipped onto the sphere of radius ``r``), the largest
    ``||z||`` of ``exp0(clip(u))`` (base point at the origin) against :func:`clip_bound`, and, with the
    learnt base point ``x_p``, the largest ``d_c(x_p, z)`` against ``lambda_{x_p} r``."""
    p, model = run.params, run.model
    if p["geometry"] != "hyperbolic" or p["clip_r"] is None:
        raise ValueError("clip_report needs a hyperbolic run with feature clipping (clip_r set)")
    c, r, data = p["c"], p["clip_r"], spoof_data()
    with torch.no_grad():
        u = torch.cat([model.features(f) for f in (data.test_live, *data.test_attacks.values())][: len(sets)]).double()
        z0 = _expmap0(clip_features(u, r), c)
        out = dict(bound=clip_bound(c, r), max_norm=float(z0.norm(dim=1).max()), R=1 / math.sqrt(c),
                   clipped=float((u.norm(dim=1) > r).double().mean()), u_norm_median=float(u.norm(dim=1).median()))
        xp = model.to_ball.base()
        if xp is not None:
            xp = xp.double().reshape(1, -1)
            z = _project(_expmap(xp, clip_features(u, r), c), c)
            out.update(base_norm=float(xp.norm()), max_dist=float(dist(xp, z, c).max()),
                       dist_bound=float(_lambda(xp, c)) * r)
    return out


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------

#: Colours of the test sets: live in the positive colour, each attack its own (Okabe-Ito) colour;
#: pseudo-negatives use the negative colour.
SET_COLORS = {"live": "#0072B2", "print": "#E69F00", "replay": "#CC79A7", "mask": "#009E73"}
GEOMETRY_COLORS = {"hyperbolic": "#000000", "euclidean": "#56B4E9"}


def attack_gallery(axes, data: SpoofData, *, n: int = 6):
    """``n`` test digits per row: live, then each attack of the same digits."""
    for row, name in zip(axes, ("live", *ATTACKS)):
        for k, ax in enumerate(row[:n]):
            ax.imshow(data.images[name][k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
        row[0].set_ylabel(name, color=SET_COLORS[name], fontsize=13)
    return axes


def pseudo_negative_figure(data: SpoofData, *, sigmas=(1.0, 0.3), batch: int = 32, seed: int = 0):
    """Where the pseudo-negatives fall, in the backbone's 64-d feature space.  Left: the first two
    principal axes of the live training features, with test attacks and one batch of
    pseudo-negatives per ``sigma`` (std), drawn a few steps into an epoch.  Middle: distances to the
    running mean ``mu`` (in 64-d a Gaussian is a thin shell of radius about ``sigma sqrt(64)``).  Right:
    how far ``mu`` is from the live mean at every step of two epochs, the official rule against a
    true running mean.  Returns ``(fig, stats)``."""
    from .. import plots
    from ..models import pca_embedding

    fig, axes = plots.new_figure(3, width=4.6, height=4.0)
    f, g = data.train.double(), torch.Generator().manual_seed(seed)
    centre = f.mean(0)

    def proj(x):
        return pca_embedding(f, x, 2).numpy()

    ax = axes[0, 0]
    ax.scatter(*proj(f).T, s=5, color=plots.POS_COLOR, alpha=0.3, label="live (train)")
    for name in ATTACKS:
        ax.scatter(*proj(data.test_attacks[name][:150]).T, s=6, color=SET_COLORS[name], alpha=0.5, label=name)
    dists = {"live (train)": (f - centre).norm(dim=1)}
    for sigma, marker in zip(sigmas, ("x", "+")):
        sampler = PseudoNegatives(sigma=sigma)
        for k in range(4):
            neg = sampler(data.train[k * batch:(k + 1) * batch], g)
        ax.scatter(*proj(neg).T, s=30, marker=marker, color=plots.NEG_COLOR, label=f"pseudo, σ = {sigma:g}")
        dists[f"pseudo, σ = {sigma:g}"] = (neg.double() - sampler.mean.double()).norm(dim=1)
    ax.scatter(*proj(sampler.mean[None]).T, s=120, marker="*", color="k", label="running mean μ")
    ax.set(title="backbone features, PCA of live train", xlabel="PC 1", ylabel="PC 2")
    ax.legend(loc="lower left", fontsize=9)
    for name in ATTACKS:
        dists[name] = (data.test_attacks[name].double() - centre).norm(dim=1)
    bins = np.linspace(0, float(max(d.max() for d in dists.values())), 50)
    colors = {"live (train)": plots.POS_COLOR, **SET_COLORS}
    for (name, d), ls in zip(dists.items(), ("-", "-", "--", "-", "-", "-")):
        color = colors.get(name, plots.NEG_COLOR)
        axes[0, 1].hist(d.numpy(), bins=bins, density=True, histtype="step", lw=1.5, ls=ls, color=color, label=name)
    axes[0, 1].set(title="distance to the mean", xlabel="‖f − μ‖ (feature units)", ylabel="density")
    axes[0, 1].legend(loc="upper right", fontsize=9)
    drift = {run: running_mean_drift(data.train, batch=batch, running=run, seed=seed) for run in ("official", "ema")}
    for run, color in zip(drift, ("k", plots.MUTED)):
        axes[0, 2].plot(drift[run], color=color, label={"official": "official (previous batch, reset)",
                                                        "ema": "true running mean"}[run])
    axes[0, 2].set(title="pseudo-negative centre", xlabel="step (2 epochs)", ylabel="‖μ − live mean‖ (feature units)")
    axes[0, 2].legend(loc="upper right", fontsize=9)
    stats = {"median distance " + k: float(d.median()) for k, d in dists.items()}
    stats.update({f"largest drift, {k}": float(v.max()) for k, v in drift.items()})
    return fig, stats


def draw_ball(ax, c: float, *, bound: float | None = None, label: bool = True):
    """The ball's rim (radius ``1/sqrt(c)``) and, optionally, a dashed circle of radius ``bound``."""
    from matplotlib.patches import Circle

    from .. import plots

    R = 1 / math.sqrt(c)
    ax.add_patch(Circle((0, 0), R, fill=False, color="k", lw=1.2, label="rim, R = 1/√c" if label else None))
    if bound is not None:
        ax.add_patch(Circle((0, 0), bound, fill=False, color=plots.MUTED, lw=1.2, ls="--",
                            label="clip bound tanh(√c r)/√c" if label else None))
    ax.set(xlim=(-1.05 * R, 1.05 * R), ylim=(-1.05 * R, 1.05 * R), aspect="equal")
    return R


def _grid(lim: float, n: int = 181):
    t = np.linspace(-lim, lim, n)
    X, Y = np.meshgrid(t, t)
    return X, Y, torch.tensor(np.stack([X.ravel(), Y.ravel()], 1), dtype=torch.float64)


def gyroplane_field(a, p, c: float, lim: float, n: int = 181):
    """``(X, Y, zeta)`` of one gyroplane's logit on an ``n x n`` grid over ``[-lim, lim]^2`` (NaN
    outside the ball), for contour plots: its zero level set is the gyroplane."""
    X, Y, pts = _grid(lim, n)
    inside = pts.norm(dim=1) < (1 - 1e-6) / math.sqrt(c)
    zeta = torch.full((len(pts),), float("nan"), dtype=torch.float64)
    a, p = torch.as_tensor(a, dtype=torch.float64).reshape(1, 2), torch.as_tensor(p, dtype=torch.float64).reshape(1, 2)
    zeta[inside] = gyroplane_logits(pts[inside], a, p, c)[:, 0]
    return X, Y, zeta.reshape(X.shape).numpy()


def _spoof_field(model: OneClassHead, lim: float, inside_radius: float | None, n: int = 161):
    X, Y, pts = _grid(lim, n)
    with torch.no_grad():
        prob = torch.softmax(model.classifier(pts.to(torch.float32)), 1)[:, 1].double()
    if inside_radius is not None:
        prob[pts.norm(dim=1) >= inside_radius] = float("nan")
    return X, Y, prob.reshape(X.shape).numpy()


def embedding_plot(ax, run: OneClassRun, *, per_set: int = 80, title: str | None = None):
    """A 2-D run's embedding plane: P(spoof) shaded, the decision boundary P = 1/2 (solid), the last
    training batch (real and pseudo-negatives) and ``per_set`` test points of each set.  For the
    hyperbolic head: the ball's rim and the clip bound around the learnt base point."""
    from .. import plots

    if run.params["dim"] != 2:
        raise ValueError(f"embedding_plot draws 2-D runs; this one has dim={run.params['dim']}")
    emb, hyper = run.embeddings, run.params["geometry"] == "hyperbolic"
    if hyper:
        c = run.params["c"]
        R = draw_ball(ax, c)
        lim, inside = 1.05 * R, (1 - 1e-6) * R
        if run.params["clip_r"] is not None:
            xp = run.model.to_ball.base()
            xp = torch.zeros(1, 2) if xp is None else xp.detach().reshape(1, 2)
            th = torch.linspace(0, 2 * math.pi, 200)
            ring = _expmap(xp.double(), run.params["clip_r"] * torch.stack([th.cos(), th.sin()], 1).double(), c)
            ax.plot(ring[:, 0], ring[:, 1], color=plots.MUTED, ls="--", lw=1.2, label="clip bound around $x_p$")
    else:
        pts = np.concatenate([emb["train_real"], emb["train_pseudo"], emb["live"]])
        lim, inside = 1.1 * float(np.abs(pts).max()) + 0.5, None
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    X, Y, prob = _spoof_field(run.model, lim, inside)
    ax.contourf(X, Y, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.25, vmin=0, vmax=1)
    ax.contour(X, Y, prob, levels=[0.5], colors="k", linewidths=1.5)
    for name in (*ATTACKS, "live"):  # live last: on top of the attacks it must be told from
        ax.scatter(*emb[name][:per_set].T, s=12, facecolors="none", edgecolors=SET_COLORS[name],
                   alpha=0.8, label=f"{name} (test)")
    ax.scatter(*emb["train_pseudo"].T, s=14, marker="x", color=plots.NEG_COLOR, label="pseudo-negatives (train)")
    ax.scatter(*emb["train_real"].T, s=10, color=plots.POS_COLOR, label="live (train batch)")
    ax.set(title=title or f"{run.params['geometry']} head, d = 2", xlabel="$z_1$", ylabel="$z_2$")
    ax.grid(False)
    return ax


def roc_plot(ax, runs: dict, attack_name: str):
    """ROC curves (live = negative, ``attack_name`` = positive) of several runs (``{label: run}``)."""
    for label, run in runs.items():
        fpr, tpr = metrics.roc_curve(run.p_spoof["live"], run.p_spoof[attack_name])
        ax.plot(fpr, tpr, color=GEOMETRY_COLORS.get(run.params["geometry"]), lw=1.4,
                label=f"{label}: AUC {run.auc[attack_name]:.3f}")
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
    ax.set(xlabel="live flagged as attack (FPR)", ylabel="attacks caught (TPR)", title=f"ROC, live vs {attack_name}",
           xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower right", fontsize=9)
    return ax


#: What :func:`curves_plot` can draw: history key (``auc``: the evaluations), title, y label, log scale.
CURVES = {
    "loss": ("training loss", "CE + w_pc · pair term", True),
    "radius": ("real embeddings: mean radius", "‖z‖ / R  (R = 1 if Euclidean)", False),
    "grad_norm": ("gradient norm (before clipping)", "‖∇θ L‖", True),
    "auc": ("test AUC, mean over attacks", "AUC", False),
}


def curves_plot(axes, runs: dict, *, what=("loss", "radius", "auc"), colors: dict | None = None):
    """Learning curves of several runs (``{label: run}``), one panel per entry of ``what`` (keys of
    :data:`CURVES`), against iterations.  Colours: ``colors[label]``, else by geometry (seeds > 0 dotted)."""
    for label, run in runs.items():
        h = run.history
        color = (colors or {}).get(label, GEOMETRY_COLORS.get(run.params["geometry"]))
        style = dict(color=color, lw=1, label=label, ls="-" if run.params["seed"] == 0 else ":")
        for ax, key in zip(np.ravel(axes), what):
            if key == "auc":
                e = run.evals
                ax.plot(e["iter"], np.mean([e[f"auc_{a}"] for a in ATTACKS], 0), marker=".", **style)
            else:
                ax.plot(h["iter"], h[key], **style)
    for ax, key in zip(np.ravel(axes), what):
        title, ylabel, log = CURVES[key]
        ax.set(title=title, xlabel="iteration", ylabel=ylabel, yscale="log" if log else "linear")
    np.ravel(axes)[0].legend(loc="best", fontsize=9)
    return axes


# --------------------------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------------------------

def geometry_panel(*, c: float = 0.1, clip_r: float = 2.0, sigma: float = 1.0, n: int = 60, seed: int = 0):
    """Pure maths, the Poincaré ball in 2-D, with the head taken as the identity: a fixed cloud of
    "real" features ``u`` and pseudo-negatives ``N(mean, sigma^2 I)`` (fixed standard-normal draws
    scaled by the slider).  Left: the Euclidean plane, the clip radius, and one fixed linear decision
    line ``<u - p~, a~> = 0``.  Middle: the same points after clipping and ``exp0`` in the ball of
    curvature ``c``, the clip bound, and the same classifier made hyperbolic (``p = exp0(p~)``,
    ``a = a~ (1 - c||p||^2)``): a gyroplane, an arc that becomes the line as ``c -> 0``.  Right: the
    pair-term weight ``d term/du`` against ``u/R`` for arctan and artanh, with the largest ``u`` a pair
    can reach inside the clip bound."""
    from .. import plots, widgets

    W = widgets.W
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "c": W.FloatLogSlider(value=c, base=10, min=-2, max=0, step=0.05, description="curvature c",
                              readout_format=".3g", **style),
        "clip_r": W.FloatSlider(value=clip_r, min=0.5, max=5.0, step=0.1, description="clip radius r", **style),
        "sigma": W.FloatSlider(value=sigma, min=0.1, max=2.0, step=0.05, description="σ (pseudo-negative std)", **style),
    }
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor([1.6, 0.9], dtype=torch.float64)
    real = mean + 0.35 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    p_t, a_t = torch.tensor([[1.2, 0.0]], dtype=torch.float64), torch.tensor([[1.0, 0.6]], dtype=torch.float64)
    fig, axes = plots.new_figure(3, width=4.2, height=4.0)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    plane = _plane_view(axes[0, 0], real, mean + sigma * eps, clip_r, p_t, a_t)
    ball = _ball_view(axes[0, 1], real, mean + sigma * eps, c, clip_r)
    u_line = _pair_weight_view(axes[0, 2])
    gyroplanes = {}                               # c -> the gyroplane's zero level set (it moves with c only)

    def draw(v):
        cc, r, s = v["c"], v["clip_r"], v["sigma"]
        pseudo = mean + s * eps
        plane["clip"].set_radius(r)
        plane["pseudo"].set_offsets(pseudo.numpy())
        bound, R = clip_bound(cc, r), 1 / math.sqrt(cc)
        zr, zp = (_expmap0(clip_features(x, r), cc) for x in (real, pseudo))
        if cc not in gyroplanes:
            p = _expmap0(p_t, cc)
            gyroplanes[cc] = _zero_level(*gyroplane_field(a_t * (1 - cc * (p * p).sum()), p, cc, 1.05 * R))
        ball["rim"].set_radius(R)
        ball["bound"].set_radius(bound)
        ball["real"].set_offsets(zr.numpy())
        ball["pseudo"].set_offsets(zp.numpy())
        ball["gyroplane"].set_data(*gyroplanes[cc])
        axes[0, 1].set(xlim=(-1.05 * R, 1.05 * R), ylim=(-1.05 * R, 1.05 * R), title=f"Poincaré ball, c = {cc:.3g}")
        u_max = math.tanh(2 * math.sqrt(cc) * r)
        u_line.set_xdata([u_max, u_max])
        outside = float((pseudo.norm(dim=1) > r).double().mean())
        status = (f"R = 1/√c = {R:.2f}; clip bound {bound:.3f} = {bound / R:.0%} of R; "
                  f"farthest pair u/R = {u_max:.3f}, where the artanh weight is {2 / max(1 - u_max ** 2, 1e-300):.3g}; "
                  f"{outside:.0%} of the pseudo-negatives are clipped")
        return {"bound": bound, "R": R, "z_real": zr, "z_pseudo": zp, "u_max": u_max, "clipped": outside,
                "status": status}

    return widgets.Panel(controls, fig, draw)


def _zero_level(X, Y, zeta) -> tuple:
    """The zero contour of ``zeta`` on the grid ``X, Y`` (NaN: no value) as the x and y of one
    line, its pieces separated by NaN: what ``ax.contour(X, Y, zeta, levels=[0])`` draws, for a
    :class:`~matplotlib.lines.Line2D` that a panel moves with ``set_data``."""
    import contourpy

    gen = contourpy.contour_generator(X, Y, np.ma.masked_invalid(zeta), line_type="Separate")
    pieces = [np.vstack([piece, [[np.nan, np.nan]]]) for piece in gen.lines(0.0)]
    xy = np.vstack(pieces) if pieces else np.full((1, 2), np.nan)
    return xy[:, 0], xy[:, 1]


def _plane_view(ax, real, pseudo, r: float, p_t, a_t) -> dict:
    """:func:`geometry_panel`, left: the Euclidean features, the clip radius and the linear boundary.
    Returns the artists that move: ``clip`` (the circle of radius ``r``) and ``pseudo`` (the points)."""
    from matplotlib.patches import Circle

    from .. import plots

    clip = ax.add_patch(Circle((0, 0), r, fill=False, color=plots.MUTED, ls="--", lw=1.2, label="clip radius r"))
    ax.scatter(*real.T, s=12, color=plots.POS_COLOR, label="real")
    moving = ax.scatter(*pseudo.T, s=14, marker="x", color=plots.NEG_COLOR, label="pseudo-negatives")
    t = torch.linspace(-6, 6, 2, dtype=torch.float64)[:, None]
    line = p_t + t * torch.tensor([[-a_t[0, 1], a_t[0, 0]]], dtype=torch.float64)
    ax.plot(line[:, 0], line[:, 1], color="k", lw=1.5, label="linear boundary")
    ax.set(xlim=(-5.5, 5.5), ylim=(-5.5, 5.5), aspect="equal", title="Euclidean features u",
           xlabel="$u_1$", ylabel="$u_2$")
    ax.legend(loc="lower left", fontsize=9)
    return {"clip": clip, "pseudo": moving}


def _ball_view(ax, real, pseudo, c: float, r: float) -> dict:
    """:func:`geometry_panel`, middle: the clipped points in the ball, the ball's rim, the clip
    bound and the boundary made a gyroplane (a line, placed by the panel's first draw).  Returns
    the artists, which :func:`geometry_panel` moves as ``c``, ``r`` and σ change."""
    from .. import plots

    draw_ball(ax, c, bound=clip_bound(c, r))
    rim, bound = ax.patches[-2:]
    zr, zp = (_expmap0(clip_features(x, r), c) for x in (real, pseudo))
    artists = {"rim": rim, "bound": bound,
               "real": ax.scatter(*zr.T, s=12, color=plots.POS_COLOR),
               "pseudo": ax.scatter(*zp.T, s=14, marker="x", color=plots.NEG_COLOR),
               "gyroplane": ax.plot([], [], color="k", lw=1.5)[0]}
    ax.set(xlabel="$z_1$", ylabel="$z_2$")
    ax.legend(loc="lower left", fontsize=9)
    return artists


def _pair_weight_view(ax):
    """:func:`geometry_panel`, right: the pair-term weights against ``u/R``, and a dashed line (returned)
    that the panel puts at the largest ``u/R`` a pair reaches after clipping."""
    from .. import plots

    grid = np.linspace(0, 0.9999, 400)
    w_arctan, w_artanh = 2 / (1 + grid ** 2), 2 / np.maximum(1 - grid ** 2, 1e-300)
    ax.plot(grid, w_arctan, color="k", label="arctan (official)")
    ax.plot(grid, w_artanh, color=plots.NEG_COLOR, label="artanh (geodesic)")
    u_line = ax.axvline(0.5, color=plots.MUTED, ls="--", label="farthest pair after clipping")
    ax.set(yscale="log", ylim=(0.5, 3e4), xlabel="u / R,  u = ‖(−a) ⊕ b‖", ylabel="pair weight d term / du",
           title="Hyp-PC pair weight")
    ax.legend(loc="upper left", fontsize=9)
    return u_line


def training_panel(*, iters: int = 400, dim: int = 2, autorun: bool = True, **defaults):
    """A Train button over :func:`train_one_class`: geometry, curvature, clip radius (0 = off),
    σ, α, pair-term weight and form, gradient clipping, head dimension, seed.  Draws the training
    loss, the test AUC per attack against iterations, and the 2-D embedding (``dim = 2``) or the ROC
    curves. Runs are cached by parameters."""
    from .. import plots, widgets

    W = widgets.W
    v = dict(geometry="hyperbolic", c=0.1, clip_r=2.0, sigma=1.0, alpha=0.8, w_pc=0.1, pc_form="arctan",
             grad_clip=True, dim=dim, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"}, layout=W.Layout(width="260px"))
    controls = {
        "geometry": W.Dropdown(options=GEOMETRIES, value=v["geometry"], description="head", layout=W.Layout(width="200px")),
        "c": W.FloatLogSlider(value=v["c"], base=10, min=-2, max=0, step=0.05, description="c", readout_format=".3g", **style),
        "clip_r": W.FloatSlider(value=v["clip_r"], min=0.0, max=5.0, step=0.1, description="clip r (0 = off)", **style),
        "sigma": W.FloatSlider(value=v["sigma"], min=0.1, max=2.0, step=0.05, description="σ (std)", **style),
        "alpha": W.FloatSlider(value=v["alpha"], min=0.0, max=0.99, step=0.01, description="α (running mean)", **style),
        "w_pc": W.FloatSlider(value=v["w_pc"], min=0.0, max=1.0, step=0.05, description="w_pc", **style),
        "pc_form": W.ToggleButtons(options=PC_FORMS, value=v["pc_form"], description="pair term",
                                   style={"button_width": "70px"}),
        "grad_clip": W.Checkbox(value=v["grad_clip"], description="clip grad norm at 3", indent=False),
        "dim": W.Dropdown(options=[2, 16], value=v["dim"], description="dim", layout=W.Layout(width="130px")),
        "seed": W.BoundedIntText(value=v["seed"], min=0, max=99, description="seed", layout=W.Layout(width="130px")),
    }

    def run(values, progress):
        return train_one_class(values["geometry"], c=values["c"], clip_r=values["clip_r"] or None,
                               sigma=values["sigma"], alpha=values["alpha"], w_pc=values["w_pc"],
                               pc_form=values["pc_form"], max_grad_norm=3.0 if values["grad_clip"] else None,
                               dim=values["dim"], iters=iters, seed=values["seed"], progress=progress)

    def draw(axes, result, values):
        h = result.history
        axes[0, 0].plot(h["iter"], h["ce"], color="k", lw=1, label="CE")
        axes[0, 0].plot(h["iter"], h["pc"], color=plots.POS_COLOR, lw=1, label="pair term")
        axes[0, 0].set(title="training losses", xlabel="iteration", ylabel="loss", yscale="log")
        axes[0, 0].legend(loc="best", fontsize=9)
        for a in ATTACKS:
            axes[0, 1].plot(result.evals["iter"], result.evals[f"auc_{a}"], marker=".", color=SET_COLORS[a], label=a)
        axes[0, 1].set(title="test AUC, live vs attack", xlabel="iteration", ylabel="AUC", ylim=(0.3, 1.02))
        axes[0, 1].legend(loc="lower right", fontsize=9)
        if result.params["dim"] == 2:
            embedding_plot(axes[0, 2], result, per_set=50)
            axes[0, 2].legend(loc="best", fontsize=9)                # away from the points, wherever they landed
        else:
            for a in ATTACKS:
                fpr, tpr = metrics.roc_curve(result.p_spoof["live"], result.p_spoof[a])
                axes[0, 2].plot(fpr, tpr, color=SET_COLORS[a], label=f"{a}: {result.auc[a]:.3f}")
            axes[0, 2].set(title="ROC", xlabel="FPR (live flagged)", ylabel="TPR (attacks caught)")
            axes[0, 2].legend(loc="lower right", fontsize=9)
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.4, height=4.0, autorun=autorun)

