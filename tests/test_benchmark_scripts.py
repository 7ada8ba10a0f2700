"""The benchmark scripts' own helpers (their runs need the real data and minutes: benchmarks/results/)."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_curve_parameters_are_read_as_json_or_strings():
    lc = _script("learning_curve")
    assert lc._param("lr=1e-3") == ("lr", 0.001)
    assert lc._param("ema_decay=null") == ("ema_decay", None)
    assert lc._param("noise_levels=low") == ("noise_levels", "low")
    for bad in ("lr", "=3"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
            lc._param(bad)


def test_learning_curve_comparison_lists_each_run_under_the_first_runs_baselines():
    lc = _script("learning_curve")

    def run(recipe, mae, warm=False):
        rows = [{"method": "first-guess", "mae": 0.28, "crps": 0.41},
                {"method": "diffusion, kept at the end", "minutes": 15.0, "step": 1500, "best_step": 1400,
                 "mae": mae, "crps": 0.35, "cov50": 0.45, "cov90": None}]
        return {"rows": rows, "fit_seconds": 930.0, "commit": "abcdef0123", "command": f"python x --set {recipe}",
                "args": {"set": [recipe.split("=")] if recipe else [], "warm_start": warm}}

    table = lc._comparison([run("", 0.29), run("lr=0.001", 0.30), run("lr=0.0003", 0.21, warm=True)])
    lines = table.splitlines()
    assert sum(line.startswith("| first-guess |") for line in lines) == 1
    assert "| defaults | 15.5 | 1500 (1400) | 0.2900 | 0.3500 | 45.0% | - |" in lines
    assert any(line.startswith("| lr=0.001 |") and "0.3000" in line for line in lines)
    assert any(line.startswith("| warm start from CSDI's published network, lr=0.0003 |") for line in lines)
    assert "- `python x --set lr=0.001`" in lines


def test_committed_ablation_results_make_the_table():
    lc = _script("learning_curve")
    files = sorted((ROOT / "benchmarks" / "results" / "recipe_ablation").glob("*.json"))
    runs = [json.loads(p.read_text()) for p in files]
    runs = [r for r in runs if "fit_seconds" in r]  # the --load rescorings have no fit
    assert len(runs) >= 10
    assert all(r["args"]["n_test"] == 200 and r["args"]["minutes"] == 15 for r in runs)
    assert "| defaults |" in lc._comparison(runs)


def test_distillation_loss_curve_takes_the_median_of_equal_runs_of_steps():
    dist = _script("distillation")
    losses = [5.0, 1.0, 100.0, 3.0, 2.0, 2.0, 1.0, 0.5]  # a spike in the first run; steps of 1.5 s each
    curve = dist._loss_curve(losses, seconds=12.0, bins=2)
    assert [p["steps"] for p in curve] == [4, 8]
    assert [p["seconds"] for p in curve] == [6.0, 12.0]
    assert [p["median_loss"] for p in curve] == [4.0, 1.5]
    assert len(dist._loss_curve(losses[:3], seconds=1.0, bins=20)) == 3  # never more points than steps
    assert dist._loss_curve([], seconds=0.0) == []


def test_throughput_compares_one_sample_of_few_calls_with_a_saits_imputation_per_window():
    tp = _script("throughput")
    plan = tp.plan_calls(peers=True, windows=64)
    assert {r["steps"] for r in plan if r["impl"] == "tsimpute"} == {1, 2, 3, 4}
    assert all(r["n_samples"] == 1 and r["windows"] == 64 for r in plan)
    assert sum(r["impl"] == "pypots-saits" for r in plan) == 1
    assert not any(r["impl"] == "pypots-saits" for r in tp.plan_calls(peers=False))
    rows = [{"impl": "tsimpute", "phase": "impute", "precision": "bf16", "steps": 1, "n_samples": 1, "windows": 64,
             "window_samples_per_s": 50.0},
            {"impl": "tsimpute", "phase": "impute", "precision": "bf16", "steps": 1, "n_samples": 20, "windows": 64,
             "window_samples_per_s": 400.0},
            {"impl": "pypots-saits", "phase": "impute", "precision": "fp32", "steps": 1, "n_samples": 1,
             "windows": 64, "window_samples_per_s": 200.0}]
    summary = tp.summarise(rows)
    assert summary["impute_1call_1sample_vs_saits"] == 0.25
    assert "impute_2call_1sample_vs_saits" not in summary
