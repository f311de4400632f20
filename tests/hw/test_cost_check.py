"""hw.cost_check: a stitched design's stages read back from its top, each synthesized alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hw import cost, cost_check, stitch, units


def _chain(tmp_path: Path) -> list[units.Unit]:
    rng = np.random.default_rng(4)
    w0, w1 = rng.integers(0, 2, (16, 32)), rng.integers(0, 2, (4, 16))
    chain = [units.mvtu("fc0", w0, rng.integers(0, 32, 16), pe=4, simd=8),
             units.mvtu("fc1", w1, None, pe=2, simd=4, ram_style="distributed")]
    _, stages = stitch.write(chain, tmp_path, fifo_depth=4)
    return stages


def test_instances_read_back_the_stages_and_their_parameters(tmp_path: Path) -> None:
    """Every stage of the stitched top, in order, with the parameters (and memory file names)
    it was instantiated with; a file without instances is refused by name."""
    stages = _chain(tmp_path)
    got = cost_check.instances(tmp_path / "accel.sv")
    assert [(u.name, u.module) for u in got] == [(s.name, s.module) for s in stages]
    fc0 = next(u for u in got if u.name == "fc0")
    assert fc0.params["WEIGHT_FILE"] == "fc0_weight_file.hex"
    assert {k: fc0.params[k] for k in ("MW", "MH", "PE", "SIMD", "PIPE")} == \
        {"MW": 32, "MH": 16, "PE": 4, "SIMD": 8, "PIPE": 0}
    empty = tmp_path / "empty.sv"
    empty.write_text("module accel; endmodule\n")
    with pytest.raises(ValueError, match="empty.sv: no module instances"):
        cost_check.instances(empty)


@pytest.mark.yosys
def test_check_synthesizes_each_stage_beside_the_model(tmp_path: Path) -> None:
    """Per stage: the model's figures are CostModel.unit's, Yosys' those of the module alone
    with the build's memory files; per module and total sums add up; the report names them."""
    stages = _chain(tmp_path / "rtl")
    res = cost_check.check(tmp_path / "rtl", "zynq7", jobs=2)
    model = cost.CostModel.load("zynq7")
    assert [r["name"] for r in res["stages"]] == [s.name for s in stages]
    for r, s in zip(res["stages"], stages, strict=True):
        assert r["model"] == pytest.approx(model.unit(s))
        assert r["yosys"]["LUT"] > 0
    assert res["total"]["yosys"]["LUT"] == sum(r["yosys"]["LUT"] for r in res["stages"])
    assert sum(m["model"]["LUT"] for m in res["modules"].values()) == \
        pytest.approx(res["total"]["model"]["LUT"])
    assert res["stitched_yosys"] is None  # no build report beside this rtl directory
    md = cost_check.write(res, tmp_path / "out", "chain").read_text()
    assert "| fc0 | 32 x 16 | 4 x 8 | xnor | block | 0 |" in md
    data = json.loads((tmp_path / "out" / "cost_check_chain.json").read_text())
    assert len(data["stages"]) == len(stages)


def test_main_refuses_a_directory_without_a_stitched_top(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cost_check.main(["--rtl", str(tmp_path), "--name", "x"])
    assert exc.value.code == 2
    assert f"--rtl {tmp_path}: no accel.sv there" in capsys.readouterr().err
