"""The binary matrix-vector-threshold unit against its numpy model: folding corner cases,
thresholds and raw accumulators, random valid gaps and ready back-pressure, full-flow cycles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import model, verilator

pytestmark = pytest.mark.verilator

# (MW, MH, SIMD, PE, ACTIVATION): PE=1/SIMD=1, MW=SIMD, non-power-of-two sizes, TFC-like layers
CASES = [(5, 3, 1, 1, 1), (16, 8, 16, 2, 1), (98, 10, 49, 5, 0), (12, 12, 4, 3, 1),
         (64, 64, 8, 8, 1), (64, 10, 8, 10, 0)]


def acc_width(mw: int) -> int:
    return int(mw + 1).bit_length()  # thresholds go up to MW + 1 (never fires)


def simulate(tmp_path: Path, mw: int, mh: int, simd: int, pe: int, act: int, n: int,
             seed: int, p_valid: float, p_ready: float):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, (n, mw))
    w = rng.integers(0, 2, (mh, mw))
    thr = rng.integers(0, mw + 2, mh) if act else None  # mw+1: never fires
    acc_w = acc_width(mw)
    work = tmp_path / f"run{seed}"
    work.mkdir()
    model.write_hex(work / "weights.hex", model.mvtu_weight_words(w, pe, simd), pe * simd)
    if act:
        model.write_hex(work / "thresholds.hex", model.mvtu_threshold_words(thr, pe, acc_w),
                        pe * acc_w)
    sim = verilator.build("xnor_mvtu", [verilator.RTL / "xnor_mvtu.sv"],
                          {"MW": mw, "MH": mh, "SIMD": simd, "PE": pe, "ACTIVATION": act,
                           "ACC_W": acc_w})
    nf = mh // pe
    beats, cycles, stamps = verilator.run(sim, model.mvtu_input_beats(x, simd), n * nf, work,
                                          seed=seed, p_valid=p_valid, p_ready=p_ready)
    width = 1 if act else acc_w
    got = np.stack([np.concatenate([model.unpack(b, pe, width)
                                    for b in beats[i * nf:(i + 1) * nf]]) for i in range(n)])
    return got, model.xnor_mvtu(x, w, thr), cycles


def first_mismatch(got: np.ndarray, want: np.ndarray) -> str:
    idx = np.argwhere(got != want)
    if not len(idx):
        return ""
    i, r = idx[0]
    return f"first mismatch at vector {i}, row {r}: got {got[i, r]}, want {want[i, r]}"


@pytest.mark.parametrize(("mw", "mh", "simd", "pe", "act"), CASES)
def test_matches_numpy_under_backpressure(tmp_path: Path, mw, mh, simd, pe, act) -> None:
    for seed, pv, pr in ((1, 1.0, 1.0), (2, 0.6, 0.5), (3, 0.3, 0.9)):
        got, want, _ = simulate(tmp_path, mw, mh, simd, pe, act, 7, seed, pv, pr)
        assert not first_mismatch(got, want), first_mismatch(got, want)


@pytest.mark.parametrize(("mw", "mh", "simd", "pe", "act"), [(64, 64, 8, 8, 1),
                                                             (98, 10, 49, 5, 0)])
def test_full_flow_takes_sf_times_nf_cycles(tmp_path: Path, mw, mh, simd, pe, act) -> None:
    n = 50
    _, _, cycles = simulate(tmp_path, mw, mh, simd, pe, act, n, 0, 1.0, 1.0)
    ideal = n * (mw // simd) * (mh // pe)
    assert ideal <= cycles <= ideal + 4, (cycles, ideal)
