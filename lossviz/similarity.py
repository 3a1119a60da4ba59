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


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks ``(pos, neg)`` of a batch: ``pos[i, j]`` for same label and ``i != j``,
    ``neg[i, j]`` for different labels.  The diagonal is in neither (self-exclusion by index)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same
