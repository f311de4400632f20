"""The matrix-vector-threshold unit against its numpy models: XNOR and integer-input datapaths,
folding corner cases, thresholds and raw accumulators, random valid gaps and ready
back-pressure, full-flow cycles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hw import model, verilator

pytestmark = pytest.mark.verilator

# (MW, MH, SIMD, PE, ACTIVATION, IN_W, IN_SIGNED); IN_W = 0 means the XNOR datapath. PE=1/SIMD=1,
# MW=SIMD, non-power-of-two sizes, TFC-like layers, CNV's 8-bit first layer, {0,1} inputs;
# popcounts over several 24-lane chunks (49 = 24 + 24 + 1, 150 = 6 x 24 + 6) or of 2 lanes (a
# leaf with a padding lane); whole rows of {0,1} and unsigned 8-bit inputs in one beat (the
# beat's sum of x or ~x spans twice the row's range of sums of x or -x).
CASES = [(5, 3, 1, 1, 1, 0, 0), (16, 8, 16, 2, 1, 0, 0), (98, 10, 49, 5, 0, 0, 0),
         (12, 12, 4, 3, 1, 0, 0), (64, 64, 8, 8, 1, 0, 0), (64, 10, 8, 10, 0, 0, 0),
         (27, 16, 3, 4, 1, 8, 1), (9, 6, 9, 3, 0, 8, 1), (20, 6, 5, 2, 1, 1, 0),
         (14, 4, 7, 1, 0, 4, 0), (32, 4, 8, 4, 1, 0, 0), (6, 4, 3, 2, 1, 0, 0),
         (300, 6, 150, 3, 1, 0, 0), (100, 4, 100, 2, 1, 1, 0), (32, 4, 32, 2, 1, 8, 0),
         (8, 4, 2, 2, 1, 0, 0)]


def simulate(tmp_path: Path, mw, mh, simd, pe, act, in_w, in_signed, n, seed, p_valid, p_ready,
             sliced: bool | None = None, pipe: int = 0):
    rng = np.random.default_rng(seed)
    xnor = in_w == 0
    w = rng.integers(0, 2, (mh, mw))
    if xnor:
        x = rng.integers(0, 2, (n, mw))
        top = int(mw) + 1
        acc_w = model.mvtu_acc_width(mw, True)
        want = model.xnor_mvtu(x, w, None)
    else:
        lo, hi = (-(1 << (in_w - 1)), 1 << (in_w - 1)) if in_signed else (0, 1 << in_w)
        x = rng.integers(lo, hi, (n, mw))
        top = mw * max(abs(lo), hi - 1) + 1
        acc_w = model.mvtu_acc_width(mw, False, max(abs(lo), hi - 1))
        want = model.int_mvtu(x, w, None)
    thr = rng.integers(0 if xnor else -top, top + 1, mh) if act else None
    if act:
        want = (want >= thr[None, :]).astype(np.int64)
    work = tmp_path / f"run{seed}"
    work.mkdir()
    model.write_hex(work / "weights.hex", model.mvtu_weight_words(w, pe, simd), pe * simd)
    if act:
        if sliced is None:
            sliced = model.mvtu_slice_thresholds(mh // pe, mw // simd, pe, acc_w)
        kept = thr if xnor else model.mvtu_int_thresholds(thr, w)
        model.write_hex(work / "thresholds.hex",
                        *model.mvtu_threshold_memory(kept, pe, acc_w, mw // simd, sliced))
    sim = verilator.build("mvtu", [verilator.RTL / "mvtu.sv"],
                          {"MW": mw, "MH": mh, "SIMD": simd, "PE": pe, "ACTIVATION": act,
                           "ACC_W": acc_w, "XNOR": int(xnor), "IN_W": max(in_w, 1),
                           "IN_SIGNED": in_signed, "SLICED": int(bool(sliced)), "PIPE": pipe})
    nf = mh // pe
    beats, cycles, _ = verilator.run(sim, model.mvtu_input_beats(x, simd, max(in_w, 1)), n * nf,
                                     work, seed=seed, p_valid=p_valid, p_ready=p_ready)
    got = model.mvtu_outputs(beats, n, mh, pe, bool(act), xnor, acc_w)
    return got, want, cycles, bool(sliced)


def first_mismatch(got: np.ndarray, want: np.ndarray) -> str:
    idx = np.argwhere(got != want)
    if not len(idx):
        return ""
    i, r = idx[0]
    return f"first mismatch at vector {i}, row {r}: got {got[i, r]}, want {want[i, r]}"


@pytest.mark.parametrize(("mw", "mh", "simd", "pe", "act", "in_w", "in_signed"), CASES)
def test_matches_numpy_under_backpressure(tmp_path: Path, mw, mh, simd, pe, act, in_w,
                                          in_signed) -> None:
    for seed, pv, pr in ((1, 1.0, 1.0), (2, 0.6, 0.5), (3, 0.3, 0.9)):
        got, want, _, _ = simulate(tmp_path, mw, mh, simd, pe, act, in_w, in_signed, 7, seed,
                                   pv, pr)
        assert not first_mismatch(got, want), first_mismatch(got, want)


@pytest.mark.parametrize("sliced", [False, True])
@pytest.mark.parametrize(("mw", "mh", "simd", "pe", "act", "in_w", "in_signed"),
                         [c for c in CASES if c[4]])
def test_both_threshold_forms(tmp_path: Path, mw, mh, simd, pe, act, in_w, in_signed,
                              sliced: bool) -> None:
    """Thresholds read whole per row group, or in slices per beat (with the priming after
    reset), give the same outputs under back-pressure."""
    got, want, _, _ = simulate(tmp_path, mw, mh, simd, pe, act, in_w, in_signed, 5, 4, 0.5, 0.6,
                               sliced)
    assert not first_mismatch(got, want), first_mismatch(got, want)


@pytest.mark.parametrize(("mw", "mh", "simd", "pe", "act", "in_w", "in_signed"),
                         [(64, 64, 8, 8, 1, 0, 0), (98, 10, 49, 5, 0, 0, 0),
                          (27, 16, 3, 4, 1, 8, 1)])
def test_full_flow_takes_sf_times_nf_cycles(tmp_path: Path, mw, mh, simd, pe, act, in_w,
                                            in_signed) -> None:
    n = 50
    _, _, cycles, sliced = simulate(tmp_path, mw, mh, simd, pe, act, in_w, in_signed, n, 0, 1.0,
                                    1.0)
    ideal = n * (mw // simd) * (mh // pe)
    priming = mw // simd - 1 if sliced else 0  # once after reset: group 0's threshold slices
    assert ideal <= cycles <= ideal + priming + 4, (cycles, ideal, priming)


# (MW, MH, SIMD, PE, ACTIVATION, IN_W, IN_SIGNED, SLICED, PIPE)
PIPE_CASES = [(5, 3, 1, 1, 1, 0, 0, 0, 1), (5, 3, 1, 1, 1, 0, 0, 1, 1),
              (64, 64, 8, 8, 1, 0, 0, 0, 1), (64, 64, 8, 8, 1, 0, 0, 1, 1),
              (98, 10, 49, 5, 0, 0, 0, 0, 1),
              (27, 16, 3, 4, 1, 8, 1, 1, 1), (16, 8, 16, 2, 1, 0, 0, 0, 1),
              (5, 3, 1, 1, 1, 0, 0, 1, 2), (64, 64, 8, 8, 1, 0, 0, 0, 2),
              (64, 64, 8, 8, 1, 0, 0, 1, 2), (98, 10, 49, 5, 0, 0, 0, 0, 2),
              (27, 16, 3, 4, 1, 8, 1, 1, 2), (16, 8, 16, 2, 1, 0, 0, 0, 2),
              # PIPE 3: chunk counts registered (several chunks, a chunk's last lane a carry)
              (144, 16, 72, 4, 1, 0, 0, 0, 3), (98, 10, 49, 5, 0, 0, 0, 0, 3),
              (64, 64, 8, 8, 1, 0, 0, 1, 3)]


@pytest.mark.parametrize(("mw", "mh", "simd", "pe", "act", "in_w", "in_signed", "sliced", "pipe"),
                         PIPE_CASES)
def test_pipelined_popcount_matches_numpy(tmp_path: Path, mw, mh, simd, pe, act, in_w, in_signed,
                                          sliced: int, pipe: int) -> None:
    """PIPE = 1 (a register after the popcount tree), PIPE = 2 (the memories' read data
    registered as well) and PIPE = 3 (the popcount chunks' counts too): the same outputs under back-pressure, and at full flow SF x NF cycles
    per vector (PIPE more of latency only)."""
    for seed, pv, pr in ((5, 1.0, 1.0), (6, 0.5, 0.4), (7, 0.9, 0.3)):
        got, want, _, _ = simulate(tmp_path, mw, mh, simd, pe, act, in_w, in_signed, 7, seed,
                                   pv, pr, bool(sliced) if act else None, pipe=pipe)
        assert not first_mismatch(got, want), first_mismatch(got, want)
    n = 40
    _, _, cycles, used = simulate(tmp_path, mw, mh, simd, pe, act, in_w, in_signed, n, 8, 1.0,
                                  1.0, bool(sliced) if act else None, pipe=pipe)
    ideal = n * (mw // simd) * (mh // pe)
    assert ideal <= cycles <= ideal + (mw // simd - 1 if used else 0) + 4 + pipe, (cycles, ideal)


# (MW, MH, SIMD, PE, W_W, IN_W, IN_SIGNED, ACTIVATION): the 8-bit stem (3x3x1), a 1x1 shortcut
# conv (2x2 windows of 16 channels), an FC head, 4-bit weights on unsigned inputs, SIMD=PE=1
MAC_CASES = [(9, 16, 9, 4, 8, 8, 1, 0), (64, 32, 16, 8, 8, 8, 1, 0), (64, 10, 8, 2, 8, 8, 1, 0),
             (12, 6, 4, 3, 4, 4, 0, 1), (5, 3, 1, 1, 8, 8, 1, 1)]


@pytest.mark.parametrize(("mw", "mh", "simd", "pe", "w_w", "in_w", "in_signed", "act"), MAC_CASES)
def test_multibit_weights_match_numpy(tmp_path: Path, mw, mh, simd, pe, w_w, in_w, in_signed,
                                      act) -> None:
    """W_W-bit signed weights on integer inputs (extremes included), raw or thresholded, under
    back-pressure, and SF x NF cycles per vector at full flow."""
    from hw import units

    rng = np.random.default_rng(mw + mh)
    wlo, whi = -(1 << (w_w - 1)), (1 << (w_w - 1))
    lo, hi = (-(1 << (in_w - 1)), 1 << (in_w - 1)) if in_signed else (0, 1 << in_w)
    n = 9
    w = rng.integers(wlo, whi, (mh, mw))
    w[0] = wlo  # the most negative weight times the most negative input: the largest product
    x = rng.integers(lo, hi, (n, mw))
    x[0] = lo
    acc = model.mac_mvtu(x, w)
    thr = rng.integers(acc.min(), acc.max() + 1, mh) if act else None
    want = (acc >= thr[None, :]).astype(np.int64) if act else acc
    unit = units.mvtu("m", w, thr, pe, simd, xnor=False, in_w=in_w, in_signed=bool(in_signed),
                      w_bits=w_w)
    for seed, pv, pr in ((0, 1.0, 1.0), (1, 0.5, 0.6)):
        work = tmp_path / f"r{seed}"
        work.mkdir()
        files = unit.write_memories(work)
        sim = verilator.build("mvtu", [unit.source], {**unit.params, **files})
        beats, cycles, _ = verilator.run(sim, model.mvtu_input_beats(x, simd, in_w),
                                         n * (mh // pe), work, seed=seed, p_valid=pv, p_ready=pr)
        got = model.mvtu_outputs(beats, n, mh, pe, bool(act), False, unit.params["ACC_W"])
        assert not first_mismatch(got, want), first_mismatch(got, want)
        if pv == 1.0:
            prime = mw // simd - 1 if unit.params["SLICED"] else 0
            assert cycles <= n * (mw // simd) * (mh // pe) + prime + 4
