"""Input checks shared by every public function.

Two kinds of check:

* **structure** (shape, dtype, knob ranges): cheap, need no look at tensor values, always on;
* **values** (NaN/Inf, a batch with no positive pair, zero-length embeddings): these read tensor
  values, which costs a host-device synchronisation on a GPU.  They are on by default, because a
  student deserves a clear error, and can be switched off for full-speed training, in the style of
  ``torch.distributions``' ``validate_args``::

      lossviz.set_validation(False)          # globally
      with lossviz.validation(False): ...    # for a block
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

_VALIDATE = True


def set_validation(enabled: bool) -> None:
    """Turn the value checks (NaN/Inf, no positive pair, ...) on or off for the whole process."""
    global _VALIDATE
    _VALIDATE = bool(enabled)


def validation_enabled() -> bool:
    """Whether value checks are on (see :func:`set_validation`)."""
    return _VALIDATE


@contextlib.contextmanager
def validation(enabled: bool):
    """Context manager that sets the value checks on or off inside a ``with`` block."""
    old = _VALIDATE
    set_validation(enabled)
    try:
        yield
    finally:
        set_validation(old)


_WHOLE_BATCH = True


@contextlib.contextmanager
def block_of_a_batch():
    """Inside the block, a loss's rows are some anchors of a larger batch (one rank's share, see
    :mod:`lossviz.distributed`): they need not hold a positive pair themselves, because the whole
    batch is checked for one by the caller."""
    global _WHOLE_BATCH
    old, _WHOLE_BATCH = _WHOLE_BATCH, False
    try:
        yield
    finally:
        _WHOLE_BATCH = old


def whole_batch() -> bool:
    """False inside :func:`block_of_a_batch`."""
    return _WHOLE_BATCH


def as_float_tensor(x, name: str, ndim: int) -> torch.Tensor:
    """``x`` as a floating tensor with ``ndim`` dimensions, or a ValueError that says what is wrong."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as err:  # noqa: BLE001 - any conversion failure becomes one clear message
            raise ValueError(f"{name} must be a tensor or an array of numbers; got {type(x).__name__}") from err
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {x.dtype}. Use {name}.float().")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {tuple(x.shape)}")
    if _VALIDATE and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf; check the model's output (a learning rate too high?)")
    return x


def check_labels(labels, n: int, device: torch.device) -> torch.Tensor:
    """Integer class labels of length ``n`` on ``device``."""
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"labels must be a 1-D tensor of integer class ids; got {type(labels).__name__}") from err
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"labels must hold integer class ids; got dtype {labels.dtype}. Use labels.long()."
        )
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match the batch; got {tuple(labels.shape)}")
    if labels.dtype != torch.long:                   # int8, uint8, ...: indexing and gather want int64
        labels = labels.long()
    return labels if labels.device == device else labels.to(device)


def check_anchors(anchors, n_rows: int, n_cols: int, device: torch.device) -> torch.Tensor:
    """Column index of each row's own sample when S is rectangular (rows = anchors, columns = batch)."""
    if not isinstance(anchors, torch.Tensor):
        anchors = torch.as_tensor(anchors)
    if anchors.dtype == torch.bool or anchors.is_floating_point() or anchors.is_complex():
        raise ValueError(f"anchors must hold integer column indices; got dtype {anchors.dtype}")
    if anchors.ndim != 1 or anchors.shape[0] != n_rows:
        raise ValueError(f"anchors must have shape ({n_rows},), one column index per row of S; "
                         f"got {tuple(anchors.shape)}")
    if _VALIDATE and n_rows and not bool(((anchors >= 0) & (anchors < n_cols)).all()):
        raise ValueError(f"anchors must be column indices in [0, {n_cols})")
    return anchors if anchors.device == device else anchors.to(device)


def integer(value, name: str, low: int = 0, high: int | None = None) -> int:
    """``value`` as an int, if it is an integer (not a bool) ``>= low`` (and ``<= high``)."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
            or (high is not None and value > high)):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {span}; got {value!r}")
    return int(value)


def fraction(value, name: str, *, zero_ok: bool = True, high: float = 1.0):
    """A number in ``[0, high]`` (``(0, high]`` with ``zero_ok=False``): shares, mixing weights."""
    return _ranged(value, name, lambda v: (0 < v if not zero_ok else 0 <= v) and v <= high,
                   f"in {'[0' if zero_ok else '(0'}, {high:g}]")


def choice(value, name: str, options):
    """``value``, if it is one of ``options`` (names of losses, modes, datasets)."""
    try:
        if value in options:
            return value
    except TypeError:                       # an unhashable value is in no set of names
        pass
    raise ValueError(f"unknown {name} {value!r}; choose one of {list(options)}")


def temperature(tau, name: str = "tau (the temperature)"):
    """``tau`` as a finite number > 0, or a ValueError that names it (a temperature of 0 would
    divide S by zero; a negative one would reward pushing positives apart).  A learnable
    temperature (a one-element tensor that requires grad, CLIP-style) is returned as a 0-d tensor,
    so that its gradient flows."""
    if not isinstance(tau, torch.Tensor) and _number(tau, name) == 0:
        raise ValueError(f"{name} must be > 0; got 0: a temperature of 0 divides S by zero. "
                         "Typical values are 0.05 to 0.5")
    return positive(tau, name)


def positive(value, name: str):
    """A finite number > 0 (scales, temperatures); a learnable one stays a tensor (see :func:`temperature`)."""
    return _ranged(value, name, lambda v: v > 0, "> 0")


def temperature_range(tau_min, tau_max) -> tuple[float, float]:
    """``(tau_min, tau_max)`` as floats, if ``0 < tau_min < tau_max``: bounds on learned temperatures."""
    tau_min = positive(tau_min, "tau_min (the smallest temperature)")
    tau_max = positive(tau_max, "tau_max (the largest temperature)")
    if not tau_min < tau_max:
        raise ValueError(f"tau_min must be < tau_max; got [{tau_min}, {tau_max}]")
    return tau_min, tau_max


def non_negative(value, name: str):
    """A finite number >= 0 (margins); a learnable one stays a tensor."""
    return _ranged(value, name, lambda v: v >= 0, ">= 0")


def finite(value, name: str):
    """Any finite number (thresholds); a learnable one stays a tensor."""
    return _ranged(value, name, lambda v: True, "finite")


#: The largest knob accepted: beyond float32's range, ``beta * S`` is infinite in float32 losses.
LARGEST = float(torch.finfo(torch.float32).max)


def _ranged(value, name: str, ok, wanted: str):
    """``value`` if it is a number (or a one-element tensor) for which ``ok`` holds, else a ValueError
    ``"{name} must be {wanted}"``.

    Plain numbers become floats.  A tensor that requires grad is a *learnable* knob: it is returned
    as a 0-d tensor, so the loss keeps it in the graph (a learned temperature or scale gets its
    gradient); its value is checked only while validation is on (reading it syncs a GPU).  The
    checks use comparisons only, never ``math.isfinite``, so that under ``torch.compile`` a knob
    that varies between calls (a symbolic float) is checked by guards instead of breaking the graph.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number; got a tensor of shape {tuple(value.shape)}")
        if value.requires_grad:
            if _VALIDATE:
                _ranged(float(value.detach()), name, ok, wanted)
            return value.reshape(())
        value = value.item()
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        value = value.item()                    # numpy scalars (np.float32(0.1), np.int64(3)) are numbers
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if not -LARGEST <= value <= LARGEST:        # also false for NaN
        raise ValueError(f"{name} must be finite and within float32's range (|x| <= 3.4e38); got {value}")
    if not ok(value):
        raise ValueError(f"{name} must be {wanted}; got {value}")
    return float(value)


def _number(value, name: str) -> float:
    """A finite plain number (a tensor or numpy scalar is read)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
    return _ranged(value, name, lambda v: True, "finite")
