"""The streaming units of ``hw/rtl/`` as parameter sets plus memory contents, and numpy models of
what each one computes on its stream.

A :class:`Unit` is everything needed to instantiate one module: its parameters, its memory files
(contents and word width; the file-name parameters are filled in when the unit is written) and its
input and output beat widths, so that :mod:`hw.stitch` can chain units with FIFOs and width
converters. Constructors take plain numpy arrays; :mod:`build_flows.backend.mapping` reads them from FINN nodes.

Stream conventions (all units): element 0 in the least significant bits of a beat; bipolar
values as bits (1 = +1, 0 = -1); signed integers in two's complement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hw import model as hwm

RTL = Path(__file__).resolve().parent / "rtl"


@dataclass
class Unit:
    """One instance of a module in ``hw/rtl/<module>.sv``."""

    name: str
    module: str
    params: dict[str, Any]
    in_width: int   # bits per input beat
    out_width: int  # bits per output beat
    memories: dict[str, tuple[list[int], int]] = field(default_factory=dict)  # param -> words, bits
    #: stream ports (name, width), when not the single ``in`` / ``out``
    in_ports: list[tuple[str, int]] | None = None
    out_ports: list[tuple[str, int]] | None = None

    @property
    def source(self) -> Path:
        return RTL / f"{self.module}.sv"

    @property
    def inputs(self) -> list[tuple[str, int]]:
        return self.in_ports or [("in", self.in_width)]

    @property
    def outputs(self) -> list[tuple[str, int]]:
        return self.out_ports or [("out", self.out_width)]

    def write_memories(self, directory: Path, prefix: str = "") -> dict[str, str]:
        """Write each memory as ``<prefix><param>.hex`` in ``directory``; the file parameters."""
        files = {}
        for param, (words, width) in self.memories.items():
            fname = f"{prefix}{param.lower()}.hex"
            hwm.write_hex(directory / fname, words, width)
            files[param] = fname
        return files


#: XNOR units from this many lanes register their popcounts (``PIPE``): the timing estimate
#: (hw.timing) of the unpipelined unit reaches 10 ns on a 7-series -1 from about 32 lanes
PIPE_FROM_LANES = 32
#: XNOR units from this many lanes register their popcount chunks' counts as well (PIPE 3):
#: on UltraScale+ -1 by the estimate, 256 lanes 6.53 -> 4.02 ns, 128 lanes 5.37 -> 3.08 ns,
#: for about 6 flip-flops per 24 lanes and PE
CHUNK_PIPE_FROM_LANES = 128


def mvtu_pipe(simd: int, xnor: bool, ram_style: str = "distributed") -> int:
    """A matrix unit's ``PIPE`` by default: 1 (its dot products registered) from
    :data:`PIPE_FROM_LANES` lanes and for every integer dot product, 2 (the operands read from
    the memories registered as well) when such a unit's weights are in block RAM, whose
    clock-to-out would otherwise start the popcount path, 3 (the chunk counts registered too)
    for XNOR units from :data:`CHUNK_PIPE_FROM_LANES` lanes; else 0."""
    if simd < PIPE_FROM_LANES and xnor:
        return 0
    if xnor and simd >= CHUNK_PIPE_FROM_LANES:
        return 3
    return 2 if ram_style == "block" else 1


def mvtu(name: str, w: np.ndarray, thresholds: np.ndarray | None, pe: int, simd: int,
         xnor: bool = True, in_w: int = 1, in_signed: bool = False, acc_w: int | None = None,
         ram_style: str = "block", w_bits: int = 1, pipe: int | None = None) -> Unit:
    """Matrix-vector(-threshold) unit: ``w`` (MH, MW) bits (1 = +1), or ``w_bits``-bit signed
    integers when ``w_bits`` > 1 (integer inputs only); one threshold per row or None for raw
    accumulators. ``pipe`` (None: :func:`mvtu_pipe`'s choice) registers the dot products
    before the accumulator (1), the memories' read data before them (2), and an XNOR
    popcount's chunk counts (3)."""
    mh, mw = w.shape
    if mw % simd or mh % pe:
        raise ValueError(f"{name}: SIMD={simd} must divide MW={mw} and PE={pe} must divide MH={mh}")
    if w_bits > 1 and xnor:
        raise ValueError(f"{name}: {w_bits}-bit weights need integer inputs (xnor=False)")
    if pipe is not None and not 0 <= pipe <= (3 if xnor else 2):
        raise ValueError(f"{name}: PIPE={pipe}; 0 to 3 for XNOR popcounts, 0 to 2 otherwise")
    if acc_w is None:
        w_max = 1 << (w_bits - 1) if w_bits > 1 else 1
        acc_w = hwm.mvtu_acc_width(mw, xnor, w_max * (1 if xnor else
                                                      1 << (in_w - int(in_signed))))
    act = thresholds is not None
    sliced = act and hwm.mvtu_slice_thresholds(mh // pe, mw // simd, pe, acc_w)
    params = {"MW": mw, "MH": mh, "SIMD": simd, "PE": pe, "XNOR": int(xnor),
              "IN_W": 1 if xnor else in_w, "IN_SIGNED": int(in_signed), "W_W": w_bits,
              "ACTIVATION": int(act),
              "ACC_W": acc_w, "RAM_STYLE": ram_style, "SLICED": int(sliced),
              "PIPE": int(pipe if pipe is not None else mvtu_pipe(simd, xnor, ram_style))}
    mems = {"WEIGHT_FILE": (hwm.mvtu_weight_words(w, pe, simd, w_bits), pe * simd * w_bits)}
    if act:
        if not xnor and w_bits == 1:
            thresholds = hwm.mvtu_int_thresholds(thresholds, w)
        mems["THRESH_FILE"] = hwm.mvtu_threshold_memory(thresholds, pe, acc_w, mw // simd,
                                                        sliced)
    return Unit(name, "mvtu", params, simd * params["IN_W"], pe if act else pe * acc_w, mems)


def thresholding(name: str, thresholds: np.ndarray, pe: int, in_w: int, in_signed: bool,
                 out_w: int, out_bias: int = 0, table: bool | None = None) -> Unit:
    """Multi-threshold unit: ``thresholds`` (C, NT) integers, y = out_bias + #(x >= T[c, i]) in
    ``out_w`` bits. ``table`` None picks the cheaper implementation (lookup table when C x
    2**IN_W entries take fewer bits than the comparators' thresholds and logic)."""
    t = np.asarray(thresholds, dtype=np.int64)
    c, nt = t.shape
    if c % pe:
        raise ValueError(f"{name}: PE={pe} must divide the {c} channels")
    lo, hi = (-(1 << (in_w - 1)), (1 << (in_w - 1)) - 1) if in_signed else (0, (1 << in_w) - 1)
    t = np.clip(t, lo, hi + 1)  # beyond the input range: never fires (or always)
    if table is None:
        table = thresholding_table(c, pe, in_w, nt, out_w)
    nf = c // pe
    params = {"C": c, "PE": pe, "IN_W": in_w, "IN_SIGNED": int(in_signed), "NT": nt,
              "OUT_W": out_w, "OUT_BIAS": int(out_bias), "TABLE": int(table)}
    if table:
        codes = np.arange(1 << in_w)
        values = hwm.signed(codes, in_w) if in_signed else codes
        y = out_bias + (values[None, :, None] >= t[:, None, :]).sum(-1)  # (C, 2**IN_W)
        y = hwm.twos(y, out_w)
        # entry (pe * NF + nf) * 2**IN_W + code: channel nf * PE + pe
        words = [int(v) for p in range(pe) for f in range(nf) for v in y[f * pe + p]]
        mem = (words, out_w)
    else:
        tw = in_w + 2  # [min, max + 1] of the input, signed
        tt = hwm.twos(t, tw)
        words = [hwm.pack(tt[f * pe:(f + 1) * pe].reshape(-1), tw) for f in range(nf)]
        mem = (words, pe * nt * tw)
    return Unit(name, "thresholding", params, pe * in_w, pe * out_w, {"THRESH_FILE": mem})


def thresholding_table(c: int, pe: int, in_w: int, nt: int, out_w: int) -> bool:
    """Whether a lookup table (C x 2**IN_W entries) takes fewer bits than the comparators'
    thresholds and logic."""
    return c * (1 << in_w) * out_w < c * nt * (in_w + 1) + pe * nt * in_w * 8


def swg_depth(kh: int, sh: int, iw: int, cf: int) -> int:
    """The window buffer's words: a power of two holding (K_H + S_H) rows of CF words each."""
    return 1 << int(np.ceil(np.log2((kh + sh) * iw * cf)))


def swg_words_ok(kernel: tuple[int, int], cf: int, m: int, depthwise: bool = False) -> bool:
    """Whether a window generator can put ``m`` consecutive words of its window stream in one
    beat: m = 1, or (standard order) m divides a window row's K_W x CF words, or is r rows of
    them with r dividing K_H (the whole window: r = K_H)."""
    kh, kw = kernel
    run = kw * cf
    if m == 1:
        return True
    if depthwise or m < 1:
        return False
    return run % m == 0 or (m % run == 0 and kh % (m // run) == 0)


def swg_words(kernel: tuple[int, int], cf: int, depthwise: bool = False) -> list[int]:
    """The legal window words per beat (:func:`swg_words_ok`), ascending."""
    n = kernel[0] * kernel[1] * cf
    return [m for m in range(1, n + 1) if n % m == 0 and swg_words_ok(kernel, cf, m, depthwise)]


def swg(name: str, ifm: tuple[int, int], channels: int, simd: int, kernel: tuple[int, int],
        stride: tuple[int, int], elem_w: int, depthwise: bool = False,
        ram_style: str = "auto", m: int = 1) -> Unit:
    """Sliding-window generator (no padding) for an ``ifm`` (H, W) map of ``channels``, ``m``
    window words of SIMD elements per output beat (:func:`swg_words_ok`)."""
    (ih, iw), (kh, kw), (sh, sw) = ifm, kernel, stride
    if channels % simd:
        raise ValueError(f"{name}: SIMD={simd} must divide the {channels} channels")
    cf = channels // simd
    if not swg_words_ok(kernel, cf, m, depthwise):
        raise ValueError(f"{name}: {m} window words per beat is illegal; legal: "
                         f"{swg_words(kernel, cf, depthwise)} (K={kh}x{kw}, C/SIMD={cf}"
                         f"{', depthwise' if depthwise else ''})")
    oh, ow = (ih - kh) // sh + 1, (iw - kw) // sw + 1
    depth = swg_depth(kh, sh, iw, cf)
    params = {"IFM_H": ih, "IFM_W": iw, "C": channels, "SIMD": simd, "K_H": kh, "K_W": kw,
              "S_H": sh, "S_W": sw, "OFM_H": oh, "OFM_W": ow, "ELEM_W": elem_w,
              "DEPTHWISE": int(depthwise), "M": m, "DEPTH": depth, "RAM_STYLE": ram_style}
    return Unit(name, "swg", params, simd * elem_w, m * simd * elem_w)


def fmpadding(name: str, ifm: tuple[int, int], channels: int, simd: int, elem_w: int,
              pads: tuple[int, int, int, int]) -> Unit:
    """Zero padding of an ``ifm`` (H, W) map; ``pads`` = (top, left, bottom, right)."""
    if channels % simd:
        raise ValueError(f"{name}: SIMD={simd} must divide the {channels} channels")
    t, l, b, r = pads
    return Unit(name, "fmpadding", {"IFM_H": ifm[0], "IFM_W": ifm[1], "C": channels,
                                    "SIMD": simd, "ELEM_W": elem_w, "PAD_T": t, "PAD_L": l,
                                    "PAD_B": b, "PAD_R": r}, simd * elem_w, simd * elem_w)


def pool(name: str, channels: int, pe: int, kk: int, elem_w: int, signed: bool = False) -> Unit:
    """Max over ``kk`` window beats per channel group."""
    if channels % pe:
        raise ValueError(f"{name}: PE={pe} must divide the {channels} channels")
    return Unit(name, "pool", {"C": channels, "PE": pe, "KK": kk, "ELEM_W": elem_w,
                               "SIGNED": int(signed)}, pe * elem_w, pe * elem_w)


def label_select(name: str, labels: int, pe: int, elem_w: int, signed: bool,
                 out_w: int = 8) -> Unit:
    """Top-1 index of ``labels`` values."""
    if labels % pe:
        raise ValueError(f"{name}: PE={pe} must divide the {labels} labels")
    return Unit(name, "label_select", {"LABELS": labels, "PE": pe, "ELEM_W": elem_w,
                                       "SIGNED": int(signed), "OUT_W": out_w}, pe * elem_w, out_w)


def dup(name: str, width: int) -> Unit:
    """Fork: each ``width``-bit beat to both outputs (``out0``, ``out1``)."""
    return Unit(name, "dup", {"WIDTH": width}, width, width,
                out_ports=[("out0", width), ("out1", width)])


def zip_(name: str, w0: int, w1: int) -> Unit:
    """Join: a beat from ``in0`` and one from ``in1`` make one beat {in1, in0}."""
    return Unit(name, "zip", {"W0": w0, "W1": w1}, w0, w0 + w1,
                in_ports=[("in0", w0), ("in1", w1)])


def requant(name: str, a: np.ndarray, b: np.ndarray, shift: int, pe: int, x_w: int,
            x_signed: bool, out_w: int, lo: int, hi: int, g: np.ndarray | None = None,
            z_w: int = 0, z_signed: bool = True) -> Unit:
    """Linear requantizer y = clamp(floor((a[c] x + g[c] z + b[c]) / 2^shift), lo, hi) per
    channel; with ``g`` its input beat is {z lanes, x lanes} (a :func:`zip_` of two streams)."""
    a = np.asarray(a, np.int64)
    c = len(a)
    if c % pe:
        raise ValueError(f"{name}: PE={pe} must divide the {c} channels")
    nin = 1 if g is None else 2
    g = np.zeros(c, np.int64) if g is None else np.asarray(g, np.int64)
    b = np.asarray(b, np.int64)
    cw = max(int(np.abs(v).max(initial=0)).bit_length() + 1 for v in (a, g, b))
    z_w = z_w if nin > 1 else 0
    top = (np.abs(a) * (1 << x_w) + np.abs(g) * (1 << max(z_w, 1)) + np.abs(b)).max()
    # the exact sum's width; wider than either product (x_w + 1 + cw bits): Yosys 0.23
    # synthesizes the unit to a constant when it equals a product's width (Verilator agrees
    # with the numpy model either way)
    sw = max(int(top).bit_length() + 2, x_w + cw + 2, max(z_w, 1) + cw + 2)
    nf = c // pe
    coef = np.stack([a, g, b], axis=1)  # (C, 3)
    words = [hwm.pack(hwm.twos(coef[f * pe:(f + 1) * pe].reshape(-1), cw), cw) for f in range(nf)]
    params = {"C": c, "PE": pe, "NIN": nin, "XW": x_w, "XSIGNED": int(x_signed),
              "ZW": max(z_w, 1), "ZSIGNED": int(z_signed), "CW": cw, "SW": sw, "F": shift,
              "OUT_W": out_w, "LO": lo, "HI": hi}
    return Unit(name, "requant", params, pe * (x_w + z_w), pe * out_w,
                {"COEF_FILE": (words, pe * 3 * cw)})


def accpool(name: str, channels: int, pe: int, pixels: int, in_w: int, in_signed: bool) -> Unit:
    """Global sum pooling over ``pixels`` pixels, exact in ``in_w + ceil(log2(pixels))`` bits."""
    if channels % pe:
        raise ValueError(f"{name}: PE={pe} must divide the {channels} channels")
    out_w = in_w + int(pixels - 1).bit_length()
    return Unit(name, "accpool", {"C": channels, "PE": pe, "PIXELS": pixels, "IN_W": in_w,
                                  "IN_SIGNED": int(in_signed), "OUT_W": out_w},
                pe * in_w, pe * out_w)


def fifo(name: str, width: int, depth: int = 2) -> Unit:
    return Unit(name, "fifo", {"WIDTH": width, "DEPTH": depth}, width, width)


def dwc(name: str, in_w: int, out_w: int) -> Unit:
    return Unit(name, "dwc", {"IN_W": in_w, "OUT_W": out_w}, in_w, out_w)


def refold(unit: Unit, pe: int | None = None, simd: int | None = None,
           ram_style: str | None = None, old_pe: int = 1, words: int | None = None) -> Unit:
    """``unit`` with another folding: the parameters and beat widths its constructor would give
    for ``pe`` / ``simd`` (and a matrix unit's weight ``ram_style``, a window generator's
    ``words`` per beat), without memory contents (for rate and cost models). ``old_pe`` is the
    PE a ``dup`` or ``zip`` was made for (their widths are PE elements)."""
    p, m = dict(unit.params), unit.module
    ins, outs = unit.in_width, unit.out_width
    in_ports, out_ports = unit.in_ports, unit.out_ports
    if m == "mvtu":
        pe, simd = pe or p["PE"], simd or p["SIMD"]
        p.update(PE=pe, SIMD=simd, RAM_STYLE=ram_style or p["RAM_STYLE"])
        p["PIPE"] = mvtu_pipe(simd, bool(p["XNOR"]), p["RAM_STYLE"])
        if p["ACTIVATION"]:
            p["SLICED"] = int(hwm.mvtu_slice_thresholds(p["MH"] // pe, p["MW"] // simd, pe,
                                                         p["ACC_W"]))
        ins, outs = simd * p["IN_W"], pe if p["ACTIVATION"] else pe * p["ACC_W"]
    elif m in ("thresholding", "pool", "label_select", "requant", "accpool"):
        pe = pe or p["PE"]
        p["PE"] = pe
        if m == "thresholding" and p.get("TABLE") is not None:
            p["TABLE"] = int(thresholding_table(p["C"], pe, p["IN_W"], p["NT"], p["OUT_W"]))
        if m in ("pool", "label_select"):
            ins, outs = pe * p["ELEM_W"], pe * p["ELEM_W"] if m == "pool" else p["OUT_W"]
        elif m == "requant":
            ins, outs = pe * (p["XW"] + (p["ZW"] if p["NIN"] > 1 else 0)), pe * p["OUT_W"]
        else:
            ins, outs = pe * p["IN_W"], pe * p["OUT_W"]
    elif m == "swg":
        p["SIMD"] = simd = simd or p["SIMD"]
        p["M"] = words = words or p.get("M", 1)
        if not swg_words_ok((p["K_H"], p["K_W"]), p["C"] // simd, words, bool(p["DEPTHWISE"])):
            raise ValueError(f"{unit.name}: {words} window words per beat is illegal at SIMD "
                             f"{simd}")
        p["DEPTH"] = swg_depth(p["K_H"], p["S_H"], p["IFM_W"], p["C"] // simd)
        ins, outs = simd * p["ELEM_W"], words * simd * p["ELEM_W"]
    elif m == "fmpadding":
        p["SIMD"] = simd = simd or p["SIMD"]
        ins = outs = simd * p["ELEM_W"]
    elif m == "dup":
        p["WIDTH"] = p["WIDTH"] // old_pe * (pe or old_pe)
        ins = outs = p["WIDTH"]
        out_ports = [("out0", ins), ("out1", ins)]
    elif m == "zip":
        p["W0"], p["W1"] = (p[k] // old_pe * (pe or old_pe) for k in ("W0", "W1"))
        ins, outs = p["W0"], p["W0"] + p["W1"]
        in_ports = [("in0", p["W0"]), ("in1", p["W1"])]
    else:
        raise ValueError(f"{unit.name}: module {m!r} has no folding")
    return Unit(unit.name, m, p, ins, outs, {}, in_ports, out_ports)


# ---- numpy models ------------------------------------------------------------------------------

def thresholding_ref(x: np.ndarray, thresholds: np.ndarray, out_bias: int = 0) -> np.ndarray:
    """(N, C) inputs -> out_bias + #(x[n, c] >= T[c, i])."""
    t = np.asarray(thresholds, dtype=np.int64)
    return out_bias + (np.asarray(x, np.int64)[:, :, None] >= t[None]).sum(-1)


def swg_ref(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], simd: int,
            depthwise: bool = False) -> np.ndarray:
    """The window stream of (N, H, W, C) maps: (words, SIMD) elements in the unit's order (a
    unit of M words per beat: reshape to (-1, M x SIMD))."""
    n, ih, iw, c = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (ih - kh) // sh + 1, (iw - kw) // sw + 1
    out = []
    for f in range(n):
        for oy in range(oh):
            for ox in range(ow):
                win = x[f, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw, :]  # (kh, kw, C)
                win = win.reshape(kh, kw, c // simd, simd)
                if depthwise:
                    win = win.transpose(2, 0, 1, 3)
                out.append(win.reshape(-1, simd))
    return np.concatenate(out)


def fmpadding_ref(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """(N, H, W, C) -> zero-padded (N, H + top + bottom, W + left + right, C)."""
    t, l, b, r = pads
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))


def pool_ref(windows: np.ndarray, kk: int, pe: int) -> np.ndarray:
    """Stream of (cf, k, pe)-ordered window beats (B, PE) -> maxima (B / kk, PE)."""
    return np.asarray(windows).reshape(-1, kk, pe).max(axis=1)


def requant_ref(x: np.ndarray, a: np.ndarray, b: np.ndarray, shift: int, lo: int, hi: int,
                z: np.ndarray | None = None, g: np.ndarray | None = None) -> np.ndarray:
    """(N, C) operands -> clamp(floor((a x + g z + b) / 2^shift), lo, hi), exact integers."""
    s = np.asarray(x, np.int64) * np.asarray(a, np.int64)[None] + np.asarray(b, np.int64)[None]
    if z is not None:
        s = s + np.asarray(z, np.int64) * np.asarray(g, np.int64)[None]
    return np.clip(s >> shift, lo, hi)


def accpool_ref(x: np.ndarray) -> np.ndarray:
    """(N, pixels, C) -> (N, C) sums."""
    return np.asarray(x, np.int64).sum(axis=1)


def label_select_ref(x: np.ndarray) -> np.ndarray:
    """(N, labels) -> index of the first maximum per row."""
    return np.argmax(np.asarray(x), axis=1)


def beats_of(elements: np.ndarray, per_beat: int, width: int) -> list[int]:
    """Pack a flat stream of (two's complement) elements, ``per_beat`` per beat."""
    codes = hwm.twos(np.asarray(elements).reshape(-1, per_beat), width)
    return [hwm.pack(row, width) for row in codes]


def elements_of(beats: list[int], per_beat: int, width: int, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`beats_of`: (beats, per_beat) elements."""
    out = np.stack([hwm.unpack(b, per_beat, width) for b in beats]) if beats else \
        np.zeros((0, per_beat), np.int64)
    return hwm.signed(out, width) if signed else out
