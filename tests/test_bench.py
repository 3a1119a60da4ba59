"""The benchmark scripts run end to end and return what they promise.

A smoke test of ``bench/losses.py --quick`` on a tiny grid, and of ``bench/panels.py``'s timing of one
hand-made panel (never a notebook): structure only, never a timing assertion (times depend on the
machine and on whatever else runs on it), except a draw that sleeps on purpose."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import losses as bench  # noqa: E402
from bench import panels  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    pytest.importorskip("pytorch_metric_learning")
    path = tmp_path_factory.mktemp("bench") / "losses.json"
    out = bench.main(["--quick", "--repeats", "2", "--json", str(path)])
    return out, json.loads(path.read_text())


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_json_is_what_main_returns(result):
    out, written = result
    assert written == json.loads(json.dumps(out))


def test_machine_and_arguments_are_recorded(result):
    _, r = result
    m = r["machine"]
    assert m["device"] == "cpu" and m["threads"] == 1 and m["torch"] and m["cpu"]
    assert r["args"]["quick"] and r["args"]["repeats"] == 2


def test_every_configuration_has_every_loss(result):
    _, r = result
    grid = {(c["B"], c["D"], c["K"]) for c in r["configs"]}
    assert grid == {(B, D, K) for B in r["args"]["batch_sizes"] for D in r["args"]["dims"]
                    for K in r["args"]["ks"]}
    names_lv = {p["lossviz"] for p in r["pairings"] if p["lossviz"]}
    names_pml = {p["pml"] for p in r["pairings"] if p["pml"]}
    assert {"ms", "contrastive", "triplet (all)", "binomial", "lifted", "nt_xent", "supcon",
            "arcface", "cosface", "normface"} <= names_lv
    assert {"MultiSimilarityLoss + MultiSimilarityMiner", "NTXentLoss", "SupConLoss", "ArcFaceLoss",
            "CosFaceLoss", "NormalizedSoftmaxLoss"} <= names_pml
    # every PML loss that has a lossviz equivalent is paired with it
    assert all(p["lossviz"] for p in r["pairings"] if p["pml"] != "LiftedStructureLoss")
    for c in r["configs"]:
        assert set(c["lossviz"]) == names_lv and set(c["pml"]) == names_pml
        for m in [c["floor"], *c["lossviz"].values()]:
            assert _number(m["time_ms"]) and m["time_ms"] > 0 and m["repeats"] == 2
            assert _number(m["peak_mib"]) and m["peak_mib"] >= 0
            assert isinstance(m["aten_ops"], int) and m["aten_ops"] > 0
        for m in c["lossviz"].values():
            assert _number(m["time_ms_checks_on"]) and m["repeats_checks_on"] == 2
        for m in c["pml"].values():  # tiny batches: nothing is skipped
            assert "skipped" not in m and _number(m["time_ms"]) and _number(m["peak_mib"])


def test_ratio_rows_follow_the_pairings(result):
    _, r = result
    assert len(r["ratios"]) == len(r["configs"])
    for block in r["ratios"]:
        assert len(block["rows"]) == len(r["pairings"])
        for row, pairing in zip(block["rows"], r["pairings"]):
            assert (row["lossviz"], row["pml"]) == (pairing["lossviz"], pairing["pml"])
            assert _number(row["lossviz_over_floor"]) if row["lossviz"] else row["lossviz_over_floor"] is None
            both = row["lossviz"] and row["pml"]
            assert _number(row["lossviz_over_pml"]) if both else row["lossviz_over_pml"] is None


def test_markdown_table(result):
    out, _ = result
    text = bench.markdown(out)
    assert "| ms | MultiSimilarityLoss + MultiSimilarityMiner |" in text
    assert "| nt_xent | NTXentLoss |" in text and "| arcface | ArcFaceLoss |" in text
    assert "n/a" in text  # binomial has no PML equivalent
    assert out["machine"]["cpu"] in text
    assert "ms_loss (with mining) / MultiSimilarityLoss" in text and "x time ·" in text
    assert "**Scaling**" in text and "| ms (blocks) |" in text


def test_scaling_rows_cover_every_loss_and_the_block_path(result):
    _, r = result
    sc = r["scaling"]
    assert [row["B"] for row in sc["rows"]] == r["args"]["scaling_sizes"] == [16, 32]
    names = set(bench.LOSSVIZ) | set(bench.LOSSVIZ_PROXY) | {f"{n} (blocks)" for n in bench.BLOCKED}
    for row in sc["rows"]:
        assert set(row["lossviz"]) == names
        for m in [row["floor"], *row["lossviz"].values()]:
            assert _number(m["time_ms"]) and m["time_ms"] > 0 and _number(m["peak_mib"])
    # B = 32 in blocks of 8 anchors holds less than the whole 32 x 32 loss
    last = sc["rows"][-1]["lossviz"]
    assert sc["block_rows"] < sc["rows"][-1]["B"]
    assert last["ms (blocks)"]["peak_mib"] < last["ms"]["peak_mib"]


def test_the_margin_losses_of_the_benchmark_equal_pml_on_its_class_weights():
    pml = pytest.importorskip("pytorch_metric_learning")  # noqa: F841
    import torch

    import lossviz as lv
    x, y = bench.make_batch(32, 8, 4, "cpu")
    W = bench.make_weights(8, "cpu")
    made = bench._pml()
    for p in bench.PAIRINGS:
        if p.pml in bench.PML_PROXY:
            theirs, _ = made[p.pml]()
            theirs.W = torch.nn.Parameter(W.T.clone())
            ours = bench.LOSSVIZ_PROXY[p.lossviz](lv.cosine_logits(x, W), y)
            torch.testing.assert_close(ours, theirs(x, y).detach(), rtol=1e-5, atol=1e-5)


def test_a_pml_loss_too_large_is_skipped_with_a_reason():
    pytest.importorskip("pytorch_metric_learning")
    args = bench.parse_args(["--quick", "--repeats", "2", "--pml-max-gib", "0"])
    config = bench.run_config(16, 8, 4, args, bench._pml(), log=lambda *_: None)
    skipped = config["pml"]["TripletMarginLoss"]
    assert skipped["time_ms"] is None and "--pml-max-gib" in skipped["skipped"]
    assert "skipped" not in config["pml"]["MultiSimilarityLoss"]  # O(B^2): never skipped


# ------------------------------------------------------------------------------------------------
# bench/panels.py: one tiny hand-made panel
# ------------------------------------------------------------------------------------------------

SLOW_S = 0.25  # the "slow" checkbox's draw sleeps this long: over the 200 ms of the contract


def _tiny_panel():
    """A line whose slope and offset follow the controls; flipping "slow" makes the draw sleep."""
    import time

    import ipywidgets as W
    from matplotlib.figure import Figure

    from lossviz.widgets import Panel

    controls = {
        "slope": W.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.1),
        "shift": W.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.1),
        "kind": W.Dropdown(options=["a", "b", "c"], value="a"),
        "slow": W.Checkbox(value=False),
        "hidden": W.IntSlider(value=1, min=0, max=9, layout=W.Layout(display="none")),
        "off": W.IntSlider(value=1, min=0, max=9, disabled=True),
        "go": W.Button(description="not a value control"),
    }
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    (line,) = ax.plot([0, 1], [0, 1])
    seen = {"slow": False}

    def draw(v):
        if v["slow"] != seen["slow"]:
            time.sleep(SLOW_S)
            seen["slow"] = v["slow"]
        line.set_ydata([v["shift"], v["shift"] + v["slope"]])
        return {"values": v}

    return Panel(controls, fig, draw)


def test_panel_row_counts_times_and_flags():
    panel = _tiny_panel()
    before = panel.values()
    row = panels.time_panel(panel, repeats=3, name="tiny", notebook="99_test")
    assert row["notebook"] == "99_test" and row["panel"] == "tiny"
    # hidden, disabled and non-value widgets are not moved
    assert row["controls"] == 4 and set(row["per_control"]) == {"slope", "shift", "kind", "slow"}
    assert row["changes"] == 12 and not row["errors"] and not row["skipped"]
    for m in row["per_control"].values():
        assert len(m["times_ms"]) == 3 and all(_number(t) and t > 0 for t in m["times_ms"])
        assert m["worst_ms"] >= m["median_ms"] > 0
    assert row["worst_ms"] >= row["median_ms"] > 0 and row["median_ms"] >= row["draw_median_ms"] > 0
    # the sleeping control is the slowest, but 9 of 12 changes are fast: the median is under 200 ms
    assert row["slowest"] == "slow" and row["per_control"]["slow"]["median_ms"] >= 1e3 * SLOW_S
    assert row["slowest_median_ms"] == row["per_control"]["slow"]["median_ms"]
    assert row["limit_ms"] == 200 and row["over"] is (row["median_ms"] > 200)
    assert panel.values() == before  # every control is left where it was
    assert panel.state["values"] == before  # and the figure shows it


def test_panel_over_the_limit_is_flagged_and_marked():
    panel = _tiny_panel()
    for key in ("slope", "shift", "kind"):
        panel.controls[key].disabled = True
    row = panels.time_panel(panel, repeats=1, name="tiny", notebook="99_test")
    assert row["controls"] == 1 and row["slowest"] == "slow"
    assert row["median_ms"] >= 1e3 * SLOW_S and row["over"] is True
    machine = {"cpu": "a CPU", "cpu_count": 2, "threads": 1, "torch": "x", "date": "2026-01-01"}
    result = {"machine": machine,
              "args": {"repeats": 1, "limit_ms": 200.0},
              "notebooks": [{"notebook": "99_test", "error": None, "panels": [row],
                             "train_panels": []}]}
    text = panels.tables(result, markdown=True)
    assert "a CPU" in text and "1 torch thread" in text
    assert "| 99_test | `tiny` | 1 | **" in text and "⚠" in text


@pytest.mark.parametrize("make, expect", [
    (lambda W: W.IntSlider(value=9, min=0, max=10), 6),  # up would leave the range: down 3 steps
    (lambda W: W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05), pytest.approx(0.65)),
    (lambda W: W.FloatLogSlider(value=10.0, base=10, min=0, max=2, step=0.2), pytest.approx(10 ** 1.6)),
    (lambda W: W.Dropdown(options=[("one", 1), ("two", 2)], value=2), 1),
    (lambda W: W.ToggleButtons(options=["x", "y"], value="x"), "y"),
    (lambda W: W.Checkbox(value=True), False),
    (lambda W: W.SelectMultiple(options=["a", "b"], value=("a",)), ("a", "b")),
    (lambda W: W.BoundedIntText(value=0, min=0, max=99), 3),
    (lambda W: W.Dropdown(options=["only"], value="only"), None),
])
def test_new_value_is_another_valid_value(make, expect):
    import ipywidgets as W

    control = make(W)
    new = panels.new_value(control)
    assert new == expect
    if new is not None:
        control.value = new  # valid: ipywidgets takes it as it is
        assert control.value == expect


def _make_tiny():  # a module's private helper: not the panel's name
    return _tiny_panel()


def tiny_factory():
    return _make_tiny()


def test_panels_are_recorded_with_their_factory():
    with panels.recording_panels() as made:
        panel = tiny_factory()
    assert made == [panel] and panel._bench_name.endswith("test_bench.tiny_factory")
    again = _tiny_panel()
    assert made == [panel] and not hasattr(again, "_bench_name")  # recording stopped


def test_train_panel_times_a_new_run_then_the_cached_one(one_thread):
    import ipywidgets as W

    from lossviz import train as T
    from lossviz.widgets import run_panel

    runs = []

    def run(v, progress):
        def compute():
            runs.append(v["seed"])
            return {"seed": v["seed"], "curve": [0.0, 1.0 / (1 + v["seed"])]}
        return T.memo("bench-test", {"seed": v["seed"], "lr": v["lr"]}, compute)

    def draw(axes, result, _v):
        axes[0, 0].plot(result["curve"])

    controls = {"lr": W.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.1),
                "seed": W.BoundedIntText(value=0, min=0, max=99)}
    panel = run_panel(controls, run, draw, ncols=1)
    # a setting the "notebook" trained before
    T.memo("bench-test", {"seed": 3, "lr": 0.1}, lambda: {"seed": 3, "curve": [0.0, 0.25]})
    row = panels.time_train_panel(panel, name="tiny train", notebook="99_test")
    assert row["error"] is None and row["control"] == "seed"  # the seed first, though lr comes first
    assert runs == [0, 6]  # seed 3 was in the cache: the benchmark moved on to 6 for a real run
    assert row["trained"] is True and row["cached"] is True
    assert _number(row["train_s"]) and row["train_s"] > 0
    assert _number(row["cached_s"]) and row["cached_s"] > 0
    assert controls["seed"].value == 0 and not panel.state["stale"]  # back where it started
