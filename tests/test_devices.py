"""Every loss on every available device (CUDA tests skip cleanly without a GPU)."""

import pytest
import torch

import lossviz as lv

@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device")])])
@pytest.mark.parametrize("name", sorted(lv.PAIR_LOSSES))
def test_loss_and_weights_on_device_match_cpu(device, name):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g, dtype=torch.float64)
    y = torch.arange(8).repeat_interleave(4)
    fn = lv.PAIR_LOSSES[name]
    S_cpu = lv.similarity(x)
    S_dev = lv.similarity(x.to(device))
    assert S_dev.device.type == device
    assert torch.allclose(fn(S_dev, y.to(device)).cpu(), fn(S_cpu, y), atol=1e-10)
    W_dev = lv.pair_weights(fn, S_dev, y.to(device))
    assert torch.allclose(W_dev.cpu(), lv.pair_weights(fn, S_cpu, y), atol=1e-10)
