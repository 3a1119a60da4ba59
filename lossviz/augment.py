r"""Seeded two-view augmentation for self-supervised contrastive learning (SimCLR, Chen et al. 2020).

Self-supervised contrastive learning has no class labels: it makes two random *views* of each
item and asks the network to recognise which views belong together.  With a batch of B items the
2B views get the labels ``0 .. B-1, 0 .. B-1`` (:func:`two_view_labels`), so the two views of an item
are the only positive pair and every other view is a negative: SimCLR's NT-Xent is then exactly
:func:`lossviz.nt_xent_loss` on these labels.

Two kinds of input, each with transforms that keep the class (all vectorised over the batch):

* ``"digits"`` (8 x 8 images as 64 pixels in [0, 1], :func:`lossviz.data.digits`): a random crop
  of the image padded with ``shift`` zero pixels on each side (a shift of up to ``shift`` pixels in
  x and y), a random brightness factor ``1 ± contrast``, ``drop`` of the pixels set to 0, and
  Gaussian noise of standard deviation ``noise``.
* ``"mnist1d"`` (signals of length 40, :func:`lossviz.data.mnist1d`), the MNIST-1D generator's own
  transforms (Greydanus 2020, ``mnist1d/transform.py``) at a smaller strength: a circular shift of
  up to ``shift`` samples (its ``translate``), an amplitude factor ``1 + scale (u - 1/2)`` (its
  ``scale_coeff``), a linear trend ``shear (u - 1/2)`` across the signal (its ``shear``) and
  Gaussian noise (its ``iid_noise``).

Every random draw comes from a ``torch.Generator`` (or an int seed), so a view is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch

from . import checks

#: The default strength of each transform, per kind of input.
DEFAULTS = {
    "digits": dict(shift=1, contrast=0.2, drop=0.15, noise=0.1),
    "mnist1d": dict(shift=4, scale=0.4, shear=0.75, noise=0.1),
}
KINDS = tuple(DEFAULTS)


def as_generator(generator) -> torch.Generator | None:
    """A torch.Generator from a Generator, an int seed, or None (torch's global generator)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(f"generator must be a torch.Generator, an int seed or None; got {type(generator).__name__}")


def _strength(kind: str, knobs: dict) -> dict:
    if kind not in DEFAULTS:
        raise ValueError(f"unknown kind of input {kind!r}; choose one of {KINDS}")
    unknown = sorted(set(knobs) - set(DEFAULTS[kind]))
    if unknown:
        raise ValueError(f"unknown {kind} augmentation knob(s) {unknown}; the knobs are {sorted(DEFAULTS[kind])}")
    out = DEFAULTS[kind] | knobs
    shift = out["shift"]
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift must be an integer >= 0 (pixels or samples); got {shift!r}")
    for name in set(out) - {"shift"}:
        out[name] = checks.non_negative(out[name], name)
    if kind == "digits" and not out["drop"] < 1:
        raise ValueError(f"drop (the fraction of pixels set to 0) must be in [0, 1); got {out['drop']}")
    if kind == "digits" and not out["contrast"] < 1:
        raise ValueError(f"contrast must be in [0, 1) (a brightness factor 1 ± contrast); got {out['contrast']}")
    return out


def _uniform(n: int, g, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=like.dtype).to(like.device)


def _offsets(n: int, shift: int, g, device) -> torch.Tensor:
    return torch.randint(-shift, shift + 1, (n,), generator=g).to(device)


def _digits_view(x: torch.Tensor, g, shift, contrast, drop, noise) -> torch.Tensor:
    n = x.shape[0]
    img = torch.nn.functional.pad(x.reshape(n, 8, 8), (shift,) * 4)       # zeros around the image
    dy, dx = _offsets(n, shift, g, x.device), _offsets(n, shift, g, x.device)
    grid = torch.arange(8, device=x.device)
    rows = (grid + shift)[None, :, None] + dy[:, None, None]              # an 8 x 8 crop of the padded image
    cols = (grid + shift)[None, None, :] + dx[:, None, None]
    img = img[torch.arange(n, device=x.device)[:, None, None], rows, cols].reshape(n, 64)
    img = img * (1 + contrast * (2 * _uniform(n, g, x) - 1))[:, None]     # brightness 1 ± contrast
    keep = torch.rand(img.shape, generator=g, dtype=x.dtype).to(x.device) >= drop
    return img * keep + noise * torch.randn(img.shape, generator=g, dtype=x.dtype).to(x.device)


def _mnist1d_view(x: torch.Tensor, g, shift, scale, shear, noise) -> torch.Tensor:
    n, length = x.shape
    k = _offsets(n, shift, g, x.device)
    idx = (torch.arange(length, device=x.device)[None, :] - k[:, None]) % length
    v = x.gather(1, idx)                                                  # circular shift by k
    v = v * (1 + scale * (_uniform(n, g, x) - 0.5))[:, None]              # amplitude
    ramp = torch.linspace(-0.5, 0.5, length, dtype=x.dtype, device=x.device)
    v = v - (shear * (_uniform(n, g, x) - 0.5))[:, None] * ramp           # a linear trend (shear)
    return v + noise * torch.randn(v.shape, generator=g, dtype=x.dtype).to(x.device)


def augment(x, kind: str, generator=None, **strength) -> torch.Tensor:
    """One random view of each row of ``x`` (N x 64 digits or N x L MNIST-1D signals).

    ``strength`` overrides :data:`DEFAULTS` (e.g. ``noise=0``); all knobs at 0 give ``x`` back."""
    knobs = _strength(kind, strength)
    x = checks.as_float_tensor(x, f"x ({kind} inputs, N x D)", 2)
    if kind == "digits" and x.shape[1] != 64:
        raise ValueError(f"digits inputs are 8 x 8 images flattened to 64 pixels; got {x.shape[1]} features")
    if kind == "mnist1d" and x.shape[1] < 2:
        raise ValueError(f"mnist1d inputs are signals of length >= 2; got {x.shape[1]}")
    g = as_generator(generator)
    view = _digits_view if kind == "digits" else _mnist1d_view
    return view(x, g, **knobs)


def two_views(x, kind: str, generator=None, **strength) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views of each row of ``x``: ``(view1, view2)``, each shaped like ``x``."""
    g = as_generator(generator)
    return augment(x, kind, g, **strength), augment(x, kind, g, **strength)


def two_view_labels(batch_size: int, device=None) -> torch.Tensor:
    """Instance labels of the 2B views ``[view1 of items 0..B-1, view2 of items 0..B-1]``:
    ``0 .. B-1, 0 .. B-1``.  The positive of view i is view ``(i + B) mod 2B``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (a view needs negatives); got {batch_size!r}")
    return torch.arange(batch_size, device=device).repeat(2)


class TwoViewSampler:
    """Batches for SimCLR: B items drawn without replacement (a new permutation every epoch),
    two views each.  ``sample()`` returns ``(views, labels, idx)``: ``views`` is 2B x D (all first
    views, then all second views), ``labels`` is :func:`two_view_labels` (the class labels are never
    used), ``idx`` the B item indices into ``x``."""

    def __init__(self, x, kind: str, batch_size: int = 128, *, seed: int = 0, **strength):
        self.x = checks.as_float_tensor(x, f"x ({kind} inputs, N x D)", 2)
        self.kind, self.strength = kind, _strength(kind, strength)
        self.labels = two_view_labels(batch_size, self.x.device)
        if batch_size > len(self.x):
            raise ValueError(f"batch_size {batch_size} is larger than the {len(self.x)} items")
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order, self._next = torch.empty(0, dtype=torch.long), 0

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch: ``(views (2B x D), labels (2B,), idx (B,))``."""
        if self._next + self.batch_size > len(self._order):            # a new epoch
            self._order, self._next = torch.randperm(len(self.x), generator=self.generator), 0
        idx = self._order[self._next:self._next + self.batch_size]
        self._next += self.batch_size
        v1, v2 = two_views(self.x[idx.to(self.x.device)], self.kind, self.generator, **self.strength)
        return torch.cat([v1, v2]), self.labels, idx

    def __iter__(self):
        while True:
            yield self.sample()
