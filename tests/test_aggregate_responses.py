"""Aggregate responses (lossviz.papers.aggregate_responses): the bag and instance losses against loops
written from the formula (values and gradients), the identity L_inst = L_bag + within-bag variance,
the closed form against autograd's stationarity, the bias of the two estimators, bags, the panels and
bad input."""

import time

import numpy as np
import pytest
import torch

from lossviz.papers import aggregate_responses as A

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(seed=0, bags=6, k=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bags, k, generator=g, dtype=torch.float64), torch.randn(bags, generator=g, dtype=torch.float64)


def loop_bag(f, ybar):
    total = 0.0
    for b in range(f.shape[0]):
        fbar = sum(f[b, i] for i in range(f.shape[1])) / f.shape[1]
        total = total + f.shape[1] * (ybar[b] - fbar) ** 2
    return total


def loop_inst(f, ybar):
    return sum((ybar[b] - f[b, i]) ** 2 for b in range(f.shape[0]) for i in range(f.shape[1]))


@pytest.mark.parametrize("ours, ref", [(A.bag_loss, loop_bag), (A.instance_loss, loop_inst)])
def test_losses_match_loops_values_and_gradients(ours, ref):
    f, ybar = batch()
    f1, f2 = f.clone().requires_grad_(True), f.clone().requires_grad_(True)
    a, b = ours(f1, ybar), ref(f2, ybar)
    a.backward(), b.backward()
    assert torch.allclose(a, b) and torch.allclose(f1.grad, f2.grad)


def test_identity_for_a_random_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    x, ybar = torch.randn(10, 5, 3, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    f = net(x).squeeze(-1)
    gap = A.instance_loss(f, ybar) - A.bag_loss(f, ybar) - A.within_bag_variance(f)
    assert abs(float(gap.detach())) < 1e-5
    for rho in (0.0, 0.3, 1.0):
        mix = rho * A.instance_loss(f, ybar) + (1 - rho) * A.bag_loss(f, ybar)
        assert torch.allclose(A.rho_loss(f, ybar, rho), mix, atol=1e-5)


def test_closed_form_is_the_minimiser_of_rho_loss():
    g = torch.Generator().manual_seed(1)
    x, y, _ = A.sample(60, 4, 1.0, g)
    bags = A.make_bags(x, 3, g)
    thetas = A.solve(x, y, bags, rhos=(0.0, 0.4, 1.0), ridge=0.0)
    for rho, theta in zip((0.0, 0.4, 1.0), thetas):
        t = theta.clone().requires_grad_(True)
        A.rho_loss(x[bags] @ t, y[bags].mean(1), rho).backward()
        assert float(t.grad.abs().max()) < 1e-8


def test_k1_is_ordinary_least_squares_for_every_rho():
    g = torch.Generator().manual_seed(2)
    x, y, _ = A.sample(40, 3, 0.5, g)
    ols = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    thetas = A.solve(x, y, A.make_bags(x, 1, g), ridge=0.0)
    assert torch.allclose(thetas, ols.expand_as(thetas), atol=1e-8)


def test_bias_instance_shrinks_by_one_over_k_bag_unbiased():
    mc = A.monte_carlo(n=400, d=10, k=4, sigma=1.0, reps=60, rhos=(0.0, 1.0), cache=False)
    assert abs(mc.alignment[:, 1].mean() - 0.25) < 0.05
    assert abs(mc.alignment[:, 0].mean() - 1.0) < 0.05
    assert np.allclose(mc.risk, mc.bias2 + mc.variance)


def test_bags_partition_and_clustered_bags_are_sorted():
    x = torch.randn(23, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bags = A.make_bags(x, 5, torch.Generator().manual_seed(1))
    assert bags.shape == (4, 5) and len(set(bags.flatten().tolist())) == 20
    cl = A.make_bags(x, 5, torch.Generator().manual_seed(1), scheme="clustered")
    assert torch.all(x[cl.flatten(), 0].diff() >= 0)


def test_bad_input():
    f, ybar = batch()
    with pytest.raises(ValueError, match="one value per bag"):
        A.bag_loss(f, ybar[:-1])
    with pytest.raises(ValueError, match="dimensions"):
        A.instance_loss(f.flatten(), ybar)
    with pytest.raises(ValueError, match="NaN"):
        A.bag_loss(f * float("nan"), ybar)
    with pytest.raises(ValueError, match="rho"):
        A.rho_loss(f, ybar, 1.5)
    with pytest.raises(ValueError, match="floating"):
        A.within_bag_variance(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="bagging scheme"):
        A.make_bags(torch.randn(4, 2), 2, scheme="sorted")
    with pytest.raises(ValueError, match="bag size"):
        A.make_bags(torch.randn(4, 2), 5)


def test_draw_panel_updates_in_place_and_fast():
    panel = A.draw_panel(k=5, sigma=2.0, rho=0.3)
    line = panel.fig.axes[0].lines[0]
    assert 0 < panel.state["rho_star"] < 1
    panel.controls["sigma"].value = 0.5
    assert panel.state["rho_star"] == 0.0 and panel.fig.axes[0].lines[0] is line
    panel.controls["rho"].value = 1.0
    assert abs(panel.state["alignment"] - 0.2) < 0.05
    start = time.perf_counter()
    panel.controls["rho"].value = 0.5
    panel.fig.canvas.draw()
    assert time.perf_counter() - start < 0.2


def test_training_panel_and_diabetes_run():
    panel = A.training_panel(n=400, d=10, k=2, reps=20)
    assert panel.state["result"].params["k"] == 2
    panel.controls["k"].value = 5
    assert panel.state["stale"]
    panel.train()
    assert panel.state["result"].params["k"] == 5 and not panel.state["stale"]
    run = A.train_linear(0.5, iters=60, cache=False)
    assert run["history"]["test_mse"][-1] < run["history"]["test_mse"][0]
