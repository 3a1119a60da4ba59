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


@pytest.mark.parametrize("mining", [True, False])
def test_compiled_ms_loss_matches_eager_with_learnable_knobs(batch, mining):
    """Under torch.compile ms_loss runs as plain autograd operations: the same value and gradients,
    the learnable knobs' included, in a fresh compile (no earlier graph to lean on)."""
    S, y = batch
    torch._dynamo.reset()
    results = []
    for compiled in (False, True):
        x = S.detach().clone().requires_grad_(True)
        beta, lam = torch.tensor(40.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)
        fn = torch.compile(lv.ms_loss, fullgraph=True) if compiled else lv.ms_loss
        with lv.validation(False):
            value = fn(x, y, beta=beta, lam=lam, mining=mining)
        value.backward()
        results.append((value.detach(), x.grad, beta.grad, lam.grad))
    for eager, traced in zip(*results):
        torch.testing.assert_close(traced, eager, atol=1e-5, rtol=1e-5)


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


@pytest.mark.parametrize("fn, knob, values", [
    (lv.ms_loss, "beta", (40.0, 45.0, 50.0, 55.0)),
    (lv.nt_xent_loss, "tau", (0.1, 0.2, 0.3, 0.5)),
    (lv.binomial_deviance_loss, "alpha", (1.0, 2.0, 3.0)),
    (lv.arcface_loss, "s", (10.0, 20.0, 30.0)),
], ids=["ms-beta", "nt_xent-tau", "binomial-alpha", "arcface-s"])
def test_a_compiled_loss_follows_a_knob_sweep(batch, fn, knob, values):
    """A beta sweep, an annealed tau: after the first recompile the knob is a symbolic float, which
    the knob checks must take (comparisons, not math.isfinite)."""
    S, y = batch
    if fn is lv.arcface_loss:
        S, y = (S[:, :8] + 1) / 2, torch.arange(32) % 8                  # cosines to 8 class weights
    torch._dynamo.reset()
    with lv.validation(False):
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
        for v in values:
            torch.testing.assert_close(compiled(S, y, **{knob: v}), fn(S, y, **{knob: v}), atol=1e-5, rtol=1e-5)
