"""The design-space explorer: builds at a ladder of budgets as jobs on the embedded local Ray,
the table, Pareto front and plot, and a budget too small to build named in the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from build_flows import explore

pytestmark = [pytest.mark.finn, pytest.mark.verilator, pytest.mark.yosys]


def test_explorer_on_the_local_ray(tmp_path: Path, build_models) -> None:
    """Three budgets (0.1 %, 3 % and 100 % of the default): the first cannot hold the smallest
    folding and is reported as failed; the others are measured, the larger one at least as
    fast, both rtlsim-verified; the default budget's point is the chosen one."""
    rc = explore.main(["--model", str(build_models["tfc", "bnn"]), "--name", "tfc-small",
                       "--points", "3", "--smallest", "0.001", "--jobs", "2",
                       "--verify-samples", "2", "--builds", str(tmp_path / "b"),
                       "--out", str(tmp_path / "out")])
    assert rc == 0
    stem = tmp_path / "out" / "explore_tfc-small_pynq-z2"
    data = json.loads(stem.with_suffix(".json").read_text())
    assert len(data["failed"]) == 1 and "smallest folding" in data["failed"][0]["error"]
    small, full = sorted(data["points"], key=lambda p: p["lut"])
    assert small["LUT"] < full["LUT"] and small["fps"] <= full["fps"]
    assert all(p["mismatches"] == 0 and p["samples"] == 2 for p in (small, full))
    assert full["chosen"] and not small["chosen"] and full["pareto"]
    assert small["LUT"] <= 0.8 * 53200 * 0.03 + 1
    md = stem.with_suffix(".md").read_text()
    assert "| yes | yes |" in md and "(failed)" in md
    assert stem.with_suffix(".png").stat().st_size > 10_000
    assert data["bnn_pynq"] is None  # TFC is none of BNN-PYNQ's reference nets


def test_pareto_keeps_what_nothing_beats() -> None:
    pts = [{"fps": 10, "LUT": 100, "BRAM36": 5}, {"fps": 20, "LUT": 200, "BRAM36": 5},
           {"fps": 15, "LUT": 300, "BRAM36": 6}, {"fps": 20, "LUT": 200, "BRAM36": 9}]
    assert explore.pareto(pts) == pts[:2]


def test_explorer_refuses_bad_options(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        explore.main(["--model", str(tmp_path / "none.onnx"), "--name", "x"])
    assert "no such file" in capsys.readouterr().err
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(SystemExit):
        explore.main(["--model", str(model), "--name", "a/b"])
    assert "--name 'a/b'" in capsys.readouterr().err
