"""Pair selection rules.

Multi-Similarity mining (Wang et al. 2019, eq. 6-7) compares each pair with the anchor's hardest
pair of the *other* kind (the "P" similarity):

* keep negative ``j`` of anchor ``i`` if ``S_ij + eps > min_{k in P_i} S_ik``;
* keep positive ``j`` of anchor ``i`` if ``S_ij - eps < max_{k in N_i} S_ik``.

Both conditions read the *unmined* sets.  They reduce to the same per-anchor test,
``max_neg + eps > min_pos``, so an anchor keeps a positive and a negative, or nothing at all.
"""

from __future__ import annotations

import math

import torch

from . import checks
from .similarity import pair_batch


def ms_mining_masks(S: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, eps: float):
    """Mined ``(pos, neg)`` masks from unmined masks; no checks, no host sync (for the hot path)."""
    S = S.detach()
    s_pos = torch.where(pos, S, math.inf)    # S on positives, +inf elsewhere (so never kept)
    s_neg = torch.where(neg, S, -math.inf)   # S on negatives, -inf elsewhere
    min_pos = s_pos.amin(dim=1, keepdim=True)   # the hardest positive; +inf when there is none
    max_neg = s_neg.amax(dim=1, keepdim=True)   # the hardest negative; -inf when there is none
    return s_pos - eps < max_neg, s_neg + eps > min_pos


def ms_mining(S, labels, *, eps: float = 0.1, anchors=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-Similarity epsilon-mining: boolean B x B masks ``(mined_pos, mined_neg)``.

    A *larger* ``eps`` keeps *more* pairs.  Self-pairs are excluded by index, so exact duplicate
    samples still count as positives (the official code drops them by value).
    """
    S, pos, neg = pair_batch(S, labels, anchors, need_positive=False)
    eps = checks.non_negative(eps, "eps")
    return ms_mining_masks(S, pos, neg, eps)
