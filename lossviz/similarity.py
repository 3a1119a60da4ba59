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
    (:class:`_Cosine`) so that it holds one B x D buffer besides ``x.grad``.  Scaling a row does not
    change S, nor the direction of its gradient, also far from 1 (float32 rows near 1e20 or 1e-30:
    norms are taken of rows scaled to a largest entry of 1).  An all-zero row is refused.
    """
    x = checks.as_float_tensor(x, "x (embeddings, B x D)", 2)
    # Exact zeros only: the norm of a nonzero float32 row near 1e-30 underflows to 0 (it is squared).
    if checks.validation_enabled() and bool((x.abs().amax(dim=1) == 0).any()):
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
    r"""``S = f f^T`` with ``f = x / |x|`` row-wise, and its gradient in closed form:

    .. math::  \frac{\partial L}{\partial f} = (G + G^T) f,\qquad
               \frac{\partial L}{\partial x_i} = \frac{1}{|x_i|}\Big(\frac{\partial L}{\partial f_i}
               - f_i \big\langle \frac{\partial L}{\partial f_i}, f_i\big\rangle\Big)

    computed in place in one B x D buffer, which becomes ``x.grad`` (autograd through
    ``F.normalize`` and ``@`` holds several B x D temporaries).  ``|x_i|`` is kept as two factors,
    ``m_i`` (the largest ``|x_ij|``) and ``r_i = |x_i / m_i|`` (in [1, sqrt(D)]), divided by one at a
    time: in float32 ``|x_i|^2`` overflows for entries near 1e20 and underflows near 1e-20, and
    ``m_i r_i`` overflows near 1e38.  Saved: ``x``, ``m`` and ``r`` (B x 1) only, so no B x D tensor
    stays alive while the loss runs.  The backward pass recomputes ``f`` (B x D) when B > D; when
    B <= D it uses ``(G + G^T) f = ((G + G^T) / |x|^T) x`` (a B x B temporary, no B x D one), which
    keeps float32 precision for rows from about 1e-33 to 1e32 with ``|G|`` down to 1e-6 (beyond
    1e32 float32 loses the gradient, about ``|G| / |x|``, itself).
    """

    @staticmethod
    def forward(ctx, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            m = x.abs().amax(dim=1, keepdim=True)
            m = m.masked_fill(m == 0, 1)       # an all-zero row: f = 0, as F.normalize gives
            f = x / m                          # largest entry +-1: squares neither overflow nor vanish
            r = torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(1e-12)  # 0 only for a zero row
            S = f.div_(r) @ f.T
        ctx.save_for_backward(x, m, r)
        return S

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, G):
        x, m, r = ctx.saved_tensors
        if x.shape[0] <= x.shape[1]:  # B <= D: a B x B temporary is the smaller one
            gf = (G + G.T).div_(r.T).div_(m.T) @ x               # (G + G^T) f, as f_j = x_j / (m_j r_j)
            dot = torch.bmm(gf[:, None, :], x[:, :, None])[:, 0].div_(m).div_(r)  # <dL/df_i, f_i>
            f, dot = x, dot.div_(m).div_(r)                      # f_i <.,.> = x_i (<.,.> / |x_i|)
        else:
            f = (x / m).div_(r)                # as in forward: by m first, as m r may overflow
            gf = (G @ f).addmm_(G.T, f)
            dot = torch.bmm(gf[:, None, :], f[:, :, None])[:, 0]  # no B x D temporary
        return gf.addcmul_(f, dot, value=-1).div_(r).div_(m)


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
    if need_positive and checks.validation_enabled() and checks.whole_batch() and not bool(pos.any()):
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
