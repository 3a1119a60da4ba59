"""Z-loss (lossviz.papers.z_loss): the loss and the spherical baselines against loops written from
the formulas, values and gradients; the closed-form gradient; shift and scale invariance; the
spherical sums and the factored O(d^2) form; the stacked trainer; the panels; bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz import train as T
from lossviz.papers import z_loss as M

pytestmark = pytest.mark.usefixtures("one_thread")

AB = [(1.0, 3.0), (5.0, 1.0), (0.5, 2.0), (2.0, -0.5)]


def batch(seed=0, n=9, D=6, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, D, generator=g, dtype=dtype), torch.randint(0, D, (n,), generator=g)


def loop_z(o, y, a, b, eps=M.EPS):
    """From the paper, one sample and one class at a time."""
    out = []
    for i in range(len(y)):
        D = o.shape[1]
        mu = sum(o[i, k] for k in range(D)) / D
        var = sum(o[i, k] ** 2 for k in range(D)) / D - mu ** 2
        z_c = (o[i, y[i]] - mu) / torch.sqrt(var + eps)
        out.append(torch.log(1 + torch.exp(a * (b - z_c))) / a)
    return torch.stack(out)


def loop_baseline(o, y, kind, eps=M.EPS):
    out = []
    for i in range(len(y)):
        c, row = int(y[i]), o[i]
        if kind == "mse":
            out.append(sum((row[k] - (1.0 if k == c else 0.0)) ** 2 for k in range(len(row))))
        else:
            t = [1 + v + v * v / 2 for v in row] if kind == "taylor" else [v * v + eps for v in row]
            out.append(-torch.log(t[c] / sum(t)))
    return torch.stack(out)


@pytest.mark.parametrize("a,b", AB)
def test_z_loss_and_gradient_match_the_loop(a, b):
    o, y = batch(1)
    o1, o2 = o.clone().requires_grad_(True), o.clone().requires_grad_(True)
    ours, ref = M.z_loss(o1, y, a=a, b=b), loop_z(o2, y, a, b).mean()
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, rtol=1e-12)
    assert torch.allclose(o1.grad, o2.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["mse", "taylor", "spherical"])
def test_spherical_baselines_match_the_loop(kind):
    fn = {"mse": M.mse_loss, "taylor": M.taylor_softmax_loss, "spherical": M.spherical_softmax_loss}[kind]
    o, y = batch(2)
    o1, o2 = o.clone().requires_grad_(True), o.clone().requires_grad_(True)
    ours, ref = fn(o1, y), loop_baseline(o2, y, kind).mean()
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, rtol=1e-12)
    assert torch.allclose(o1.grad, o2.grad, rtol=1e-9, atol=1e-12)
    assert torch.allclose(M.ce_loss(o, y), F.cross_entropy(o, y))


@pytest.mark.parametrize("a,b", AB)
def test_closed_form_gradient(a, b):
    o, y = batch(3, n=12, D=10)
    D = o.shape[1]
    z = M.z_scores(o)
    s = torch.sqrt(o.var(1, unbiased=False, keepdim=True) + M.EPS)
    z_c = z.gather(1, y[:, None])
    G = lv.logit_weights(M.z_loss, o, y, a=a, b=b, reduction="none")
    closed = -torch.sigmoid(a * (b - z_c)) * (F.one_hot(y, D).double() - 1 / D - z_c * z / D) / s
    assert torch.allclose(G, closed, rtol=1e-9, atol=1e-12)
    w = lv.sample_weights(M.z_loss, o, y, a=a, b=b, reduction="none")
    assert torch.allclose(w, closed.gather(1, y[:, None])[:, 0].abs(), rtol=1e-9)
    assert torch.allclose(G.sum(1), torch.zeros(len(y), dtype=o.dtype), atol=1e-12)   # a shift changes nothing


def test_shift_and_scale_invariance_and_ce_is_not():
    o, y = batch(4, n=32, D=10, dtype=torch.float32)
    base = M.z_loss(o, y, reduction="none")
    for alpha, beta in ((3.7, 0.0), (0.2, -5.0), (10.0, 7.0)):
        moved = alpha * o + beta
        assert (M.z_loss(moved, y, reduction="none") - base).abs().max() < 1e-5
    assert (M.ce_loss(3.7 * o, y, reduction="none") - M.ce_loss(o, y, reduction="none")).abs().max() > 1.0
    # a negative scale flips the ranking: not an invariance
    assert not torch.allclose(M.z_loss(-o, y, reduction="none"), base)


def test_spherical_sums_and_factored_form_equal_the_naive_loss():
    o, y = batch(5, n=16, D=10)
    assert torch.allclose(M.z_loss_from_sums(*M.spherical_sums(o, y), 10, a=2.0, b=1.5),
                          M.z_loss(o, y, a=2.0, b=1.5), rtol=1e-12)
    g = torch.Generator().manual_seed(0)
    W, h = torch.randn(500, 16, generator=g, dtype=torch.float64), torch.randn(8, 16, generator=g, dtype=torch.float64)
    yy = torch.randint(0, 500, (8,), generator=g)
    assert torch.allclose(M.z_loss_factored(h, W, yy, reduction="none"), M.z_loss(h @ W.T, yy, reduction="none"),
                          rtol=1e-10)
    t = M.time_losses((200, 2000), d=8, B=4, repeats=1)
    assert t["D"] == [200, 2000] and max(t["max_diff"]) < 1e-4 and all(v > 0 for v in t["naive"] + t["factored"])


def test_logits_with_z_and_the_bound():
    o = M.logits_with_z(2.0, 5, 10)
    z = M.z_scores(o, eps=1e-12)
    assert torch.allclose(z[:, 0], torch.full((5,), 2.0, dtype=o.dtype), atol=1e-6)
    top = M.logits_with_z(3.0, 1, 10)                      # sqrt(D - 1): all other classes tied
    assert torch.allclose(M.z_scores(top, eps=1e-12)[0, 0], torch.tensor(3.0, dtype=o.dtype), atol=1e-6)
    with pytest.raises(ValueError, match="sqrt"):
        M.logits_with_z(3.5, 1, 10)


def test_bad_input():
    o, y = batch(6)
    with pytest.raises(ValueError, match="NaN"):
        M.z_loss(torch.full((2, 3), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        M.z_loss(o, y.float())
    with pytest.raises(ValueError, match="dimensions"):
        M.z_loss(o[0], y[:1])
    with pytest.raises(ValueError, match="class ids"):
        M.z_loss(o, torch.full_like(y, 6))
    with pytest.raises(ValueError, match="shape"):
        M.z_loss(o, y[:3])
    with pytest.raises(ValueError, match="> 0"):
        M.z_loss(o, y, a=0.0)
    with pytest.raises(ValueError, match="> 0"):
        M.z_loss(o, y, eps=-1.0)
    with pytest.raises(ValueError, match="finite"):
        M.z_loss(o, y, b=float("inf"))
    with pytest.raises(ValueError, match="at least 2 classes"):
        M.mse_loss(o[:, :1], torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="W must be"):
        M.z_loss_factored(torch.zeros(2, 4), torch.zeros(10, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        M.z_loss(o, y, reduction="max")
    with pytest.raises(ValueError, match="unknown loss"):
        M.train_one("hinge")


def test_topk_counts_ties_in_favour_of_the_label():
    logits = torch.tensor([[[3.0, 1.0, 2.0], [0.0, 2.0, 1.0], [1.0, 1.0, 0.0]]])
    acc = M._topk(logits, torch.tensor([[0, 0, 1]]))
    assert float(acc["top1"][0]) == pytest.approx(2 / 3) and float(acc["top3"][0]) == 1.0


def test_stacked_training_equals_separate_runs_and_learns():
    group = M.train_losses("z", a=5.0, b=1.0, seeds=[0, 1], epochs=2, progress=False)
    T.clear_cache()
    alone = M.train_one("z", a=5.0, b=1.0, seed=1, epochs=2, progress=False)
    assert np.allclose(group[1].history["loss"], alone.history["loss"], rtol=1e-4, atol=1e-6)
    assert np.allclose(group[1].evals["top1"], alone.evals["top1"], atol=2e-3)
    assert group[0].history["loss"][-5:].mean() < group[0].history["loss"][:5].mean()
    assert group[0].scores["top3"] >= group[0].scores["top1"] > group[0].evals["top1"][0]
    assert M.correct_z(group[0]).shape == (594,)
    assert M.train_one("z", a=5.0, b=1.0, seed=1, epochs=2) is alone                  # cached


def test_invariance_panel_redraws_in_place():
    o, y = batch(7, n=8, D=10)
    panel = M.invariance_panel(o, y, a=1.0, b=3.0)
    curve = panel.fig.axes[0].lines[0]
    z0, ce0 = panel.state["z"].clone(), panel.state["ce"].clone()
    panel.controls["alpha"].value = 5.0
    panel.controls["beta"].value = -3.0
    assert panel.fig.axes[0].lines[0] is curve
    assert torch.allclose(panel.state["z"], z0, atol=1e-9) and not torch.allclose(panel.state["ce"], ce0)
    assert np.allclose(panel.fig.axes[1].lines[0].get_ydata(), z0.numpy())
    panel.controls["b"].value = 3.5
    assert panel.state["unreachable"] and "unreachable" in panel.fig.axes[0].get_title()
    panel.controls["a"].value = 5.0
    assert np.allclose(panel.state["z"], M.z_loss(o, y, a=5.0, b=3.5, reduction="none"))


def test_training_panel_trains_and_caches():
    panel = M.training_panel(epochs=1)
    first = panel.state["result"]
    assert first["run"].params["loss"] == "z" and first["ce"].params["loss"] == "ce"
    panel.controls["k"].value = 1
    panel.train()
    assert panel.state["result"]["run"] is first["run"]
    panel.controls["loss"].value = "ce"
    panel.train()
    assert panel.state["result"]["run"] is first["ce"]
