"""Training CLI: ``python -m models.train --net tfc --method bnn --dataset fashion-mnist
--epochs 10 --out runs/tfc_bnn``.

Writes ``checkpoint.pt`` (every epoch), ``metrics.json``, ``curves.png`` and, at the end, the
QONNX export ``model.onnx`` with its parity check (see ``models.export``). ``--resume`` continues
the run in ``--out`` from its last checkpoint, bit-identically.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from models import setup_logging
from models.binarize import METHODS
from models.checkpoint import load_checkpoint
from models.data import DATASETS, SHAPES, DatasetError, load_dataset
from models.export import ExportError, export_checkpoint
from models.nets import NETS, required_input_side
from models.trainer import LOSSES, SCHEDULES, TrainConfig, train

log = logging.getLogger("models.train")


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as JSON when possible (else strings)."""
    opts: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--method-opt {item!r}: expected key=value")
        key, value = item.split("=", 1)
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m models.train",
                                 description="Quantization-aware training of a binarized net.")
    ap.add_argument("--net", choices=NETS, default="tfc")
    ap.add_argument("--method", choices=sorted(METHODS), default="bnn")
    ap.add_argument("--method-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="method option (repeatable), e.g. --method-opt beta=5")
    ap.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    ap.add_argument("--data-dir", default="data", help="dataset files/downloads (default: data)")
    ap.add_argument("--epochs", type=int, default=None, help="total epochs (default 10)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--lr-schedule", choices=SCHEDULES, default="cosine")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--loss", choices=LOSSES, default="ce")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="run directory")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run in --out (its options come from the checkpoint; "
                         "--epochs may extend it)")
    ap.add_argument("--train-subset", type=int, default=0, help="use the first N training images")
    ap.add_argument("--test-subset", type=int, default=0, help="use the first N test images")
    ap.add_argument("--no-export", action="store_true", help="skip the QONNX export")
    ap.add_argument("--no-finn-check", action="store_true",
                    help="skip the finn-plus streamlining check of the export")
    ap.add_argument("--device", default="auto",
                    help="cpu, cuda, cuda:N, or auto (cuda when available; default)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: from the checkpoint when resuming, else from the arguments."""
    if args.resume:
        ckpt = load_checkpoint(Path(args.out) / "checkpoint.pt")
        cfg_dict = dict(ckpt["config"])
        if args.epochs is not None and args.epochs > cfg_dict["epochs"]:
            log.warning("extending the run from %d to %d epochs (the lr schedule is stretched)",
                        cfg_dict["epochs"], args.epochs)
            cfg_dict["epochs"] = args.epochs
        cfg_dict["in_shape"] = tuple(cfg_dict["in_shape"])
        return TrainConfig(**cfg_dict)
    c, h, _ = SHAPES[args.dataset]
    side = required_input_side(args.net, h)
    return TrainConfig(
        net=args.net, method=args.method, dataset=args.dataset, in_shape=(c, side, side),
        num_classes=10, method_options=parse_options(args.method_opt),
        epochs=10 if args.epochs is None else args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay, loss=args.loss, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = build_parser().parse_args(argv)
    setup_logging()
    out = Path(args.out)
    try:
        cfg = config_from_args(args)
        side = cfg.in_shape[-1]
        train_ds = load_dataset(cfg.dataset, "train", args.data_dir, pad_to=side)
        test_ds = load_dataset(cfg.dataset, "test", args.data_dir, pad_to=side)
        train_ds = train_ds.subset(args.train_subset)
        test_ds = test_ds.subset(args.test_subset)
        metrics = train(cfg, train_ds, test_ds, out, resume=args.resume,
                        progress=not args.no_progress, device=args.device)
        if not args.no_export:
            summary = export_checkpoint(out / "checkpoint.pt", out / "model.onnx", args.data_dir,
                                        finn_check=not args.no_finn_check)
            metrics["export"] = summary
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    except (DatasetError, ExportError, FileNotFoundError, ValueError) as exc:
        log.error("error: %s", exc)
        return 1
    log.info("test accuracy %.4f after %d epochs; outputs in %s", metrics["test_accuracy"],
             metrics["epochs_completed"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
