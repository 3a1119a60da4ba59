"""Comp-sum losses (lossviz.papers.comp_sum): the loss against a loop written from the paper's
Phi^tau(u), values and gradients; the per-sample weight identity; the limits; label noise; the
stacked trainer against separate runs; the panels; bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz import train as T
from lossviz.papers import comp_sum as M

pytestmark = pytest.mark.usefixtures("one_thread")

TAUS = [0.0, 0.5, 1.0, 1.5, 1.7, 2.0, 3.0]


def batch(seed=0, n=9, c=5, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, generator=g, dtype=dtype), torch.randint(0, c, (n,), generator=g)


def loop_loss(z, y, tau):
    """From the paper, one sample at a time: u = sum_{k != y} exp(z_k - z_y), Phi^tau(u)."""
    terms = []
    for i in range(len(y)):
        u = sum(torch.exp(z[i, k] - z[i, y[i]]) for k in range(z.shape[1]) if k != y[i])
        terms.append(torch.log(1 + u) if tau == 1 else ((1 + u) ** (1 - tau) - 1) / (1 - tau))
    return torch.stack(terms)


@pytest.mark.parametrize("tau", TAUS)
def test_loss_and_gradient_match_the_loop(tau):
    z, y = batch(1)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    ours, ref = M.comp_sum_loss(z1, y, tau=tau), loop_loss(z2, y, tau).mean()
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(z1.grad, z2.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(M.comp_sum_formula(z, y, tau=tau, reduction="none"), loop_loss(z, y, tau), atol=1e-12)


@pytest.mark.parametrize("tau", TAUS)
def test_every_member_is_cross_entropy_times_p_y_to_the_tau_minus_one(tau):
    z, y = batch(2, n=12, c=7)
    p = torch.softmax(z, dim=1)
    p_y = p[torch.arange(len(y)), y]
    G = lv.logit_weights(M.comp_sum_loss, z, y, tau=tau, reduction="none")
    assert torch.allclose(G, p_y[:, None] ** (tau - 1) * (p - F.one_hot(y, 7)), rtol=1e-10, atol=1e-12)
    w = lv.sample_weights(M.comp_sum_loss, z, y, relative_to_ce=True, tau=tau, reduction="none")
    assert torch.allclose(w, p_y ** (tau - 1), rtol=1e-10)
    assert torch.allclose(M.p_true(z, y), p_y)


def test_the_named_members_and_the_limits():
    z, y = batch(3, n=20, c=10)
    p_y = torch.softmax(z, 1)[torch.arange(20), y]
    loss = lambda tau: M.comp_sum_loss(z, y, tau=tau, reduction="none")  # noqa: E731
    assert torch.allclose(loss(1.0), F.cross_entropy(z, y, reduction="none"), atol=1e-14)
    assert torch.allclose(loss(2.0), 1 - p_y, atol=1e-15)                        # MAE
    assert torch.allclose(loss(0.0), 1 / p_y - 1, rtol=1e-12)                    # sum-exp
    assert torch.allclose(loss(1.7), (1 - p_y ** 0.7) / 0.7, rtol=1e-12)         # GCE, q = 0.7
    log_p = p_y.log()
    for eps in (-1e-4, 1e-4, 1e-5):                       # l_{1+eps} = -log p - eps (log p)^2 / 2 + O(eps^2)
        gap = loss(1 + eps) - loss(1.0)
        assert float(gap.abs().mean()) < 1e-3
        assert torch.allclose(gap, -eps * log_p ** 2 / 2, atol=1e-6)
    assert torch.equal(loss(1 + 1e-7), loss(1.0))           # within 1e-6 of 1: cross-entropy itself
    # the loss falls as tau rises, at every p_y (Phi^tau decreases in tau)
    values = torch.stack([loss(t) for t in TAUS])
    assert bool((values[:-1] >= values[1:] - 1e-12).all())


def test_reductions_and_the_stable_form_where_the_formula_overflows():
    z, y = batch(4)
    per = M.comp_sum_loss(z, y, tau=1.5, reduction="none")
    assert torch.allclose(M.comp_sum_loss(z, y, tau=1.5, reduction="sum"), per.sum())
    assert torch.allclose(M.comp_sum_loss(z, y, tau=1.5), per.mean())
    far = torch.tensor([[0.0, 200.0, 0.0]]), torch.tensor([0])                 # p_y = e^-200
    assert not torch.isfinite(M.comp_sum_formula(*far, tau=0.0))              # e^{200} in float32
    for tau in (0.0, 0.5, 1.0, 2.0):
        x = far[0].clone().requires_grad_(True)
        value = M.comp_sum_loss(x, far[1], tau=tau)
        value.backward()
        assert torch.isfinite(value) and bool(torch.isfinite(x.grad).all())
    assert abs(float(M.comp_sum_loss(*far, tau=2.0)) - 1.0) < 1e-6


def test_bad_input_says_what_is_wrong():
    z, y = batch(5)
    with pytest.raises(ValueError, match="tau"):
        M.comp_sum_loss(z, y, tau=-0.5)
    with pytest.raises(ValueError, match="NaN"):
        M.comp_sum_loss(torch.full((3, 4), float("nan")), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class ids"):
        M.comp_sum_loss(z, y.float())
    with pytest.raises(ValueError, match="2 dimensions"):
        M.comp_sum_loss(z[0], y[:1])
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\]"):
        M.comp_sum_loss(z, torch.full((9,), 5))
    with pytest.raises(ValueError, match="shape"):
        M.comp_sum_loss(z, y[:3])
    with pytest.raises(ValueError, match="at least 2 classes"):
        M.comp_sum_loss(z[:, :1], torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        M.comp_sum_loss(z, y, reduction="max")
    with pytest.raises(ValueError, match="rate"):
        M.flip_labels(y, 1.5, 5)
    with pytest.raises(ValueError, match="integer class ids"):
        M.flip_labels(y.float(), 0.4, 5)
    with pytest.raises(ValueError, match="class ids"):
        M.flip_labels(y, 0.4, 3)
    with pytest.raises(ValueError, match="noise"):
        M.train_comp_sum(1.0, noise=-0.1)
    with pytest.raises(ValueError, match="2 distinct seeds"):
        M.paired_runs([(1.0, 0.4)], seeds=[0])


def test_flip_labels_flips_to_another_class_uniformly_and_nests():
    y = torch.arange(10).repeat(2000)
    noisy, flipped = M.flip_labels(y, 0.4, 10, seed=3)
    assert torch.equal(flipped, noisy != y)                                     # never flipped to itself
    assert abs(float(flipped.float().mean()) - 0.4) < 0.02
    shift = ((noisy - y) % 10)[flipped]
    counts = torch.bincount(shift, minlength=10)
    assert counts[0] == 0 and float(counts[1:].min()) > 0.8 * float(counts[1:].max())   # the other 9, evenly
    more, flipped_more = M.flip_labels(y, 0.6, 10, seed=3)
    assert bool((flipped_more | ~flipped).all())                                # a higher rate flips a superset
    assert torch.equal(more[flipped], noisy[flipped])                           # ... to the same classes
    same, _ = M.flip_labels(y, 0.4, 10, seed=3)
    assert torch.equal(same, noisy) and not bool(M.flip_labels(y, 0.0, 10)[1].any())


def test_noisy_digits_is_the_spec_split():
    d = M.noisy_digits(0.4, seed=1)
    assert d.x_train.shape == (1203, 64) and d.x_test.shape == (594, 64)
    assert torch.equal(d.flipped, d.y_train != d.y_clean)
    assert abs(float(d.flipped.float().mean()) - 0.4) < 0.05
    assert float(d.x_train.mean(0).abs().max()) < 1e-5                          # standardised on train
    assert torch.equal(M.noisy_digits(0.0, seed=1).y_clean, d.y_clean)          # the noise leaves the split alone


def test_the_stacked_trainer_is_separate_training():
    """Two seeds trained together equal each trained alone (Adam is elementwise, copies share nothing)."""
    together = M.paired_runs([(1.5, 0.4)], seeds=[0, 1], epochs=2, progress=False)[(1.5, 0.4)]
    T.clear_cache()
    for s, run in zip((0, 1), together):
        alone = M.train_comp_sum(1.5, noise=0.4, epochs=2, seed=s, progress=False)
        assert np.allclose(alone.history["loss"], run.history["loss"], rtol=1e-5)
        x = M.noisy_digits(0.4, seed=s).x_test
        with torch.no_grad():
            assert torch.allclose(alone.network(x), run.network(x), atol=1e-4)
        assert alone.params == run.params
    # the members start as classifier() seeded by their seed
    stack = M.StackedClassifier([4, 7])
    torch.manual_seed(7)
    net = M.classifier()
    x = torch.randn(5, 64)
    assert torch.allclose(stack(x[None].expand(2, 5, 64))[1], net(x), atol=1e-6)
    assert torch.allclose(stack.member(1)(x), net(x), atol=1e-6)


def test_paired_runs_fill_the_cache_and_record_what_they_say():
    E = M.EVAL_EVERY
    runs = M.paired_runs([(2.0, 0.4)], seeds=[0, 1], epochs=E + 1, progress=False)[(2.0, 0.4)]
    assert M.train_comp_sum(2.0, noise=0.4, epochs=E + 1, seed=1, progress=False) is runs[1]
    r = runs[0]
    assert list(r.evals["epoch"]) == [0, E, E + 1] and len(r.history["loss"]) == (E + 1) * 10
    d = M.noisy_digits(0.4, seed=0)
    with torch.no_grad():
        z_tr, z_te = r.network(d.x_train), r.network(d.x_test)
    pred = z_tr.argmax(1)
    assert math.isclose(r.scores["test_acc"], float((z_te.argmax(1) == d.y_test).float().mean()), abs_tol=1e-6)
    assert math.isclose(r.evals["memorised"][-1], float((pred == d.y_train)[d.flipped].float().mean()), abs_tol=1e-6)
    p_y = M.p_true(z_tr, d.y_train).double()
    pull = p_y * (1 - p_y)                                                      # MAE: p_y^(tau-1) (1 - p_y)
    assert math.isclose(r.evals["flipped_pull"][-1], float(pull[d.flipped].sum() / pull.sum()), rel_tol=1e-4)
    assert math.isclose(r.evals["w_clean"][-1], float(p_y[~d.flipped].mean()), rel_tol=1e-4)
    assert "MAE" in repr(r)


def test_weight_curves_come_from_sample_weights():
    from lossviz import plots

    fig, axes = plots.new_figure(3)
    out = M.plot_weight_curves(axes[0], taus=(0.0, 1.0, 2.0))
    for tau, (p, w) in out.items():
        assert torch.allclose(w, p ** (tau - 1), rtol=1e-9)
    z = M.logits_with_margin(torch.tensor([0.0, 2.0]), 10)
    assert torch.allclose(M.p_true(z, torch.zeros(2, dtype=torch.long)),
                          1 / (1 + 9 * torch.exp(-torch.tensor([0.0, 2.0], dtype=torch.float64))))


def test_weights_panel_redraws_in_place():
    z, y = batch(6, n=60, c=10, scale=1.0)
    z = z + 3 * F.one_hot(y, 10)                           # a network that knows the true labels
    panel = M.weights_panel(z, y, tau=1.0, noise=0.4)
    curve = panel.fig.axes[0].lines[-1]
    flipped = panel.state["flipped"]
    assert 0 < int(flipped.sum()) < 60
    shares = {}
    for tau in (0.0, 1.0, 2.0):
        panel.controls["tau"].value = tau
        shares[tau] = panel.state["share"]
        assert panel.fig.axes[0].lines[-1] is curve                             # moved, not redrawn
        assert np.allclose(curve.get_ydata(), np.logspace(-4, 0, 121) ** (tau - 1))
        p_y = M.p_true(z, panel.state["labels"])
        assert torch.allclose(panel.state["w"], p_y ** (tau - 1), rtol=1e-9)
    assert shares[0.0] > shares[1.0] > flipped.double().mean() > shares[2.0]
    assert np.isclose(panel.state["shares"][-1], shares[2.0]) and np.isclose(panel.state["shares"][0], shares[0.0])
    panel.controls["noise"].value = 0.0
    assert not bool(panel.state["flipped"].any()) and panel.state["share"] == 0.0
    panel.controls["noise"].value = 0.6
    assert bool((panel.state["flipped"] | ~flipped).all())                      # nested flips


def test_training_panel_trains_caches_and_flags_stale_settings():
    panel = M.training_panel(epochs=20, tau=2.0)
    first = panel.state["result"]
    assert first["run"].params["tau"] == 2.0 and first["ce"].params["tau"] == 1.0
    assert first["run"].params["epochs"] == 20 and "MAE" in panel.status.value
    panel.controls["tau"].value = 1.0
    assert panel.state["stale"]
    panel.train()
    assert panel.state["result"]["run"] is first["ce"]                          # the CE reference, from the cache
    panel.controls["tau"].value = 2.0
    panel.train()
    assert panel.state["result"]["run"] is first["run"] and not panel.state["stale"]
