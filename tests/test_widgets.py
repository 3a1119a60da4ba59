"""Widget panels driven without a browser: set a control, check what was redrawn."""

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz import train as T
from lossviz import widgets


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.arange(4).repeat_interleave(4)
    return lv.similarity(x), y


def test_weights_panel_redraws_on_every_knob(batch):
    S, y = batch
    panel = widgets.weights_panel(S, y, loss="ms")
    image = panel.fig.axes[1].images[0]
    for name, value in (("beta", 120.0), ("alpha", 0.1), ("lam", -0.3), ("eps", 0.6), ("mining", False)):
        before, drawn = panel.state["W"].clone(), image.get_array().copy()
        panel.controls[name].value = value
        assert not torch.equal(before, panel.state["W"]), name
        assert not np.array_equal(drawn, image.get_array()), name
    expected = lv.pair_weights(lv.ms_loss, S, y, signed=True, **panel.state["knobs"])
    assert torch.equal(panel.state["W"], expected)


def test_weights_panel_shows_only_the_knobs_of_the_chosen_loss(batch):
    panel = widgets.weights_panel(*batch, loss="ms")
    panel.controls["loss"].value = "contrastive"
    assert panel.state["loss"] == "contrastive" and panel.state["knobs"] == {"lam": 0.5}
    assert panel.controls["beta"].layout.display == "none" and panel.controls["lam"].layout.display is None
    fp, fn = panel.state["active"]
    assert fp == 1.0 and 0 <= fn <= 1


def test_sliders_clamp_out_of_range_values(batch):
    panel = widgets.weights_panel(*batch)
    panel.controls["beta"].value = 1e9
    panel.controls["eps"].value = -3
    assert panel.controls["beta"].value == pytest.approx(200) and panel.controls["eps"].value == 0
    assert torch.isfinite(panel.state["W"]).all()


def test_ms_curve_panel_limits():
    panel = widgets.ms_curve_panel(beta=40.0, lam=0.5)
    w_slider = panel.state["w_neg"].clone()
    panel.controls["limit"].value = "λ = -10"
    assert panel.state["lam"] == -10.0 and not torch.equal(w_slider, panel.state["w_neg"])
    line = panel.fig.axes[0].lines[0]
    assert np.allclose(line.get_ydata(), panel.state["w_neg"].numpy())


def test_mining_panel_keeps_more_pairs_with_larger_eps(batch):
    panel = widgets.mining_panel(*batch, eps=0.0)
    kept = [int(panel.state["mined"][1].sum())]
    for eps in (0.2, 0.8):
        panel.controls["eps"].value = eps
        kept.append(int(panel.state["mined"][1].sum()))
    assert kept == sorted(kept) and kept[-1] > kept[0]


def test_training_panel_trains_caches_and_flags_stale_settings():
    T.clear_cache()
    torch.set_num_threads(1)
    panel = widgets.training_panel(data="digits", dim=2, iters=20, autorun=False)
    assert panel.state.get("run") is None
    first = panel.train()
    assert panel.state["run"] is first and "press Train" not in panel.status.value
    panel.controls["beta"].value = 10.0
    assert "press Train" in panel.status.value
    second = panel.train()
    assert second.params["knob_beta"] == 10.0
    panel.controls["beta"].value = 50.0
    assert panel.train() is first  # back to a trained setting: from the cache
    T.clear_cache()


def test_compare_panel_selects_losses_and_metric():
    T.clear_cache()
    torch.set_num_threads(1)
    runs = {n: T.train(n, data="digits", dim=2, iters=20, eval_every=10, progress=False) for n in ("ms", "contrastive")}
    panel = widgets.compare_panel(runs)
    assert panel.state["shown"] == ("ms", "contrastive")
    panel.controls["show"].value = ("contrastive",)
    panel.controls["metric"].value = "map_at_r"
    assert panel.state["shown"] == ("contrastive",)
    assert panel.state["best"]["contrastive"] == pytest.approx(runs["contrastive"].evals["map_at_r"].max())
    T.clear_cache()


def test_training_panel_presets_dimension_and_k():
    T.clear_cache()
    torch.set_num_threads(1)
    panel = widgets.training_panel(data="digits", dim=2, iters=10, autorun=False)
    panel.controls["preset"].value = "paper"
    assert panel.controls["lam"].value == 1.0 and panel.controls["beta"].value == pytest.approx(50.0)
    panel.controls["dim"].value = 16
    panel.controls["k"].value = 1            # no positives in a batch: MS mines nothing, loss exactly 0
    run = panel.train()
    assert run.params["dim"] == 16 and run.params["k"] == 1 and run.params["knob_lam"] == 1.0
    assert (run.history["loss"] == 0).all()
    T.clear_cache()


def test_run_panel_trains_on_press_caches_and_flags_stale_settings():
    calls = []

    def run(values, progress):
        def compute():
            calls.append(values["lr"])
            return T.loop(lambda it: {"loss": values["lr"] / it}, 20, progress=progress)
        return T.memo("test_run_panel", values, compute)

    def draw(axes, hist, values):
        axes[0, 0].plot(hist["iter"], hist["loss"])
        return {"final": float(hist["loss"][-1]), "status": f"lr {values['lr']}"}

    T.clear_cache()
    controls = {"lr": widgets.W.FloatSlider(value=1.0, min=0.1, max=2.0)}
    panel = widgets.run_panel(controls, run, draw, ncols=2)
    assert calls == [1.0] and panel.state["final"] == pytest.approx(1.0 / 20)
    assert len(panel.fig.axes[0].lines) == 1 and not panel.state["stale"]
    controls["lr"].value = 2.0
    assert panel.state["stale"] and "press Train" in panel.state["status"] and calls == [1.0]
    panel.train()
    assert calls == [1.0, 2.0] and panel.state["final"] == pytest.approx(2.0 / 20)
    controls["lr"].value = 1.0
    panel.button.click()  # what a press in the browser does
    assert calls == [1.0, 2.0], "a setting already run comes from the cache"
    assert not panel.state["stale"] and panel.state["final"] == pytest.approx(1.0 / 20)
    assert panel._extra[0].value == panel._extra[0].max == 20


def test_run_panel_waits_for_the_button_without_autorun():
    panel = widgets.run_panel({"k": widgets.W.IntSlider(value=1)}, lambda v, p: 1, lambda a, r, v: None, autorun=False)
    assert "press <b>Train</b>" in panel.state["status"] and "result" not in panel.state
