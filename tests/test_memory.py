"""Peak memory of the pair losses stays O(B^2): B = 1024, D = 128, forward + backward, < 100 MiB.

A memory bound, not a timing test.  Peak tensor memory comes from the profiler's allocation events
(``bench/memory.py``), which is first checked on cases whose answer is known."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytest
import torch

import lossviz as lv

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.memory import MiB, profile_run  # noqa: E402

B, D = 1024, 128


def test_peak_of_one_tensor_is_its_size():
    p = profile_run(lambda: torch.zeros(B, B))
    assert p.peak_bytes == 4 * B * B
    assert p.aten_ops == 1 and p.op_names["aten::zeros"] == 1


def test_peak_counts_what_is_alive_at_once():
    def run():
        a = torch.zeros(B, B)  # 4 MiB
        b = a + 1              # 8 MiB alive
        del a                  # 4 MiB
        c = b.double()         # 4 + 8 = 12 MiB alive: the peak
        del b, c
        return torch.zeros(B, B, dtype=torch.bool)  # 1 MiB, freed after the call

    p = profile_run(run)
    assert p.peak_bytes == 12 * MiB
    assert p.end_bytes == 0


def test_inputs_allocated_before_the_run_are_not_counted():
    x = torch.zeros(B, B)
    assert profile_run(lambda: x.add_(1)).peak_bytes < 1024  # a few bytes: the wrapped scalar 1


def test_top_level_ops_only():
    x = torch.randn(8, 4, requires_grad=True)
    p = profile_run(lambda: torch.nn.functional.linear(x, torch.ones(3, 4)).sum().backward())
    assert p.op_names["aten::linear"] == 1 and "aten::addmm" not in p.op_names  # addmm is inside linear
    assert all(name.startswith("aten::") for name in p.op_names)
    assert p.aten_ops == sum(p.op_names.values())


LOSSES = {
    **lv.PAIR_LOSSES,
    "ms (no mining)": partial(lv.ms_loss, mining=False),
    "ms (no weighting)": partial(lv.ms_loss, weighting=False),
    "triplet (semihard)": partial(lv.triplet_loss, mining="semihard"),
}


@pytest.mark.parametrize("K", [4, 8])
@pytest.mark.parametrize("name", list(LOSSES))
def test_pair_loss_peak_memory_is_quadratic(name, K):
    """No tensor indexed by (positive pair x negative pair) or by B^3 triplets: a few B x B tensors.
    (One B^3 bool tensor alone would be 1 GiB here; one B x B float32 tensor is 4 MiB.)"""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(B // K).repeat_interleave(K)[torch.randperm(B, generator=g)]
    x = (torch.randn(B // K, D, generator=g)[labels] + torch.randn(B, D, generator=g)).requires_grad_(True)
    fn = LOSSES[name]

    def step():
        fn(lv.similarity(x), labels).backward()
        x.grad = None

    step()  # warm-up
    peak = profile_run(step).peak_bytes
    assert peak < 100 * MiB, f"{name}: {peak / MiB:.1f} MiB"


@pytest.mark.parametrize("B,D", [(64, 128), (64, 512), (256, 128), (256, 512), (1024, 128)])
def test_ms_loss_needs_at_most_half_the_memory_of_pytorch_metric_learning(B, D):
    """The issue's target: ms_loss with mining, forward + backward from the embeddings, at most
    0.5x the peak tensor memory of MultiSimilarityLoss + MultiSimilarityMiner on the same batch
    (the benchmark's half-trained batch, on which both miners keep pairs)."""
    from bench.losses import make_batch

    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
    x, labels = make_batch(B, D, 4, "cpu")
    pml, miner = pml_losses.MultiSimilarityLoss(), pml_miners.MultiSimilarityMiner()

    def peak(loss_of):
        def step():
            xx = x.clone().requires_grad_(True)
            loss_of(xx).backward()
        step()
        return profile_run(step).peak_bytes

    with lv.validation(False):
        ours = peak(lambda xx: lv.ms_loss(lv.similarity(xx), labels))
    theirs = peak(lambda xx: pml(xx, labels, miner(xx, labels)))
    assert ours <= 0.5 * theirs, f"{ours / theirs:.2f}x"
