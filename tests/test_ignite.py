"""IGNITE (lossviz.papers.ignite): the sharpness against a parameter-by-parameter loop, the finite
difference against double backprop and against a loop of perturbed forward passes, the dual update
against its formula, the training step's extra gradient, the panels, bad input."""

import numpy as np
import pytest
import torch

from lossviz.papers import ignite as M

pytestmark = pytest.mark.usefixtures("one_thread")


def small(act="tanh", seed=0):
    torch.manual_seed(seed)
    net = M.surrogate(d=3, width=5, act=act).double()
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return net, x


def loop_sharpness(net, x):
    """||grad G|| by central differences on every single weight (no autograd)."""
    total, h = 0.0, 1e-6
    with torch.no_grad():
        for p in net.parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + h
                up = float(net(x).mean())
                flat[i] = old - h
                down = float(net(x).mean())
                flat[i] = old
                total += ((up - down) / (2 * h)) ** 2
    return total ** 0.5


def test_oracle_closed_form():
    x = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    expected = torch.tensor([4.0, -2 + 4 * np.cos(2.0)])
    assert torch.allclose(M.oracle(x), expected.float(), atol=1e-6)


def test_sharpness_matches_loop():
    net, x = small()
    assert M.sharpness(net, x) == pytest.approx(loop_sharpness(net, x), rel=1e-6)


def test_fd_matches_exact_and_loop_on_smooth_net():
    net, x = small()
    exact = M.exact_norm_grad(net, x)
    assert M.cosine(M.fd_norm_grad(net, x, r=1e-4), exact) > 0.9999
    # the exact gradient of the norm against a loop of central differences of loop_sharpness
    p = next(net.parameters())
    h = 1e-4
    for i in range(3):
        old = float(p.detach().view(-1)[i])
        with torch.no_grad():
            p.view(-1)[i] = old + h
        up = M.sharpness(net, x)
        with torch.no_grad():
            p.view(-1)[i] = old - h
        down = M.sharpness(net, x)
        with torch.no_grad():
            p.view(-1)[i] = old
        assert exact[0].view(-1)[i].item() == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-8)


def test_fd_leaves_weights_and_is_first_order():
    net, x = small("leaky")
    before = [p.detach().clone() for p in net.parameters()]
    fd = M.fd_norm_grad(net, x, r=0.05)
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert len(fd) == len(before) and all(f.shape == p.shape for f, p in zip(fd, before))


def test_dual_update_formula_and_clip():
    assert M.dual_update(0.5, 4.0, rho=0.05, eps=0.1, eta=0.1) == pytest.approx(0.5 + 0.1 * (0.2 - 0.1))
    assert M.dual_update(0.0, 0.0, rho=0.05, eps=0.1, eta=0.1) == 0.0
    assert M.dual_update(0.0, 0.0, rho=0.05, eps=0.1, eta=0.1, clip=False) == pytest.approx(-0.01)
    lam = M.dual_trace([10, 0, 10], lam0=0.0, rho=0.05, eps=0.1, eta=1.0)
    assert np.allclose(lam, [0.4, 0.3, 0.7])


def test_bad_input():
    net, x = small()
    with pytest.raises(ValueError):
        M.oracle(torch.ones(3))
    with pytest.raises(ValueError):
        M.oracle(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError):
        M.fd_norm_grad(net, x, r=0.0)
    with pytest.raises(ValueError):
        M.sharpness(net, torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        M.dual_update(0.0, 1.0, eta=-1.0)
    with pytest.raises(ValueError):
        M.train_surrogate(0, mode="sam")
    with pytest.raises(ValueError):
        M.train_surrogate(0, lam=-1.0)
    with pytest.raises(ValueError):
        M.surrogate(act="relu6")


def test_training_lowers_sharpness_and_caches():
    b = M.train_surrogate(0, mode="base", epochs=3)
    r = M.train_surrogate(0, mode="ignite2", lam=1.0, epochs=3)
    assert r["sharp_train"] < b["sharp_train"]
    assert M.train_surrogate(0, mode="base", epochs=3) is b
    assert 0 < b["start_score"] < 1 and np.isfinite(b["score"])


def test_dual_panel_in_place():
    panel = M.dual_panel()
    line = panel.fig.axes[1].lines[0]
    lam0 = panel.state["lam"].copy()
    panel.controls["eps"].value = 0.3
    assert panel.fig.axes[1].lines[0] is line
    assert not np.allclose(panel.state["lam"], lam0)
    assert np.allclose(line.get_ydata(), panel.state["lam"])
    panel.controls["clip"].value = False
    panel.controls["eps"].value = 0.5
    assert panel.state["lam"].min() < 0


def test_training_panel_trains():
    panel = M.training_panel(epochs=2)
    panel.controls["lam"].value = 10.0
    panel.train()
    assert panel.state["ratio_unseen"] > 0 and not panel.state["stale"]
    panel.controls["seed"].value = 1
    assert panel.state["stale"]
