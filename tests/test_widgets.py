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


def test_wide_figures_fit_a_notebook_and_a_projector():
    from lossviz import plots

    fig, _ = plots.new_figure(4, width=3.6, height=3.3)  # 14.4 inches: too wide at 90 dpi
    assert fig.get_figwidth() == pytest.approx(14.4)  # the same picture ...
    assert fig.get_figwidth() * fig.dpi <= plots.MAX_WIDTH_PX  # ... drawn to fit 968 px
    narrow, _ = plots.new_figure(1, width=4.0)
    assert narrow.dpi == pytest.approx(min(plots.mpl.rcParams["figure.dpi"], plots.MAX_WIDTH_PX / 4.0))


def test_a_long_slider_description_moves_to_a_label_above_a_full_track():
    long = widgets.W.FloatSlider(value=1.0, min=0.1, max=2.0, description="τ (inverse temperature, × cosine)")
    short = widgets.W.FloatSlider(value=1.0, min=0.1, max=2.0, description="β")
    panel = widgets.Panel({"tau": long, "beta": short}, plots_figure(), lambda v: {})
    tree = panel.widget
    boxes = [c for c in tree.children[0].children if isinstance(c, widgets.W.VBox)]
    assert len(boxes) == 1 and boxes[0].children[1] is long and "inverse temperature" in boxes[0].children[0].value
    assert long.description == "" and long.layout.width == "320px" and short.description == "β"
    long.layout.display = "none"  # hiding the control (a loss without that knob) hides its label too
    assert boxes[0].layout.display == "none"
    long.value = 1.5
    assert panel.redraws == 2, "the slider still drives the panel"


def plots_figure():
    from lossviz import plots

    return plots.new_figure(1)[0]


def test_reset_puts_every_control_back_and_redraws_once(batch):
    panel = widgets.weights_panel(*batch, loss="ms")
    panel.controls["beta"].value = 10.0
    panel.controls["loss"].value = "triplet"
    before = panel.redraws
    panel.reset_button.click()
    assert panel.values() == panel.initial and panel.redraws == before + 1
    assert panel.state["loss"] == "ms"
    tools = panel.widget.children[-2].children  # the row under the controls: reset, keyboard hint, status
    assert tools[0] is panel.reset_button and "← / →" in tools[1].value and tools[2] is panel.status


def test_the_layout_is_computed_once_then_frozen(batch):
    import io

    panel = widgets.weights_panel(*batch, loss="ms")
    before = panel.fig.axes[0].get_position().bounds
    assert type(panel.fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"  # not drawn yet
    panel.fig.savefig(io.BytesIO(), format="png")                   # the first drawing lays it out ...
    assert type(panel.fig.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine"  # ... and fixes it
    box = panel.fig.axes[0].get_position().bounds
    assert box != before
    panel.controls["beta"].value = 5.0
    panel.fig.savefig(io.BytesIO(), format="png")
    assert panel.fig.axes[0].get_position().bounds == box
    panel.relayout()                                                 # after a change of shape: once more
    panel.update()
    panel.fig.savefig(io.BytesIO(), format="png")
    assert type(panel.fig.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine"


def test_train_button_says_training_and_greys_the_controls_while_it_runs():
    seen = []

    def run(values, progress):
        seen.append((panel_ref[0].button.disabled, panel_ref[0].button.description,
                     controls["lr"].disabled, "training" in panel_ref[0].status.value))
        return values["lr"]

    controls = {"lr": widgets.W.FloatSlider(value=1.0, min=0.1, max=2.0)}
    panel_ref = [None]
    panel = widgets.run_panel(controls, run, lambda a, r, v: {"status": f"ran {r}"}, autorun=False)
    panel_ref[0] = panel
    panel.train()
    assert seen == [(True, "training…", True, True)]
    assert not panel.button.disabled and panel.button.description == "Train" and not controls["lr"].disabled
    assert panel.status.value == "ran 1.0"
    panel.train()  # the setting on show: a repeat press does nothing, at once
    assert len(seen) == 1


def test_a_failing_run_gives_the_controls_back():
    def run(values, progress):
        raise ValueError("bad knob")

    controls = {"lr": widgets.W.FloatSlider(value=1.0, min=0.1, max=2.0)}
    panel = widgets.run_panel(controls, run, lambda a, r, v: None, autorun=False)
    with pytest.raises(ValueError, match="bad knob"):
        panel.train()
    assert not panel.button.disabled and not controls["lr"].disabled and panel.button.description == "Train"


def test_a_panel_sends_its_png_snapshot_for_html_export_but_not_to_a_voila_page(batch, monkeypatch):
    S, y = batch
    panel = widgets.weights_panel(S, y)
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    png = panel._repr_mimebundle_()["image/png"]
    assert isinstance(png, str) and len(png) > 1000                  # a real picture, base64
    monkeypatch.setenv("VOILA_KERNEL_ID", "x")                         # Voila draws the live view only
    bundle = panel._repr_mimebundle_()
    assert "image/png" not in bundle and "application/vnd.jupyter.widget-view+json" in bundle
