"""numpy reference models of the RTL units and the stream/memory layouts they use.

Streams pack element 0 in the least significant bits of a beat. Binary values use bit 1 = +1,
bit 0 = -1 (bipolar) or the plain {0, 1} value.
"""

from __future__ import annotations

import numpy as np


def pack(values: np.ndarray, width: int) -> int:
    """One beat from ``values`` (1-D, unsigned, each < 2**width): element i at bits i*width."""
    out = 0
    for i, v in enumerate(np.asarray(values).reshape(-1).tolist()):
        if v < 0 or v >= 1 << width:
            raise ValueError(f"element {i} = {v} does not fit {width} unsigned bits")
        out |= int(v) << (i * width)
    return out


def unpack(beat: int, n: int, width: int) -> np.ndarray:
    """``n`` unsigned elements of ``width`` bits from one beat (inverse of :func:`pack`)."""
    mask = (1 << width) - 1
    return np.array([(beat >> (i * width)) & mask for i in range(n)], dtype=np.int64)


def xnor_mvtu(x: np.ndarray, w: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """XNOR-popcount matrix-vector product with optional thresholds.

    ``x``: (N, MW) bits, ``w``: (MH, MW) bits. acc[n, r] = sum_c (x[n, c] == w[r, c]); output
    (acc >= thresholds[r]) as 0/1 when thresholds are given, else acc. Shape (N, MH).
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    acc = x @ w.T + (1 - x) @ (1 - w).T
    if thresholds is None:
        return acc
    return (acc >= np.asarray(thresholds, dtype=np.int64)[None, :]).astype(np.int64)


def twos(values: np.ndarray, width: int) -> np.ndarray:
    """Signed integers as ``width``-bit two's complement codes (unsigned)."""
    return np.asarray(values, dtype=np.int64) & ((1 << width) - 1)


def signed(codes: np.ndarray, width: int) -> np.ndarray:
    """``width``-bit two's complement codes back to signed integers."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes >= 1 << (width - 1), codes - (1 << width), codes)


def int_mvtu(x: np.ndarray, w: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """Integer inputs times binary weights (bit 1 = +1, bit 0 = -1): acc = x @ (2w - 1).T, then
    (acc >= thresholds[r]) as 0/1 when thresholds are given, else acc (signed). (N, MH)."""
    acc = np.asarray(x, dtype=np.int64) @ (2 * np.asarray(w, dtype=np.int64) - 1).T
    if thresholds is None:
        return acc
    return (acc >= np.asarray(thresholds, dtype=np.int64)[None, :]).astype(np.int64)


def mvtu_input_beats(x: np.ndarray, simd: int, in_w: int = 1) -> list[int]:
    """Input beats of an (N, MW) matrix of ``in_w``-bit elements (signed ones as two's
    complement): MW / SIMD beats per vector."""
    n, mw = x.shape
    codes = twos(x, in_w)
    return [pack(codes[i, s * simd:(s + 1) * simd], in_w) for i in range(n)
            for s in range(mw // simd)]


def mvtu_acc_width(mw: int, xnor: bool, in_max_abs: int = 1) -> int:
    """ACC_W of the unit: XNOR popcounts lie in [0, MW]; integer sums in [-MW*m, MW*m] for inputs
    of magnitude at most m (two's complement). One more value each way holds the thresholds
    that never (or always) fire."""
    if xnor:
        return int(mw + 1).bit_length()
    return int(mw * in_max_abs + 1).bit_length() + 1


def mvtu_outputs(beats: list[int], vectors: int, mh: int, pe: int, activation: bool, xnor: bool,
                 acc_w: int) -> np.ndarray:
    """(vectors, MH) results from the unit's output beats (MH / PE beats per vector): bits with
    thresholds, else accumulators (signed ones decoded from two's complement)."""
    nf = mh // pe
    width = 1 if activation else acc_w
    out = np.stack([np.concatenate([unpack(b, pe, width) for b in beats[i * nf:(i + 1) * nf]])
                    for i in range(vectors)])
    return signed(out, acc_w) if not activation and not xnor else out


def mac_mvtu(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer inputs times integer weights (the multi-bit-weight datapath): x @ w.T, (N, MH)."""
    return np.asarray(x, dtype=np.int64) @ np.asarray(w, dtype=np.int64).T


def mvtu_weight_words(w: np.ndarray, pe: int, simd: int, width: int = 1) -> list[int]:
    """Weight memory words: word nf*SF + sf holds rows nf*PE + pe, columns sf*SIMD + s at bits
    (pe*SIMD + s) * width (1-bit weights as bits, wider ones in two's complement)."""
    mh, mw = w.shape
    sf_n, nf_n = mw // simd, mh // pe
    words = []
    for nf in range(nf_n):
        for sf in range(sf_n):
            block = w[nf * pe:(nf + 1) * pe, sf * simd:(sf + 1) * simd]
            words.append(pack(twos(block.reshape(-1), width), width))
    return words


#: lanes per popcount chunk of the XNOR matrix unit (``CHUNK`` in ``hw/rtl/mvtu.sv``)
POPCOUNT_CHUNK = 24


def mvtu_int_thresholds(thresholds: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The thresholds an integer matrix unit with bipolar weights keeps (``FOLDZ`` in
    ``mvtu.sv``): it sums w ? x : ~x = (w ? x : -x) - [w = -1] per lane, so row r's sum is short
    by Z_r, the row's -1 weights, and T_r - Z_r is compared instead:

        sum_c (w_rc ? x_c : -x_c) >= T_r  <=>  sum_c (w_rc ? x_c : ~x_c) >= T_r - Z_r

    ``w``: (MH, MW) bits, 1 = +1."""
    zeros = np.asarray(w).shape[1] - np.count_nonzero(np.asarray(w), axis=1)
    return np.asarray(thresholds, dtype=np.int64) - zeros


def mvtu_threshold_words(thresholds: np.ndarray, pe: int, acc_w: int) -> list[int]:
    """Threshold memory words: word nf holds -T of rows nf*PE + pe at bits pe*(ACC_W + 1), in
    ACC_W + 1 bits of two's complement (the unit starts each row's sum at -T and outputs its sign,
    so no comparator is needed). Word width: PE * (ACC_W + 1)."""
    tw = acc_w + 1
    t = twos(-np.asarray(thresholds, dtype=np.int64), tw).reshape(-1, pe)
    return [pack(row, tw) for row in t]


def lut_rom_cost(depth: int, width: int) -> int:
    """LUT6 count of a ``depth`` x ``width`` ROM on 7-series: two bits per LUT up to 32 words
    (LUT6_2), else one bit per 64 words (the wide multiplexers are free)."""
    return -(-width // 2) if depth <= 32 else width * -(-depth // 64)


def mvtu_threshold_slice_width(pe: int, acc_w: int, sf: int) -> int:
    """TB, the bits of one threshold slice: ceil(PE * (ACC_W + 1) / SF)."""
    return -(-pe * (acc_w + 1) // sf)


def mvtu_slice_thresholds(nf: int, sf: int, pe: int, acc_w: int) -> bool:
    """Whether the matrix unit reads its thresholds in slices (``SLICED``): when that ROM
    (SF * NF words of TB = ceil(PE * (ACC_W + 1) / SF) bits) costs fewer LUTs than the word ROM
    (NF words of PE * (ACC_W + 1) bits), which is free up to 4 words (its address folds into the
    accumulator's LUTs). Yosys on xc7: 8 to 16 row groups of 8 to 16 rows save 30 to 110 LUT;
    one row per group (FC layers with PE = 1) would cost hundreds more."""
    if sf == 1 or nf <= 4:
        return False
    return (lut_rom_cost(sf * nf, mvtu_threshold_slice_width(pe, acc_w, sf))
            < lut_rom_cost(nf, pe * (acc_w + 1)))


def mvtu_threshold_memory(thresholds: np.ndarray, pe: int, acc_w: int, sf: int,
                          sliced: bool) -> tuple[list[int], int]:
    """The matrix unit's THRESH_FILE as (words, width).

    Unsliced: the NF words of :func:`mvtu_threshold_words`, PE * (ACC_W + 1) bits each.
    Sliced: the -T word of row group n, zero-padded to SF * TB bits (TB = ceil(PE * (ACC_W + 1)
    / SF)), is cut into SF slices of TB bits; the unit reads one per beat, at the weight address,
    into a shift register that holds the whole word when group n starts. So word n * SF + s holds
    slice SF - 1 of group n when s = 0, else slice s - 1 of group (n + 1) mod NF.
    """
    groups = mvtu_threshold_words(thresholds, pe, acc_w)
    if not sliced or sf == 1:
        return groups, pe * (acc_w + 1)
    nf, tb = len(groups), mvtu_threshold_slice_width(pe, acc_w, sf)
    mask = (1 << tb) - 1
    words = []
    for n in range(nf):
        for s in range(sf):
            group, j = (n, sf - 1) if s == 0 else ((n + 1) % nf, s - 1)
            words.append((groups[group] >> (j * tb)) & mask)
    return words, tb


def write_hex(path, words: list[int], width: int) -> None:
    """A $readmemh file: one word per line, zero-padded to ``width`` bits."""
    digits = max(1, (width + 3) // 4)
    with open(path, "w") as f:
        for word in words:
            f.write(f"{word:0{digits}x}\n")
