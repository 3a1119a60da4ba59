"""Out-of-domain unlabelled data (lossviz.papers.ood_unlabeled): the logistic loss and the RSS objective
against loops from the formula (values and gradients), the closed-form gradient against autograd, WRM's
inner ascent against a grid search of the sup, the exact error against sampling, pseudo-labels,
pairing and caching of the experiment, the panels and bad input."""

import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz.papers import ood_unlabeled as O

pytestmark = pytest.mark.usefixtures("one_thread")


def task(seed=0, m=12, n=30, d=5):
    g = torch.Generator().manual_seed(seed)
    x, xu = torch.randn(m, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (m,), generator=g).double() * 2 - 1
    yu = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    theta = torch.randn(d, generator=g, dtype=torch.float64)
    return theta, x, y, xu, yu


def loop_objective(theta, x, y, xu, yu, lam, wd):
    lab = sum(math.log(1 + math.exp(-float(y[i]) * float(theta @ x[i]))) for i in range(len(y))) / len(y)
    unl = sum(math.log(1 + math.exp(-float(yu[j]) * float(theta @ xu[j]))) for j in range(len(yu))) / len(yu)
    return lab + lam * unl + 0.5 * wd * sum(float(t) ** 2 for t in theta)


def test_objective_matches_loop_and_closed_form_gradient():
    theta, x, y, xu, yu = task()
    leaf = theta.clone().requires_grad_(True)
    obj = O.rss_objective(leaf, x, y, xu, yu, lam=0.7, wd=0.1)
    assert abs(float(obj.detach()) - loop_objective(theta, x, y, xu, yu, 0.7, 0.1)) < 1e-12
    obj.backward()
    value, grad = O.rss_grad(theta, x, y, xu, yu, lam=0.7, wd=0.1)
    assert abs(float(value) - float(obj.detach())) < 1e-12 and torch.allclose(grad, leaf.grad, atol=1e-12)
    # numerical gradient of the loop
    eps, num = 1e-6, torch.zeros_like(theta)
    for k in range(len(theta)):
        e = torch.zeros_like(theta)
        e[k] = eps
        num[k] = (loop_objective(theta + e, x, y, xu, yu, 0.7, 0.1) - loop_objective(theta - e, x, y, xu, yu, 0.7, 0.1)) / (2 * eps)
    assert torch.allclose(num, leaf.grad, atol=1e-7)


def test_logit_form_is_the_logistic_loss_and_its_weights_are_sigmoid():
    theta, x, y, _, _ = task()
    s = x @ theta
    logits = torch.stack([torch.zeros_like(s), s], 1)
    labels = (y > 0).long()
    assert torch.allclose(O.logit_loss(logits, labels), O.logistic_loss(theta, x, y, reduction="none"))
    w = lv.sample_weights(O.logit_loss, logits, labels)
    assert torch.allclose(w, torch.sigmoid(-y * s), atol=1e-12)


def test_wrm_ascent_approaches_the_sup_and_moves_against_y_theta():
    theta, x, y, _, _ = task(m=4)
    gamma = 2.0
    xp = O.adversarial_points(theta, x, y, gamma, steps=200, lr=0.05)
    t = torch.linspace(0, 3, 30001, dtype=torch.float64)
    u = theta / theta.norm()
    for i in range(4):
        d = xp[i] - x[i]
        assert abs(float(d @ (-y[i] * u)) - float(d.norm())) < 1e-8            # along -y theta
        vals = torch.nn.functional.softplus(-y[i] * (x[i] @ theta) + t * theta.norm()) - gamma * t ** 2
        phi = float(O.robust_loss(theta, x[i:i + 1], y[i:i + 1], gamma, steps=200, lr=0.05))
        assert abs(phi - float(vals.max())) < 1e-6
        assert phi >= float(O.logistic_loss(theta, x[i:i + 1], y[i:i + 1])) - 1e-12
    assert torch.equal(O.robust_loss(theta, x, y), O.logistic_loss(theta, x, y))    # gamma = inf


def test_exact_error_matches_sampling_and_pseudo_labels():
    mu = O.mean_vector(0.0, d=10)
    theta = mu + torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 2, (200_000,), generator=g).double() * 2 - 1
    x = y[:, None] * mu + torch.randn(200_000, 10, generator=g, dtype=torch.float64)
    assert abs(O.exact_error(theta, mu) - float((O.pseudo_labels(theta, x) != y).double().mean())) < 0.004
    assert O.pseudo_labels(torch.zeros(3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)).tolist() == [1, 1]


def test_fit_is_stationary_and_autograd_path_agrees_at_large_gamma():
    theta, x, y, xu, yu = task()
    th = O.fit(x, y, xu, yu, lam=0.5)
    assert float(O.rss_grad(th, x, y, xu, yu, lam=0.5)[1].abs().max()) < 1e-6
    th_inf = O.self_train(x, y, xu, rounds=2)
    assert len(th_inf) == 3 and all(torch.isfinite(t).all() for t in th_inf)


def test_run_alpha_is_paired_cached_and_self_training_helps():
    kw = dict(repeats=3, rounds=2, d=10, m=10, n=200)
    a, b = O.run_alpha(0.0, **kw), O.run_alpha(1.0, **kw)
    assert np.array_equal(a.erm, b.erm)                        # same labelled sets at every shift
    assert O.run_alpha(0.0, **kw) is a                          # cached
    assert a.rounds.shape == (3, 2) and a.gain.mean() > 0
    assert b.pseudo_wrong.mean() > a.pseudo_wrong.mean()


def test_bad_input():
    theta, x, y, xu, yu = task()
    with pytest.raises(ValueError, match="features"):
        O.logistic_loss(theta[:3], x, y)
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        O.logistic_loss(theta, x, (y > 0).double())
    with pytest.raises(ValueError, match="NaN"):
        O.logistic_loss(theta, x * float("nan"), y)
    with pytest.raises(ValueError, match="one label per row"):
        O.logistic_loss(theta, x, y[:3])
    with pytest.raises(ValueError, match="gamma"):
        O.adversarial_points(theta, x, y, 0.0)
    with pytest.raises(ValueError, match="lam"):
        O.rss_objective(theta, x, y, xu, yu, lam=-1.0)
    with pytest.raises(ValueError, match="zero vector"):
        O.exact_error(torch.zeros(5, dtype=torch.float64), O.mean_vector(0.0, d=5))


def test_geometry_panel_updates_in_place():
    panel = O.geometry_panel()
    line = panel.fig.axes[0].lines[0]
    panel.controls["beta"].value = 0.0
    panel.controls["alpha"].value = 0.0
    assert abs(panel.state["error"] - O.exact_error(O.mean_vector(0.0), O.mean_vector(0.0))) < 1e-9
    assert abs(panel.state["pseudo_wrong"] - panel.state["error"]) < 1e-12
    panel.controls["alpha"].value = 1.0
    assert panel.state["pseudo_wrong"] > panel.state["error"] and panel.fig.axes[0].lines[0] is line


def test_training_panel_trains_and_caches():
    panel = O.training_panel(n=250, rounds=1, repeats=4, autorun=False)
    panel.controls["lam"].value = 1.0
    panel.train()
    assert "gain" in panel.state and panel.state["result"] is O.run_alpha(0.0, n=250, lam=1.0, rounds=1, repeats=4)
