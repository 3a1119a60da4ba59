"""Pair losses across processes, with cross-rank negatives (``torch.distributed``).

Each rank holds ``B_local`` embeddings.  :func:`pair_loss` gathers the embeddings of all ranks with a
*gradient-carrying* all-gather, scores its own anchors against the whole global batch (an
``B_local x B_global`` block of S, never ``B_global^2``), and returns this rank's share ``L_r`` of the
global loss, so that

    sum over ranks of L_r  ==  loss_fn(similarity(all embeddings), all labels)

and the gradient that reaches each rank's embeddings equals that of the single-process loss on the
concatenated batch (the all-gather's backward sums the other ranks' contributions).

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


def pair_loss(loss_fn: Callable, emb: torch.Tensor, labels: torch.Tensor, **knobs) -> torch.Tensor:
    """This rank's share of ``loss_fn`` on the batch gathered from all ranks (see the module docstring).

    ``loss_fn`` is any lossviz pair loss (it must accept ``anchors=``); ``emb`` is (B_local, D),
    ``labels`` (B_local,).  In a single process it is simply ``loss_fn(similarity(emb), labels)``.
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
    n_local, n_global = f.shape[0], f_all.shape[0]
    anchors = torch.arange(n_local, device=emb.device) + rank * n_local
    local_mean = loss_fn(f @ f_all.T, labels_all, anchors=anchors, **knobs)
    return local_mean * (n_local / n_global)


def total(loss_share: torch.Tensor) -> torch.Tensor:
    """The global loss from each rank's share (an all-reduce of a detached copy, for logging)."""
    value = loss_share.detach().clone()
    if _ready():
        dist.all_reduce(value)
    return value
