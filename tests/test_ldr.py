"""LDR-KL and ALDR-KL (lossviz.papers.ldr): the loss against the worst case computed from its
definition and against a loop of the closed form, values and gradients; the three limits; ALDR's
lambda update and its zero-gradient penalty; label noise; the stacked trainer; the panels; bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz import train as T
from lossviz.papers import ldr as M

pytestmark = pytest.mark.usefixtures("one_thread")

LAMS = [0.05, 0.3, 1.0, 3.0, 10.0, 100.0]


def batch(seed=0, n=7, k=5, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, k, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g)


def loop_loss(f, y, lam, c):
    """From the paper's closed form, one sample and one class at a time (no log-sum-exp)."""
    out = []
    for i in range(len(y)):
        K = f.shape[1]
        s = sum(torch.exp((f[i, k] - f[i, y[i]] + (c if k != y[i] else 0.0)) / lam) for k in range(K))
        out.append(lam * torch.log(s / K))
    return torch.stack(out)


def primal(f, y, lam, c, p):
    """The objective of the max: sum_k p_k (delta_k + c_k) - lam KL(p || 1/K), at a given p."""
    K = f.shape[1]
    d = f - f.gather(1, y[:, None]) + c * (1 - F.one_hot(y, K).to(f.dtype))
    return (p * d).sum(1) - lam * (p * torch.log(p * K)).sum(1)


@pytest.mark.parametrize("lam", [0.3, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("c", [0.0, 0.5])
def test_loss_and_gradient_match_the_loop(lam, c):
    f, y = batch(1)
    f1, f2 = f.clone().requires_grad_(True), f.clone().requires_grad_(True)
    ours, ref = M.ldr_loss(f1, y, lam=lam, margin=c), loop_loss(f2, y, lam, c).mean()
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, rtol=1e-12)
    assert torch.allclose(f1.grad, f2.grad, atol=1e-12)


@pytest.mark.parametrize("lam", LAMS)
def test_the_loss_is_the_worst_case_and_its_gradient_is_p_star_minus_e_y(lam):
    f, y = batch(2)
    p = M.worst_case_p(f, y, lam=lam, margin=0.2)
    psi = M.ldr_loss(f, y, lam=lam, margin=0.2, reduction="none")
    assert torch.allclose(primal(f, y, lam, 0.2, p), psi, atol=1e-9)           # p* attains the max
    g = torch.Generator().manual_seed(3)
    for _ in range(5):                                                         # and no other p beats it
        q = torch.softmax(3 * torch.randn(f.shape, generator=g, dtype=f.dtype), 1)
        assert bool((primal(f, y, lam, 0.2, q) <= psi + 1e-9).all())
    G = lv.logit_weights(M.ldr_loss, f, y, lam=lam, margin=0.2, reduction="none")
    assert torch.allclose(G, p - F.one_hot(y, f.shape[1]).to(f.dtype), atol=1e-10)
    pull = lv.sample_weights(M.ldr_loss, f, y, lam=lam, margin=0.2, reduction="none")
    assert torch.allclose(pull, 1 - p.gather(1, y[:, None])[:, 0], atol=1e-10)


def test_the_three_limits():
    f, y = batch(4)
    K = f.shape[1]
    assert torch.allclose(M.ldr_loss(f, y, lam=1.0), F.cross_entropy(f, y) - math.log(K), atol=1e-12)
    for lam in (0.1, 0.01, 0.001):
        gap = M.ldr_loss(f, y, lam=lam, margin=0.3, reduction="none") - M.hinge_limit(f, y, margin=0.3, reduction="none")
        assert bool((gap <= 1e-12).all() and (gap >= -lam * math.log(K) - 1e-12).all())
    sym = M.symmetric_limit(f, y, margin=0.3, reduction="none")
    errs = [float((M.ldr_loss(f, y, lam=lam, margin=0.3, reduction="none") - sym).abs().max()) for lam in (10, 100, 1000)]
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5 and errs[2] < 0.01   # O(1/lambda)
    # the symmetric limit: its sum over all K labels is the same for every logit vector
    tot = sum(M.symmetric_limit(f, torch.full_like(y, k), reduction="none") for k in range(K))
    assert torch.allclose(tot, torch.full_like(tot, 0.0), atol=1e-12)


def test_stable_at_tiny_lambda_and_float32():
    f = torch.tensor([[0.0, 300.0, 0.0]])
    assert torch.isfinite(M.ldr_loss(f, torch.tensor([0]), lam=0.01))
    assert torch.allclose(M.ldr_loss(f, torch.tensor([0]), lam=0.01), torch.tensor(300.0 - 0.01 * math.log(3)), atol=1e-3)


def test_normalisations():
    f, _ = batch(5)
    a = M.normalise(f, "ldr")
    assert bool((a > 0).all()) and torch.allclose(a.mean(1), torch.ones(len(f), dtype=f.dtype))
    b = M.normalise(f, "aldr")
    assert torch.allclose(b.abs().mean(1), torch.ones(len(f), dtype=f.dtype))
    assert torch.allclose(M.normalise(3 * f, "aldr"), b)                       # scale-free
    assert torch.equal(M.normalise(f, "none"), f)


def test_aldr_lambda_matches_the_formula_and_its_range():
    f, y = batch(6, n=50, k=10, scale=3.0)
    old = torch.full((50,), 4.0, dtype=f.dtype)
    lam = M.aldr_lambda(f, old, lam0=3.0, alpha=2.0)
    for i in range(50):                                                         # a loop from the code's steps
        p = [math.exp(float(f[i, k]) / 4.0) for k in range(10)]
        p = [v / sum(p) + 1e-5 for v in p]
        p = [v / sum(p) for v in p]
        kl = sum(v * math.log(v * 10) for v in p)
        assert abs(float(lam[i]) - 3.0 * (1 - kl / (2.0 * math.log(10)))) < 1e-9
    assert bool((lam <= 3.0).all() and (lam >= 1.5).all())
    assert torch.allclose(M.aldr_lambda(torch.zeros(3, 10), torch.ones(3), lam0=3.0), torch.full((3,), 3.0))


def test_the_aldr_penalty_has_no_gradient():
    f, y = batch(7)
    lam_i = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], dtype=f.dtype)
    a = f.clone().requires_grad_(True)
    b = f.clone().requires_grad_(True)
    M.aldr_loss(a, y, lam_i, lam0=8.0, alpha=2.0, margin=0.1).backward()
    M.ldr_loss(b, y, lam=lam_i, margin=0.1).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-14)
    val = M.aldr_loss(f, y, lam_i, lam0=8.0, alpha=2.0, margin=0.1) - M.ldr_loss(f, y, lam=lam_i, margin=0.1)
    assert float(val) < 0                                                       # but the value moves


def test_bad_input_says_what_is_wrong():
    f, y = batch(0)
    with pytest.raises(ValueError, match="lam"):
        M.ldr_loss(f, y, lam=0.0)
    with pytest.raises(ValueError, match="lam"):
        M.ldr_loss(f, y, lam=-1.0)
    with pytest.raises(ValueError, match="margin"):
        M.ldr_loss(f, y, margin=-0.1)
    with pytest.raises(ValueError, match="NaN"):
        M.ldr_loss(f.clone().fill_(float("nan")), y)
    with pytest.raises(ValueError, match="integer"):
        M.ldr_loss(f, y.float())
    with pytest.raises(ValueError, match="shape"):
        M.ldr_loss(f, y[:3])
    with pytest.raises(ValueError, match="dimensions"):
        M.ldr_loss(f[0], y[:1])
    with pytest.raises(ValueError, match="class ids"):
        M.ldr_loss(f, y + 10)
    with pytest.raises(ValueError, match="one value per sample"):
        M.ldr_loss(f, y, lam=torch.ones(3, dtype=f.dtype))
    with pytest.raises(ValueError, match="alpha"):
        M.aldr_lambda(f, torch.ones(len(f)), alpha=1.0)
    with pytest.raises(ValueError, match="reduction"):
        M.ldr_loss(f, y, reduction="max")
    with pytest.raises(ValueError, match="loss"):
        M.train_ldr("hinge")
    with pytest.raises(ValueError, match="rate"):
        M.flip_labels(y, 1.5, 5)


def test_flip_labels_flips_to_another_class_and_nests():
    y = torch.arange(10).repeat(300)
    noisy, flipped = M.flip_labels(y, 0.4, 10, seed=1)
    assert bool((noisy[flipped] != y[flipped]).all() and (noisy[~flipped] == y[~flipped]).all())
    assert abs(float(flipped.float().mean()) - 0.4) < 0.03
    _, more = M.flip_labels(y, 0.6, 10, seed=1)
    assert bool((more | ~flipped).all())


def test_the_stacked_trainer_is_separate_training_and_fills_the_cache():
    T.clear_cache()
    runs = M.paired_runs([("aldr", 3.0, 0.4)], seeds=[0, 1], epochs=2, progress=False)[("aldr", 3.0, 0.4)]
    alone = M.train_ldr("aldr", 3.0, noise=0.4, epochs=2, seed=1, progress=False, cache=False)
    assert np.allclose(alone.evals["test_acc"], runs[1].evals["test_acc"])
    assert np.allclose(alone.lam_i, runs[1].lam_i, atol=1e-5)
    assert M.train_ldr("aldr", 3.0, noise=0.4, epochs=2, seed=1, progress=False) is runs[1]
    r = runs[0]
    assert r.lam_i.shape == r.flipped.shape and bool((r.lam_i <= 3.0 + 1e-6).all() and (r.lam_i >= 1.5).all())
    assert r.logits.shape == (M.HEAD, 10) and r.evals["epoch"][-1] == 2
    assert np.isclose(r.evals["lam_flipped"][-1], r.lam_i[r.flipped].mean(), atol=1e-5)


def test_worst_case_panel_redraws_in_place():
    f, y = batch(8, n=40, k=10)
    panel = M.worst_case_panel(f, y, lam=1.0)
    ax0, ax1 = panel.fig.axes[:2]
    bars, curve = list(ax0.patches), ax1.lines[0]
    for lam in (0.05, 1.0, 50.0):
        panel.controls["lam"].value = lam
        assert list(ax0.patches) == bars and ax1.lines[0] is curve                # moved, not redrawn
        p = M.worst_case_p(f[:1], y[:1], lam=lam)[0]
        assert torch.allclose(panel.state["p"], p)
        assert np.allclose([b.get_height() for b in bars], p.numpy())
    assert float(panel.state["p"].max()) < 0.2                                  # lambda = 50: near uniform
    panel.controls["lam"].value = 0.05
    assert float(panel.state["p"].max()) > 0.9                                  # near one-hot: the hinge
    panel.controls["margin"].value = 0.5
    assert torch.allclose(panel.state["pull"], lv.sample_weights(M.ldr_loss, f, y, lam=0.05, margin=0.5, reduction="none"))


def test_training_panel_trains_caches_and_flags_stale_settings():
    panel = M.training_panel(epochs=10)
    first = panel.state["result"]
    assert first["run"].params["loss"] == "aldr" and "ALDR" in panel.status.value
    panel.controls["loss"].value = "ce"
    assert panel.state["stale"]
    panel.train()
    assert panel.state["result"]["run"] is first["ce"]
    panel.controls["loss"].value = "aldr"
    panel.train()
    assert panel.state["result"]["run"] is first["run"] and not panel.state["stale"]
