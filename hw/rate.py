"""Ideal rates of the streaming units: bits out and cycles per frame, from a unit's parameters
and the bits it receives per frame.

Every unit of ``hw/rtl/`` runs a fixed schedule (none is data-dependent), so its cycles per
frame at full flow follow from its folding:

- ``mvtu``: V = in_bits / (MW x IN_W) vectors, V x SF x NF cycles (SF = MW / SIMD,
  NF = MH / PE), V x MH outputs of 1 bit (thresholded) or ACC_W bits (raw);
- ``thresholding``: one beat of PE channels per cycle in and out;
- ``swg``: max(input beats, window beats) per image, window beats
  OFM_H x OFM_W x K_H x K_W x C / (SIMD x M);
- ``fmpadding``: max(input beats, padded beats);
- ``pool``: one input beat per cycle, one output beat per KK;
- ``label_select``: LABELS / PE cycles per vector, one OUT_W-bit index out;
- ``fifo``: one beat per cycle; ``dwc``: one beat of its narrower side per cycle;
- ``dup``: one beat per cycle to both outputs; ``zip``: one beat of each input per cycle;
- ``requant``: one beat of PE lanes per cycle; ``accpool``: one input beat per cycle, C sums
  out per image.

:func:`schedule` follows a frame through a chain or a graph (hw.stitch's wires); its slowest
stage is the bottleneck whose cycles per frame a stitched accelerator must reach.
"""

from __future__ import annotations

from typing import Any

from hw import units


def _frames(bits: int, per_frame: int, unit: units.Unit) -> int:
    if bits % per_frame:
        raise ValueError(f"{unit.name}: {bits} input bits per frame are not a whole number of "
                         f"its {per_frame}-bit frames")
    return bits // per_frame


def unit_rate(unit: units.Unit, in_bits: int) -> tuple[int, int]:
    """(output bits, cycles) per frame of ``unit`` receiving ``in_bits`` per frame."""
    p, m = unit.params, unit.module
    if m == "mvtu":
        v = _frames(in_bits, p["MW"] * p["IN_W"], unit)
        return v * p["MH"] * (1 if p["ACTIVATION"] else p["ACC_W"]), \
            v * (p["MW"] // p["SIMD"]) * (p["MH"] // p["PE"])
    if m == "thresholding":
        beats = _frames(in_bits, p["PE"] * p["IN_W"], unit)
        return beats * p["PE"] * p["OUT_W"], beats
    if m == "swg":
        f = _frames(in_bits, p["IFM_H"] * p["IFM_W"] * p["C"] * p["ELEM_W"], unit)
        cf = p["C"] // p["SIMD"]
        win = p["OFM_H"] * p["OFM_W"] * p["K_H"] * p["K_W"] * cf
        beats = win // p.get("M", 1)
        return f * win * p["SIMD"] * p["ELEM_W"], f * max(p["IFM_H"] * p["IFM_W"] * cf, beats)
    if m == "fmpadding":
        f = _frames(in_bits, p["IFM_H"] * p["IFM_W"] * p["C"] * p["ELEM_W"], unit)
        cf = p["C"] // p["SIMD"]
        out = (p["IFM_H"] + p["PAD_T"] + p["PAD_B"]) * (p["IFM_W"] + p["PAD_L"] + p["PAD_R"]) * cf
        return f * out * p["SIMD"] * p["ELEM_W"], f * max(p["IFM_H"] * p["IFM_W"] * cf, out)
    if m == "pool":
        beats = _frames(in_bits, p["PE"] * p["ELEM_W"] * p["KK"], unit) * p["KK"]
        return beats // p["KK"] * p["PE"] * p["ELEM_W"], beats
    if m == "label_select":
        v = _frames(in_bits, p["LABELS"] * p["ELEM_W"], unit)
        return v * p["OUT_W"], v * p["LABELS"] // p["PE"]
    if m == "dup":
        return in_bits, _frames(in_bits, p["WIDTH"], unit)
    if m == "zip":  # in_bits: of input in0
        beats = _frames(in_bits, p["W0"], unit)
        return beats * (p["W0"] + p["W1"]), beats
    if m == "requant":
        beats = _frames(in_bits, unit.in_width, unit)
        return beats * p["PE"] * p["OUT_W"], beats
    if m == "accpool":
        f = _frames(in_bits, p["PIXELS"] * p["C"] * p["IN_W"], unit)
        return f * p["C"] * p["OUT_W"], f * p["PIXELS"] * p["C"] // p["PE"]
    if m == "fifo":
        return in_bits, _frames(in_bits, p["WIDTH"], unit)
    if m == "dwc":
        return in_bits, _frames(in_bits, min(p["IN_W"], p["OUT_W"]), unit)
    raise ValueError(f"{unit.name}: no rate model for module {m!r}")


def schedule(stages: list[units.Unit], in_bits: int,
             wires: list[Any] | None = None) -> list[tuple[str, int, int]]:
    """(name, input bits, cycles) per frame of every stage (in topological order) fed
    ``in_bits`` per frame; ``wires`` (hw.stitch.Edge: src, src_port, dst, dst_port) join them,
    default a chain. A stage's input bits are those of its first input port."""
    out = []
    if wires is None:
        for s in stages:
            bits, cycles = unit_rate(s, in_bits)
            out.append((s.name, in_bits, cycles))
            in_bits = bits
        return out
    made: dict[str, int] = {}
    for s in stages:
        first = s.inputs[0][0]
        feed = [w for w in wires if w.dst == s.name and w.dst_port == first]
        bits = made[feed[0].src] if feed else in_bits
        made[s.name], cycles = unit_rate(s, bits)
        out.append((s.name, bits, cycles))
    return out


def bottleneck(stages: list[units.Unit], in_bits: int,
               wires: list[Any] | None = None) -> tuple[str, int]:
    """The slowest stage and its cycles per frame (the ideal throughput)."""
    name, _, cycles = max(schedule(stages, in_bits, wires), key=lambda r: r[2])
    return name, cycles
