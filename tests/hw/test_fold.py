"""The folding search (hw.fold): refolded units equal the constructors', the search reaches a
target within the budget, stops at the budget or the input stream, refuses what cannot fit, and
its folding runs at the rate it predicts in stitched rtlsim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import cost, fold, rate, stitch, units, verilator
from hw import model as hwm

BUDGET = {"LUT": 42_560, "FF": 106_400, "BRAM36": 126, "DSP": 220}


def same(a: units.Unit, b: units.Unit) -> bool:
    return (a.params, a.in_width, a.out_width, a.inputs, a.outputs) == \
        (b.params, b.in_width, b.out_width, b.inputs, b.outputs)


def test_refold_equals_the_constructor_of_every_module() -> None:
    rng = np.random.default_rng(0)
    w, t = rng.integers(0, 2, (64, 576)), rng.integers(0, 576, 64)
    assert same(units.refold(units.mvtu("m", w, t, 4, 8), pe=16, simd=32),
                units.mvtu("m", w, t, 16, 32))
    w8 = rng.integers(-128, 128, (32, 64))
    kw = dict(xnor=False, in_w=8, in_signed=True, w_bits=8)
    assert same(units.refold(units.mvtu("m", w8, None, 2, 4, **kw), pe=8, simd=16,
                             ram_style="distributed"),
                units.mvtu("m", w8, None, 8, 16, ram_style="distributed", **kw))
    assert same(units.refold(units.swg("s", (14, 14), 64, 4, (3, 3), (1, 1), 1), simd=32),
                units.swg("s", (14, 14), 64, 32, (3, 3), (1, 1), 1))
    th = np.sort(rng.integers(-100, 100, (64, 3)), axis=1)
    assert same(units.refold(units.thresholding("t", th, 2, 8, True, 2), pe=16),
                units.thresholding("t", th, 16, 8, True, 2))
    tab = np.sort(rng.integers(0, 255, (3, 255)), axis=1)  # the table form
    assert same(units.refold(units.thresholding("t", tab, 1, 8, False, 8), pe=3),
                units.thresholding("t", tab, 3, 8, False, 8))
    assert same(units.refold(units.fmpadding("p", (12, 12), 16, 2, 1, (1, 1, 1, 1)), simd=8),
                units.fmpadding("p", (12, 12), 16, 8, 1, (1, 1, 1, 1)))
    assert same(units.refold(units.pool("p", 64, 2, 4, 1), pe=16), units.pool("p", 64, 16, 4, 1))
    assert same(units.refold(units.label_select("l", 10, 1, 12, True), pe=5),
                units.label_select("l", 10, 5, 12, True))
    a, b, g = (rng.integers(-1000, 1000, 16) for _ in range(3))
    assert same(units.refold(units.requant("r", a, b, 4, 2, 12, True, 8, -128, 127, g=g, z_w=8),
                             pe=8), units.requant("r", a, b, 4, 8, 12, True, 8, -128, 127, g=g,
                                                  z_w=8))
    assert same(units.refold(units.accpool("a", 64, 2, 49, 8, True), pe=16),
                units.accpool("a", 64, 16, 49, 8, True))
    assert same(units.refold(units.dup("d", 2 * 8), pe=8, old_pe=2), units.dup("d", 8 * 8))
    assert same(units.refold(units.zip_("z", 2 * 12, 2 * 8), pe=4, old_pe=2),
                units.zip_("z", 4 * 12, 4 * 8))


class FcNet:
    """Input thresholding and three XNOR layers (the last raw) then top-1, contents kept so
    that the real units of any folding can be made."""

    def __init__(self, seed: int = 0, sizes: tuple[int, ...] = (256, 128, 128, 10)) -> None:
        rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.t_in = rng.integers(0, 256, (sizes[0], 1))
        self.w = [rng.integers(0, 2, (mh, mw)) for mw, mh in zip(sizes, sizes[1:], strict=False)]
        self.t = [rng.integers(0, w.shape[1] + 1, w.shape[0]) for w in self.w[:-1]] + [None]

    def units(self, folds: dict[str, dict] | None = None) -> list[units.Unit]:
        f = folds or {}
        us = [units.thresholding("quant", self.t_in, f.get("quant", {}).get("PE", 1), 8, False,
                                 1)]
        for i, (w, t) in enumerate(zip(self.w, self.t, strict=True)):
            g = f.get(f"fc{i}", {})
            us.append(units.mvtu(f"fc{i}", w, t, g.get("PE", 1), g.get("SIMD", 1),
                                 ram_style=g.get("ram_style", "block")))
        acc = hwm.mvtu_acc_width(self.sizes[-2], True)
        us.append(units.label_select("top1", 10, f.get("top1", {}).get("PE", 1), acc, False))
        return us

    def design(self, budget: dict[str, float], in_stream_bits: int | None = None) -> fold.Design:
        return fold.Design([fold.Foldable.of(u) for u in self.units()], None,
                           self.sizes[0] * 8, cost.CostModel.load("zynq7"), budget,
                           in_stream_bits)


def test_search_reaches_a_target_within_the_budget() -> None:
    net = FcNet()
    design = net.design(BUDGET)
    result = fold.search(design, 200)
    assert result.reached and result.cycles <= 200 and result.limit == "target reached"
    assert design.fits(result.resources)
    us = design.units(result.folds)
    assert rate.bottleneck(us, design.in_bits)[1] == result.cycles
    # the smallest design meeting the target: undoing the search's last step misses it, and
    # no step back of any unit, nor moving any weights, that still meets it frees any budget
    assert result.history[-2][0] > 200
    trials = [(name, g, fold._try(design, result.folds, name, g, smallest=True))
              for name, f in result.folds.items() for g in fold._smaller(design, name, f)]
    trials += [(name, "flip", fold._flip(design, result.folds, name))
               for name in result.folds if name.startswith("fc")]
    assert len(trials) > 6
    for name, g, (_, t_units, t_res) in trials:
        if max(design.cycles(t_units).values()) <= 200 and design.fits(t_res):
            assert design.share(t_res) >= design.share(result.resources) - 1e-9, (name, g)
    faster = fold.search(design, 50)
    assert faster.cycles <= 50 and faster.resources["LUT"] > result.resources["LUT"]


def test_search_respects_a_small_budget() -> None:
    net = FcNet()
    free = fold.search(net.design(BUDGET), None)
    small = {**BUDGET, "LUT": 1200, "BRAM36": 3}
    design = net.design(small)
    tight = fold.search(design, None)
    assert design.fits(tight.resources) and tight.limit.startswith("the budget")
    assert tight.cycles > free.cycles
    with pytest.raises(ValueError, match="the smallest folding already needs"):
        fold.search(net.design({**BUDGET, "LUT": 50}), None)


def test_search_stops_at_the_input_stream() -> None:
    """Where the input stream sets the highest rate, the search stops there, and takes back the
    steps that made units faster than the input (they would gain nothing): the smallest design
    at that rate, as for a target of that rate."""
    design = FcNet().design(BUDGET, in_stream_bits=64)
    result = fold.search(design, None)
    assert result.bottleneck == "input" and result.cycles == 256 * 8 // 64
    assert result.limit == "the input stream's bandwidth"
    cyc = design.cycles(design.units(result.folds))
    assert cyc["input"] == result.cycles and max(cyc.values()) == result.cycles
    target = fold.search(design, result.cycles)  # the smallest it finds at that rate
    assert design.share(result.resources) <= design.share(target.resources) + 1e-9


def test_search_keeps_xnor_units_within_the_clocks_simd() -> None:
    """With ``simd_ok`` (does a popcount of that width meet the clock by the estimate?), no
    XNOR matrix unit goes wider: the rate stops at that cap and the search says so."""
    net = FcNet()
    free = fold.search(net.design(BUDGET), None)
    assert max(f.get("SIMD", 1) for f in free.folds.values()) > 16
    design = net.design(BUDGET)
    design.simd_ok = lambda kind, simd: simd <= 16
    capped = fold.search(design, None)
    assert all(f.get("SIMD", 1) <= 16 for n, f in capped.folds.items() if n.startswith("fc"))
    assert capped.cycles > free.cycles and capped.limit.startswith("the clock: ")
    assert "SIMD 16" in capped.limit


def test_search_gives_windows_several_words_per_beat() -> None:
    """A 3x3 conv on 3 channels: once its window unit takes a whole pixel per beat (SIMD = C)
    it can only go faster with several window words per beat (window_words), legal ones (a
    row's 3 pixels or the whole window), and the search takes them."""
    rng = np.random.default_rng(0)
    win = units.swg("win", (16, 16), 3, 1, (3, 3), (1, 1), 8)
    w, t = rng.integers(0, 2, (16, 27)), rng.integers(-500, 500, 16)
    conv = units.mvtu("conv", w, t, 1, 1, xnor=False, in_w=8, in_signed=True)
    design = fold.Design([fold.Foldable.of(win), fold.Foldable.of(conv)], None, 16 * 16 * 3 * 8,
                         cost.CostModel.load("zynq7"), BUDGET)
    result = fold.search(design, 300)
    assert result.reached and result.folds["win"]["SIMD"] == 3
    assert result.folds["win"]["M"] in (3, 9)  # 14 x 14 windows: 1,764 beats at M = 1
    assert rate.bottleneck(design.units(result.folds), design.in_bits)[1] == result.cycles
    assert [m for m in units.swg_words((3, 3), 1) if fold.legal(win, {"SIMD": 3, "M": m})] \
        == [1, 3, 9]
    assert not fold.legal(win, {"SIMD": 1, "M": 2})  # 2 words do not tile a 9-word row


@pytest.mark.verilator
def test_searched_folding_runs_at_its_rate(tmp_path: Path) -> None:
    """The search's folding for a target, built with real contents, stitched and simulated:
    outputs equal the numpy model, cycles per frame within 5 % of what the search predicted."""
    net = FcNet(seed=3)
    result = fold.search(net.design(BUDGET), 150)
    us = net.units(result.folds)
    frames = 8
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (frames, net.sizes[0]))
    a = units.thresholding_ref(x, net.t_in)
    for w, t in zip(net.w, net.t, strict=True):
        a = hwm.xnor_mvtu(a, w, t)
    want = units.label_select_ref(a)
    top, stages = stitch.write(us, tmp_path)
    sim = verilator.build("accel", stitch.filelist(stages, top))
    beats = units.beats_of(x.reshape(-1), us[0].params["PE"], 8)
    got, _, times = verilator.run(sim, beats, frames, tmp_path, max_cycles=200_000)
    assert list(got) == list(want)
    per_frame = float(np.diff(times[2:]).mean())
    assert result.cycles / per_frame >= 0.95, (per_frame, result.cycles, result.folds)
