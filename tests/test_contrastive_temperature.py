"""lossviz.papers.contrastive_temperature: the self-supervised runs of notebook 09 (short ones), the push entropy read
from the gradient, and the two panels driven without a browser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz import augment, contrastive as C, data
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


def test_short_run_records_history_scores_and_is_cached():
    run = TT.train_two_view(tau=0.5, epochs=1, batch_size=64, progress=False)
    assert len(run.history["loss"]) == 898 // 64
    assert run.history["loss"][0] == pytest.approx(math.log(2 * 64 - 1), abs=0.1)   # collapsed start
    assert (run.history["entropy"] > 0.9).all()                                     # tau = 0.5: near uniform push
    assert run.z_test.shape == (899, 32) and np.allclose(np.linalg.norm(run.z_test, axis=1), 1, atol=1e-5)
    assert -4 < run.uniformity < 0 and -1 < run.tolerance <= 1 and 0 <= run.scores["alignment"] <= 4
    assert "tolerance" in repr(run)
    assert TT.train_two_view(tau=0.5, epochs=1, batch_size=64, progress=False) is run
    other = TT.train_two_view(tau=0.5, epochs=1, batch_size=64, seed=1, progress=False)
    assert other is not run and not np.array_equal(other.z_test, run.z_test)
    # a knob the loss does not read is not part of the cache key
    assert TT.train_two_view(tau=0.5, frac=0.3, epochs=1, batch_size=64, progress=False) is run


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


def test_temperature_panel_redraws_on_tau_and_anchor(batch):
    S, y = batch
    panel = TT.temperature_panel(S, y, tau=0.2)
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
