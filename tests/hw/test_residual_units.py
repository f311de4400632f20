"""The residual units against their numpy models under random valid gaps and ready
back-pressure: the linear requantizer (one input, and two zipped), global sum pooling, the
stream fork (dup) and join (zip); then a whole residual block (fork, binary 3x3 conv branch,
identity shortcut, add-requantize) stitched as a graph, with its FIFOs sized by simulation:
full rate, and a pinned shortcut FIFO too small for it refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import fifosize, stitch, units, verilator
from hw import model as hwm

pytestmark = pytest.mark.verilator

FLOWS = [(1.0, 1.0, 0), (0.6, 0.5, 1)]  # (p_valid, p_ready, seed)


def lanes(beats: list[int], per_beat: int, width: int, signed: bool) -> np.ndarray:
    return units.elements_of(beats, per_beat, width, signed)


def run_unit(unit: units.Unit, beats: list[int], n_out: int, work: Path, flow) -> list[int]:
    p_valid, p_ready, seed = flow
    work.mkdir(parents=True, exist_ok=True)
    files = unit.write_memories(work)
    sim = verilator.build(unit.module, [unit.source], {**unit.params, **files})
    return verilator.run(sim, beats, n_out, work, seed=seed, p_valid=p_valid, p_ready=p_ready)[0]


def assert_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    assert not len(bad), (f"{len(bad)} mismatches; first at {tuple(bad[0])}: rtl "
                          f"{got[tuple(bad[0])]} != model {want[tuple(bad[0])]}")


# (C, PE, XW, XSIGNED, OUT_W, LO, HI, shift)
REQUANT = [(16, 4, 14, 1, 8, -128, 127, 9), (6, 1, 10, 0, 4, 0, 15, 5),
           (8, 8, 5, 1, 8, -128, 127, 0), (5, 5, 20, 1, 3, -4, 3, 14)]


@pytest.mark.parametrize("case", REQUANT, ids=lambda c: "c{}pe{}x{}s{}o{}".format(*c[:5]))
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_requant_one_input(tmp_path: Path, case, flow) -> None:
    c, pe, xw, xs, out_w, lo, hi, shift = case
    rng = np.random.default_rng(c * pe)
    xlo, xhi = (-(1 << (xw - 1)), 1 << (xw - 1)) if xs else (0, 1 << xw)
    x = rng.integers(xlo, xhi, (12, c))
    x[0], x[1] = xlo, xhi - 1  # extremes: the clamp on both sides
    a = rng.integers(-(1 << 10), 1 << 10, c)
    b = rng.integers(-(1 << (shift + xw)), 1 << (shift + xw), c)
    unit = units.requant("r", a, b, shift, pe, xw, bool(xs), out_w, lo, hi)
    got = run_unit(unit, units.beats_of(x, pe, xw), x.size // pe, tmp_path, flow)
    want = units.requant_ref(x, a, b, shift, lo, hi)
    assert_equal(lanes(got, pe, out_w, lo < 0).reshape(want.shape), want)


@pytest.mark.parametrize("case", [(16, 4, 49, 8, 1), (5, 5, 4, 3, 0), (6, 2, 1, 8, 1),
                                  (64, 16, 9, 4, 1)], ids=lambda c: "c{}pe{}p{}w{}s{}".format(*c))
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_accpool(tmp_path: Path, case, flow) -> None:
    c, pe, pixels, in_w, signed = case
    rng = np.random.default_rng(c + pixels)
    lo, hi = (-(1 << (in_w - 1)), 1 << (in_w - 1)) if signed else (0, 1 << in_w)
    x = rng.integers(lo, hi, (4, pixels, c))
    x[0] = lo  # the sum's extreme
    unit = units.accpool("p", c, pe, pixels, in_w, bool(signed))
    got = run_unit(unit, units.beats_of(x, pe, in_w), 4 * c // pe, tmp_path, flow)
    want = units.accpool_ref(x)
    assert_equal(lanes(got, pe, unit.params["OUT_W"], bool(signed)).reshape(want.shape), want)


def test_dup_zip_requant_graph(tmp_path: Path) -> None:
    """A fork whose branches rejoin: out0 through a 2-bit thresholding, out1 straight, zipped
    and added with per-channel integer scales; different PE on each side (width converters)."""
    rng = np.random.default_rng(7)
    c, n = 12, 10
    q = rng.integers(-128, 128, (n, c))
    t = np.sort(rng.integers(-100, 100, (c, 3)), axis=1)
    a, g = rng.integers(-300, 300, c), rng.integers(-300, 300, c)
    b = rng.integers(-5000, 5000, c)
    nodes = [units.dup("split", 4 * 8),
             units.thresholding("act", t, 3, 8, True, 2),
             units.zip_("zip", 6 * 2, 6 * 8),
             units.requant("add", a, b, 6, 6, 2, False, 8, -128, 127, g=g, z_w=8)]
    edges = [stitch.Edge("split", "out0", "act", "in"), stitch.Edge("act", "out", "zip", "in0"),
             stitch.Edge("split", "out1", "zip", "in1"), stitch.Edge("zip", "out", "add", "in")]
    top, stages = stitch.write(nodes, tmp_path, edges=edges)
    assert {s.name for s in stages if s.module == "dwc"} == {"dwc_act", "dwc_zip_in0",
                                                           "dwc_zip_in1"}
    sim = verilator.build("accel", stitch.filelist(stages, top))
    branch = units.thresholding_ref(q, t)
    want = units.requant_ref(branch, a, b, 6, -128, 127, z=q, g=g)
    for pv, pr, seed in FLOWS:
        got = verilator.run(sim, units.beats_of(q, 4, 8), n * 2, tmp_path, seed=seed,
                            p_valid=pv, p_ready=pr)[0]
        assert_equal(lanes(got, 6, 8, True).reshape(want.shape), want)


def residual_block(rng: np.random.Generator, h: int = 8, c: int = 8):
    """q (int8, h x h x c) -> fork -> [q >= 0 (bipolar) -> pad 1 (bit 0) -> 3x3 window ->
    XNOR conv, raw] + identity shortcut -> requantized add -> int8. Returns the nodes, edges,
    a function computing the numpy model, and the input's bits per frame."""
    w = rng.integers(0, 2, (c, 9 * c))
    a, g = rng.integers(1, 64, c), rng.integers(-64, 64, c)
    b = rng.integers(-2000, 2000, c)
    acc_w = hwm.mvtu_acc_width(9 * c, True)
    nodes = [units.dup("split", 2 * 8),
             units.thresholding("act", np.zeros((c, 1), np.int64), 2, 8, True, 1),
             units.fmpadding("pad", (h, h), c, 4, 1, (1, 1, 1, 1)),
             units.swg("win", (h + 2, h + 2), c, 4, (3, 3), (1, 1), 1),
             units.mvtu("conv", w, None, 4, 12),
             units.zip_("zip", 4 * acc_w, 4 * 8),
             units.requant("add", a, b, 4, 4, acc_w, False, 8, -128, 127, g=g, z_w=8)]
    edges = [stitch.Edge("split", "out0", "act", "in"), *stitch.chain_edges(nodes[1:5]),
             stitch.Edge("conv", "out", "zip", "in0"), stitch.Edge("split", "out1", "zip", "in1"),
             stitch.Edge("zip", "out", "add", "in")]

    def model(q: np.ndarray) -> np.ndarray:
        bits = np.pad((q >= 0).astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)))
        acc = hwm.xnor_mvtu(units.swg_ref(bits, (3, 3), (1, 1), 1).reshape(-1, 9 * c), w, None)
        return units.requant_ref(acc, a, b, 4, -128, 127, z=q.reshape(-1, c), g=g)

    return nodes, edges, model, h * h * c * 8


def test_residual_block_exact_under_backpressure(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    nodes, edges, model, _ = residual_block(rng)
    q = rng.integers(-128, 128, (3, 8, 8, 8))
    plan = fifosize.size(nodes, tmp_path / "size", 8 * 8 * 8 * 8, edges=edges)
    top, stages = stitch.write(nodes, tmp_path, depths=plan.depths, edges=edges)
    sim = verilator.build("accel", stitch.filelist(stages, top))
    want = model(q)
    for seed, pv, pr in [(0, 1.0, 1.0), (1, 0.7, 0.6), (2, 0.4, 0.9)]:
        got = verilator.run(sim, units.beats_of(q, 2, 8), want.size // 4, tmp_path, seed=seed,
                            p_valid=pv, p_ready=pr, idle_limit=100_000)[0]
        assert_equal(lanes(got, 4, 8, True).reshape(want.shape), want)


def test_residual_block_fifo_sizing(tmp_path: Path) -> None:
    """Sized by simulation: full rate, the shortcut FIFO holding at least what the branch's
    first window needs before the add can take anything (padded by one: one input row and two
    pixels), less than a frame; pinned below that, a deadlock, refused by name."""
    nodes, edges, _, in_bits = residual_block(np.random.default_rng(11))
    plan = fifosize.size(nodes, tmp_path / "a", in_bits, edges=edges)
    assert plan.efficiency >= 0.95, plan.to_json()
    shortcut = plan.depths["fifo_zip_in1"] * plan.widths["fifo_zip_in1"]
    assert (8 + 2) * 8 * 8 <= shortcut < in_bits, plan.depths  # pixels of 8 int8 channels
    with pytest.raises(fifosize.FifoError,
                       match=r"deadlocks .*fifo_zip_in1 pinned at depth 2 needs at least \d+"):
        fifosize.size(nodes, tmp_path / "b", in_bits, pinned={"fifo_zip_in1": 2}, edges=edges)
