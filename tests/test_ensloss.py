"""EnsLoss (notebook 24): the sampler against a loop written from the paper's recipe, the fixed
losses' derivatives against their closed forms, bad inputs, the panels, a tiny training run."""

import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz.papers import ensloss as E


def reference_derivatives(s, z, *, clip=1.0, decay=True):
    """The official recipe, one sample at a time, from the standard normals ``z`` (lam = 0)."""
    g = sorted(max(-math.exp(float(v)), -clip) for v in z)
    order = sorted(range(len(s)), key=lambda i: (float(s[i]), i))
    out = [0.0] * len(s)
    for rank, i in enumerate(order):
        v = g[rank]
        if decay and float(s[i]) > 1:
            v = v / float(s[i])
        out[i] = v - 1e-6
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("decay", [True, False])
@pytest.mark.parametrize("clip", [1.0, 0.5, 2.0])
def test_sampler_matches_the_recipe(decay, clip):
    s = torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    g = E.ensloss_derivatives(s, clip=clip, decay=decay, generator=torch.Generator().manual_seed(3))
    z = torch.randn(40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(g, reference_derivatives(s, z, clip=clip, decay=decay), atol=1e-12)
    assert all(E.legitimacy(s, g, clip).values())


def test_gradient_is_mean_of_derivatives_times_score_gradient():
    f = torch.randn(16, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, -1] * 8)
    loss, g = E.ensloss(f, y, generator=torch.Generator().manual_seed(0), return_derivatives=True)
    loss.backward()
    assert torch.allclose(f.grad, g * y.double() / 16, atol=1e-15)


@pytest.mark.parametrize("lam", [-1.0, -0.5, 0.5, 1.0])
def test_box_cox_lambdas_stay_legitimate(lam):
    s = torch.linspace(-3, 3, 200, dtype=torch.float64)
    g = E.ensloss_derivatives(s, lam=lam, generator=torch.Generator().manual_seed(0))
    assert all(E.legitimacy(s, g).values())
    z = torch.tensor([0.3, -0.2], dtype=torch.float64)
    assert torch.allclose(E.box_cox_inverse(z, lam), torch.clamp(1 + lam * z, min=0) ** (1 / lam))


def test_about_half_the_weights_at_the_clip():
    s = torch.linspace(-2, 3, 20_000, dtype=torch.float64)
    g = E.ensloss_derivatives(s, decay=False, generator=torch.Generator().manual_seed(0))
    assert abs(float((g <= -1).double().mean()) - 0.5) < 0.02


@pytest.mark.parametrize("kind", ["bce", "hinge", "exp"])
def test_fixed_derivatives_and_logit_weights(kind):
    f = torch.linspace(-2, 2.5, 13, dtype=torch.float64).requires_grad_(True)
    y = torch.tensor([1, -1] * 6 + [1])
    (E.margin_loss(f, y, kind) * len(f)).backward()
    s = (y.double() * f).detach()
    assert torch.allclose(f.grad, E.fixed_derivative(kind, s) * y.double(), atol=1e-12)
    logits = torch.stack([torch.zeros_like(s), f.detach()], 1)
    w = lv.sample_weights(E.two_logit_loss, logits, (y + 1) // 2, kind=kind)
    assert torch.allclose(w, E.fixed_derivative(kind, s).abs(), atol=1e-12)


def test_focal_against_formula():
    f = torch.linspace(-2, 2, 9, dtype=torch.float64)
    y = torch.ones(9, dtype=torch.long)
    p = torch.sigmoid(f)
    assert torch.allclose(E.margin_loss(f, y, "focal"), (-(1 - p) ** 2 * torch.log(p)).mean(), atol=1e-12)


def test_ensloss_logit_weights_are_the_sampled_weights():
    f = torch.linspace(-2, 3, 10, dtype=torch.float64)
    logits = torch.stack([torch.zeros_like(f), f], 1)
    w = lv.sample_weights(E.two_logit_loss, logits, torch.ones(10, dtype=torch.long), kind="ensloss",
                          generator=torch.Generator().manual_seed(5))
    g = E.ensloss_derivatives(f, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(w, g.abs(), atol=1e-12)


def test_bad_inputs():
    f = torch.zeros(4)
    with pytest.raises(ValueError, match="-1 or \\+1"):
        E.ensloss(f, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="shape"):
        E.ensloss(f, torch.tensor([1, -1]))
    with pytest.raises(ValueError, match="NaN"):
        E.ensloss(torch.tensor([0.0, float("nan")]), torch.tensor([1, -1]))
    with pytest.raises(ValueError, match="dimensions"):
        E.ensloss(torch.zeros(4, 1), torch.tensor([1, -1, 1, -1]))
    with pytest.raises(ValueError, match="clip"):
        E.ensloss_derivatives(f, clip=0.0)
    with pytest.raises(ValueError, match="unknown loss"):
        E.margin_loss(f, torch.tensor([1, -1, 1, -1]), "square")
    with pytest.raises(ValueError, match="2 logit columns"):
        E.two_logit_loss(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="noise"):
        E.train_ensloss("bce", noise=0.9)


def test_derivative_panel_responds():
    panel = E.derivative_panel()
    assert 0.4 < panel.state["at_clip"] < 0.6
    panel.controls["clip"].value = 2.0
    assert panel.state["at_clip"] < 0.4
    assert float(panel.state["pool"].max()) <= 2.0 + 1e-5


def test_tiny_training_and_panel():
    run = E.train_ensloss("ensloss", epochs=3, width=16, seed=0, progress=False)
    assert run.scores["legit"] and len(run.history["test_acc"]) == 3
    assert run.scores["best"] > 0.6
    panel = E.training_panel(loss="bce", epochs=20, width=64, autorun=False)
    panel.controls["epochs"].value = 20
    panel.train()
    assert panel.state["result"].params["loss"] == "bce" and len(E.window_means(panel.state["result"])) == 2
    assert np.isfinite(panel.state["result"].history["bce"]).all()
