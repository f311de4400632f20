"""The design-space explorer: builds at a ladder of budgets as jobs on the embedded local Ray,
the table, Pareto front and plot, and a budget too small to build named in the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from build_flows import explore

pytestmark = [pytest.mark.finn, pytest.mark.verilator, pytest.mark.yosys]


def test_explorer_on_the_local_ray(tmp_path: Path, small_mlp: Path) -> None:
    """The chosen point (--target-fps max) first, then two lower rates as two jobs at once on
    the local Ray: each rtlsim-verified, the lower rates in smaller designs, the chosen point
    the fastest and on the Pareto front."""
    rc = explore.main(["--model", str(small_mlp), "--name", "tfc-small",
                       "--points", "3", "--smallest", "0.1",
                       "--jobs", "2", "--verify-samples", "2", "--builds", str(tmp_path / "b"),
                       "--out", str(tmp_path / "out")])
    assert rc == 0
    stem = tmp_path / "out" / "explore_tfc-small_pynq-z2"
    data = json.loads(stem.with_suffix(".json").read_text())
    assert not data["failed"] and len(data["points"]) == 3
    low, mid, top = sorted(data["points"], key=lambda p: p["fps"])
    assert top["chosen"] and top["target_fps"] == "max" and top["pareto"]
    assert not low["chosen"] and low["fps"] >= 0.1 * top["fps"] * 0.999
    assert low["LUT"] < top["LUT"] and low["fps"] < top["fps"]
    assert all(p["mismatches"] == 0 and p["samples"] == 2 for p in (low, mid, top))
    # the fastest folding is the input stream's: 64 8-bit pixels at the DMA's 64 bits a cycle,
    # as the search says and as stitched rtlsim measures with the input paced so
    assert 8 <= top["cycles_per_frame"] <= 8 * 1.05
    md = stem.with_suffix(".md").read_text()
    assert "| max |" in md and "| yes | yes |" in md
    assert stem.with_suffix(".png").stat().st_size > 10_000
    assert data["bnn_pynq"] is None  # TFC is none of BNN-PYNQ's reference nets
    # a budget no folding fits: the chosen point fails and the explorer says so
    assert explore.main(["--model", str(small_mlp), "--name", "tfc-none",
                         "--points", "2", "--budget", "lut=0.001", "--jobs", "1",
                         "--builds", str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 1


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
