"""From embeddings to the similarity matrix S and its positive / negative pair masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import checks


def similarity(x) -> torch.Tensor:
    """Cosine similarity matrix of a batch of embeddings.

    ``S = F F^T`` where ``F`` holds the L2-normalised rows of ``x`` (B x D), so ``S_ij = <f_i, f_j>``
    lies in [-1, 1] and ``S_ii = 1``.  Every pair loss in lossviz is a function of this matrix.
    """
    x = checks.as_float_tensor(x, "x (embeddings, B x D)", 2)
    if checks.validation_enabled() and bool((x.norm(dim=1) == 0).any()):
        raise ValueError("an embedding row is all zeros, so its direction (and cosine) is undefined")
    f = F.normalize(x, dim=1)
    return f @ f.T


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
