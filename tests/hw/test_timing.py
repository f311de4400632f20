"""The timing estimate (hw.timing): Yosys ``sta`` reports parsed into logic levels and a delay,
and on real units a long path (an unpipelined wide popcount) against its pipelined form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hw import model, timing, verilator, yosys

# a path as Yosys 0.23's sta prints it (endpoint first), shortened names
REPORT = """
8. Executing STA pass (static timing analysis).
Latest arrival time in 'mvtu' is 3710:
    3710 ff2 (FDRE.D)
           n5 [5]
    3710 c1 (CARRY4.CI->O)
           n4 [3]
    3376 c0 (CARRY4.S->CO)
           n3 [2]
    2998 l2 (LUT6.I1->O)
           n2 [1]
    2367 m1 (MUXF7.I1->O)
           n1
    2144 l1 (LUT6.I0->O)
           n0 [0]
     399 ff1 (FDRE.C->Q)
           clk
      96 bufg (BUFG.I->O)
           clk0
       0 ibuf (IBUF.I->O)
       0   \\clk (<primary input>)

Arrival histogram:
"""


def test_parse_sta_counts_levels_and_routed_nets() -> None:
    """Cells from the launching flip-flop to the endpoint: 2 LUTs, a MUXF7, a carry chain of
    2; routed hops: FF -> LUT, MUXF7 -> LUT, and into the endpoint (LUT -> MUXF7, LUT -> carry
    S and carry -> carry CI stay in the slice)."""
    path = timing.parse_sta(REPORT)
    est = timing.estimate(path, "zynq7", "xc7z020clg400-1", 10.0)
    assert (est["lut_levels"], est["muxf"], est["carry_length"], est["routed_nets"]) == (2, 1, 2, 3)
    assert est["cells_ns"] == pytest.approx((3710 - 96) / 1000)
    assert est["delay_ns"] == pytest.approx(3.614 + 3 * timing.NET_NS, abs=1e-3)
    assert est["meets"] and est["from"] == "FDRE ff1" and est["to"] == "FDRE.D ff2"
    slow = timing.estimate(path, "zynq7", None, 4.0)
    assert not slow["meets"] and slow["slack_ns"] < 0 and "misses 4 ns" in timing.describe(slow)


def test_unused_output_endpoint_and_missing_report() -> None:
    """A path ending at an output bit nothing reads (Yosys: no recognised endpoint)."""
    text = REPORT.replace("    3710 ff2 (FDRE.D)\n           n5 [5]\n",
                          "    3710 (<unknown>)\nWarning: Critical-path does not terminate in a "
                          "recognised endpoint.\n           n5 [5]\n").replace(
        "Arrival histogram:", "Arrival histogram:\n legend: x\n(  3650,   3500] |*")
    est = timing.estimate(timing.parse_sta(text))
    # the delay at the latest recognised endpoint (the histogram's top), not at the unused bit
    assert est["to"] == timing.UNUSED and est["routed_nets"] == 2
    assert est["cells_ns"] == pytest.approx((3650 - 96) / 1000)
    with pytest.raises(ValueError, match="no timed path"):
        timing.parse_sta("8. Executing STA pass\n")


def test_grade_scale_by_family_and_part() -> None:
    assert timing.grade_scale("zynq7", "xc7z020clg400-1") == 1.0
    assert timing.grade_scale("zynquplus", "xczu3eg-sbva484-1-e") == timing.ULTRASCALE_SCALE
    assert timing.grade_scale("zynquplus", "xczu7ev-ffvc1156-2-e") == pytest.approx(
        timing.ULTRASCALE_SCALE * 645 / 775)
    assert timing.grade_scale("zynquplus", "xck26-sfvc784-2LV-c") == pytest.approx(
        timing.ULTRASCALE_SCALE * 645 / 644)


def _synth_mvtu(tmp_path: Path, simd: int, pipe: int, family: str, part: str,
                clock_ns: float) -> dict:
    rng = np.random.default_rng(simd)
    mw, mh, pe = 2 * simd, 8, 2
    w = rng.integers(0, 2, (mh, mw))
    acc_w = model.mvtu_acc_width(mw, True)
    work = tmp_path / f"{simd}_{pipe}_{family}"
    work.mkdir()
    model.write_hex(work / "weights.hex", model.mvtu_weight_words(w, pe, simd), pe * simd)
    model.write_hex(work / "thresholds.hex",
                    *model.mvtu_threshold_memory(rng.integers(0, mw, mh), pe, acc_w, mw // simd,
                                                 False))
    return yosys.synth("mvtu", [verilator.RTL / "mvtu.sv"],
                       {"MW": mw, "MH": mh, "SIMD": simd, "PE": pe, "ACC_W": acc_w,
                        "PIPE": pipe}, family=family, workdir=work, timing=True, part=part,
                       clock_ns=clock_ns)["timing"]


@pytest.mark.yosys
@pytest.mark.parametrize(("family", "part"), [("zynq7", "xc7z020clg400-1"),
                                              ("zynquplus", "xczu7ev-ffvc1156-2-e")])
def test_pipelined_popcount_shortens_the_longest_path(tmp_path: Path, family: str,
                                                      part: str) -> None:
    """A 64-lane popcount tree plus the accumulator in one cycle is the unit's longest path;
    PIPE = 1 cuts it into two: fewer LUT levels, a shorter estimate, every cell timed. The
    weights are in block RAM, whose clock-to-out then starts the popcount path; PIPE = 2
    registers them first: the same LUT levels from a flip-flop, shorter still."""
    flat = _synth_mvtu(tmp_path, 64, 0, family, part, 5.0)
    piped = _synth_mvtu(tmp_path, 64, 1, family, part, 5.0)
    both = _synth_mvtu(tmp_path, 64, 2, family, part, 5.0)
    assert not flat["untimed_cells"] and not piped["untimed_cells"]
    assert flat["lut_levels"] > piped["lut_levels"]
    assert flat["delay_ns"] > piped["delay_ns"] + 0.5, (flat, piped)
    assert not flat["meets"]  # 64 lanes in one cycle: not at 200 MHz on either family
    assert flat["from"].split()[0] in ("RAMB18E1", "RAMB36E1", "RAMB18E2", "RAMB36E2", "FDRE")
    assert piped["from"].startswith("RAMB"), piped
    assert both["from"].startswith("FDRE") and both["lut_levels"] == piped["lut_levels"], both
    assert piped["delay_ns"] > both["delay_ns"] + 0.5, (piped, both)


def test_lanes_against_the_clock_from_a_timing_table(tmp_path: Path) -> None:
    """Per datapath, part and SIMD, judged with the PIPE the build gives that SIMD with weights
    in block RAM, as in the grid (XNOR units from 32 lanes: 2, operands and popcounts
    registered; PIPE 1 rows are not used): 24 unpipelined lanes can miss a clock that 32
    pipelined ones meet. The widest SIMD up to which all meet; 1 where none does; None without
    a table."""
    from hw import timing_report

    rows = [{"kind": "xnor", "simd": s, "pipe": 0, "delay_ns": d}
            for s, d in ((8, 4.0), (16, 4.8), (32, 5.6))]
    rows += [{"kind": "xnor", "simd": s, "pipe": 2, "delay_ns": d} for s, d in ((32, 4.7),
                                                                                (64, 5.3))]
    rows += [{"kind": "xnor", "simd": s, "pipe": 1, "delay_ns": 1.0} for s in (32, 64)]
    rows += [{"kind": "int", "simd": 3, "pipe": 2, "delay_ns": 6.0}]
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"zynquplus": rows}))
    part, zcu = timing_report.PARTS["zynquplus"], "xczu7ev-ffvc1156-2-e"

    def meet(simd: int, p: str = part, kind: str = "xnor") -> bool | None:
        return timing_report.lanes_meet("zynquplus", p, 5.0, kind, simd, table)

    assert (meet(16), meet(24), meet(32), meet(64)) == (True, False, True, False)
    assert meet(24, zcu) and meet(64, zcu)  # -2: 645/775 of the -1 delays
    assert timing_report.max_lanes("zynquplus", part, 5.0, "xnor", table) == 32
    assert timing_report.max_lanes("zynquplus", zcu, 5.0, "xnor", table) == 64
    assert timing_report.max_lanes("zynquplus", part, 5.0, "int", table) == 1
    assert timing_report.max_lanes("zynq7", None, 5.0, "xnor", table) is None
    assert timing_report.lanes_meet("zynq7", None, 5.0, "xnor", 8, table) is None
    assert timing_report.max_lanes("zynquplus", part, 5.0, "xnor", tmp_path / "no.json") is None
