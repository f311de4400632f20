"""build_flows/bench.py: the accelerator benchmark's table, JSON and chart from build reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from build_flows import bench

pytestmark = pytest.mark.finn


def report(cycles: float, est: int, lut: int) -> dict:
    return {"board": "Pynq-Z2",
            "verification": {"rtlsim": {"samples": 100, "mismatches": 0,
                                        "accuracy_rtlsim": 0.8, "accuracy_finn": 0.8}},
            "performance": {"cycles_per_frame": cycles, "estimated_cycles_per_frame": est,
                            "latency_cycles": 200, "fps": 1e8 / cycles, "fclk_mhz": 100.0,
                            "sim_seconds": 1.0},
            "resources": {"LUT": lut, "FF": 1000, "BRAM36": 11.0, "DSP": 0, "tool": "Yosys 0.23",
                          "seconds": 40.0, "finn_estimate": {"LUT": 8502.0, "BRAM36": 13.0}},
            "rtl": {"verilator_build_seconds": 14.0}}


def test_writes_table_json_and_chart(tmp_path: Path) -> None:
    rows = [bench.row("tfc", report(64.0, 64, 4221)), bench.row("cnv", report(33208.0, 32768, 12886))]
    bench.write(rows, tmp_path, "Pynq-Z2")
    md = (tmp_path / "accel_pynq-z2.md").read_text()
    assert "| tfc | 0 of 100 | 80.0 / 80.0 % | 64.0 (64) | 1,562,500 |" in md
    assert "33,208.0 (32,768)" in md and "12,886 (8,502)" in md
    data = json.loads((tmp_path / "accel_pynq-z2.json").read_text())
    assert [r["design"] for r in data["rows"]] == ["tfc", "cnv"]
    assert (tmp_path / "accel_pynq-z2.png").stat().st_size > 1000


def test_model_arguments_need_a_name() -> None:
    with pytest.raises(SystemExit, match="expected name=path"):
        bench.pairs(["runs/x/model.onnx"], "--model")
