"""Frames per second over batch sizes: ``python throughput.py --batch-sizes 1,10,100,1000``.

On the board the time of whole batches through the DMAs and the accelerator (packing excluded);
with ``--sim``, the Verilator simulation's wall time and the simulated cycles, which give the
frames per second at the accelerator's clock. Writes ``throughput.json`` (and
``throughput.png`` when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from contract import InDir, IntList, Interrupted, OutFile, interruptible, parse, refuse  # noqa: E402
from driver import Accelerator, DriverError  # noqa: E402

log = logging.getLogger("bnnforge.throughput")


def plot(rows: list[dict], path: Path) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    b = [r["batch_size"] for r in rows]
    ax.plot(b, [r["fps_wall"] for r in rows], "o-", label="measured (wall clock)")
    if all("fps_at_fclk" in r for r in rows):
        ax.plot(b, [r["fps_at_fclk"] for r in rows], "s--", label="simulated cycles at fclk")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="frames per second")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", type=IntList(1, 100_000), default="1,10,100,1000",
                    help="comma-separated batch sizes (default 1,10,100,1000)")
    ap.add_argument("--sim", action="store_true", help="the Verilator simulation, not the board")
    ap.add_argument("--rtl", type=InDir("a build's rtl/ directory"),
                    help="with --sim: the build's rtl/ directory")
    ap.add_argument("--out", type=OutFile(".json"), default="throughput.json",
                    help="result file (default throughput.json; a .png beside it)")
    ap.add_argument("--force", action="store_true", help="replace an existing --out file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit 0, 1 (the accelerator failed), 2 (refused options) or 128 + signal."""
    ap = build_parser()
    args, _ = parse(ap, argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.rtl and not args.sim:
        ap.error("--rtl goes with --sim")
    if args.out.exists() and not args.force:
        return refuse(ap.prog, f"{args.out} exists: give --force to replace it")
    sizes = args.batch_sizes
    try:
        with interruptible():
            acc = (Accelerator.simulation(HERE, max(sizes), args.rtl) if args.sim
                   else Accelerator.board(HERE, max(sizes)))
            rows = acc.throughput(sizes)
    except Interrupted as exc:
        log.error("interrupted (%s): nothing written", exc)
        return exc.exit_status
    except DriverError as exc:
        print(f"throughput: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps({"backend": "simulation" if args.sim else "board",
                                    "rows": rows}, indent=2))
    plot(rows, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
