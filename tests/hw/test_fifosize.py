"""FIFO sizing by simulation (hw.fifosize) and the harness features it rests on: paced input,
FIFO occupancy reports, and stall detection (a run that stops making progress ends, never
hangs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import fifosize, stitch, units, verilator

pytestmark = pytest.mark.verilator


def lfc_like() -> list[units.Unit]:
    """A 1-bit thresholding stream (the bottleneck, 192 cycles) into a 24-lane matrix unit
    (128 cycles) that reads its vector in 8 beats and then computes for 120 cycles, then a raw
    layer."""
    rng = np.random.default_rng(0)
    return [units.thresholding("quant", rng.integers(0, 256, (192, 1)), 1, 8, False, 1),
            units.mvtu("fc0", rng.integers(0, 2, (64, 192)), rng.integers(0, 193, 64), 4, 24),
            units.mvtu("fc1", rng.integers(0, 2, (10, 64)), None, 1, 16)]


def test_sizing_reaches_the_rate_with_less_memory(tmp_path: Path) -> None:
    nodes = lfc_like()
    plan = fifosize.size(nodes, tmp_path, 192 * 8)
    assert plan.bottleneck == "quant" and plan.ideal_cycles == 192
    assert plan.efficiency >= 0.95, plan.to_json()
    analytic = {s.name: s.params["DEPTH"] for s in stitch.chain(nodes) if s.module == "fifo"}
    assert set(plan.depths) == set(analytic) == {"fifo_fc0", "fifo_fc1"}
    assert all(plan.depths[n] <= analytic[n] for n in analytic), (plan.depths, analytic)
    assert plan.bits == sum(r["bits"] for r in plan.table())
    # the depths it chose, stitched and run again at full flow
    top, stages = stitch.write(nodes, tmp_path / "final", depths=plan.depths)
    sim = verilator.build("accel", stitch.filelist(stages, top))
    t = verilator.trace(sim, [0] * 192 * 8, 8 * 10, tmp_path / "final")
    assert {n: t.fifos[n][2] for n in plan.depths} == plan.depths
    ends = t.stamps[9::10]
    assert (ends[-1] - ends[1]) / 6 <= 192 / 0.95


def test_a_pinned_depth_is_kept_and_its_cost_reported(tmp_path: Path) -> None:
    plan = fifosize.size(lfc_like(), tmp_path, 192 * 8, pinned={"fifo_fc0": 2})
    assert plan.depths["fifo_fc0"] == 2 and plan.pinned == {"fifo_fc0": 2}
    # two entries (and the converter's one) for the 5 beats made while fc0 computes: it waits
    assert plan.efficiency < 0.95
    assert any("pinned FIFOs that filled up: fifo_fc0" in n for n in plan.notes), plan.notes


@pytest.mark.parametrize("pinned,message", [
    ({"fifo_quant": 4}, "fifo_quant: no such FIFO"),
    ({"fifo_fc1": 0}, "pinned depth of fifo_fc1 is 0")])
def test_bad_pins_are_refused(tmp_path: Path, pinned, message) -> None:
    with pytest.raises(fifosize.FifoError, match=message):
        fifosize.size(lfc_like(), tmp_path, 192 * 8, pinned=pinned)


def test_paced_input_and_occupancy(tmp_path: Path) -> None:
    """Beats offered no faster than one per IN_INTERVAL cycles; a FIFO reports its peak."""
    unit = units.fifo("f", 8, 5)
    (tmp_path / "f.sv").write_text(stitch.top_source("accel", [unit], {}))
    sim = verilator.build("accel", [unit.source, tmp_path / "f.sv"])
    t = verilator.trace(sim, list(range(40)), 40, tmp_path, in_interval=3.0)
    assert t.beats == list(range(40))
    assert all(b - a >= 2 for a, b in zip(t.stamps, t.stamps[1:])), t.stamps[:6]
    assert t.fifos["f"][0] == 1 and t.fifos["f"][2] == 5
    t = verilator.trace(sim, list(range(40)), 40, tmp_path, p_ready=0.2, seed=3)
    assert t.fifos["f"][0] == 5  # back-pressure fills it


def test_a_run_that_stops_making_progress_ends(tmp_path: Path) -> None:
    """Half a frame into the matrix unit: no output ever comes; the run stops after the idle
    limit instead of running to max_cycles, and says which FIFOs were full."""
    nodes = lfc_like()[1:]
    top, stages = stitch.write(nodes, tmp_path)
    sim = verilator.build("accel", stitch.filelist(stages, top))
    beats = [0] * 4  # 96 of fc0's 192 inputs
    t = verilator.trace(sim, beats, 10, tmp_path, max_cycles=10_000_000, idle_limit=500)
    assert t.stalled is not None and t.stalled < 600 and t.beats == []
    with pytest.raises(verilator.Stalled, match="stopped making progress at cycle"):
        verilator.run(sim, beats, 10, tmp_path, max_cycles=10_000_000, idle_limit=500)
