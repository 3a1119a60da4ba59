"""lossviz.papers.contrastive_temperature: the self-supervised runs of notebook 09 (short ones), the push entropy read
from the gradient, and the two panels driven without a browser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz import augment, contrastive as C, data, plots
from lossviz.papers import contrastive_temperature as TT


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def batch():
    views, y, _ = augment.TwoViewSampler(data.load("digits").x_train, "digits", batch_size=8, seed=0).sample()
    return lv.similarity(views.double()), y


def test_push_entropy_from_the_gradient_is_the_relative_penalty_entropy(batch):
    """For NT-Xent the gradient's push is shared out by r, so its entropy is negative_weight_entropy;
    for the simple loss the push is uniform (entropy 1)."""
    S, y = batch
    _, neg = lv.pair_masks(y)
    for tau in (0.05, 0.3, 2.0):
        H, top = TT.push_entropy(lv.pair_weights(lv.nt_xent_loss, S, y, tau=tau), neg)
        torch.testing.assert_close(H, C.negative_weight_entropy(S, y, tau=tau, normalized=True))
        torch.testing.assert_close(top, C.relative_penalty(S, y, tau=tau).amax(dim=1))
    H, top = TT.push_entropy(lv.pair_weights(C.simple_contrastive_loss, S, y, lam=0.1), neg)
    torch.testing.assert_close(H, torch.ones_like(H))
    torch.testing.assert_close(top, torch.full_like(top, 1 / 14))
    H, top = TT.push_entropy(torch.zeros_like(S), neg)                  # no push at all: (0, 0), never NaN
    assert (H == 0).all() and (top == 0).all()


def test_closer_share_is_the_push_on_negatives_that_beat_the_positive(batch):
    """The share of |dL/dS| over an anchor's negatives that lands on those more similar than its
    positive: for NT-Xent the r-weighted mass of those negatives, for the simple loss (uniform push)
    simply their fraction."""
    S, y = batch
    pos, neg = lv.pair_masks(y)
    closer = TT.closer_than_positive(S, pos, neg)
    s_pos = S[pos]                                                     # one positive per anchor
    for i in range(len(y)):
        expect = {k for k in range(len(y)) if neg[i, k] and S[i, k] > s_pos[i]}
        assert set(closer[i].nonzero().flatten().tolist()) == expect
    assert closer.any() and not (closer & ~neg).any()
    tau = 0.1
    share = TT.closer_share(lv.pair_weights(lv.nt_xent_loss, S, y, tau=tau), S, pos, neg)
    torch.testing.assert_close(share, (C.relative_penalty(S, y, tau=tau) * closer).sum(dim=1))
    share = TT.closer_share(lv.pair_weights(C.simple_contrastive_loss, S, y, lam=0.1), S, pos, neg)
    torch.testing.assert_close(share, closer.sum(1) / neg.sum(1).to(S.dtype))
    assert (TT.closer_share(torch.zeros_like(S), S, pos, neg) == 0).all()          # no push: 0, never NaN


def test_shrink_moves_rows_toward_their_mean_and_keeps_them_unit():
    z = torch.nn.functional.normalize(torch.randn(50, 8, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64), dim=1)
    torch.testing.assert_close(TT.shrink(z, 1.0), z)
    for f in (1e-4, 0.5, 3.0):
        assert torch.allclose(TT.shrink(z, f).norm(dim=1), torch.ones(50, dtype=torch.float64))
    S = [lv.similarity(TT.shrink(z, f)) for f in (1e-4, 0.5, 1.0, 3.0)]
    assert float(S[0].min()) > 0.999                                   # nearly collapsed
    assert float(S[1].mean()) > float(S[2].mean()) > float(S[3].mean())   # less spread, more similar
    with pytest.raises(ValueError, match="factor"):
        TT.shrink(z, 0)


def test_loss_on_batches_scores_a_network_and_the_collapse_limit():
    """The scorer equals the loss computed by hand; along the shrink path a collapsing cloud tends to
    log(1 + k) for the hard loss (k kept negatives) and log(2B - 1) for NT-Xent: properties of the
    losses, for any network."""
    batches = TT.fixed_batches(2, batch_size=16, seed=1)
    assert len(batches) == 2 and batches[0].shape == (32, 64)
    torch.testing.assert_close(TT.fixed_batches(2, batch_size=16, seed=1)[1], batches[1])   # drawn once, fixed
    torch.manual_seed(0)
    net = lv.models.encoder_projector(64, dim=8)
    with torch.no_grad():
        by_hand = np.mean([float(lv.nt_xent_loss(lv.similarity(net(v).double()), augment.two_view_labels(16),
                                                 tau=0.2)) for v in batches])
    assert TT.loss_on_batches(net, batches, tau=0.2) == pytest.approx(by_hand, rel=1e-12)
    path = TT.shrink_path(net, batches, (1e-5, 0.5, 1.0), "hard_nt_xent", tau=1.0, frac=0.25)
    assert path[2] == pytest.approx(TT.loss_on_batches(net, batches, "hard_nt_xent", tau=1.0, frac=0.25))
    assert path[0] == pytest.approx(math.log(1 + math.ceil(0.25 * 30)), abs=1e-3)
    assert TT.loss_on_batches(net, batches, tau=0.5, factor=1e-5) == pytest.approx(math.log(31), abs=1e-3)
    with pytest.raises(ValueError, match="unknown loss"):
        TT.loss_on_batches(net, batches, "triplet")


def test_fraction_closer_on_pixels_and_through_a_network():
    batches = TT.fixed_batches(2, batch_size=32, seed=2)
    pixels = TT.fraction_closer(batches)
    assert 0 < pixels < 1
    assert TT.fraction_closer(batches, torch.nn.Identity()) == pytest.approx(pixels)


def test_short_run_records_history_scores_and_is_cached():
    run = TT.train_two_view(tau=0.5, epochs=1, batch_size=64, progress=False)
    assert len(run.history["loss"]) == 898 // 64
    assert run.history["loss"][0] == pytest.approx(math.log(2 * 64 - 1), abs=0.1)   # collapsed start
    assert (run.history["entropy"] > 0.9).all()                                     # tau = 0.5: near uniform push
    assert ((0 <= run.history["closer_share"]) & (run.history["closer_share"] <= 1)).all()
    assert run.model is not None and not run.model.training                          # kept, in eval mode
    assert run.z_test.shape == (899, 32) and np.allclose(np.linalg.norm(run.z_test, axis=1), 1, atol=1e-5)
    assert -4 < run.uniformity < 0 and -1 < run.tolerance <= 1 and 0 <= run.scores["alignment"] <= 4
    assert "tolerance" in repr(run)
    assert TT.train_two_view(tau=0.5, epochs=1, batch_size=64, progress=False) is run
    other = TT.train_two_view(tau=0.5, epochs=1, batch_size=64, seed=1, progress=False)
    assert other is not run and not np.array_equal(other.z_test, run.z_test)
    # a knob the loss does not read is not part of the cache key
    assert TT.train_two_view(tau=0.5, frac=0.3, epochs=1, batch_size=64, progress=False) is run


def test_init_fine_tunes_a_copy_and_is_part_of_the_cache_key():
    start = TT.train_two_view(tau=0.5, epochs=1, batch_size=64, progress=False)
    before = [p.detach().clone() for p in start.model.parameters()]
    tuned = TT.train_two_view(tau=0.05, epochs=1, batch_size=64, init=start, progress=False)
    assert tuned.model is not start.model and tuned.params["init"] == tuple(sorted(start.params.items()))
    assert all(torch.equal(a, b) for a, b in zip(before, start.model.parameters()))   # the init run is untouched
    fresh = TT.train_two_view(tau=0.05, epochs=1, batch_size=64, progress=False)
    assert fresh is not tuned and abs(fresh.history["loss"][0] - tuned.history["loss"][0]) > 1e-3   # another start
    assert TT.train_two_view(tau=0.05, epochs=1, batch_size=64, init=start, progress=False) is tuned
    with pytest.raises(ValueError, match="init must be a TwoViewRun"):
        TT.train_two_view(init=object(), cache=False)
    with pytest.raises(ValueError, match="dim 32"):
        TT.train_two_view(dim=16, init=start, cache=False)


def test_seeded_dilemma_plot_draws_every_seed_and_the_means():
    runs = [TT.train_two_view(tau=0.5, epochs=1, batch_size=64, seed=s, progress=False) for s in (0, 1)]
    fig, axes = plots.new_figure(1)
    TT.seeded_dilemma_plot(axes[0, 0], {"τ = 0.5": runs})
    offsets = [c.get_offsets() for c in axes[0, 0].collections]
    assert [len(o) for o in offsets] == [2, 1]
    assert offsets[1][0][0] == pytest.approx(np.mean([r.uniformity for r in runs]))


def test_shrink_plot_draws_each_path_relative_to_the_trained_embedding():
    factors = (0.5, 1.0, 2.0)
    paths = {"a": np.array([[3.0, 2.0, 2.5], [5.0, 4.0, 4.5]]), "b": np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])}
    fig, axes = plots.new_figure(1)
    TT.shrink_plot(axes[0, 0], paths, factors, title="t")
    lines = [ln for ln in axes[0, 0].get_lines() if ln.get_label() in paths]
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 0.0, 0.5])          # seed mean, minus its value at 1
    np.testing.assert_allclose(lines[1].get_ydata(), [0.0, 0.0, -1.0])


def test_mnist1d_runs_and_bad_arguments_are_refused():
    run = TT.train_two_view(dataset="mnist1d", tau=0.2, epochs=1, batch_size=256, progress=False, cache=False)
    assert run.z_test.shape == (1000, 32) and np.isfinite(run.history["loss"]).all()
    with pytest.raises(ValueError, match="unknown loss"):
        TT.train_two_view("triplet")
    with pytest.raises(ValueError, match="unknown dataset"):
        TT.train_two_view(dataset="cifar", cache=False)
    with pytest.raises(ValueError, match="epochs must be an integer"):
        TT.train_two_view(epochs=0)
    with pytest.raises(ValueError, match="a temperature of 0"):
        TT.train_two_view(tau=0, epochs=1, cache=False, progress=False)


def drawn(fig) -> list:
    """The artists in a panel's axes: a pure-maths panel moves these on a change, never replaces them."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]


def test_temperature_panel_redraws_on_tau_and_anchor(batch):
    S, y = batch
    panel = TT.temperature_panel(S, y, tau=0.2)
    artists = drawn(panel.fig)
    w0 = panel.state["w_neg"].clone()
    assert float(panel.state["w_pos"]) == pytest.approx(float(w0.sum()))
    panel.controls["tau"].value = 0.02
    assert panel.state["entropy"] < 0.5 and not torch.equal(w0, panel.state["w_neg"])
    H_low = panel.state["entropy"]
    panel.controls["tau"].value = 1.5
    assert panel.state["entropy"] > H_low and panel.state["top_share"] < 0.2
    panel.controls["anchor"].value = 3
    pos, neg = lv.pair_masks(y)
    w_pos, w_neg = C.anchor_nt_xent_weights(float(S[3, pos[3]]), S[3, neg[3]], tau=panel.controls["tau"].value)
    torch.testing.assert_close(panel.state["w_neg"], w_neg)
    assert "anchor 3" in panel.state["status"]
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt
    assert panel.fig.axes[0].get_legend().get_texts()[0].get_text().endswith(f"{float(w_neg.sum()):.3g}")
    panel.controls["tau"].value = 100                                  # out of range: clamped to 2
    assert panel.controls["tau"].value == pytest.approx(2.0)
    with pytest.raises(ValueError, match="exactly one positive"):
        TT.temperature_panel(S, torch.zeros(len(y), dtype=torch.long).index_fill(0, torch.tensor([0]), 1))


def test_training_panel_trains_from_the_cache_and_flags_stale_settings():
    first = TT.train_two_view(tau=0.5, epochs=5, progress=False)
    panel = TT.training_panel(reference_runs={0.5: first}, tau=0.5, epochs=5)
    assert panel.state["result"] is first and not panel.state["stale"]
    panel.controls["loss"].value = "simple"
    assert panel.state["stale"]
    run = panel.train()
    assert run.params["loss"] == "simple" and "lam" in run.params and "tau" not in run.params
    assert np.allclose(run.history["entropy"], 1, atol=1e-5)             # the simple loss pushes uniformly
