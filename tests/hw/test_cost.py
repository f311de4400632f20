"""The cost model (hw.cost): block RAM and DSP counts against what Yosys made of our units,
the non-negative least squares fit, and the committed model against Yosys on shapes and on a
stitched design outside its calibration grid."""

from __future__ import annotations

import numpy as np
import pytest

from hw import calibrate, cost, units

#: (depth, width) -> BRAM36 that Yosys 0.23 synth_xilinx -family xc7 made of our weight ROMs
#: (hw.bench and calibration shapes: TFC/CNV layers, a 2-row ROM, a 6,272-row one; ROMs a few
#: rows deeper than a block, whose rows left over Yosys keeps in block RAM)
MEASURED_BRAM = [((64, 784), 11.0), ((36, 1024), 14.5), ((288, 512), 7.5), ((128, 512), 7.5),
                 ((64, 64), 1.0), ((4, 288), 4.0), ((40, 128), 2.0), ((32, 512), 7.5),
                 ((1024, 98), 3.0), ((1024, 8), 0.5), ((256, 16), 0.5), ((10, 64), 1.0),
                 ((6272, 8), 1.5), ((2, 320), 2.5), ((1152, 64), 3.0), ((1152, 16), 1.0),
                 ((576, 256), 7.5), ((640, 256), 7.5), ((528, 72), 2.0), ((1040, 36), 1.5),
                 ((576, 64), 2.0), ((96, 256), 4.0)]


@pytest.mark.parametrize(("shape", "bram"), MEASURED_BRAM, ids=lambda v: str(v))
def test_block_ram_as_yosys_maps_it(shape: tuple[int, int], bram: float) -> None:
    depth, width = shape
    assert cost.bram_blocks(depth, int(cost.rom_width(depth, width))) == bram


def test_dsp_counts_as_measured() -> None:
    """hw.bench's multi-bit rows: one DSP48 per 8 x 8 lane, one per requant product up to 25
    bits of coefficient, two beyond."""
    rng = np.random.default_rng(0)
    stem = calibrate.mvtu_unit(rng, "mul", 9, 16, 9, 4, act=False)
    assert cost.dsp(stem) == 36
    for cw, nin, want in ((20, 2, 8), (40, 2, 16), (20, 1, 4)):
        top = (1 << (cw - 1)) - 1
        a, g, b = (rng.integers(-top, top, 32) for _ in range(3))
        r = units.requant("r", a, b, 8, 4, 12 if nin == 2 else 16, True, 8, -128, 127,
                          g=g if nin == 2 else None, z_w=8)
        assert r.params["CW"] == cw and cost.dsp(r) == want
    assert cost.dsp(calibrate.mvtu_unit(rng, "xnor", 64, 64, 8, 8)) == 0


def test_nnls_matches_a_brute_force_search() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((12, 3))
    b = a @ np.array([2.0, -1.0, 0.5]) + 0.01 * rng.random(12)
    x = cost.nnls(a, b)
    assert (x >= 0).all() and x[1] == 0
    best = min((np.linalg.norm(a[:, s] @ np.linalg.lstsq(a[:, s], b, rcond=None)[0] - b), s)
               for s in ([0], [2], [0, 2]))
    assert np.linalg.norm(a @ x - b) == pytest.approx(best[0], rel=1e-9)


@pytest.mark.parametrize("family", ["zynq7", "zynquplus"])
def test_every_module_has_features_and_coefficients(family: str) -> None:
    """Both board families are calibrated (Pynq, and Ultra96/ZCU104/KV260)."""
    model = cost.CostModel.load(family)
    assert set(model.coef) == set(cost.FEATURES)
    assert all(model.coef[m]["LUT"] for m in model.coef)
    with pytest.raises(ValueError, match="no cost model for module 'nope'"):
        cost.features(units.Unit("x", "nope", {}, 1, 1))


#: the committed model against Yosys outside its grid, on LUT: a unit within its module's
#: tolerance (results/cost_model_zynq7.md: Yosys maps a threshold ROM to 0.6 to 13 LUTs per bit,
#: not monotonically in its depth), a whole stitched design within 10 %
UNIT_TOLERANCE = {"mvtu": 0.35, "thresholding": 0.65, "fifo": 0.30}
DESIGN_TOLERANCE = 0.10


@pytest.mark.yosys
def test_committed_model_on_shapes_outside_the_grid() -> None:
    rng = np.random.default_rng(99)
    model = cost.CostModel.load("zynq7")
    shapes = [calibrate.mvtu_unit(rng, "xnor", 400, 96, 40, 12),
              calibrate.mvtu_unit(rng, "xnor", 192, 48, 24, 6, ram="distributed"),
              # an 8-word weight ROM, priced as folded into the popcount (no LUTs of its own)
              calibrate.mvtu_unit(rng, "xnor", 96, 64, 24, 32, ram="distributed"),
              units.thresholding("t", np.sort(rng.integers(-512, 512, (96, 3)), axis=1), 8, 11,
                                 True, 2),
              units.fifo("f", 24, 300)]
    for u in shapes:
        got, want = model.unit(u), calibrate.synth_unit(u, "zynq7")
        tol = UNIT_TOLERANCE[u.module]
        assert abs(got["LUT"] - want["LUT"]) <= tol * max(want["LUT"], 20), (u, got, want)
        assert got["BRAM36"] == want["BRAM36"] and got["DSP"] == want["DSP"], (u, got, want)


@pytest.mark.yosys
@pytest.mark.slow
def test_committed_model_on_a_stitched_design() -> None:
    """An FC chain of a folding the calibration never saw: the model's sum over the stitched
    stages (units, FIFOs, width converters) against Yosys on the whole top."""
    rng = np.random.default_rng(5)
    nodes = [units.thresholding("in", rng.integers(0, 255, (784, 1)), 16, 8, False, 1)]
    for j, (mw, mh, simd, pe) in enumerate([(784, 96, 56, 12), (96, 96, 24, 8),
                                           (96, 10, 32, 2)]):
        nodes.append(calibrate.mvtu_unit(rng, "xnor", mw, mh, simd, pe, act=j < 2))
        nodes[-1].name = f"fc{j}"
    nodes.append(units.label_select("top", 10, 1, nodes[-1].params["ACC_W"], False))
    want, stages = calibrate.synth_design(nodes, "zynq7")
    got = cost.CostModel.load("zynq7").total(stages)
    assert abs(got["LUT"] - want["LUT"]) <= DESIGN_TOLERANCE * want["LUT"], (got, want)
    assert got["BRAM36"] == want["BRAM36"] and got["DSP"] == want["DSP"] == 0


def test_pipeline_levels_and_their_registers() -> None:
    """The build's PIPE: 0 below 32 XNOR lanes, 1 from there with weights in LUTs, 2 with
    weights in block RAM (operands registered too), 3 from 128 XNOR lanes (chunk counts
    registered too); refolding and moving the weights recompute
    it, and the model counts each level's flip-flops on top of the fitted unpipelined unit."""
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2, (64, 576))
    t = rng.integers(0, 576, 64)
    assert [units.mvtu_pipe(s, True, r) for s, r in ((16, "block"), (32, "distributed"),
                                                     (32, "block"))] == [0, 1, 2]
    assert units.mvtu_pipe(3, False, "distributed") == 1  # integer dot products: always
    u = units.mvtu("m", w, t, 8, 16)
    assert u.params["PIPE"] == 0
    bram = units.refold(u, pe=64, simd=32)
    lut = units.refold(bram, ram_style="distributed")
    assert (bram.params["PIPE"], lut.params["PIPE"]) == (2, 1)
    acc_w = u.params["ACC_W"]
    one = 64 * (acc_w + 1) * 2 + 3  # dot products and carry-ins, -T words, control
    assert cost.pipe_registers(lut) == one
    assert cost.pipe_registers(bram) == one + 32 + 64 * 32 + 64 * (acc_w + 1) + 3
    assert cost.pipe_registers(u) == 0
    # PIPE 3 from 128 XNOR lanes: six chunks of 24 lanes, 5 + 1 bits each, per PE
    assert [units.mvtu_pipe(s, True, r) for s, r in ((128, "block"), (144, "distributed"))] \
        == [3, 3]
    assert units.mvtu_pipe(144, False, "block") == 2  # no chunks in an integer dot product
    wide = units.refold(u, pe=64, simd=144)
    assert wide.params["PIPE"] == 3
    assert cost.pipe_registers(wide) == one + 144 + 64 * 144 + 64 * (acc_w + 1) + 3 \
        + 64 * 6 * 6 + 64 * (acc_w + 1) + 3
    with pytest.raises(ValueError, match="PIPE=3; 0 to 3 for XNOR popcounts, 0 to 2 otherwise"):
        units.mvtu("m", w, t, 8, 16, xnor=False, in_w=8, pipe=3)
    model = cost.CostModel.load("zynq7")
    assert model.unit(bram)["FF"] - model.unit(lut)["FF"] >= 64 * 32  # the weights' register


def test_fit_rows_uses_only_the_shapes_not_held_out_and_modules_are_checked(capsys) -> None:
    """A calibration of some modules keeps the others' stored rows: the fit over stored rows
    takes each module's fitted shapes only; unknown module names are refused in one line."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        u = calibrate.simple_unit("pool", rng)
        rows.append({"module": "pool", "held_out": i >= 6, "params": u.params,
                     "yosys": {"LUT": 1e6 if i >= 6 else 10.0 + i, "FF": 5.0, "BRAM36": 0.0,
                               "DSP": 0.0}})
    coef = calibrate.fit_rows(rows)
    model = cost.CostModel("zynq7", coef)
    assert max(model.unit(units.Unit("u", "pool", r["params"], 1, 1))["LUT"]
               for r in rows) < 1000  # the held-out rows' absurd LUT counts were not fitted
    with pytest.raises(SystemExit) as exc:
        calibrate.main(["--modules", "swg,nope"])
    assert exc.value.code == 2
    assert "'swg,nope': modules are " in capsys.readouterr().err
