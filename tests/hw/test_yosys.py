"""Yosys resource estimates of the binary matrix unit: the ram_style choice and the stat parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import model, verilator, yosys


def test_parse_stat_counts_xilinx_cells() -> None:
    text = """   Number of cells:  10
     CARRY4  2
     FDRE  7
     FDSE  1
     LUT2  3
     LUT6  4
     RAM32M  2
     RAMB18E1  3
     RAMB36E1  1
     DSP48E1  2
"""
    res = yosys.parse_stat(text)
    # RAM32M: 4 LUTs each, counted in LUT as Vivado does
    assert (res["LUT"], res["LUT_logic"], res["FF"], res["BRAM36"], res["DSP"], res["LUTRAM"],
            res["CARRY"]) == (15, 7, 8, 2.5, 2, 8, 2)


def test_parse_stat_counts_a_hierarchy_once() -> None:
    """A hierarchical report lists each module, then the whole design: only the total counts."""
    text = """=== sub ===
     LUT6  4
     RAMB18E1  1
=== top ===
     LUT2  1
     sub  2
=== design hierarchy ===
   Number of cells:  11
     LUT2  1
     LUT6  8
     RAMB18E1  2
"""
    res = yosys.parse_stat(text)
    assert (res["LUT"], res["BRAM36"]) == (9, 1.0)


@pytest.mark.yosys
@pytest.mark.parametrize(("ram_style", "bram"), [("block", True), ("distributed", False)])
def test_weight_memory_follows_ram_style(tmp_path: Path, ram_style: str, bram: bool) -> None:
    rng = np.random.default_rng(0)
    mw, mh, simd, pe = 64, 32, 16, 4
    w = rng.integers(0, 2, (mh, mw))
    model.write_hex(tmp_path / "weights.hex", model.mvtu_weight_words(w, pe, simd), pe * simd)
    model.write_hex(tmp_path / "thresholds.hex",
                    *model.mvtu_threshold_memory(rng.integers(0, mw, mh), pe, 7, mw // simd,
                                                 False))
    res = yosys.synth("mvtu", [verilator.RTL / "mvtu.sv"],
                      {"MW": mw, "MH": mh, "SIMD": simd, "PE": pe, "ACC_W": 7,
                       "RAM_STYLE": ram_style}, workdir=tmp_path)
    assert (res["BRAM36"] > 0) is bram
    # 3 LUT per XNOR lane plus control; a LUT ROM adds about one LUT6 per 32-64 weight bits
    assert 0 < res["LUT"] <= 3 * pe * simd + 120 + (0 if bram else mw * mh // 16), res
    assert res["FF"] > pe * 7 and res["DSP"] == 0
    assert "synth_xilinx -family xc7" in res["tool"] and res["tool"].startswith("Yosys")


def test_negative_parameters_reach_the_design(tmp_path: Path) -> None:
    """A requantizer clamping to [-4, 3] (negative LO): Yosys gets the value, not an error."""
    from hw import units

    u = units.requant("r", np.array([3, -5]), np.array([7, -9]), 2, 2, 6, True, 3, -4, 3)
    files = u.write_memories(tmp_path)
    res = yosys.synth("requant", [u.source], {**u.params, **files}, workdir=tmp_path)
    assert res["LUT"] > 0


def test_lutram_mapping_failure_falls_back_to_logic(monkeypatch) -> None:
    """Yosys 0.23's UltraScale+ LUT RAM mapping fails on some shapes: with ``lutram_fallback``
    the design is synthesized again with -nolutram and the result says so; without it (as
    calibration runs) the error stands."""
    calls = []

    def fake(top, sources, params, family, workdir, timeout, timing, part, clock_ns, nolutram):
        calls.append(nolutram)
        if not nolutram:
            raise yosys.SynthError("yosys synth_xilinx of accel failed: .../lutrams_xc5v_map.v"
                                   ":181: ERROR: invalid OPTION_ABITS/WIDTH combination.")
        return {"LUT": 10}

    monkeypatch.setattr(yosys, "_synth", fake)
    res = yosys.synth("accel", [], {}, family="zynquplus", lutram_fallback=True)
    assert calls == [False, True] and res["LUT"] == 10 and "-nolutram" in res["note"]
    with pytest.raises(yosys.SynthError, match="OPTION_ABITS"):
        yosys.synth("accel", [], {}, family="zynquplus")


def test_a_run_past_the_time_limit_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    """A Yosys run past ``$BNNFORGE_YOSYS_TIMEOUT`` seconds is a SynthError naming the limit
    and how to raise it, not subprocess's exception with the whole script."""
    from hw import units

    monkeypatch.setenv("BNNFORGE_YOSYS_TIMEOUT", "0.01")
    assert yosys.timeout_s() == 0.01
    u = units.fifo("f", 8, 4)
    with pytest.raises(yosys.SynthError, match=r"^yosys synth_xilinx of fifo took more than "
                                               r"0.01 s \(\$BNNFORGE_YOSYS_TIMEOUT raises"):
        yosys.synth("fifo", [u.source], u.params, workdir=tmp_path)
