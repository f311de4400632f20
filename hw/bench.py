"""Resource benchmark of the compute units: Yosys LUT/FF/BRAM/DSP per lane.

``python -m hw.bench [--out results]`` synthesizes

* ``mvtu`` with binary weights for the published TFC/CNV foldings' shapes (a lane is one XNOR or
  +-1 product, PE x SIMD of them per unit; target: at most 3 LUT per XNOR lane);
* the residual nets' multi-bit units: ``mvtu`` with 8-bit weights on 8-bit inputs (the stem,
  the 1x1 shortcut convolutions as 2x2 windows, the head; a lane is one 8 x 8 multiplier),
  ``requant`` (a lane is one channel's ``A x + G z + B``, two products, per beat) at the
  coefficient widths the residual step produces, and ``accpool``,

and writes ``hw_mvtu_resources.json`` and ``.md``. The figures are Yosys ``synth_xilinx``
estimates, not Vivado implementation.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from hw import units, yosys

log = logging.getLogger("hw.bench")

#: (label, MW, MH, SIMD, PE, XNOR, IN_W): binary weights
SHAPES = [("TFC layer 0 (16x49)", 784, 64, 49, 16, 1, 1),
          ("TFC layer 1 (8x8)", 64, 64, 8, 8, 1, 1),
          ("CNV layer 1 (32x32)", 576, 64, 32, 32, 1, 1),
          ("CNV layer 3 (16x32)", 1152, 128, 32, 16, 1, 1),
          ("256x256 (16x32)", 256, 256, 32, 16, 1, 1),
          ("CNV layer 0, 8-bit (16x3)", 27, 64, 3, 16, 0, 8)]
#: (label, MW, MH, SIMD, PE, thresholds): 8-bit weights on signed 8-bit inputs
MULTIBIT = [("resnet stem 3x3, 1->16 (4x9)", 9, 16, 9, 4, False),
            ("resnet stem 3x3, 1->16 (16x9)", 9, 16, 9, 16, False),
            ("resnet 1x1 shortcut 16->32 as 2x2 (4x16)", 64, 32, 16, 4, False),
            ("resnet head 64->10 (2x8)", 64, 10, 8, 2, False)]
#: (label, C, PE, inputs, XW, coefficient bits): requantizers of the residual step
REQUANT = [("add-requant, 12-bit branch + 8-bit shortcut, 20-bit coefficients (PE 4)",
            32, 4, 2, 12, 20),
           ("add-requant, 12-bit branch + 8-bit shortcut, 40-bit coefficients (PE 4)",
            32, 4, 2, 12, 40),
           ("one-input requant of a 16-bit stem sum, 20-bit coefficients (PE 4)",
            16, 4, 1, 16, 20)]
#: (label, C, PE, pixels, IN_W): global sum pooling
ACCPOOL = [("global sum pool, 64 channels of 8 bits over 7x7 (PE 4)", 64, 4, 49, 8)]


def synth(unit: units.Unit, family: str) -> dict:
    """Yosys resources of one unit, with its memory files written beside it."""
    work = Path(tempfile.mkdtemp(prefix="bnnforge_bench_"))
    files = unit.write_memories(work)
    return yosys.synth(unit.module, [unit.source], {**unit.params, **files}, family=family,
                       workdir=work)


def row(label: str, unit: units.Unit, lanes: int, family: str, **extra: object) -> dict:
    t0 = time.time()
    res = synth(unit, family)
    out = {"shape": label, "module": unit.module, **extra, "lanes": lanes, "LUT": res["LUT"],
           "FF": res["FF"], "BRAM36": res["BRAM36"], "DSP": res["DSP"],
           "LUT_per_lane": round(res["LUT"] / lanes, 2),
           "DSP_per_lane": round(res["DSP"] / lanes, 2),
           "seconds": round(time.time() - t0, 1), "tool": res["tool"]}
    log.info("%s: %s LUT (%.2f per lane), %s FF, %s BRAM36, %s DSP in %.0f s", label, out["LUT"],
             out["LUT_per_lane"], out["FF"], out["BRAM36"], out["DSP"], out["seconds"])
    return out


def binary_row(label: str, mw: int, mh: int, simd: int, pe: int, xnor: int, in_w: int,
               family: str) -> dict:
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2, (mh, mw))
    u = units.mvtu("m", w, rng.integers(0, mw, mh), pe, simd, xnor=bool(xnor), in_w=in_w,
                   in_signed=not xnor)
    return row(label, u, pe * simd, family, kind="binary weights", MW=mw, MH=mh, SIMD=simd,
               PE=pe)


def multibit_row(label: str, mw: int, mh: int, simd: int, pe: int, act: bool,
                 family: str) -> dict:
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (mh, mw))
    u = units.mvtu("m", w, rng.integers(-1000, 1000, mh) if act else None, pe, simd,
                   xnor=False, in_w=8, in_signed=True, w_bits=8)
    return row(label, u, pe * simd, family, kind="8-bit weights x 8-bit inputs", MW=mw, MH=mh,
               SIMD=simd, PE=pe)


def requant_row(label: str, c: int, pe: int, nin: int, x_w: int, cw: int, family: str) -> dict:
    rng = np.random.default_rng(0)
    top = (1 << (cw - 1)) - 1  # |coefficients| < 2**(cw - 1): CW = cw bits signed
    a, g, b = (rng.integers(-top, top, c) for _ in range(3))
    u = units.requant("r", a, b, cw - 10, pe, x_w, True, 8, -128, 127,
                      g=g if nin == 2 else None, z_w=8)
    return row(label, u, pe, family, kind="requant", C=c, PE=pe, CW=u.params["CW"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--family", default="zynq7", choices=sorted(yosys.FAMILIES))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = [binary_row(*shape, family=args.family) for shape in SHAPES]
    rows += [multibit_row(*shape, family=args.family) for shape in MULTIBIT]
    rows += [requant_row(*shape, family=args.family) for shape in REQUANT]
    rows += [row(label, units.accpool("p", c, pe, pixels, in_w, True), pe, args.family,
                 kind="accpool", C=c, PE=pe) for label, c, pe, pixels, in_w in ACCPOOL]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hw_mvtu_resources.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "hw_mvtu_resources.md").write_text(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    """The two tables: binary-weight lanes, and the residual nets' multi-bit units."""
    lines = ["# Compute unit resources (Yosys synthesis estimates)", "",
             f"Tool: {rows[0]['tool']}. Weights in block RAM; one threshold per row where the "
             "unit thresholds. Generated by `python -m hw.bench`.", "",
             "## Binary weights (a lane is one XNOR or +-1 product; target <= 3 LUT per XNOR "
             "lane)", "",
             "| shape | MW x MH | PE x SIMD | LUT | LUT / lane | FF | BRAM36 | DSP |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['MW']} x {r['MH']} | {r['PE']} x {r['SIMD']} | {r['LUT']} | "
              f"{r['LUT_per_lane']} | {r['FF']} | {r['BRAM36']} | {r['DSP']} |"
              for r in rows if r["kind"] == "binary weights"]
    lines += ["", "## Residual nets' multi-bit units", "",
              "A lane: one 8-bit x 8-bit multiplier (mvtu), one channel's A x + G z + B "
              "(requant: two products per lane), one channel's accumulator (accpool).", "",
              "| unit | shape | lanes | LUT | LUT / lane | DSP | DSP / lane | FF | BRAM36 |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['module']} | {r['shape']} | {r['lanes']} | {r['LUT']} | "
              f"{r['LUT_per_lane']} | {r['DSP']} | {r['DSP_per_lane']} | {r['FF']} | "
              f"{r['BRAM36']} |" for r in rows if r["kind"] != "binary weights"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
