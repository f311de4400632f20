"""Every legal folding runs at its rate: random foldings (seeded) of small FC (TFC/LFC-shaped) and
convolutional (CNV-shaped) nets, stitched and simulated at full flow, must reach at least 95% of
the folding's ideal throughput (its slowest unit's cycles per frame), with outputs equal to the
numpy model. This is the property a folding search relies on: the FPS it predicts is the FPS the
stitched RTL delivers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import model as hwm
from hw import rate, stitch, units, verilator

pytestmark = pytest.mark.verilator

FRAMES = 8
RATE = 0.95


def divisor(rng: np.random.Generator, n: int, at_most: int | None = None) -> int:
    options = [d for d in range(1, n + 1) if n % d == 0 and d <= (at_most or n)]
    return int(rng.choice(options))


def fc_net(rng: np.random.Generator) -> tuple[list[units.Unit], list[int], list[int], np.ndarray]:
    """Input thresholding (8 -> 1 bit) and three XNOR layers, the last raw, then top-1.
    Returns the units, their ideal cycles per frame, the input beats and the expected labels."""
    c = int(rng.choice([48, 64, 96]))
    x = rng.integers(0, 256, (FRAMES, c))
    t_in = rng.integers(0, 256, (c, 1))
    a = units.thresholding_ref(x, t_in)
    pe0 = divisor(rng, c, 16)
    us = [units.thresholding("quant", t_in, pe0, 8, False, 1)]
    cycles = [c // pe0]
    mw = c
    for i, mh in enumerate([int(rng.choice([32, 64, 128])), int(rng.choice([32, 64])), 10]):
        w = rng.integers(0, 2, (mh, mw))
        last = i == 2
        t = None if last else rng.integers(0, mw + 1, mh)
        pe, simd = divisor(rng, mh, 32), divisor(rng, mw, 64)
        us.append(units.mvtu(f"fc{i}", w, t, pe, simd))
        cycles.append((mw // simd) * (mh // pe))
        a = hwm.xnor_mvtu(a, w, t)
        mw = mh
    pe = divisor(rng, 10)
    us.append(units.label_select("top1", 10, pe, hwm.mvtu_acc_width(us[-1].params["MW"], True),
                                 False))
    cycles.append(10 // pe)
    beats = units.beats_of(x.reshape(-1), pe0, 8)
    return us, cycles, beats, units.label_select_ref(a)


def conv_net(rng: np.random.Generator) -> tuple[list[units.Unit], list[int], list[int], np.ndarray]:
    """8-bit 3-channel image -> 3x3 conv (integer MVTU) -> 3x3 XNOR conv -> 2x2 max pool
    (depthwise window + pool) -> XNOR FC (raw) -> top-1."""
    h = w = int(rng.choice([8, 10]))
    c0, c1, c2 = 3, int(rng.choice([8, 16])), int(rng.choice([8, 16]))
    img = rng.integers(-128, 128, (FRAMES, h, w, c0))
    us: list[units.Unit] = []
    cycles: list[int] = []

    def conv(name: str, x: np.ndarray, cout: int, xnor: bool) -> np.ndarray:
        n, ih, iw, cin = x.shape
        oh, ow = ih - 2, iw - 2
        s_win = divisor(rng, cin)
        m = int(rng.choice(units.swg_words((3, 3), cin // s_win)))  # window words per beat
        us.append(units.swg(f"win_{name}", (ih, iw), cin, s_win, (3, 3), (1, 1),
                            1 if xnor else 8, m=m))
        cycles.append(max(ih * iw, oh * ow * 9 // m) * cin // s_win)
        mw = 9 * cin
        wt = rng.integers(0, 2, (cout, mw))
        lim = mw if xnor else 128 * mw
        t = rng.integers(-lim // 4, lim // 4 + 1, cout) + (mw // 2 if xnor else 0)
        pe, simd = divisor(rng, cout), divisor(rng, mw, 36)
        us.append(units.mvtu(name, wt, t, pe, simd, xnor=xnor, in_w=1 if xnor else 8,
                             in_signed=not xnor))
        cycles.append(oh * ow * (mw // simd) * (cout // pe))
        win = units.swg_ref(x, (3, 3), (1, 1), 1).reshape(-1, mw)
        y = hwm.xnor_mvtu(win, wt, t) if xnor else hwm.int_mvtu(win, wt, t)
        return y.reshape(n, oh, ow, cout)

    a = conv("conv0", img, c1, xnor=False)
    a = conv("conv1", a, c2, xnor=True)
    n, ph, pw, _ = a.shape
    s_pool = divisor(rng, c2)
    us.append(units.swg("win_pool", (ph, pw), c2, s_pool, (2, 2), (2, 2), 1, depthwise=True))
    us.append(units.pool("pool", c2, s_pool, 4, 1))
    oh, ow = ph // 2, pw // 2
    cycles += [max(ph * pw, oh * ow * 4) * c2 // s_pool, oh * ow * 4 * c2 // s_pool]
    p = units.pool_ref(units.swg_ref(a, (2, 2), (2, 2), s_pool, depthwise=True), 4, s_pool)
    p = p.reshape(n, oh * ow * c2)
    mw = oh * ow * c2
    wf = rng.integers(0, 2, (10, mw))
    pe, simd = divisor(rng, 10), divisor(rng, mw, 64)
    us.append(units.mvtu("fc", wf, None, pe, simd))
    cycles.append((mw // simd) * (10 // pe))
    us.append(units.label_select("top1", 10, 1, hwm.mvtu_acc_width(mw, True), False))
    cycles.append(10)
    beats = units.beats_of(img.reshape(-1), us[0].in_width // 8, 8)
    return us, cycles, beats, units.label_select_ref(hwm.xnor_mvtu(p, wf, None))


@pytest.mark.parametrize("net", [fc_net, conv_net], ids=["fc", "conv"])
@pytest.mark.parametrize("seed", range(6))
def test_random_folding_reaches_its_rate(tmp_path: Path, net, seed: int) -> None:
    rng = np.random.default_rng(1000 * seed + (net is conv_net))
    us, cycles, beats, want = net(rng)
    top, stages = stitch.write(us, tmp_path)
    sim = verilator.build("accel", stitch.filelist(stages, top))
    got, _, times = verilator.run(sim, beats, FRAMES, tmp_path,
                                 max_cycles=10_000 + 4 * FRAMES * max(cycles))
    bad = np.flatnonzero(np.array(got) != want)
    assert not len(bad), f"frame {bad[0]}: rtl label {got[bad[0]]} != model {want[bad[0]]}"
    per_frame = float(np.diff(times[2:]).mean())
    ideal = max(cycles)
    in_bits = len(beats) * stages[0].in_width // FRAMES
    assert rate.bottleneck(stages, in_bits)[1] == ideal  # hw.rate agrees with this model
    folding = {u.name: (u.params.get("PE"), u.params.get("SIMD"), u.params.get("M")) for u in us}
    assert ideal / per_frame >= RATE, (
        f"{per_frame:.0f} cycles/frame against the ideal {ideal} "
        f"({100 * ideal / per_frame:.1f}%); bottleneck {us[int(np.argmax(cycles))].name}; "
        f"folding (PE, SIMD, window words) {folding}")
