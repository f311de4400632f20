"""Resource cost model of our units: LUT, FF, BRAM36 and DSP from a unit's parameters alone.

Every module of ``hw/rtl/`` has a few structural *features*, counts that its logic grows with
(:data:`FEATURES`): for ``mvtu`` the XNOR lanes ``PE * SIMD``, the accumulators
``PE * ACC_W``, the threshold ROM's LUTs (:func:`hw.model.lut_rom_cost`), the weight ROM's
LUTs when it is distributed, and so on. A resource r of a unit is

    r = sum_f c[module, r, f] * feature_f(params)        (c >= 0)

with the coefficients fitted by non-negative least squares on Yosys ``synth_xilinx`` results
of a grid of shapes per module (``python -m hw.calibrate``, which writes them to
``hw/cost_model.json`` and the calibration data, the fit and its error on shapes outside the
grid to ``results/cost_model_<family>.*``).

Block RAM is not fitted but counted from the memory's geometry as Yosys maps it
(:func:`bram_blocks`: the cheapest tiling by RAMB36/RAMB18 configurations, 512 x 72 down to
32K x 1, a short remainder of rows in LUT RAM; a two-row weight ROM counts only its varying bit
columns, :func:`rom_width`). DSP48s are counted too: one per 25 x 18-bit tile of every product
of a multi-bit ``mvtu`` or ``requant`` lane. The model is an estimate of Yosys' synthesis,
itself an estimate of Vivado's implementation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from hw import model as hwm
from hw import units

RESOURCES = ("LUT", "FF", "BRAM36", "DSP")
#: the resources fitted; BRAM36 and DSP are counted (:func:`bram36`, :func:`dsp`)
FITTED = ("LUT", "FF")
MODEL_FILE = Path(__file__).resolve().parent / "cost_model.json"
#: block RAM configurations (depth, width, BRAM36 each): RAMB36 and RAMB18 (SDP at 72/36 bits)
BRAM_CONFIGS = ((32768, 1, 1.0), (16384, 2, 1.0), (8192, 4, 1.0), (4096, 9, 1.0),
                (2048, 18, 1.0), (1024, 36, 1.0), (512, 72, 1.0),
                (16384, 1, 0.5), (8192, 2, 0.5), (4096, 4, 0.5), (2048, 9, 0.5),
                (1024, 18, 0.5), (512, 36, 0.5))
#: rows left over below a block's depth go to LUT RAM up to this many, when they take at most
#: LUTRAM_TAIL_LUTS LUTs (64 rows a LUT per bit): Yosys put the 128-row tail of a 6,272 x 8
#: ROM in 16 LUTs, but 16 rows of 72 bits or 128 rows of 256 in block RAM
LUTRAM_TAIL = 128
LUTRAM_TAIL_LUTS = 16


def bram_blocks(depth: int, width: int) -> float:
    """BRAM36 equivalents of a ``depth`` x ``width`` memory as Yosys maps it: the cheapest tiling
    by one configuration, or whole blocks of one configuration plus the rest mapped again (a few
    rows left over go to LUT RAM: :data:`LUTRAM_TAIL`)."""
    if depth <= 1 or width <= 0:
        return 0.0
    best = min(-(-depth // d) * -(-width // w) * c for d, w, c in BRAM_CONFIGS)
    for d, w, c in BRAM_CONFIGS:
        whole, rest = divmod(depth, d)
        if whole and rest:
            in_luts = rest <= LUTRAM_TAIL and width * -(-rest // 64) <= LUTRAM_TAIL_LUTS
            tail = 0.0 if in_luts else bram_blocks(rest, width)
            best = min(best, whole * -(-width // w) * c + tail)
    return best


def rom_width(depth: int, width: int) -> float:
    """Bit columns of a ROM of random contents that Yosys keeps in block RAM: of a two-row ROM
    it drops the columns whose two bits are equal (half of them, on average); from four rows on
    it keeps every column (measured at 2 and 4 rows)."""
    return width / 2 if depth == 2 else float(width)


def lutram(depth: int, width: int) -> int:
    """LUTs of a ``depth`` x ``width`` distributed RAM with one write and one read port
    (RAM32M: 6 bits x 32 words per 4 LUTs; RAM64M: 3 bits x 64 words per 4 LUTs)."""
    if depth <= 32:
        return 4 * -(-width // 6)
    return 4 * -(-width // 3) * -(-depth // 64)


def _tiny_rom(depth: int, width: int) -> float:
    """LUTs a ``depth``-word ROM adds where its address also drives the logic it feeds: up to
    4 words each output bit folds into the LUT that uses it (2 words: half the bits are
    constant); from 5 words on, :func:`hw.model.lut_rom_cost`."""
    if depth <= 2:
        return 0.0
    return width / 4 if depth <= 4 else float(hwm.lut_rom_cost(depth, width))


def _mvtu(p: dict[str, Any]) -> dict[str, float]:
    """Per datapath (``xnor`` popcounts, ``int`` +-1 sums of IN_W-bit inputs, ``mul`` multi-bit
    products): lanes (or their input bits), accumulators PE * ACC_W and rows PE; then the
    threshold and weight memories where they are LUTs."""
    lanes, sf, nf = p["PE"] * p["SIMD"], p["MW"] // p["SIMD"], p["MH"] // p["PE"]
    kind = "xnor" if p["XNOR"] else ("int" if p.get("W_W", 1) == 1 else "mul")
    # an accumulator only where a row takes several beats (SF > 1); else a plain adder tree
    f = {"const": 1.0, f"{kind}_acc" if sf > 1 else "one_beat_acc": p["PE"] * p["ACC_W"],
         f"{kind}_pe": p["PE"], f"{kind}_lanes": lanes * (p["IN_W"] if kind == "int" else 1)}
    if p.get("ACTIVATION", 1):
        if p.get("SLICED"):
            tb = hwm.mvtu_threshold_slice_width(p["PE"], p["ACC_W"], sf)
            f["threshold_rom"] = hwm.lut_rom_cost(sf * nf, tb) + tb * p["PE"] / 8
        else:
            f["threshold_rom"] = _tiny_rom(nf, p["PE"] * (p["ACC_W"] + 1))
    else:
        f["out_regs"] = p["PE"] * p["ACC_W"]
    if p.get("RAM_STYLE") == "distributed" and not (kind == "xnor" and sf * nf <= 8):
        # up to 8 words an XNOR unit's ROM folds into its popcount's first LUTs (three lanes'
        # inputs and three address bits make six inputs): Yosys, CNV layer 1 at 64 x 72 lanes,
        # 8 words of 4,608 bits: 250 LUT more than with them in 63.5 BRAM36
        f["weight_rom"] = _tiny_rom(sf * nf, lanes * p.get("W_W", 1))
    if kind == "xnor":  # the adders over the popcount's chunks, of about log2(SIMD) bits
        f["xnor_chunk_adders"] = (p["PE"] * (-(-p["SIMD"] // hwm.POPCOUNT_CHUNK) - 1)
                                  * p["SIMD"].bit_length())
    return f


def thresholds_in_bram(p: dict[str, Any]) -> bool:
    """Whether a thresholding unit's memory is block RAM: the lookup table always, the
    comparators' thresholds from 512 words on (Yosys moves the output register into the read
    port; shallower ones stay LUTs)."""
    return bool(p["TABLE"]) or p["C"] // p["PE"] >= 512


def _thresholding(p: dict[str, Any]) -> dict[str, float]:
    """Comparators (against constants when one channel group, else against a threshold ROM
    whose bits merge with them, a cost per bit growing with the ROM's depth NF), or a lookup
    table (block RAM)."""
    nf = p["C"] // p["PE"]
    f = {"const": 1.0, "out_regs": p["PE"] * p["OUT_W"]}
    if p["TABLE"]:
        return f
    bits = p["PE"] * p["NT"] * (p["IN_W"] + 2)
    if nf == 1:
        f["compare_const_bits"] = bits
    elif thresholds_in_bram(p):
        f["compare_bits"] = bits
    else:  # per bit, Yosys spends 0.6 LUT (NF <= 4) to 13 (NF 196), not monotonically
        f["compare_bits"] = bits
        for lo, hi in ((5, 12), (13, 24), (25, 64)):
            if lo <= nf <= hi:
                f[f"rom_bits_{lo}_{hi}"] = bits
        if nf > 64:
            f["rom_bits_deep"] = bits * nf / 16
    return f


def _swg_memory(p: dict[str, Any]) -> tuple[int, int]:
    return p["DEPTH"], p["SIMD"] * p["ELEM_W"]


def swg_in_bram(p: dict[str, Any]) -> bool:
    """Whether the window buffer is block RAM: ``block``, or ``auto`` above 2 kbit (where
    Yosys maps it so on the calibrated shapes)."""
    depth, width = _swg_memory(p)
    if p.get("RAM_STYLE") == "block":
        return True
    return p.get("RAM_STYLE") != "distributed" and deep(depth, width)


def _swg(p: dict[str, Any]) -> dict[str, float]:
    """A window buffer of M read ports costs M buffers (Yosys replicates the memory per read
    port: measured 1, 3 and 9 block RAMs at M = 1, 3, 9)."""
    depth, width = _swg_memory(p)
    ports = p.get("M", 1)
    counters = math.log2(p["IFM_H"] * p["IFM_W"] * (p["C"] // p["SIMD"]) + depth) + 2
    f = {"const": 1.0, "counters": counters, "data": width * ports}
    if not swg_in_bram(p):
        f["buffer_lutram"] = lutram(depth, width) * ports
    return f


def deep(depth: int, width: int) -> bool:
    """Whether Yosys maps a memory whose read address (or data) is registered to block RAM:
    from 64 words and above 2 kbit (measured on FIFOs, window buffers and threshold ROMs)."""
    return depth >= 64 and depth * width > 2048


def _fifo(p: dict[str, Any]) -> dict[str, float]:
    depth, width = p["DEPTH"], p["WIDTH"]
    if depth <= 2:
        return {"const": 1.0, "regs": depth * width}
    f = {"const": 1.0, "data": width, "counters": math.log2(depth)}
    if not deep(depth, width):  # the read address is a register: deep ones become block RAM
        f["lutram"] = lutram(depth, width)
    return f


FEATURES: dict[str, Callable[[dict[str, Any]], dict[str, float]]] = {
    "mvtu": _mvtu,
    "thresholding": _thresholding,
    "swg": _swg,
    "fmpadding": lambda p: {"const": 1.0, "data": p["SIMD"] * p["ELEM_W"]},
    "pool": lambda p: {"const": 1.0, "max_bits": p["PE"] * p["ELEM_W"]},
    "label_select": lambda p: {"const": 1.0, "compare_bits": p["PE"] * p["ELEM_W"]},
    "fifo": _fifo,
    # a gearbox: about 2 LUT per output bit where it gathers (upsizes), 4 per input bit where
    # it scatters (downsizes), measured
    "dwc": lambda p: {"const": 1.0, "up_bits": p["OUT_W"] if p["OUT_W"] > p["IN_W"] else 0.0,
                      "down_bits": p["IN_W"] if p["IN_W"] > p["OUT_W"] else 0.0},
    "dup": lambda p: {"const": 1.0, "data": p["WIDTH"]},
    "zip": lambda p: {"const": 1.0, "data": p["W0"] + p["W1"]},
    "requant": lambda p: {"const": 1.0,
                          "products": p["PE"] * (p["XW"] + (p["ZW"] if p["NIN"] > 1 else 0))
                          * p["CW"] / 16,
                          "sum_bits": p["PE"] * p["SW"], "out_regs": p["PE"] * p["OUT_W"]},
    "accpool": lambda p: {"const": 1.0, "acc": p["PE"] * p["OUT_W"]},
}


def bram36(unit: units.Unit) -> float:
    """BRAM36 equivalents of ``unit``'s memories (RAMB18 count / 2)."""
    p = unit.params
    if unit.module == "mvtu" and p.get("RAM_STYLE", "block") != "distributed":
        depth = (p["MW"] // p["SIMD"]) * (p["MH"] // p["PE"])
        width = p["PE"] * p["SIMD"] * p.get("W_W", 1)
        return bram_blocks(depth, math.ceil(rom_width(depth, width)))
    if unit.module == "swg" and swg_in_bram(p):
        return bram_blocks(*_swg_memory(p)) * p.get("M", 1)
    if unit.module == "fifo" and p["DEPTH"] > 2 and deep(p["DEPTH"], p["WIDTH"]):
        return bram_blocks(p["DEPTH"], p["WIDTH"])
    if unit.module == "thresholding" and thresholds_in_bram(p):
        nf = p["C"] // p["PE"]
        if p["TABLE"]:  # one table of C x 2**IN_W entries, one copy per two read ports
            return bram_blocks(p["C"] << p["IN_W"], p["OUT_W"]) * -(-p["PE"] // 2)
        return bram_blocks(nf, p["PE"] * p["NT"] * (p["IN_W"] + 2))
    return 0.0


def _dsp_per_product(a: int, b: int) -> int:
    """DSP48s of an a x b-bit product: 25 x 18-bit multipliers, tiled."""
    return -(-max(a, b) // 25) * -(-min(a, b) // 18)


def dsp(unit: units.Unit) -> float:
    """DSP48s of ``unit``: one per multiplier tile of its products (Yosys maps every product of
    a multi-bit-weight ``mvtu`` lane and of a ``requant`` lane to DSP48s; no other unit has
    any). Exact on the calibrated shapes."""
    p = unit.params
    if unit.module == "mvtu" and p.get("W_W", 1) > 1:
        return float(p["PE"] * p["SIMD"] * _dsp_per_product(p["W_W"], p["IN_W"]))
    if unit.module == "requant":
        per = _dsp_per_product(p["XW"], p["CW"])
        if p["NIN"] > 1:
            per += _dsp_per_product(p["ZW"], p["CW"])
        return float(p["PE"] * per)
    return 0.0


def pipe_registers(unit: units.Unit) -> int:
    """Flip-flops a matrix unit's ``PIPE`` stages add (counted, not fitted). PIPE >= 1: the
    dot products and carry-ins (PE * (ACC_W + 1)), the -T words (PE * (ACC_W + 1) with
    thresholds) and three control bits; PIPE = 2 also the operands (SIMD * IN_W +
    PE * SIMD * W_W), another copy of the -T words and three control bits; PIPE = 3 also each
    popcount chunk's count and carry (PE * sum over chunks of (clog2(L + 1) + 1)), another
    copy of the -T words and three control bits."""
    p = unit.params
    level = int(p.get("PIPE", 0)) if unit.module == "mvtu" else 0
    if not level:
        return 0
    act = p.get("ACTIVATION", 1)
    tw = p["PE"] * (p["ACC_W"] + 1) if act else 0
    ff = p["PE"] * (p["ACC_W"] + 1) + tw + 3
    if level >= 2:
        ff += p["SIMD"] * p.get("IN_W", 1) + p["PE"] * p["SIMD"] * p.get("W_W", 1) + tw + 3
    if level >= 3:
        lanes = [min(hwm.POPCOUNT_CHUNK, p["SIMD"] - k)
                 for k in range(0, p["SIMD"], hwm.POPCOUNT_CHUNK)]
        ff += p["PE"] * sum(math.ceil(math.log2(n + 1)) + 1 for n in lanes) + tw + 3
    return ff


def features(unit: units.Unit) -> dict[str, float]:
    """The structural features of ``unit`` (see :data:`FEATURES`)."""
    try:
        fn = FEATURES[unit.module]
    except KeyError:
        raise ValueError(f"{unit.name}: no cost model for module {unit.module!r}") from None
    return {k: float(v) for k, v in fn(unit.params).items()}


class CostModel:
    """Fitted coefficients per family, module and resource: ``coef[module][resource][feature]``."""

    def __init__(self, family: str, coef: dict[str, dict[str, dict[str, float]]]) -> None:
        self.family, self.coef = family, coef

    @classmethod
    def load(cls, family: str = "zynq7", path: Path = MODEL_FILE) -> CostModel:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `python -m hw.calibrate` to fit the "
                                    "cost model")
        data = json.loads(path.read_text())
        if family not in data["families"]:
            raise ValueError(f"{path} has no cost model for family {family!r} (has "
                             f"{', '.join(data['families'])}); run `python -m hw.calibrate "
                             f"--family {family}`")
        return cls(family, data["families"][family]["coef"])

    def unit(self, unit: units.Unit) -> dict[str, float]:
        """LUT, FF, BRAM36 and DSP of one unit."""
        f = features(unit)
        coef = self.coef.get(unit.module)
        if coef is None:
            raise ValueError(f"{unit.name}: module {unit.module!r} is not calibrated")
        out = {r: sum(c * f.get(k, 0.0) for k, c in coef.get(r, {}).items())
               for r in FITTED}
        out["BRAM36"], out["DSP"] = bram36(unit), dsp(unit)
        out["FF"] += pipe_registers(unit)
        return out

    def total(self, stages: Iterable[units.Unit]) -> dict[str, float]:
        """The sum over ``stages`` (a stitched design's units, FIFOs and width converters)."""
        tot = dict.fromkeys(RESOURCES, 0.0)
        for u in stages:
            for r, v in self.unit(u).items():
                tot[r] += v
        return tot


def nnls(a: np.ndarray, b: np.ndarray, iters: int = 500) -> np.ndarray:
    """min ||a x - b|| subject to x >= 0 (Lawson and Hanson's active-set method)."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, bool)
    for _ in range(iters):
        w = a.T @ (b - a @ x)
        if passive.all() or w[~passive].max(initial=-np.inf) <= 1e-10:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg] + 1e-300))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
    return x


def fit(samples: list[tuple[units.Unit, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Coefficients for one module from (unit, Yosys resources) pairs, per resource:
    non-negative least squares on the features, each row divided by sqrt(measurement + 10) so
    that neither the largest units nor the smallest dominate the fit."""
    names = sorted({k for u, _ in samples for k in features(u)})
    a = np.array([[features(u).get(k, 0.0) for k in names] for u, _ in samples])
    coef: dict[str, dict[str, float]] = {}
    for r in FITTED:
        b = np.array([m[r] for _, m in samples], float)
        if not b.any():
            coef[r] = {}
            continue
        scale = 1.0 / np.sqrt(b + 10.0)  # between absolute and relative errors
        x = nnls(a * scale[:, None], b * scale)
        coef[r] = {k: round(float(v), 6) for k, v in zip(names, x, strict=True) if v > 0}
    return coef
