"""Brevitas' own BNN-PYNQ nets as QONNX files, for resource and throughput benchmarks.

``python -m models.reference --net cnv_1w1a --out cnv_w1a1.onnx``

The nets are ``brevitas_examples.bnn_pynq``'s (TFC, SFC, LFC and CNV at 1 or 2 bits, their
published input shapes: 1 x 28 x 28 for the FC nets, 3 x 32 x 32 for CNV). Their pretrained
weights download at run time, which this command does not do: it exports them with seeded
random weights and BatchNorm statistics of one pass over random images, which is all a
benchmark of their hardware needs (the size of every layer, memory and threshold is the
published net's). The file carries no bnnforge metadata, as any model from outside bnnforge.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from hw.contract import Int, Interrupted, OutFile, interruptible, parse, refuse

log = logging.getLogger("models.reference")

NETS = ("tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a",
        "lfc_1w2a", "cnv_1w1a", "cnv_1w2a", "cnv_2w2a")


def input_shape(name: str) -> tuple[int, int, int, int]:
    """The published input shape of a BNN-PYNQ net."""
    return (1, 3, 32, 32) if name.startswith("cnv") else (1, 1, 28, 28)


def export_reference(name: str, out: Path, seed: int = 0) -> Path:
    """Export Brevitas' ``name`` with random weights (seeded) and calibrated BatchNorm."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(seed)
    model, _ = model_with_cfg(name, pretrained=False)
    shape = input_shape(name)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.rand(32, *shape[1:]))
    with tempfile.TemporaryDirectory(prefix="bnnforge-reference-") as tmp:
        staged = Path(tmp) / out.name
        export_qonnx(model.eval(), torch.rand(shape), str(staged))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), out)
    log.info("exported Brevitas' %s (random weights, seed %d) to %s", name, seed, out)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m models.reference",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", choices=NETS, required=True)
    ap.add_argument("--out", type=OutFile(".onnx"), required=True)
    ap.add_argument("--seed", type=Int(0, 2**31 - 1), default=0)
    ap.add_argument("--force", action="store_true", help="replace an existing --out file")
    return ap


def main(argv: list[str] | None = None) -> int:
    from models import setup_logging

    ap = build_parser()
    args, _ = parse(ap, argv)
    setup_logging()
    if args.out.exists() and not args.force:
        return refuse(ap.prog, f"{args.out} exists: give --force to replace it")
    try:
        with interruptible():
            export_reference(args.net, args.out, args.seed)
    except Interrupted as exc:
        log.error("interrupted (%s): nothing written to %s", exc, args.out)
        return exc.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
