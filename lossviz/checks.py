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
import math

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


def fraction(value, name: str, *, zero_ok: bool = True, high: float = 1.0) -> float:
    """A number in ``[0, high]`` (``(0, high]`` with ``zero_ok=False``): shares, mixing weights."""
    v = _number(value, name)
    if not (0 <= v <= high) or (v == 0 and not zero_ok):
        raise ValueError(f"{name} must be in {'[0' if zero_ok else '(0'}, {high:g}]; got {value}")
    return v


def choice(value, name: str, options):
    """``value``, if it is one of ``options`` (names of losses, modes, datasets)."""
    try:
        if value in options:
            return value
    except TypeError:                       # an unhashable value is in no set of names
        pass
    raise ValueError(f"unknown {name} {value!r}; choose one of {list(options)}")


def temperature(tau, name: str = "tau (the temperature)") -> float:
    """``tau`` as a finite float > 0, or a ValueError that names it (a temperature of 0 would
    divide S by zero; a negative one would reward pushing positives apart)."""
    tau = finite(tau, name)
    if tau == 0:
        raise ValueError(f"{name} must be > 0; got 0: a temperature of 0 divides S by zero. "
                         "Typical values are 0.05 to 0.5")
    return positive(tau, name)


def positive(value, name: str) -> float:
    """A finite number > 0 (scales, temperatures)."""
    v = _number(value, name)
    if not v > 0:
        raise ValueError(f"{name} must be > 0; got {value}")
    return v


def temperature_range(tau_min, tau_max) -> tuple[float, float]:
    """``(tau_min, tau_max)`` as floats, if ``0 < tau_min < tau_max``: bounds on learned temperatures."""
    tau_min = positive(tau_min, "tau_min (the smallest temperature)")
    tau_max = positive(tau_max, "tau_max (the largest temperature)")
    if not tau_min < tau_max:
        raise ValueError(f"tau_min must be < tau_max; got [{tau_min}, {tau_max}]")
    return tau_min, tau_max


def non_negative(value, name: str) -> float:
    """A finite number >= 0 (margins)."""
    v = _number(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0; got {value}")
    return v


def finite(value, name: str) -> float:
    """Any finite number (thresholds)."""
    return _number(value, name)


def _number(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number; got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite; got {value}")
    return v
