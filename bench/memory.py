"""Peak tensor memory and aten op count of a piece of code, from the PyTorch profiler.

One profiled run gives both (the profiler slows the code down, so times are taken elsewhere)::

    from bench.memory import profile_run
    p = profile_run(lambda: loss_fn(lv.similarity(x), y).backward())
    p.peak_bytes, p.aten_ops

How the peak is computed
------------------------
With ``profile_memory=True`` the profiler records one *allocation event* per tensor storage that
the allocator hands out (``alloc_size > 0``) and one per storage it takes back (``alloc_size < 0``,
the same size negated), each with a timestamp and a device.  These events live in the profiler's
event tree (``prof.profiler.kineto_results.experimental_event_tree()``, torch 2.x): an
allocation made inside an op is a child of that op, one made by Python code between ops (or a free
when a tensor's last reference dies) is a root.  We collect every allocation event of the chosen
device, sort them by time and take the running sum: that is the number of bytes held by tensors
created inside the profiled region, at each moment.  Its maximum is the **peak of live tensor
memory** above what was already held on entry (inputs such as the embeddings are not counted;
outputs still alive at the end, such as ``x.grad``, are).

This is tensor memory as the allocator sees it: on the CPU every storage is a fresh ``malloc``; on
CUDA it is the caching allocator's tensor blocks, not the memory it reserves from the driver.

``tests/test_memory.py`` checks the measure on a known case: a B x B float32 tensor is 4 B^2 bytes.

The op count
------------
``aten_ops`` counts the *top-level* aten ops: profiler events named ``aten::...`` with no
``aten::`` ancestor (an ``aten::linear`` that calls ``aten::matmul`` and ``aten::mm`` counts
once).  Backward ops sit under ``autograd::engine::evaluate_function: ...`` nodes and count too.
At small batch sizes the time is dominated by the per-op dispatch cost, so this is the number to
keep low there.
"""

from __future__ import annotations

import os

# Kineto (the profiler's backend) logs two lines per profiled run at its default level; 6 keeps
# it quiet.  Read when the profiler first starts, so setting it here (before any run) suffices.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import torch  # noqa: E402
from torch._C._profiler import _EventType  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

MiB = 2**20


@dataclass
class RunProfile:
    """What one profiled run of a callable used."""

    peak_bytes: int  # peak of live tensor memory allocated inside the run (see the module docstring)
    end_bytes: int  # tensor memory allocated inside the run and still alive at its end
    aten_ops: int  # top-level aten ops
    op_names: Counter = field(default_factory=Counter)  # top-level aten ops by name

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MiB


def _walk(events, inside_aten: bool = False):
    """Yield ``(event, has_aten_ancestor)`` for every event of the tree, depth first."""
    for e in events:
        yield e, inside_aten
        yield from _walk(e.children, inside_aten or e.name.startswith("aten::"))


def profile_run(fn: Callable[[], object], device: str | torch.device = "cpu") -> RunProfile:
    """Run ``fn()`` once under the profiler; return its peak tensor memory on ``device`` and its
    top-level aten op count.  Warm ``fn`` up first if its first call does one-off work."""
    device = torch.device(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with profile(activities=activities, profile_memory=True) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    allocations = []  # (time, signed bytes) on the chosen device
    ops = Counter()
    for event, inside_aten in _walk(prof.profiler.kineto_results.experimental_event_tree()):
        kind, fields = event.typed
        if kind == _EventType.Allocation:
            if fields.device.type == device.type and (
                device.index is None or fields.device.index in (None, -1, device.index)
            ):
                allocations.append((event.start_time_ns, fields.alloc_size))
        elif kind == _EventType.TorchOp and event.name.startswith("aten::") and not inside_aten:
            ops[event.name] += 1

    live = peak = 0
    for _, nbytes in sorted(allocations, key=lambda a: a[0]):  # Python's sort is stable
        live += nbytes
        peak = max(peak, live)
    return RunProfile(peak_bytes=peak, end_bytes=live, aten_ops=sum(ops.values()), op_names=ops)


def peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Peak live tensor memory (bytes) allocated by one call of ``fn()`` (see :func:`profile_run`)."""
    return profile_run(fn, device).peak_bytes


def aten_op_count(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Top-level aten ops run by one call of ``fn()`` (see :func:`profile_run`)."""
    return profile_run(fn, device).aten_ops
