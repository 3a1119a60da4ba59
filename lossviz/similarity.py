"""From embeddings to the similarity matrix S and its positive / negative pair masks."""

from __future__ import annotations

import math

import torch

from . import checks


def similarity(x) -> torch.Tensor:
    """Cosine similarity matrix of a batch of embeddings.

    ``S = F F^T`` where ``F`` holds the L2-normalised rows of ``x`` (B x D), so ``S_ij = <f_i, f_j>``
    lies in [-1, 1] and ``S_ii = 1``.  Every pair loss in lossviz is a function of this matrix.
    S keeps the dtype of ``x`` (also under ``torch.autocast``); the backward pass is written by hand
    (:class:`_Cosine`) so that it holds one B x D buffer besides ``x.grad``.
    """
    x = checks.as_float_tensor(x, "x (embeddings, B x D)", 2)
    if checks.validation_enabled() and bool((x.norm(dim=1) == 0).any()):
        raise ValueError("an embedding row is all zeros, so its direction (and cosine) is undefined")
    return _Cosine.apply(x)


def similarity_formula(x: torch.Tensor) -> torch.Tensor:
    r"""The cosine similarity matrix as the lesson writes it, :math:`S = \hat F \hat F^\top` with
    :math:`\hat f_i = f_i / \lVert f_i \rVert`; autograd gives the backward pass.  :func:`similarity`,
    which training uses, returns the same S and gradient (a test holds them equal) with one B x D
    buffer in its hand-written backward pass."""
    f = x / x.norm(dim=1, keepdim=True)        # each embedding onto the unit sphere
    return f @ f.T                             # S_ij = <f_i, f_j> = cos(angle between x_i and x_j)


class _Cosine(torch.autograd.Function):
    r"""``S = f f^T`` with ``f = x / r``, ``r = |x|`` row-wise, and its gradient in closed form:

    .. math::  \frac{\partial L}{\partial f} = (G + G^T) f,\qquad
               \frac{\partial L}{\partial x_i} = \frac{1}{r_i}\Big(\frac{\partial L}{\partial f_i}
               - f_i \big\langle \frac{\partial L}{\partial f_i}, f_i\big\rangle\Big)

    computed in place in one B x D buffer, which becomes ``x.grad`` (autograd through
    ``F.normalize`` and ``@`` holds several B x D temporaries).  Saved: the input ``x`` and the
    norms ``r`` only, so no B x D tensor stays alive while the loss runs; the backward pass
    uses ``(G + G^T) f = ((G + G^T) / r^T) x`` (a B x B temporary) when B <= D, and recomputes
    ``f`` (B x D) otherwise.
    """

    @staticmethod
    def forward(ctx, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            r = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)  # F.normalize's eps
            f = x / r
            S = f @ f.T
        ctx.save_for_backward(x, r)
        return S

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, G):
        x, r = ctx.saved_tensors
        if x.shape[0] <= x.shape[1]:  # B <= D: a B x B temporary is the smaller one
            gf = ((G + G.T) / r.T) @ x  # (G + G^T) f, as f = x / r
        else:
            f = x / r
            gf = (G @ f).addmm_(G.T, f)
        dot = torch.bmm(gf[:, None, :], x[:, :, None])[:, 0] / r  # <dL/df_i, f_i>, no B x D temporary
        return gf.addcmul_(x, dot / r, value=-1).div_(r)


def pair_masks(labels: torch.Tensor, anchors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks ``(pos, neg)``: ``pos[i, j]`` for same label and ``j`` not anchor ``i`` itself,
    ``neg[i, j]`` for different labels.  The self-pair is in neither (self-exclusion by index).

    Square (B x B) by default; with ``anchors`` (the column index of each row's sample) the masks are
    A x N, for a block of anchors scored against a whole batch (see :mod:`lossviz.distributed`)."""
    if anchors is None:
        same = labels.unsqueeze(1) == labels          # same[i, j]: i and j have the same label
        neg = ~same
        return same.fill_diagonal_(False), neg        # pos: the same, minus the self-pair (i, i)
    same = labels[anchors].unsqueeze(1) == labels
    pos = same & (anchors.unsqueeze(1) != torch.arange(labels.shape[0], device=labels.device))
    return pos, ~same


def pair_batch(S, labels, anchors=None, *, need_positive: bool = True):
    """Validate a loss's inputs at the public boundary and return ``(S, pos, neg)``.

    ``S`` is B x B with ``labels`` (B,); or A x N with ``labels`` (N,) for the N columns and
    ``anchors`` (A,) giving each row's own column.  With validation on, a batch without any
    positive pair is refused: a pair loss has nothing to pull together."""
    S = checks.as_float_tensor(S, "S", 2)
    n_rows, n_cols = S.shape
    if anchors is None and n_rows != n_cols:
        raise ValueError(f"S must be square (B x B), one row and one column per sample; got {tuple(S.shape)}. "
                         "For a block of anchors against a whole batch, pass anchors=")
    if n_cols < 2:
        raise ValueError("a batch needs at least 2 samples to form a pair")
    labels = checks.check_labels(labels, n_cols, S.device)
    if anchors is not None:
        anchors = checks.check_anchors(anchors, n_rows, n_cols, S.device)
    pos, neg = pair_masks(labels, anchors)
    if need_positive and checks.validation_enabled() and not bool(pos.any()):
        raise ValueError(
            "the batch has no positive pair (no label appears twice), so a pair loss has nothing "
            "to pull together; sample batches with lossviz.data.PKSampler (K >= 2 per class)"
        )
    return S, pos, neg


def upcast(S: torch.Tensor) -> torch.Tensor:
    """Half-precision similarities (float16, bfloat16) as float32, others unchanged: the losses
    exponentiate ``S`` times a scale, and ``e^{50 S}`` already overflows float16."""
    return S.float() if S.dtype in (torch.float16, torch.bfloat16) else S


def masked_logsumexp(x: torch.Tensor, mask: torch.Tensor, dim: int = 1, *, keepdim: bool = False) -> torch.Tensor:
    r"""``log sum_{j: mask_ij} e^{x_ij}`` along ``dim``: the soft maximum over a row's positives, or
    its negatives, that every softmax-type loss is built from.

    A row with an empty mask gives ``-inf`` (the log of an empty sum) with a zero gradient, never
    NaN: its entries are read as 0 instead of -inf, so ``logsumexp``'s own backward stays finite."""
    has = mask.any(dim=dim, keepdim=True)
    fill = torch.where(has, -math.inf, 0.0)
    out = torch.logsumexp(torch.where(mask, x, fill), dim=dim, keepdim=True)
    out = torch.where(has, out, -math.inf)
    return out if keepdim else out.squeeze(dim)
