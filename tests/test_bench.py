"""The benchmark script runs end to end on a tiny grid and writes the JSON it promises.

A smoke test of ``bench/losses.py --quick``: structure only, never a timing assertion (times depend
on the machine and on whatever else runs on it)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("pytorch_metric_learning")

from bench import losses as bench  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
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
    assert {"ms", "contrastive", "triplet (all)", "binomial", "lifted"} <= names_lv
    assert {"MultiSimilarityLoss + MultiSimilarityMiner", "NTXentLoss", "SupConLoss"} <= names_pml
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
    assert "n/a" in text  # binomial has no PML equivalent; NT-Xent no lossviz loss yet
    assert out["machine"]["cpu"] in text


def test_a_pml_loss_too_large_is_skipped_with_a_reason():
    args = bench.parse_args(["--quick", "--repeats", "2", "--pml-max-gib", "0"])
    config = bench.run_config(16, 8, 4, args, bench._pml(), log=lambda *_: None)
    skipped = config["pml"]["TripletMarginLoss"]
    assert skipped["time_ms"] is None and "--pml-max-gib" in skipped["skipped"]
    assert "skipped" not in config["pml"]["MultiSimilarityLoss"]  # O(B^2): never skipped
