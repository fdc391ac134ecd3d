"""Microcontroller budgets: ``ram=`` / ``flash=`` terms, device profiles, and the peak-first allocation
(checked against the predicted arena of the plan it returns and the arena of a uniform cut)."""
from __future__ import annotations

import pytest
import torch

import edgeprune as ep
from edgeprune.budget import Budget, BudgetError
from edgeprune.budget.terms import BudgetSyntaxError, parse_term
from edgeprune.measure.macs import count_macs
from edgeprune.targets.devices import UnknownDeviceError, get_device
from edgeprune.targets.sram import predict_arena
from tests.mcu_models import make


def test_ram_and_flash_terms_parse_as_bytes_or_fractions():
    assert parse_term("ram=64KB").value == 64000 and not parse_term("ram=64KiB").relative
    assert parse_term("flash=256KiB").value == 262144
    assert parse_term("ram=0.5").relative
    with pytest.raises(BudgetSyntaxError, match="give a unit"):
        parse_term("ram=64")
    b = Budget.parse("ram=20KB", "flash=0.5", precision="int8")
    assert (b.ram, b.flash, b.precision) == (20000, 0.5, "int8") and b.has_cost
    with pytest.raises(BudgetError, match="precision"):
        Budget(ram=1e4, precision="int4")


def test_targets_price_the_predicted_arena_and_flash_with_the_runtime_allowance():
    model, x = make("res1d")
    t = {t.name: t for t in Budget(ram=0.5, flash=1e6, precision="int8", runtime_flash=65536).targets(model, x)}
    predicted = predict_arena(model, x, "int8")
    assert t["ram"].original == predicted.total and t["ram"].limit == pytest.approx(0.5 * predicted.total)
    assert t["flash"].original == predicted.flash + 65536 and t["flash"].limit == 1e6


def test_a_device_profile_sets_both_budgets():
    m4 = get_device("Cortex-M4")
    assert (m4.flash, m4.sram) == (262144, 65536) and m4.clock_mhz > 0 and 0 < m4.runtime_flash < m4.flash
    b = Budget(**m4.budget_fields(), precision="int8")
    assert b.ram == 65536 and b.flash == 262144 and b.runtime_flash == m4.runtime_flash
    with pytest.raises(UnknownDeviceError, match="cortex-m4, cortex-m7"):
        get_device("cortex-m99")


@pytest.mark.parametrize("name", ["dw1d", "res1d"])
def test_peak_first_meets_the_arena_budget_on_the_plan_it_returns(name):
    model, x = make(name)
    dense = predict_arena(model, x, "int8").total
    result = ep.prune(model, x, budget=Budget(ram=0.6 * dense, precision="int8"), strategy="sram")
    got = predict_arena(result.model, x, "int8").total
    assert got <= 0.6 * dense and result.plan.meta["arena_steps"][0] == dense
    assert result.model is not model and predict_arena(model, x, "int8").total == dense  # caller's model unchanged


def test_peak_first_cuts_where_the_peak_is_and_beats_a_uniform_cut_at_equal_macs():
    model, x = make("dw1d")  # the peak sits at the 64-channel layers at full length
    dense = predict_arena(model, x, "int8").total
    ours = ep.prune(model, x, budget=Budget(ram=0.6 * dense, precision="int8"), strategy="sram").model
    macs = count_macs(ours, x).total / count_macs(model, x).total
    uniform = ep.prune(model, x, budget=Budget(macs=macs), strategy="uniform").model
    assert count_macs(uniform, x).total <= count_macs(ours, x).total * 1.02
    assert predict_arena(ours, x, "int8").total < predict_arena(uniform, x, "int8").total


def test_an_impossible_arena_names_the_smallest_it_reached():
    model, x = make("cnn1d")
    with pytest.raises(BudgetError, match=r"smallest arena reached is [\d,]+ bytes"):
        ep.prune(model, x, budget=Budget(ram=1000, precision="int8"), strategy="sram")


# -- the command line: ram=/flash= verified in TFLite Micro --------------------------------------------
def _invoke(args):
    from typer.testing import CliRunner

    from edgeprune.cli import _register_commands, app

    _register_commands()
    return CliRunner().invoke(app, args, catch_exceptions=False)


QUICK = ["--epochs", "1", "--latency-runs", "3", "--threads", "1", "--no-curve"]


def test_an_unknown_device_exits_2_naming_the_known_ones(tmp_path):
    result = _invoke(["prune", "digits", "--device", "cortex-m99", *QUICK, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "cortex-m4" in " ".join(result.output.split())


def test_an_impossible_arena_exits_3_naming_the_smallest_arena_and_writes_nothing(tmp_path):
    result = _invoke(["prune", "digits", "--target", "ram=100B", *QUICK, "--out", str(tmp_path / "run")])
    text = " ".join(result.output.split())
    assert result.exit_code == 3 and "smallest arena reached is" in text and "'sram'" in text, text
    assert not list(tmp_path.iterdir())


def test_a_ram_budget_is_met_as_measured_in_tflm(tmp_path):
    import json

    from edgeprune.runtimes.tflm import measure_arena

    out = tmp_path / "run"
    result = _invoke(["prune", "digits", "--data", "digits", "--target", "ram=0.9", "--target", "flash=0.8",
                      "--runtime", "tflm", *QUICK, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    ram = next(c for c in m["targets"] if c["metric"] == "ram")
    flash = next(c for c in m["targets"] if c["metric"] == "flash")
    measured = measure_arena(out / "model.tflite").total  # the file in the run, measured again here
    dense = m["mcu"]["stages"]["dense"]["arena"]["total"]
    assert ram["reached"] == measured <= ram["limit"] == pytest.approx(0.9 * dense) and ram["met"]
    assert flash["reached"] == (out / "model.tflite").stat().st_size <= flash["limit"] and flash["met"]
    assert m["mcu"]["stages"]["pruned"]["accuracy"] is not None  # the file run in TFLM over the validation data
    report = (out / "report.html").read_text()
    assert "Microcontroller" in report and f"{measured:,} B" in report  # the bars show the measured arena
