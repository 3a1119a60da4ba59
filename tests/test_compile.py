"""With value checks off, the losses are free of host syncs: torch.compile traces them whole."""

import pytest
import torch

import lossviz as lv


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    return lv.similarity(x), torch.arange(8).repeat_interleave(4)


def test_ms_loss_compiles_with_fullgraph(batch):
    S, y = batch
    S = S.clone().requires_grad_(True)
    with lv.validation(False):
        compiled = torch.compile(lv.ms_loss, fullgraph=True)
        value = compiled(S, y, beta=40.0)
        value.backward()
    ref_S = S.detach().clone().requires_grad_(True)
    ref = lv.ms_loss(ref_S, y, beta=40.0)
    ref.backward()
    assert torch.allclose(value, ref, atol=1e-5)
    assert torch.allclose(S.grad, ref_S.grad, atol=1e-5)


@pytest.mark.parametrize("name", sorted(set(lv.PAIR_LOSSES) - {"ms"}))
def test_every_pair_loss_traces_without_graph_breaks(batch, name):
    S, y = batch
    fn = lv.PAIR_LOSSES[name]
    with lv.validation(False):
        traced = torch.compile(fn, fullgraph=True, backend="aot_eager")
        assert torch.allclose(traced(S, y), fn(S, y), atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", sorted(lv.PAIR_LOSSES))
def test_no_host_device_sync_on_cuda(batch, name):
    S, y = batch[0].cuda().requires_grad_(True), batch[1].cuda()
    fn = lv.PAIR_LOSSES[name]
    with lv.validation(False):
        fn(S, y).backward()  # warm-up (lazy init may sync)
        torch.cuda.set_sync_debug_mode("error")
        try:
            fn(S, y).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
