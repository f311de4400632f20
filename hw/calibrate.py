"""Fit the cost model (:mod:`hw.cost`) on Yosys, and measure its error where it was not fitted.

``python -m hw.calibrate [--family zynq7] [--out results] [--jobs 2] [--modules swg,...]``

1. For every module, a seeded grid of shapes (:func:`grid`: the ranges the BNN nets use, PE,
   SIMD, widths and depths drawn at random) is synthesized with Yosys ``synth_xilinx``; the
   first shapes of each module (:data:`SIZES`) fit its coefficients, the rest are held out.
2. Held-out stitched designs (:func:`designs`: FC chains and conv chains of random foldings,
   with the FIFOs and width converters :mod:`hw.stitch` puts between the units) are synthesized
   whole; the model's sum over their stages is compared with Yosys' total.

Writes ``hw/cost_model.json`` (the coefficients, read by :class:`hw.cost.CostModel`) and
``<out>/cost_model_<family>.json`` (every synthesized shape, the model's value and the error),
``.md`` (error per module and per design) and ``.png`` (model against Yosys).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hw import calibrate_report, cost, stitch, units, yosys

log = logging.getLogger("hw.calibrate")

#: (shapes fitted, shapes held out) per module; the matrix unit has three datapaths
SIZES = {"mvtu": (36, 12), "thresholding": (20, 6), "swg": (18, 6)}
DEFAULT_SIZE = (14, 6)


def size(module: str) -> tuple[int, int]:
    return SIZES.get(module, DEFAULT_SIZE)


def _pick(rng: np.random.Generator, values: list[int]) -> int:
    return int(values[rng.integers(len(values))])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def mvtu_unit(rng: np.random.Generator, kind: str, mw: int, mh: int, simd: int,
              pe: int, ram: str = "block", act: bool = True) -> units.Unit:
    """A matrix unit with random contents: ``kind`` xnor, int (+-1 weights on 8-bit inputs)
    or mul (8-bit weights); unpipelined (``PIPE`` = 0: the model counts the pipeline's
    registers, :func:`hw.cost.pipe_registers`)."""
    if kind == "mul":
        w = rng.integers(-128, 128, (mh, mw))
        return units.mvtu("m", w, rng.integers(-2000, 2000, mh) if act else None, pe, simd,
                          xnor=False, in_w=8, in_signed=True, ram_style=ram, w_bits=8,
                          pipe=0)
    w = rng.integers(0, 2, (mh, mw))
    t = rng.integers(0, mw, mh) if act else None
    if kind == "xnor":
        return units.mvtu("m", w, t, pe, simd, ram_style=ram, pipe=0)
    return units.mvtu("m", w, t, pe, simd, xnor=False, in_w=8, in_signed=True, ram_style=ram,
                      pipe=0)


def grid(module: str, n: int, seed: int = 0) -> list[units.Unit]:
    """``n`` units of ``module`` with random shapes in the ranges the nets use."""
    rng = np.random.default_rng([seed, sum(map(ord, module))])
    out = []
    for i in range(n):
        if module == "mvtu":
            kind = ("xnor", "xnor", "int", "mul")[i % 4]
            mw = _pick(rng, [27, 64, 144, 256, 576, 784, 1152] if kind != "mul"
                       else [9, 16, 64, 144])
            mh = _pick(rng, [10, 16, 32, 64, 128, 256] if kind != "mul" else [10, 16, 32])
            # XNOR units up to SIMD 256 and 4,096 lanes (the wide units of fast foldings)
            simd = _pick(rng, [d for d in _divisors(mw) if d <= (256 if kind == "xnor" else 16)])
            pe = _pick(rng, [d for d in _divisors(mh) if d <= 64 and d * simd <= 4096])
            ram = "distributed" if rng.random() < 0.3 else "block"
            out.append(mvtu_unit(rng, kind, mw, mh, simd, pe, ram, act=rng.random() < 0.8))
        elif module == "thresholding":
            c = _pick(rng, [16, 32, 64, 128, 256, 784])
            pe = _pick(rng, [d for d in _divisors(c) if d <= 64])
            in_w, nt = _pick(rng, [8, 10, 12, 16]), _pick(rng, [1, 1, 3, 255])
            if nt == 255:  # a lookup table of PE read ports: Yosys needs 20 GB at PE 16
                in_w, pe = 8, min(pe, 2)
            t = np.sort(rng.integers(-(1 << (in_w - 1)), 1 << (in_w - 1), (c, nt)), axis=1)
            out.append(units.thresholding("t", t, pe, in_w, True, max(1, nt.bit_length())))
        elif module == "swg":
            c = _pick(rng, [3, 16, 32, 64, 128])
            simd = _pick(rng, [d for d in _divisors(c) if d <= 64])
            side, k = _pick(rng, [6, 10, 14, 30]), _pick(rng, [1, 2, 3])
            out.append(units.swg("s", (side, side), c, simd, (k, k), (1 if k == 3 else k,) * 2,
                                 _pick(rng, [1, 1, 8])))
        elif module == "fifo":
            out.append(units.fifo("f", _pick(rng, [1, 8, 16, 49, 64, 128, 288]),
                                  _pick(rng, [2, 2, 4, 16, 32, 100, 256, 831])))
        elif module == "dwc":
            a, b = _pick(rng, [1, 8, 16, 32, 49, 64]), _pick(rng, [1, 8, 16, 36, 64, 128])
            out.append(units.dwc("d", a, b if b != a else a * 2))
        elif module == "requant":
            c, pe, nin = _pick(rng, [16, 32, 64]), _pick(rng, [1, 2, 4]), 1 + (i % 2)
            cw, x_w = _pick(rng, [12, 20, 28, 40]), _pick(rng, [10, 12, 16])
            # as the residual step makes them: A x + G z spans about the 8-bit output range
            top = (1 << (cw - 1)) - 1
            a, g, b = (rng.integers(-top, top, c) for _ in range(3))
            out.append(units.requant("r", a, b, max(cw + x_w - 10, 0), pe, x_w, True, 8, -128,
                                     127, g=g if nin == 2 else None, z_w=8))
        else:
            out.append(simple_unit(module, rng))
    return out


def simple_unit(module: str, rng: np.random.Generator) -> units.Unit:
    """A unit of the small modules (a few parameters each)."""
    c = _pick(rng, [10, 16, 32, 64, 128])
    pe = _pick(rng, [d for d in _divisors(c) if d <= 32])
    w = _pick(rng, [1, 8, 12, 16])
    if module == "fmpadding":
        return units.fmpadding("p", (14, 14), c, pe, w, (1, 1, 1, 1))
    if module == "pool":
        return units.pool("p", c, pe, 4, w)
    if module == "label_select":
        return units.label_select("l", c, _pick(rng, [d for d in _divisors(c) if d <= 10]),
                                  max(w, 2), True)
    if module == "dup":
        return units.dup("d", pe * w)
    if module == "zip":
        return units.zip_("z", pe * w, _pick(rng, [8, 16, 64]))
    if module == "accpool":
        return units.accpool("a", c, pe, 49, 8, True)
    raise ValueError(f"no grid for module {module!r}")


def synth_unit(unit: units.Unit, family: str) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bnnforge_cal_"))
    files = unit.write_memories(work)
    res = yosys.synth(unit.module, [unit.source], {**unit.params, **files}, family=family,
                      workdir=work)
    return {r: float(res[r]) for r in cost.RESOURCES}


def designs(seed: int = 0) -> list[tuple[str, list[units.Unit]]]:
    """Held-out stitched designs: TFC-shaped FC chains and small conv chains, random folds."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for i in range(2):
        sizes = [784, 64 * (i + 1), 64, 64]
        nodes: list[units.Unit] = [units.thresholding(
            "in", rng.integers(0, 255, (784, 1)), 49, 8, False, 1)]
        for j, (mw, mh) in enumerate(zip(sizes, sizes[1:] + [10], strict=True)):
            simd = _pick(rng, [d for d in _divisors(mw) if 4 <= d <= 64])
            pe = _pick(rng, [d for d in _divisors(mh) if d <= 16])
            nodes.append(mvtu_unit(rng, "xnor", mw, mh, simd, pe, act=j < 3))
            nodes[-1].name = f"fc{j}"
        nodes.append(units.label_select("top", 10, 1, nodes[-1].params["ACC_W"], False))
        out.append((f"fc chain {i}", nodes))
    for i in range(2):
        c = (16, 32)[i]
        nodes = [units.fmpadding("pad", (12, 12), 1, 1, 8, (1, 1, 1, 1)),
                 units.swg("win0", (14, 14), 1, 1, (3, 3), (1, 1), 8),
                 mvtu_unit(rng, "int", 9, c, 9, _pick(rng, [2, 4, 8])),
                 units.swg("win1", (12, 12), c, _pick(rng, [4, c]), (3, 3), (1, 1), 1),
                 mvtu_unit(rng, "xnor", 9 * c, c, _pick(rng, [c, 3 * c]), _pick(rng, [4, 8])),
                 units.pool("pool", c, _pick(rng, [1, 4]), 4, 1)]
        nodes[2].name, nodes[4].name = "conv0", "conv1"
        out.append((f"conv chain {i}", nodes))
    return out


def synth_design(nodes: list[units.Unit], family: str) -> tuple[dict[str, float], list[units.Unit]]:
    """Yosys' totals for ``nodes`` stitched (analytic FIFO depths), and the stitched stages."""
    work = Path(tempfile.mkdtemp(prefix="bnnforge_cal_"))
    top, stages = stitch.write(nodes, work)
    res = yosys.synth("accel", stitch.filelist(stages, top), {}, family=family, workdir=work)
    return {r: float(res[r]) for r in cost.RESOURCES}, stages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hw.calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="zynq7", choices=sorted(yosys.FAMILIES))
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--jobs", type=int, default=2, help="Yosys runs at once")
    ap.add_argument("--model-file", type=Path, default=cost.MODEL_FILE)
    ap.add_argument("--refit", action="store_true",
                    help="fit again on the Yosys results already in <out>/cost_model_<family>"
                         ".json (after a change of the features), synthesizing nothing")
    ap.add_argument("--modules", type=_modules, default=None, metavar="M,...",
                    help="synthesize only these modules' shapes (after a change of their RTL) "
                         "and the held-out designs; the other modules' stored results are kept")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.refit:
        return refit(args)
    t0 = time.time()
    shapes = {m: grid(m, sum(size(m))) for m in (args.modules or cost.FEATURES)}
    jobs = [(m, i, u) for m, us in shapes.items() for i, u in enumerate(us)]
    held = designs()
    done = iter(range(1, len(jobs) + len(held) + 1))

    def progress(what: str, result: Any) -> Any:
        log.info("[%d/%d] %s (%.0f s)", next(done), len(jobs) + len(held), what,
                 time.time() - t0)
        return result

    def attempt(j: tuple[str, int, units.Unit]) -> dict[str, float] | None:
        try:
            return synth_unit(j[2], args.family)
        except yosys.SynthError as exc:  # a Yosys failure on this shape: reported, not fitted
            log.warning("%s %d: %s", j[0], j[1], exc)
            return None

    with ThreadPoolExecutor(args.jobs) as pool:
        measured = list(pool.map(lambda j: progress(f"{j[0]} {j[1]}", attempt(j)), jobs))
        built = list(pool.map(lambda d: progress(d[0], synth_design(d[1], args.family)), held))
    failed = [{"module": m, "params": u.params} for (m, _, u), r in zip(jobs, measured,
                                                                       strict=True) if r is None]
    jobs, measured = zip(*[(j, r) for j, r in zip(jobs, measured, strict=True) if r is not None],
                         strict=True)
    log.info("synthesized %d units (%d failed in Yosys) and %d designs in %.0f s", len(jobs),
             len(failed), len(built), time.time() - t0)
    rows = [{"module": m, "held_out": i >= size(m)[0], "params": u.params, "yosys": r}
            for (m, i, u), r in zip(jobs, measured, strict=True)]
    if args.modules:  # the other modules as last measured
        old = json.loads((args.out / f"cost_model_{args.family}.json").read_text())
        rows = [r for r in old["units"] if r["module"] not in args.modules] + rows
        failed = [f for f in old.get("failed", []) if f["module"] not in args.modules] + failed
    model = cost.CostModel(args.family, fit_rows(rows))
    for r in rows:
        r["model"] = model.unit(_unit_of(r))
    drows = [{"design": name, "units": len(nodes), "yosys": res, "model": model.total(stages)}
             for (name, nodes), (res, stages) in zip(held, built, strict=True)]
    save_model(args.model_file, args.family, model.coef, yosys.version())
    write_results(args.out, args.family, rows, drows, round(time.time() - t0), failed)
    return 0


def _modules(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in cost.FEATURES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r}: modules are {', '.join(sorted(cost.FEATURES))}")
    return names


def _unit_of(row: dict[str, Any]) -> units.Unit:
    """A stored row's unit (its parameters only: what the model's features read)."""
    return units.Unit("u", row["module"], row["params"], 1, 1)


def fit_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The coefficients of every module from stored rows (module, held_out, params, yosys):
    each fitted on its shapes that are not held out."""
    return {m: cost.fit([(_unit_of(r), r["yosys"]) for r in rows
                         if r["module"] == m and not r["held_out"]])
            for m in sorted({r["module"] for r in rows})}


def refit(args: argparse.Namespace) -> int:
    """Fit the coefficients again from the stored Yosys results (same shapes and designs)."""
    stem = args.out / f"cost_model_{args.family}"
    old = json.loads(stem.with_suffix(".json").read_text())
    rows = old["units"]
    coef = fit_rows(rows)
    model = cost.CostModel(args.family, coef)
    for r in rows:
        r["model"] = model.unit(_unit_of(r))
    drows = []
    for (name, nodes), d in zip(designs(), old["designs"], strict=True):
        stages, _ = stitch.connect(nodes)
        drows.append({**d, "model": model.total(stages)})
    save_model(args.model_file, args.family, coef, old["tool"])
    write_results(args.out, args.family, rows, drows, old["seconds"], old.get("failed"))
    return 0


def save_model(path: Path, family: str, coef: dict[str, Any], tool: str) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {"families": {}}
    data["families"][family] = {"tool": tool, "coef": coef}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    log.info("wrote %s", path)


def write_results(out: Path, family: str, rows: list[dict], drows: list[dict],
                  seconds: int, failed: list[dict] | None = None) -> None:
    """``cost_model_<family>.json``, ``.md`` and ``.png``."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"cost_model_{family}"
    summary = calibrate_report.summarize(rows, drows)
    stem.with_suffix(".json").write_text(json.dumps(
        {"family": family, "tool": yosys.version(), "seconds": seconds, "summary": summary,
         "units": rows, "designs": drows, "failed": failed or []}, indent=1,
        default=float) + "\n")
    stem.with_suffix(".md").write_text(calibrate_report.markdown(family, summary, drows,
                                                                 seconds, failed or []))
    calibrate_report.plot(rows, drows, stem.with_suffix(".png"), family)
    log.info("wrote %s.{json,md,png}", stem)


if __name__ == "__main__":
    raise SystemExit(main())
