"""Every streaming unit besides the matrix unit (thresholding, padding, sliding window, pooling,
label select, FIFO, width converter) against its numpy model, over parameter sets with PE=1/SIMD=1,
non-power-of-two sizes, and random valid gaps with ready back-pressure; plus a stitched chain of
all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import model as hwm
from hw import stitch, units, verilator, wrap

pytestmark = pytest.mark.verilator

FLOWS = [(1.0, 1.0, 0), (0.6, 0.5, 1)]  # (p_valid, p_ready, seed): full flow, gaps + back-pressure


def simulate(unit: units.Unit, beats: list[int], n_out: int, work: Path, seed: int,
             p_valid: float, p_ready: float) -> tuple[list[int], int]:
    work.mkdir(parents=True, exist_ok=True)
    files = unit.write_memories(work)
    sim = verilator.build(unit.module, [unit.source], {**unit.params, **files})
    got, cycles, _ = verilator.run(sim, beats, n_out, work, seed=seed, p_valid=p_valid,
                                   p_ready=p_ready)
    return got, cycles


def assert_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    assert not len(bad), (f"{len(bad)} mismatches; first at {tuple(bad[0])}: rtl "
                          f"{got[tuple(bad[0])]} != model {want[tuple(bad[0])]}")


# (C, PE, IN_W, IN_SIGNED, NT, OUT_W, OUT_BIAS, TABLE)
THRESH = [(784 // 16, 7, 8, 0, 1, 1, 0, 0), (6, 1, 8, 0, 255, 8, -128, 1),
          (6, 3, 4, 1, 3, 2, 0, 0), (5, 5, 4, 1, 3, 3, -1, 1), (4, 2, 8, 0, 255, 8, -128, 0)]


@pytest.mark.parametrize("case", THRESH, ids=lambda c: "c{}pe{}w{}s{}nt{}t{}".format(
    c[0], c[1], c[2], c[3], c[4], c[7]))
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_thresholding(tmp_path: Path, case, flow) -> None:
    c, pe, in_w, in_signed, nt, out_w, bias, table = case
    p_valid, p_ready, seed = flow
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (in_w - 1)), 1 << (in_w - 1)) if in_signed else (0, 1 << in_w)
    t = np.sort(rng.integers(lo - 1, hi + 2, (c, nt)), axis=1)  # some never / always fire
    n = 4
    x = rng.integers(lo, hi, (n, c))
    unit = units.thresholding("t", t, pe, in_w, bool(in_signed), out_w, bias, bool(table))
    beats = units.beats_of(x, pe, in_w)
    got, _ = simulate(unit, beats, n * c // pe, tmp_path, seed, p_valid, p_ready)
    want = units.thresholding_ref(x, t, bias)
    assert_equal(units.elements_of(got, pe, out_w, signed=bias < 0).reshape(n, c), want)


def test_thresholding_picks_table_for_wide_thresholds() -> None:
    assert units.thresholding("a", np.zeros((1, 255)), 1, 8, False, 8).params["TABLE"] == 1
    assert units.thresholding("b", np.zeros((784, 1)), 49, 8, False, 1).params["TABLE"] == 0


# (H, W, C, SIMD, K, S, ELEM_W, DEPTHWISE, M window words per beat)
SWG = [(6, 6, 2, 1, 3, 1, 1, 0, 1), (7, 5, 4, 2, 3, 2, 1, 0, 1), (5, 5, 3, 3, 2, 2, 8, 1, 1),
       (4, 4, 1, 1, 3, 1, 8, 0, 1), (6, 6, 4, 2, 2, 2, 1, 1, 1), (3, 3, 8, 4, 3, 1, 1, 0, 1),
       (5, 6, 2, 2, 1, 1, 2, 0, 1),
       # parallel words: a row's pixels (CNV's first layer), part of a row of two channel
       # groups, with stride 2, and whole windows
       (6, 6, 3, 3, 3, 1, 8, 0, 3), (7, 5, 4, 2, 3, 2, 1, 0, 2), (5, 6, 4, 2, 3, 1, 1, 0, 18),
       (4, 4, 1, 1, 2, 2, 1, 0, 4)]


@pytest.mark.parametrize("case", SWG, ids=lambda c: "h{}w{}c{}simd{}k{}s{}e{}dw{}m{}".format(*c))
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_swg(tmp_path: Path, case, flow) -> None:
    h, w, c, simd, k, s, elem_w, dw, m = case
    p_valid, p_ready, seed = flow
    rng = np.random.default_rng(seed)
    n = 3
    x = rng.integers(0, 1 << elem_w, (n, h, w, c))
    unit = units.swg("s", (h, w), c, simd, (k, k), (s, s), elem_w, bool(dw), m=m)
    want = units.swg_ref(x, (k, k), (s, s), simd, bool(dw)).reshape(-1, m * simd)
    got, cycles = simulate(unit, units.beats_of(x, simd, elem_w), len(want), tmp_path, seed,
                           p_valid, p_ready)
    assert_equal(units.elements_of(got, m * simd, elem_w), want)
    if p_valid == p_ready == 1.0:  # one beat per cycle on the busier side, after the fill
        assert cycles <= max(len(want), n * h * w * c // simd) + (k + 1) * w * (c // simd) + 8, \
            cycles


def test_swg_refuses_illegal_words() -> None:
    """Words per beat must tile a window row or whole rows of it: 2 of a 3-pixel row cannot."""
    assert units.swg_words((3, 3), 1) == [1, 3, 9]
    assert units.swg_words((3, 3), 2) == [1, 2, 3, 6, 18]
    assert units.swg_words((2, 2), 4, depthwise=True) == [1]
    with pytest.raises(ValueError, match=r"2 window words per beat is illegal; legal: \[1, 3, 9\]"):
        units.swg("s", (6, 6), 3, 3, (3, 3), (1, 1), 8, m=2)


@pytest.mark.parametrize("case", [(4, 4, 2, 1, 1, (1, 1, 1, 1)), (3, 5, 4, 2, 8, (2, 0, 1, 3)),
                                  (2, 2, 3, 3, 1, (0, 1, 0, 0))],
                         ids=lambda c: "h{}w{}c{}simd{}e{}".format(*c[:5]))
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_fmpadding(tmp_path: Path, case, flow) -> None:
    h, w, c, simd, elem_w, pads = case
    p_valid, p_ready, seed = flow
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 1 << elem_w, (3, h, w, c)) if elem_w > 1 else rng.integers(0, 2, (3, h, w, c))
    want = units.fmpadding_ref(x, pads)
    unit = units.fmpadding("p", (h, w), c, simd, elem_w, pads)
    got, _ = simulate(unit, units.beats_of(x, simd, elem_w), want.size // simd, tmp_path, seed,
                      p_valid, p_ready)
    assert_equal(units.elements_of(got, simd, elem_w).reshape(want.shape), want)


@pytest.mark.parametrize("case", [(64, 64, 4, 1, 0), (6, 2, 4, 1, 0), (6, 3, 9, 4, 1),
                                  (5, 1, 1, 3, 0)], ids=lambda c: "c{}pe{}kk{}e{}s{}".format(*c))
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_pool(tmp_path: Path, case, flow) -> None:
    c, pe, kk, elem_w, signed = case
    p_valid, p_ready, seed = flow
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (elem_w - 1)), 1 << (elem_w - 1)) if signed else (0, 1 << elem_w)
    win = rng.integers(lo, hi, (5 * (c // pe) * kk, pe))
    unit = units.pool("p", c, pe, kk, elem_w, bool(signed))
    got, _ = simulate(unit, units.beats_of(win, pe, elem_w), len(win) // kk, tmp_path, seed,
                      p_valid, p_ready)
    assert_equal(units.elements_of(got, pe, elem_w, bool(signed)), units.pool_ref(win, kk, pe))


@pytest.mark.parametrize("case", [(10, 1, 7, 0), (10, 5, 10, 1), (12, 4, 3, 1), (7, 7, 4, 0)],
                         ids=lambda c: "l{}pe{}e{}s{}".format(*c))
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_label_select(tmp_path: Path, case, flow) -> None:
    labels, pe, elem_w, signed = case
    p_valid, p_ready, seed = flow
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (elem_w - 1)), 1 << (elem_w - 1)) if signed else (0, 1 << elem_w)
    x = rng.integers(lo, hi, (40, labels))
    x[:10, 3] = x[:10, 5] = hi - 1  # ties: the lower index wins
    unit = units.label_select("l", labels, pe, elem_w, bool(signed))
    got, _ = simulate(unit, units.beats_of(x, pe, elem_w), len(x), tmp_path, seed, p_valid, p_ready)
    assert_equal(np.array(got), units.label_select_ref(x))


@pytest.mark.parametrize("widths", [(16, 32), (32, 16), (50, 10), (10, 50), (8, 12), (12, 8),
                                    (5, 5)], ids=lambda w: f"{w[0]}to{w[1]}")
@pytest.mark.parametrize("flow", FLOWS, ids=["full", "backpressure"])
def test_dwc_and_fifo(tmp_path: Path, widths, flow) -> None:
    in_w, out_w = widths
    p_valid, p_ready, seed = flow
    rng = np.random.default_rng(seed)
    lcm = int(np.lcm(in_w, out_w))
    bits = rng.integers(0, 2, 7 * lcm)
    for unit, ow in ((units.dwc("d", in_w, out_w), out_w), (units.fifo("f", in_w, 3), in_w)):
        got, cycles = simulate(unit, units.beats_of(bits, in_w, 1), len(bits) // ow,
                               tmp_path / unit.module, seed, p_valid, p_ready)
        assert_equal(units.elements_of(got, ow, 1).reshape(-1), bits)
        if p_valid == p_ready == 1.0:  # full rate on the wider side
            assert cycles <= len(bits) // min(in_w, out_w) + 4, (unit.module, cycles)


def test_stitched_chain(tmp_path: Path) -> None:
    """8-bit image -> input quantizer (table) -> 3x3 conv (integer MVTU) -> 2x2 max pool
    (depthwise window + pool) -> XNOR layer (raw) -> top-1, with mismatched foldings so width
    converters are inserted, under back-pressure."""
    rng = np.random.default_rng(3)
    n, h, w = 4, 8, 8
    img = rng.integers(0, 256, (n, h, w, 1))
    t_in = np.sort(rng.integers(0, 256, (1, 255)), axis=1)
    q = units.thresholding_ref(img.reshape(-1, 1), t_in, -128).reshape(n, h, w, 1)
    w0 = rng.integers(0, 2, (8, 9))
    t0 = rng.integers(-300, 300, 8)
    win0 = units.swg_ref(q, (3, 3), (1, 1), 1).reshape(-1, 9)
    a0 = hwm.int_mvtu(win0, w0, t0).reshape(n, 6, 6, 8)
    win1 = units.swg_ref(a0, (2, 2), (2, 2), 8, depthwise=True)
    p1 = units.pool_ref(win1, 4, 8).reshape(n, 3 * 3 * 8)
    w1 = rng.integers(0, 2, (6, 72))
    logits = hwm.xnor_mvtu(p1, w1, None)
    want = units.label_select_ref(logits)

    chain = [units.thresholding("quant", t_in, 1, 8, False, 8, -128),
             units.swg("win0", (h, w), 1, 1, (3, 3), (1, 1), 8),
             units.mvtu("conv0", w0, t0, pe=4, simd=3, xnor=False, in_w=8, in_signed=True),
             units.swg("win1", (6, 6), 8, 8, (2, 2), (2, 2), 1, depthwise=True),
             units.pool("pool1", 8, 8, 4, 1),
             units.mvtu("fc", w1, None, pe=2, simd=24),
             units.label_select("top1", 6, 3, hwm.mvtu_acc_width(72, True), False)]
    top, stages = stitch.write(chain, tmp_path, fifo_depth=2)
    assert [s.module for s in stages].count("dwc") == 4  # 8->24, 4->8, 8->24, 14->21 bits
    sim = verilator.build("accel", stitch.filelist(stages, top))
    beats = units.beats_of(img.reshape(-1), 1, 8)
    got, cycles, _ = verilator.run(sim, beats, n, tmp_path, seed=5, p_valid=0.8, p_ready=0.7)
    assert_equal(np.array(got), want)


def test_filelist_names_every_module_once() -> None:
    """hw/filelists/units.f lists each module of hw/rtl/ (one module per file, named after it)."""
    root = units.RTL.parents[1]
    listed = [ln for ln in (root / "hw/filelists/units.f").read_text().splitlines()
              if ln.strip() and not ln.startswith("//")]
    assert sorted(listed) == sorted(f"hw/rtl/{p.name}" for p in units.RTL.glob("*.sv"))
    for line in listed:
        assert f"module {Path(line).stem} " in (root / line).read_text(), line


@pytest.mark.parametrize("port_w,offset", [(16, 3), (5, 0), (6, -2)],
                         ids=["extend16+3", "low5", "extend6-2"])
def test_finn_interface_wrapper(tmp_path: Path, port_w: int, offset: int) -> None:
    """A unit behind FINN's port names (input padded to whole bytes, output elements resized to
    the port's element width with FINN's ActVal added), driven through the simulation adapter:
    an integer-input matrix unit whose signed accumulators are sign-extended or cut to their
    low bits."""
    rng = np.random.default_rng(port_w)
    mw, mh, pe, simd, in_w = 6, 4, 2, 3, 3
    w = rng.integers(0, 2, (mh, mw))
    x = rng.integers(-4, 4, (5, mw))
    acc_w = 6  # |sum| <= 24
    unit = units.mvtu("m", w, None, pe, simd, xnor=False, in_w=in_w, in_signed=True,
                      acc_w=acc_w)
    files = unit.write_memories(tmp_path)
    in_port = 16  # 9 bits padded to whole bytes
    (tmp_path / "top.sv").write_text(wrap.wrapper_source(
        "top", unit, files, in_port, pe, acc_w, port_w, True, offset))
    (tmp_path / "top_sim.sv").write_text(wrap.sim_adapter_source(
        "top", in_port, -(-pe * port_w // 8) * 8))
    sim = verilator.build("top_sim", [unit.source, tmp_path / "top.sv", tmp_path / "top_sim.sv"])
    beats = hwm.mvtu_input_beats(x, simd, in_w)
    got, _, _ = verilator.run(sim, beats, len(x) * mh // pe, tmp_path, seed=1, p_valid=0.7,
                              p_ready=0.6)
    y = units.elements_of(got, pe, port_w, signed=True).reshape(len(x), mh)
    want = hwm.int_mvtu(x, w, None) + offset
    if port_w < acc_w:  # the low bits, as two's complement of the port's width
        want = hwm.signed(hwm.twos(want, port_w), port_w)
    assert_equal(y, want)
    assert all(b >> (pe * port_w) == 0 for b in got), "padding bits must be zero"
