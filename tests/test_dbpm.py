"""DBPM (lossviz.papers.dbpm): the per-pair loss and its weighted mean against loops written from the
formula (values and gradients, float64), the threshold rule against the formula and the official
code's numpy recipe, the injected ground truth, the training run's bookkeeping, panels, bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

import lossviz as lv
from lossviz import augment
from lossviz.papers import dbpm as BP
from lossviz.train import Run

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(B=6, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(2 * B, dim, generator=g, dtype=torch.float64), dim=1)
    return z @ z.T, augment.two_view_labels(B)


def reference_pair_losses(S, labels, tau):
    """Per item k: 1/2 of the two views' -log e^{s_ii'/tau} / (e^{s_ii'/tau} + sum_{n != i, i'} e^{s_in/tau})."""
    n = len(labels)
    out = {}
    for i in range(n):
        p = next(j for j in range(n) if j != i and labels[j] == labels[i])
        denom = torch.exp(S[i, p] / tau)
        for k in range(n):
            if k not in (i, p):
                denom = denom + torch.exp(S[i, k] / tau)
        term = -(S[i, p] / tau - torch.log(denom))
        key = int(labels[i])
        out[key] = out.get(key, 0.0) + term / 2
    return torch.stack([out[k] for k in sorted(out)])


@pytest.mark.parametrize("seed,tau", [(0, 0.2), (1, 0.5), (2, 0.07)])
def test_pair_losses_and_weighted_loss_match_loops(seed, tau):
    S, labels = batch(B=5, seed=seed)
    w = torch.rand(5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    ell = BP.pair_losses(S, labels, tau=tau)
    ref = reference_pair_losses(S, labels, tau)
    assert torch.allclose(ell, ref, atol=1e-12)
    assert torch.allclose(ell.mean(), lv.nt_xent_loss(S, labels, tau=tau), atol=1e-12)
    # values and gradients (dL/dS, General Pair Weighting) of the weighted loss
    leaf = S.clone().requires_grad_(True)
    (w * reference_pair_losses(leaf, labels, tau)).mean().backward()
    assert torch.allclose(BP.dbpm_loss(S, labels, tau=tau, w=w), (w * ref).mean(), atol=1e-12)
    G = lv.pair_weights(BP.dbpm_loss, S, labels, signed=True, tau=tau, w=w)
    assert torch.allclose(G, leaf.grad, atol=1e-12)


def test_weights_carry_no_gradient_and_scale_a_pairs_weights():
    S, labels = batch(B=4, seed=3)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    loss = BP.dbpm_loss(S.requires_grad_(True), labels, tau=0.2, w=w)
    loss.backward()
    assert w.grad is None or bool((w.grad == 0).all())
    G = lv.pair_weights(BP.dbpm_loss, S.detach(), labels, tau=0.2, w=w.detach())
    # weight 0 on item 1: its views (rows 1 and 5) neither pull nor push as anchors
    assert float(G[[1, 5]].abs().sum()) == 0.0 and float(G[0].abs().sum()) > 0
    plain = lv.pair_weights(BP.dbpm_loss, S.detach(), labels, tau=0.2)
    assert torch.allclose(plain, lv.pair_weights(lv.nt_xent_loss, S.detach(), labels, tau=0.2), atol=1e-14)


def test_pair_losses_label_order_and_float32():
    S, labels = batch(B=4, seed=4)
    perm = torch.tensor([3, 0, 2, 1])
    relabelled = perm[labels]                  # item k now carries label perm[k]
    ell = BP.pair_losses(S, labels, tau=0.2)
    assert torch.allclose(BP.pair_losses(S, relabelled, tau=0.2)[perm], ell, atol=1e-12)
    assert BP.pair_losses(S.float(), labels).dtype == torch.float32


def test_history_scores_match_the_official_recipe():
    rng = np.random.default_rng(0)
    E, e, n = 10, 6, 7
    memory = rng.uniform(1, 6, size=(e, n))
    ref = [np.mean(memory[:, i] * [(1 + t) / E for t in range(e)]) for i in range(n)]
    assert np.allclose(BP.history_scores(torch.tensor(memory), E).numpy(), ref, atol=1e-12)


def test_threshold_rule_against_the_formula():
    rng = np.random.default_rng(1)
    for trial in range(5):
        m = rng.normal(1.0, 0.3, size=200)
        m[:3] -= 2.0
        m[3:8] += 3.0
        c_np, c_fp = rng.uniform(1, 4, size=2)
        f = BP.flag_bad_pairs(torch.tensor(m), c_np=c_np, c_fp=c_fp)
        mu, sd = np.mean(m), np.std(m)
        assert math.isclose(f.mu, mu, rel_tol=1e-12) and math.isclose(f.sigma, sd, rel_tol=1e-12)
        assert np.array_equal(f.noisy.numpy(), m <= mu - c_np * sd)
        assert np.array_equal(f.faulty.numpy(), m >= mu + c_fp * sd)
    assert f.faulty[3:8].all() and f.noisy.sum() + f.faulty.sum() > 0


def test_robust_rule_against_numpy_and_a_tail_of_outliers():
    rng = np.random.default_rng(2)
    for n in (200, 201):                                               # even and odd counts
        m = rng.normal(1.0, 0.1, size=n)
        m[:20] -= 0.6                                                  # an easy tail (noisy)
        m[20:40] += rng.uniform(0.6, 3.0, size=20)                    # a long hard tail (faulty)
        f = BP.flag_bad_pairs(torch.tensor(m), c_np=2.0, c_fp=3.0, rule="mad")
        med = np.median(m)
        mad = 1.4826 * np.median(np.abs(m - med))
        assert math.isclose(f.mu, med, rel_tol=1e-12) and math.isclose(f.sigma, mad, rel_tol=1e-12)
        assert np.array_equal(f.noisy.numpy(), m <= med - 2 * mad)
        assert np.array_equal(f.faulty.numpy(), m >= med + 3 * mad)
        # the hard tail inflates sigma and hides the easy one; the robust rule finds both tails
        sigma_rule = BP.flag_bad_pairs(torch.tensor(m), c_np=2.0, c_fp=3.0)
        assert not sigma_rule.noisy[:20].any() and f.noisy[:20].all() and f.faulty[20:40].all()
        assert sigma_rule.faulty.sum() < 20
        report = BP.missed_faulty(torch.tensor(m), torch.tensor([1] * 20 + [2] * 20 + [0] * (n - 40)))
        assert report["missed"] == 20 - int(sigma_rule.faulty.sum())
        assert report["sigma"] > 2 * report["sigma_without_faulty"]
        assert report["clean_max"] < report["cut"] and report["above_clean"] == report["missed"] > 0
    f = BP.flag_bad_pairs(torch.tensor([0.0, 1, 1, 1, 5]), rule="mad")    # MAD 0: nothing flagged
    assert f.sigma == 0 and not f.any.any()


def test_threshold_is_inclusive_and_silent_on_equal_scores():
    f = BP.flag_bad_pairs(torch.tensor([-1.0, 1.0]), c_np=1, c_fp=1)      # mu 0, sigma 1: both on a cut
    assert f.noisy.tolist() == [True, False] and f.faulty.tolist() == [False, True]
    f = BP.flag_bad_pairs(torch.full((5,), 2.0))
    assert f.sigma == 0 and not f.any.any()
    assert (BP.flag_weights(torch.ones(5), f) == 1).all()


def test_weight_function_forms():
    ell = torch.linspace(0, 6, 25, dtype=torch.float64)
    for mu, sigma in ((1.0, 0.3), (2.5, 1.2)):
        assert np.allclose(BP.weight_function(ell, mu, sigma).numpy(), norm(mu, sigma).pdf(ell.numpy()), atol=1e-14)
        w = BP.weight_function(ell, mu, sigma, form="normalised")
        assert float(w.max()) <= 1 and float(BP.weight_function(mu, mu, sigma, form="normalised")) == 1
    assert float(BP.weight_function(1.0, 1.0, 0.3)) > 1 > float(BP.weight_function(1.0, 1.0, 0.45))


def test_flag_weights_only_touch_flagged_pairs():
    m = torch.tensor([-4.0, 0, 0, 0, 0, 0, 0, 4], dtype=torch.float64)     # mu 0, sigma 2: cuts at -3 and 3
    f = BP.flag_bad_pairs(m, c_np=1.5, c_fp=1.5)
    ell = torch.tensor([0.5, 2, 2, 2, 2, 2, 2, 6], dtype=torch.float64)
    w = BP.flag_weights(ell, f, form="normalised")
    assert f.noisy.tolist()[0] and f.faulty.tolist()[-1]
    assert (w[1:-1] == 1).all()
    assert torch.allclose(w[[0, -1]], BP.weight_function(ell[[0, -1]], f.mu, f.sigma, form="normalised"))


def test_precision_recall():
    truth = torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool)
    assert BP.precision_recall(torch.tensor([1, 0, 1, 0, 0], dtype=torch.bool), truth) == (0.5, 1 / 3)
    p, r = BP.precision_recall(torch.zeros(5, dtype=torch.bool), truth)
    assert math.isnan(p) and r == 0.0


def test_inject_ground_truth():
    x = torch.randn(200, 40)
    bad = BP.inject(x, noisy=0.1, faulty=0.15, seed=3)
    kind = bad.kind
    assert bad.counts() == {"clean": 150, "noisy": 20, "faulty": 30}
    idx = torch.arange(200)
    assert (bad.partner[kind == BP.FAULTY] != idx[kind == BP.FAULTY]).all()
    assert (bad.partner[kind != BP.FAULTY] == idx[kind != BP.FAULTY]).all()
    assert (bad.pattern[kind != BP.NOISY] == 0).all() and (bad.pattern[kind == BP.NOISY].abs().sum(1) > 0).all()
    again = BP.inject(x, noisy=0.1, faulty=0.15, seed=3)
    assert torch.equal(again.kind, kind) and torch.equal(again.partner, bad.partner)
    assert not torch.equal(BP.inject(x, noisy=0.1, faulty=0.15, seed=4).kind, kind)
    # with every augmentation off, the views are the signals the pairs are defined by
    off = dict(shift=0, scale=0.0, shear=0.0, noise=0.0)
    v1, v2 = bad.views(x, idx, 0, **off)
    clean, noisy, faulty = kind == BP.CLEAN, kind == BP.NOISY, kind == BP.FAULTY
    assert torch.equal(v1[clean], x[clean]) and torch.equal(v2[clean], x[clean])
    assert torch.equal(v2[faulty], x[bad.partner[faulty]])
    assert torch.allclose(v1[noisy], 0.2 * x[noisy] + 3.0 * bad.pattern[noisy]) and torch.equal(v1[noisy], v2[noisy])


def test_shared_noise_is_not_shifted_but_signal_noise_is():
    x = torch.zeros(50, 40)
    shift_only = dict(shift=3, scale=0.0, shear=0.0, noise=0.0)
    shared = BP.inject(x, noisy=0.2, faulty=0.0, seed=0)
    sel = torch.nonzero(shared.kind == BP.NOISY).flatten()
    v1, v2 = shared.views(x, sel, 5, **shift_only)
    assert torch.equal(v1, v2)                               # the pattern sits identically on both views
    signal = BP.inject(x, noisy=0.2, faulty=0.0, seed=0, noise="signal")
    v1, v2 = signal.views(x, sel, 5, **shift_only)
    assert not torch.equal(v1, v2)                           # the views shift the pattern


def test_bad_input():
    S, labels = batch(B=4)
    with pytest.raises(ValueError, match="every label exactly twice"):
        BP.pair_losses(S[:7, :7], labels[:7])
    with pytest.raises(ValueError, match="tau"):
        BP.pair_losses(S, labels, tau=0)
    with pytest.raises(ValueError, match="one weight per pair"):
        BP.dbpm_loss(S, labels, w=torch.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        BP.dbpm_loss(S, labels, w=-torch.ones(4))
    with pytest.raises(ValueError, match="unknown form 'gauss'"):
        BP.weight_function(1.0, 1.0, 0.3, form="gauss")
    with pytest.raises(ValueError, match="sigma"):
        BP.weight_function(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        BP.history_scores(torch.tensor([[1.0, math.nan]]), 3)
    with pytest.raises(ValueError, match="between 1 and E"):
        BP.history_scores(torch.ones(4, 3), 3)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        BP.flag_bad_pairs(torch.ones(1))
    with pytest.raises(ValueError, match="c_fp"):
        BP.flag_bad_pairs(torch.ones(3), c_fp=-1)
    with pytest.raises(ValueError, match="unknown rule 'iqr'"):
        BP.flag_bad_pairs(torch.ones(3), rule="iqr")
    with pytest.raises(ValueError, match="same shape"):
        BP.missed_faulty(torch.ones(3), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="faulty and clean"):
        BP.missed_faulty(torch.ones(3), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"noisy .* \[0, 0.5\]"):
        BP.inject(torch.randn(10, 4), noisy=0.6)
    with pytest.raises(ValueError, match="unknown noise 'pink'"):
        BP.inject(torch.randn(10, 4), noise="pink")
    with pytest.raises(ValueError, match="same shape"):
        BP.precision_recall(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="smaller than epochs"):
        BP.train_dbpm(epochs=5, warmup=5)
    with pytest.raises(ValueError, match="unknown method 'moco'"):
        BP.train_dbpm("moco")
    with pytest.raises(ValueError, match="epochs must be an integer"):
        BP.train_dbpm(epochs=True)


def test_training_run_bookkeeping():
    kw = dict(epochs=4, warmup=2, c_fp=1.5, eval_every=2, progress=False)
    dbpm, simclr = BP.train_dbpm("dbpm", **kw), BP.train_dbpm("simclr", **kw)
    assert BP.train_dbpm("dbpm", **kw) is dbpm                       # cached by parameters
    assert np.isfinite(dbpm.memory).all() and dbpm.memory.shape == (4, 2000)
    assert np.array_equal(dbpm.memory[:2], simclr.memory[:2])         # identical until DBPM starts
    assert (simclr.weights == 1).all() and (dbpm.weights[:2] == 1).all()
    e = 3
    f = BP.flag_bad_pairs(BP.history_scores(torch.as_tensor(dbpm.memory[:e]), 4), c_np=2.0, c_fp=1.5)
    assert np.array_equal(dbpm.flags[e] == BP.FAULTY, f.faulty.numpy())
    flagged = f.any.numpy()
    assert flagged.any() and (dbpm.weights[e][~flagged] == 1).all()
    expected = BP.weight_function(torch.as_tensor(dbpm.memory[e][flagged]), f.mu, f.sigma).float().numpy()
    assert np.allclose(dbpm.weights[e][flagged], expected, rtol=1e-4, atol=1e-6)
    assert list(dbpm.evals["epoch"]) == [0, 2, 4] and list(dbpm.evals["iter"]) == [0, 16, 32] and 0 < dbpm.knn < 1
    assert isinstance(dbpm, Run) and dbpm.final("mean_weight") == dbpm.history["mean_weight"][-1]
    assert "dbpm" in repr(dbpm)


def test_rule_comparison_is_paired_by_seed():
    out = BP.rule_comparison([0, 1], epochs=2)
    assert out["seeds"] == [0, 1] and set(out) == {"seeds", *BP.RULES}
    for seed in (0, 1):                                               # the same cached run, flagged by both rules
        run = BP.train_dbpm("simclr", epochs=2, warmup=1, seed=seed, eval_every=2, progress=False)
        m = BP.history_scores(torch.as_tensor(run.memory, dtype=torch.float64), 2)
        for rule in BP.RULES:
            f = BP.flag_bad_pairs(m, rule=rule)
            expected = BP.precision_recall(f.faulty, torch.as_tensor(run.kind) == BP.FAULTY)[1]
            assert out[rule]["faulty_recall"][seed] == expected
    assert all(len(v) == 2 for rule in BP.RULES for v in out[rule].values())


def drawn(fig) -> list:
    """The artists in a panel's axes: a pure-maths panel moves these on a change, never replaces them."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]


def test_threshold_panel_redraws():
    panel = BP.threshold_panel(mu=1.0, sigma=0.5, form="pdf")
    artists = drawn(panel.fig)
    assert panel.state["max_weight"] < 1
    panel.controls["sigma"].value = 0.1
    assert panel.state["max_weight"] > 1 and "up-weights" in panel.status.value
    panel.controls["form"].value = "normalised"
    assert abs(panel.state["max_weight"] - 1) < 1e-3
    before = panel.state["share"][1]
    panel.controls["c_fp"].value = 1.5
    assert panel.state["share"][1] > before
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt


def test_flag_and_training_panels():
    run = BP.train_dbpm("simclr", epochs=4, warmup=2, progress=False)
    panel = BP.flag_panel(run, epoch=2)
    artists = drawn(panel.fig)
    n_before = int(panel.state["flags"].any.sum())
    panel.controls["c_fp"].value = 1.0
    panel.controls["c_np"].value = 1.0
    assert int(panel.state["flags"].any.sum()) > n_before and "precision" in panel.status.value
    panel.controls["c_np"].value = 4.0                                 # the largest c_np: no noisy flag
    assert int(panel.state["flags"].noisy.sum()) == 0
    assert "nan" not in panel.status.value and "precision n/a (nothing flagged)" in panel.status.value
    panel.controls["rule"].value = "mad"
    m = BP.history_scores(torch.as_tensor(run.memory[:2]), 4)
    assert torch.equal(panel.state["flags"].noisy, BP.flag_bad_pairs(m, c_np=4.0, c_fp=1.0, rule="mad").noisy)
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt
    tp = BP.training_panel(epochs=4, method="simclr")
    assert tp.state["result"] is run                                   # the same setting, from the cache
    tp.controls["c_fp"].value = 2.0
    assert tp.state["stale"]
