"""Pair losses across processes, with cross-rank negatives (``torch.distributed``).

Each rank holds ``B_local`` embeddings.  :func:`pair_loss` gathers the embeddings of all ranks with a
*gradient-carrying* all-gather, scores its own anchors against the whole global batch (an
``B_local x B_global`` block of S, never ``B_global^2``), and returns this rank's share ``L_r`` of the
global loss, so that

    sum over ranks of L_r  ==  loss_fn(similarity(all embeddings), all labels)

and the gradient that reaches each rank's embeddings equals that of the single-process loss on the
concatenated batch (the all-gather's backward sums the other ranks' contributions).

This holds for every loss of :mod:`lossviz.pairs` and of :mod:`lossviz.contrastive` (the InfoNCE
family).  Each loss is a mean, and a rank's block holds some of its terms: the share is the block's
own mean weighted by the block's part of those terms, ``L_r = mean_r * n_r / n``, summed over the
ranks with one all-reduce.  What a term is, the loss says in its ``reduction`` attribute
(:func:`reduction`):

* ``"anchors"``: one per anchor, those without pairs included (the pair losses; the default);
* ``"positive_pairs"``: one per positive pair (i, p) (``nt_xent_loss``, ``hard_nt_xent_loss``,
  ``simple_contrastive_loss``);
* ``"anchors_with_positive"``: one per anchor that has a positive (``supcon_loss``).

A rank whose anchors have no positive is fine as long as the global batch has one (its share of a
pair-mean loss is 0); a global batch without any positive pair is refused with the same
``ValueError`` on every rank (value checks on, :func:`lossviz.validation`).

Under ``DistributedDataParallel``, which *averages* parameter gradients over ranks, back-propagate
``world_size * L_r`` to get the gradient of the global loss.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather as _all_gather_with_grad

from . import checks
from .similarity import pair_masks, upcast

#: What a loss's mean is over (see the module docstring): the values of ``loss_fn.reduction``.
REDUCTIONS = ("anchors", "positive_pairs", "anchors_with_positive")


def _ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0; gradients flow back to each rank's part.

    Every rank must hold the same number of rows.  Without an initialised process group this is ``x``."""
    if not _ready():
        return x
    if x.requires_grad:
        return torch.cat(_all_gather_with_grad(x), dim=0)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def reduction(loss_fn: Callable) -> str:
    """What ``loss_fn``'s mean is over: its ``reduction`` attribute, one of :data:`REDUCTIONS`
    (``"anchors"`` when it has none)."""
    how = getattr(loss_fn, "reduction", "anchors")
    if how not in REDUCTIONS:
        name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        raise ValueError(f"{name}.reduction must be one of {REDUCTIONS}; got {how!r}")
    return how


def counts(loss_fn: Callable, labels_all: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """``[n_terms, n_positive_pairs]`` (int64, shape (2,)) of the rows ``anchors`` of a batch with
    labels ``labels_all``: how many terms of ``loss_fn``'s mean these rows hold (see
    :func:`reduction`), and how many positive pairs.  Summed over blocks of rows that partition the
    batch, it gives the whole batch's."""
    pos, _ = pair_masks(labels_all, anchors)
    per_anchor = pos.sum(dim=1)
    how = reduction(loss_fn)
    if how == "anchors":
        n_terms = per_anchor.new_tensor(anchors.shape[0])
    elif how == "positive_pairs":
        n_terms = per_anchor.sum()
    else:
        n_terms = (per_anchor > 0).sum()
    return torch.stack([n_terms, per_anchor.sum()])


def share(loss_fn: Callable, S_block: torch.Tensor, labels_all: torch.Tensor, anchors: torch.Tensor,
          global_counts: torch.Tensor, **knobs) -> torch.Tensor:
    """The part of ``loss_fn(S, labels_all, **knobs)`` held by the rows ``anchors`` of S
    (``S_block = S[anchors]``): the block's own mean times its part of the terms of the whole
    mean, ``mean_block * n_block / n``.  ``global_counts`` is the sum of :func:`counts` over the
    blocks.  Over blocks that partition the rows, the shares sum to the loss on the whole S, values
    and gradients.

    A block without any term of the mean (no positive pair, for a pair-mean loss) has a share of
    exactly 0, still attached to ``S_block``'s graph.  With value checks on, a whole batch without
    any positive pair is a ``ValueError``."""
    S_block = checks.as_float_tensor(S_block, "S_block (this block's rows of S)", 2)
    labels_all = checks.check_labels(labels_all, S_block.shape[1], S_block.device)
    anchors = checks.check_anchors(anchors, S_block.shape[0], S_block.shape[1], S_block.device)
    n_terms, n_pos = (int(c) for c in global_counts.tolist())
    if n_pos == 0 and checks.validation_enabled():
        raise ValueError(
            "the batch gathered from all ranks has no positive pair (no label appears twice), so a pair "
            "loss has nothing to pull together; sample batches with lossviz.data.PKSampler (K >= 2 per class)")
    n_block = int(counts(loss_fn, labels_all, anchors)[0])
    if n_block == 0:
        # Zero, but through S_block: every rank then runs backward, and with it the all-gather's.
        return upcast(S_block).sum() * 0
    # The whole batch has a positive pair (checked above), so the block need not have one.
    with checks.block_of_a_batch():
        block_mean = loss_fn(S_block, labels_all, anchors=anchors, **knobs)
    return block_mean * (n_block / n_terms)


def pair_loss(loss_fn: Callable, emb: torch.Tensor, labels: torch.Tensor, **knobs) -> torch.Tensor:
    """This rank's share of ``loss_fn`` on the batch gathered from all ranks (see the module docstring).

    ``loss_fn`` is any lossviz pair or InfoNCE loss (it must accept ``anchors=``); ``emb`` is
    (B_local, D), ``labels`` (B_local,).  In a single process it is ``loss_fn(similarity(emb), labels)``.
    """
    emb = checks.as_float_tensor(emb, "emb (embeddings, B x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device)
    world = dist.get_world_size() if _ready() else 1
    rank = dist.get_rank() if _ready() else 0
    if world > 1:
        sizes = [torch.zeros(1, dtype=torch.long, device=emb.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([emb.shape[0]], device=emb.device))
        if len({int(s) for s in sizes}) != 1:
            raise ValueError(f"every rank must hold the same batch size; got {[int(s) for s in sizes]}")
    f = F.normalize(emb, dim=1)
    f_all = gather(f)
    labels_all = gather(labels)
    anchors = torch.arange(f.shape[0], device=emb.device) + rank * f.shape[0]
    global_counts = counts(loss_fn, labels_all, anchors)
    if world > 1:
        dist.all_reduce(global_counts)   # every rank then sees the same counts, and raises alike
    return share(loss_fn, f @ f_all.T, labels_all, anchors, global_counts, **knobs)


def backward_in_blocks(loss_fn: Callable, emb: torch.Tensor, labels: torch.Tensor, *, rows: int = 1024,
                       **knobs) -> torch.Tensor:
    """``loss_fn(similarity(emb), labels)`` and its gradient into ``emb.grad``, with memory bounded
    by ``rows x B`` instead of ``B x B``: the anchors are taken ``rows`` at a time, each block of S
    (``rows x B``) gives its :func:`share` of the loss and is back-propagated at once (its buffers
    freed before the next), the gradients of the unit embeddings are summed over blocks, then
    carried through the normalisation.  For a batch too large for its B x B matrices (B = 8192
    holds 256 MiB per float32 copy, and a loss keeps several), on one device.

    Returns the loss value (detached).  Like ``loss.backward()`` it *adds* to ``emb.grad`` (and to
    the gradients of whatever ``emb`` was computed from); call it where ``loss.backward()`` would
    be called.  Any lossviz pair or InfoNCE loss (one that accepts ``anchors=``)."""
    emb = checks.as_float_tensor(emb, "emb (embeddings, B x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive int (anchors per block); got {rows!r}")
    n = emb.shape[0]
    with torch.enable_grad():
        f = F.normalize(emb, dim=1)
    unit = f.detach().requires_grad_(emb.requires_grad)
    blocks = [torch.arange(start, min(start + rows, n), device=emb.device) for start in range(0, n, rows)]
    global_counts = sum(counts(loss_fn, labels, anchors) for anchors in blocks)   # no B x B mask
    value = upcast(unit).new_zeros(())
    for anchors in blocks:
        with torch.set_grad_enabled(emb.requires_grad):
            part = share(loss_fn, unit[anchors] @ unit.T, labels, anchors, global_counts, **knobs)
        if part.requires_grad:
            part.backward()
        value += part.detach()
    if emb.requires_grad and unit.grad is not None:
        f.backward(unit.grad)
    return value


def total(loss_share: torch.Tensor) -> torch.Tensor:
    """The global loss from each rank's share (an all-reduce of a detached copy, for logging)."""
    value = loss_share.detach().clone()
    if _ready():
        dist.all_reduce(value)
    return value
