"""Discriminative vs. generative (lossviz.papers.dis_vs_gen): naive Bayes against loops written from
the formula, its linear form, the surrogate's values and gradients, sklearn's LR at a stationary
point of its objective, the exact and Bayes errors against sampling, the simulation's pairing and
caching, the few-shot protocol, the panels and bad input."""

import math
import time

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz.papers import dis_vs_gen as D

pytestmark = pytest.mark.usefixtures("one_thread")


def data(seed=0, m=30, n=6, K=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, n, generator=g, dtype=torch.float64) * 2, torch.arange(m) % K


def loop_nb(x, y, K, floor=1e-9):
    """From the spec's formula, one class and one coordinate at a time."""
    m, n = x.shape
    means, pis, var = [], [], torch.zeros(n, dtype=torch.float64)
    for k in range(K):
        xs = [x[i] for i in range(m) if y[i] == k]
        mu = sum(xs) / len(xs)
        means.append(mu)
        pis.append(len(xs) / m)
        for j in range(n):
            var[j] += pis[k] * sum((xi[j] - mu[j]) ** 2 for xi in xs) / len(xs)
    var = var + floor
    logits = torch.zeros(m, K, dtype=torch.float64)
    for i in range(m):
        for k in range(K):
            logits[i, k] = math.log(pis[k]) - 0.5 * sum((x[i, j] - means[k][j]) ** 2 / var[j] for j in range(n))
    return torch.stack(means), var, logits


@pytest.mark.parametrize("seed,K", [(0, 2), (1, 3), (2, 5)])
def test_naive_bayes_matches_the_loop_and_is_linear(seed, K):
    x, y = data(seed, m=25, K=K)
    y = y[torch.randperm(25, generator=torch.Generator().manual_seed(seed))]      # unbalanced classes
    nb = D.fit_naive_bayes(x, y, K)
    means, var, logits = loop_nb(x, y, K)
    assert torch.allclose(nb.means, means) and torch.allclose(nb.var, var)
    assert torch.allclose(D.nb_logits(x, nb), logits, atol=1e-10)
    W, b = D.nb_linear(nb)
    gap = D.nb_logits(x, nb) - (x @ W.T + b)
    assert torch.allclose(gap, (-0.5 * (x ** 2 / nb.var).sum(1))[:, None].expand_as(gap), atol=1e-9)
    assert torch.allclose(torch.softmax(x @ W.T + b, 1), torch.softmax(logits, 1), atol=1e-10)


def test_nb_is_invariant_to_an_affine_map_of_each_coordinate():
    x, y = data(3)
    a, c = torch.linspace(0.5, 3, 6, dtype=torch.float64), torch.linspace(-2, 2, 6, dtype=torch.float64)
    p1 = D.nb_logits(x, D.fit_naive_bayes(x, y)).argmax(1)
    p2 = D.nb_logits(a * x + c, D.fit_naive_bayes(a * x + c, y)).argmax(1)
    assert torch.equal(p1, p2)


def test_cross_entropy_values_gradients_and_sample_weights():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours = D.cross_entropy(z1, y)
    ref = sum(-torch.log(torch.exp(z2[i, y[i]]) / torch.exp(z2[i]).sum()) for i in range(7)) / 7
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref) and torch.allclose(z1.grad, z2.grad)
    assert torch.allclose(ours, torch.nn.functional.cross_entropy(z, y))
    w = lv.sample_weights(D.cross_entropy, z, y, reduction="none")
    assert torch.allclose(w, 1 - torch.softmax(z, 1)[torch.arange(7), y])
    assert torch.allclose(lv.sample_weights(D.cross_entropy, z, y, relative_to_ce=True, reduction="none"),
                          torch.ones(7, dtype=torch.float64))


@pytest.mark.parametrize("K", [2, 3])
def test_sklearn_lr_is_a_stationary_point_of_the_objective(K):
    x, y = data(4, m=40, K=K)
    W, b = (t.clone().requires_grad_(True) for t in D.fit_logistic(x, y, K, C=0.5, max_iter=5000))
    D.lr_objective(W, b, x, y, C=0.5).backward()
    grad = torch.cat([W.grad.flatten(), b.grad])
    if K == 2:                                       # W = [0, w]: the first row is not a parameter
        grad = torch.cat([W.grad[1], b.grad[1:]])
    assert float(grad.abs().max()) < 1e-2


def test_minmax_scaling_returns_weights_on_the_raw_features():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MinMaxScaler

    x, y = data(5, m=40, K=3)
    W, b = D.fit_logistic(x, y, 3, scale="minmax")
    xs = MinMaxScaler().fit_transform(x.numpy())
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(xs, y.numpy())
    assert np.allclose((x @ W.T + b).numpy(), clf.decision_function(xs), atol=1e-6)


def test_exact_error_and_bayes_error_against_sampling():
    n = 6
    g = torch.Generator().manual_seed(0)
    W, b = torch.randn(2, n, generator=g, dtype=torch.float64) * 0.3, torch.randn(2, generator=g, dtype=torch.float64)
    x, y = D.sample_gaussian(n, 2, 200_000, g)
    mc = float(((x @ W.T + b).argmax(1) != y).double().mean())
    assert abs(D.binary_linear_error(W, b, n) - mc) < 4e-3
    delta = math.sqrt(sum(4 / v for v in D.class_variances(n).tolist()))
    assert D.bayes_error(n) == pytest.approx(0.5 * math.erfc(delta / 2 / math.sqrt(2)), rel=1e-12)
    true = D.NaiveBayes(D.class_means(n, 2), D.class_variances(n), torch.full((2,), -math.log(2), dtype=torch.float64))
    assert D.binary_linear_error(*D.nb_linear(true), n) == pytest.approx(D.bayes_error(n), rel=1e-9)
    assert D.bayes_error(20) == pytest.approx(6e-4, abs=1e-4)                  # the spec's value
    assert D.binary_linear_error(torch.zeros(2, n), torch.zeros(2), n) == 0.5


def test_simulation_means_variances_and_its_pairing():
    assert D.class_means(4, 3)[:, 0].tolist() == [-1.0, 1.0, 2.0]
    assert D.class_variances(5).tolist() == [5.0, 5.0, 1.0, 1.0, 1.0]
    r = D.simulate(20, ms=(4, 16, 64), repeats=3, progress=False)
    assert r.errors["nb"].shape == (3, 3) and r is D.simulate(20, ms=(4, 16, 64), repeats=3, progress=False)
    again = D.simulate(20, ms=(4, 16, 64), repeats=3, progress=False, cache=False)
    assert np.array_equal(again.errors["lr"], r.errors["lr"])                 # seeded
    assert D.m_star((4, 8, 16), [0.3, 0.005, 0.0], 0.01) == 8 and D.m_star((4,), [0.3], 0.01) is None
    r3 = D.simulate(20, K=3, ms=(6, 24), repeats=2, progress=False, n_test=600)
    assert 0 <= r3.bayes < 0.05 and r3.errors["lr"].shape == (2, 2)


def test_few_shot_protocol_is_nested_and_paired():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(150) % 3
    x = torch.randn(150, 4, generator=g, dtype=torch.float64) + y[:, None].double()
    acc = D.few_shot(x, y, shots=(1, 4, 16), repeats=3, n_test=60)
    assert acc["nb"].shape == (3, 3) and ((acc["lr"] >= 0) & (acc["lr"] <= 1)).all()
    assert np.array_equal(acc["nb"], D.few_shot(x, y, shots=(1, 4, 16), repeats=3, n_test=60)["nb"])
    assert D.shots_to_reach((1, 2, 4), [0.5, 0.8, 0.82], 0.03) == 2
    with pytest.raises(ValueError, match="shots per class"):
        D.few_shot(x, y, shots=(40,), repeats=1, n_test=60)


def test_draw_panel_updates_in_place_and_fast():
    panel = D.draw_panel(n=50, log2_m=4)
    line, bars = panel.fig.axes[0].lines[1], panel.fig.axes[1].patches
    panel.controls["n"].value = 200
    assert panel.state["errors"]["nb"] < panel.state["errors"]["lr"]
    assert len(panel.fig.axes[0].lines[1].get_xdata()) == 200 and panel.fig.axes[0].lines[1] is line
    t = time.perf_counter()
    panel.controls["log2_m"].value = 10
    panel.fig.canvas.draw()
    assert time.perf_counter() - t < 1.0                                    # 200 ms on a free core
    assert panel.state["m"] == 1024 and panel.state["cos"]["lr"] > 0.9
    assert bars[1].get_height() == pytest.approx(panel.state["errors"]["lr"])


def test_training_panel_runs_and_caches():
    panel = D.training_panel(n=20, repeats=2, ms=(4, 16), autorun=False)
    assert panel.state.get("result") is None
    first = panel.train()
    assert first is D.simulate(20, ms=(4, 16), repeats=2)
    panel.controls["C"].value = 10.0
    assert panel.state["stale"]
    assert panel.train().params["C"] == 10.0


def test_bad_input():
    x, y = data(0)
    with pytest.raises(ValueError, match="NaN"):
        D.fit_naive_bayes(torch.full((4, 2), float("nan")), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="integer"):
        D.fit_naive_bayes(x, y.float())
    with pytest.raises(ValueError, match="classes \\[2\\] have none"):
        D.fit_naive_bayes(x[:4], torch.tensor([0, 1, 0, 1]), 3)
    with pytest.raises(ValueError, match="shape"):
        D.fit_naive_bayes(x, y[:5])
    with pytest.raises(ValueError, match="var_floor"):
        D.fit_naive_bayes(x, y, var_floor=0.0)
    with pytest.raises(ValueError, match="features"):
        D.nb_logits(x[:, :3], D.fit_naive_bayes(x, y))
    with pytest.raises(ValueError, match="C"):
        D.fit_logistic(x, y, C=0)
    with pytest.raises(ValueError, match="scale"):
        D.fit_logistic(x, y, scale="zscore")
    with pytest.raises(ValueError, match="class ids"):
        D.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="n \\(the feature dimension\\)"):
        D.simulate(1)
    with pytest.raises(ValueError, match="K"):
        D.simulate(20, K=1)
    with pytest.raises(ValueError, match="each m"):
        D.simulate(20, K=3, ms=(2,))
