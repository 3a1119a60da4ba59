r"""General Pair Weighting (Wang et al., CVPR 2019, section 3).

By the chain rule, a training step moves the parameters along
``sum_ij (dL/dS_ij) * dS_ij/dtheta``: with the coefficients frozen at the current step, every
pair-based loss acts like the linear loss ``sum_ij (dL/dS_ij) S_ij``.  On a positive pair
``dL/dS_ij <= 0`` (pull together), on a negative ``>= 0`` (push apart), and the **pair weight**
is ``w_ij = |dL/dS_ij|``.  Losses differ only in how they set ``w``.

lossviz computes these weights one way, for any loss: make ``S`` a leaf tensor, back-propagate,
read its gradient.  The closed forms of the paper are tests of this function (see
:mod:`lossviz.reference`), never a second code path.

**The same view for classifiers.**  A classification loss is a function of the logits ``z`` and
the labels, so autograd on the logits says how hard each logit, and each sample, pulls:
:func:`logit_weights` is ``dL/dz`` (B x C) and :func:`sample_weights` the pull of each sample on its
own class's logit, ``|dL/dz_y|``.  For cross-entropy that is ``1 - p_y``; a loss of the
cross-entropy family has gradient ``w_i (softmax(z_i) - e_y)``, and ``sample_weights(...,
relative_to_ce=True)`` returns that ``w_i`` (``p_y^(tau-1)`` for the comp-sum losses, ``p_y`` for
MAE): which samples the loss listens to more, or less, than cross-entropy does.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import checks


def pair_weights(loss_fn: Callable, S, labels, *, signed: bool = False, **knobs) -> torch.Tensor:
    """B x B pair weights ``|dL/dS_ij|`` of ``loss_fn(S, labels, **knobs)``, by autograd.

    Row ``i`` holds anchor ``i``'s weights.  The weights include the loss's ``1/m`` mean over anchors.
    With ``signed=True`` the raw gradient is returned (<= 0 on positives, >= 0 on negatives).
    """
    S = checks.as_float_tensor(S, "S", 2)
    leaf = S.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(leaf, labels, **knobs)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError("loss_fn must return a scalar tensor (a loss reduced over the batch)")
        # a loss that does not depend on S (a constant, or one detached from S) weighs no pair
        grad = torch.autograd.grad(loss, leaf, allow_unused=True)[0] if loss.requires_grad else None
    if grad is None:
        grad = torch.zeros_like(leaf)
    return grad if signed else grad.abs()


def active_fraction(weights: torch.Tensor, labels) -> tuple[float, float]:
    """Fractions of positive and of negative pairs whose weight is non-zero (the "mined" pairs)."""
    from .similarity import pair_masks

    weights = checks.as_float_tensor(weights, "weights (B x B pair weights)", 2)
    if weights.shape[0] != weights.shape[1]:
        raise ValueError(f"weights must be B x B, one row and one column per sample; got {tuple(weights.shape)}")
    labels = checks.check_labels(labels, weights.shape[0], weights.device)
    pos, neg = pair_masks(labels)
    nz = weights != 0
    frac = lambda m: float((nz & m).sum()) / max(int(m.sum()), 1)  # noqa: E731
    return frac(pos), frac(neg)


def anchor_weights(loss_fn: Callable, pos_sims, neg_sims, **knobs) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of one anchor's own term, for an anchor with the given positive and negative similarities.

    Builds a batch whose anchor 0 has these similarities (the other rows do not enter anchor 0's
    term of a per-anchor loss), takes :func:`pair_weights`, and removes the ``1/m`` of the mean, so
    the result compares with the paper's closed forms.  Returns ``(w_pos, w_neg)`` (float64).
    """
    pos = torch.as_tensor(pos_sims, dtype=torch.float64).reshape(-1)
    neg = torch.as_tensor(neg_sims, dtype=torch.float64).reshape(-1)
    if len(pos) < 1:
        raise ValueError("the anchor needs at least one positive similarity")
    p, n = len(pos), len(neg)
    m = 1 + p + n
    S = torch.eye(m, dtype=torch.float64)
    S[0, 1:1 + p], S[0, 1 + p:] = pos, neg
    labels = torch.tensor([0] * (1 + p) + [1] * n)
    W = pair_weights(loss_fn, S, labels, **knobs)[0] * m
    return W[1:1 + p], W[1 + p:]


def weight_curve(loss_fn: Callable, grid, pos_sims, neg_sims, *, vary: str = "neg", **knobs) -> torch.Tensor:
    """The weight of one pair as its similarity sweeps ``grid``, the anchor's other pairs fixed.

    ``vary="neg"`` adds a negative pair with similarity ``s`` to ``neg_sims`` for each ``s`` in the
    grid and returns its weight; ``vary="pos"`` does the same for a positive pair.
    """
    if vary not in ("pos", "neg"):
        raise ValueError(f"vary must be 'pos' or 'neg'; got {vary!r}")
    pos = torch.as_tensor(pos_sims, dtype=torch.float64).reshape(-1)
    neg = torch.as_tensor(neg_sims, dtype=torch.float64).reshape(-1)
    grid_t = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
    if len(pos) + (vary == "pos") < 1:
        raise ValueError("the anchor needs at least one positive similarity")
    batched = _weight_curve_rows(loss_fn, grid_t, pos, neg, vary, knobs)
    if batched is not None:
        return batched
    out = []
    for s in torch.as_tensor(grid, dtype=torch.float64).reshape(-1):
        if vary == "neg":
            out.append(anchor_weights(loss_fn, pos, torch.cat([s[None], neg]), **knobs)[1][0])
        else:
            out.append(anchor_weights(loss_fn, torch.cat([s[None], pos]), neg, **knobs)[0][0])
    return torch.stack(out)


def _logits_and_labels(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    z = checks.as_float_tensor(logits, "logits (B x C, one row of class scores per sample)", 2)
    if z.shape[1] < 2:
        raise ValueError(f"logits need at least 2 classes (columns); got shape {tuple(z.shape)}")
    y = checks.check_labels(labels, z.shape[0], z.device)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {z.shape[1] - 1}] (one per logit column); "
                         f"got values from {int(y.min())} to {int(y.max())}")
    return z, y


def logit_weights(loss_fn: Callable, logits, labels, *, signed: bool = True, **knobs) -> torch.Tensor:
    """B x C gradient ``dL/dz`` of ``loss_fn(logits, labels, **knobs)`` with respect to the logits.

    ``loss_fn`` may return one loss per sample (a vector of length B: they are summed, so row ``i``
    is sample ``i``'s own gradient) or a scalar (then its reduction is in the weights: a mean divides
    them by B).  Signed by default: negative on the true class when the loss raises it (a pull),
    positive on the classes it lowers."""
    z, y = _logits_and_labels(logits, labels)
    leaf = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(leaf, y, **knobs)
        if not isinstance(loss, torch.Tensor) or loss.ndim > 1 or (loss.ndim == 1 and len(loss) != len(y)):
            raise ValueError("loss_fn must return a scalar or one loss per sample (shape (B,)); "
                             f"got {getattr(loss, 'shape', type(loss).__name__)}")
        total = loss.sum()
        grad = torch.autograd.grad(total, leaf, allow_unused=True)[0] if total.requires_grad else None
    if grad is None:
        grad = torch.zeros_like(leaf)
    return grad if signed else grad.abs()


def sample_weights(loss_fn: Callable, logits, labels, *, relative_to_ce: bool = False, **knobs) -> torch.Tensor:
    """Per-sample weights of a classification loss, by autograd on the logits (length B).

    By default ``|dL/dz_y|``, how hard sample ``i`` pulls its own class's logit up (``1 - p_y`` for
    cross-entropy).  With ``relative_to_ce=True``, the factor ``w_i`` by which the loss scales
    cross-entropy's gradient ``softmax(z_i) - e_y``: the projection of the sample's gradient on that
    direction, which is exact for the cross-entropy family (``p_y^(tau-1)`` for comp-sum losses,
    1 for cross-entropy itself).  A sample that cross-entropy no longer moves (``p_y = 1`` to the
    last bit) has no such factor: it gets 0."""
    z, y = _logits_and_labels(logits, labels)
    G = logit_weights(loss_fn, z, y, **knobs)
    if not relative_to_ce:
        return G.gather(1, y[:, None]).squeeze(1).abs()
    ce = torch.softmax(z.detach(), dim=1)
    ce[torch.arange(len(y)), y] -= 1.0
    norm2 = (ce * ce).sum(dim=1)
    coef = (G * ce).sum(dim=1) / norm2.clamp_min(torch.finfo(norm2.dtype).tiny)
    return torch.where(norm2 > 0, coef, torch.zeros_like(coef))


def _weight_curve_rows(loss_fn, grid, pos, neg, vary, knobs):
    """:func:`weight_curve` in one autograd call, for a loss that takes ``anchors=`` (all of
    :data:`lossviz.pairs.PAIR_LOSSES`): one row per grid value, every row the same anchor (column 0)
    against the same samples but for the varied pair.  Rows are independent terms of the loss's
    mean over anchors, so row ``g``'s gradient times the number of rows is the weight at ``grid[g]``,
    exactly what the one-anchor batches of the loop give.  None if the loss cannot do this."""
    import inspect

    try:
        if "anchors" not in inspect.signature(loss_fn).parameters:
            return None
    except (TypeError, ValueError):
        return None
    p, n = (pos, torch.cat([grid[:1], neg])) if vary == "neg" else (torch.cat([grid[:1], pos]), neg)
    col = 1 + len(p) if vary == "neg" else 1
    row = torch.cat([torch.ones(1, dtype=torch.float64), p, n])
    S = row.repeat(len(grid), 1)
    S[:, col] = grid
    labels = torch.tensor([0] * (1 + len(p)) + [1] * len(n))
    anchors = torch.zeros(len(grid), dtype=torch.long)
    leaf = S.requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(leaf, labels, anchors=anchors, **knobs)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0 or not loss.requires_grad:
            return None
        grad = torch.autograd.grad(loss, leaf, allow_unused=True)[0]
    if grad is None:
        return torch.zeros_like(grid)
    return (grad[:, col] * len(grid)).abs()
