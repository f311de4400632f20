"""Training CLI: ``python -m models.train --net tfc --method bnn --dataset fashion-mnist
--epochs 10 --out runs/tfc_bnn``.

Writes ``checkpoint.pt`` (every epoch), ``metrics.json``, ``curves.png`` and, at the end, the
QONNX export ``model.onnx`` with its parity check (see ``models.export``). ``--resume`` continues
the run in ``--out`` from its last checkpoint, bit-identically, with the options recorded in it;
a run directory that holds a run is never overwritten without ``--force``. The options are
checked before anything is written (:mod:`hw.contract`), and Ctrl-C or SIGTERM stop with one
line naming the last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from argparse import ArgumentTypeError
from pathlib import Path
from typing import Any

from hw.contract import (DataDir, Float, Int, Interrupted, Kind, KeyValue, OutDir, claim_output,
                         interruptible, parse, refuse, same_run)
from models import setup_logging
from models.binarize import METHODS, get_method
from models.checkpoint import load_checkpoint, write_json
from models.data import DATASETS, SHAPES, DatasetError, load_dataset
from models.export import ExportError, export_checkpoint
from models.nets import NETS, required_input_side
from models.trainer import LOSSES, SCHEDULES, TrainConfig, resolve_device, train

log = logging.getLogger("models.train")


#: run-directory files a training run writes
RUN_FILES = ("checkpoint.pt", "metrics.json", "curves.png", "model.onnx")
#: options that shape the result: recorded in the checkpoint's config, restored by --resume
#: (``dest`` -> config field); --epochs may extend a run and is handled on its own
RECORDED = {"net": "net", "method": "method", "method_opt": "method_options",
            "dataset": "dataset", "batch_size": "batch_size", "lr": "lr",
            "lr_schedule": "lr_schedule", "weight_decay": "weight_decay", "loss": "loss",
            "seed": "seed", "train_subset": "train_subset", "test_subset": "test_subset"}


class DeviceName(Kind):
    """A torch device this machine has: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

    metavar = "DEVICE"

    def __call__(self, text: str) -> str:
        try:
            resolve_device(text)
        except ValueError as exc:
            raise self.refuse(str(exc).partition(": ")[2] or str(exc)) from None
        return text

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        return [("unknown", "tpu"), ("bad index", "cuda:x")]


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as JSON when possible (else strings)."""
    kv = KeyValue()
    try:
        return dict(kv(item) for item in items)
    except ArgumentTypeError as exc:
        raise ValueError(f"--method-opt {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m models.train",
                                 description="Quantization-aware training of a binarized net.")
    ap.add_argument("--net", choices=NETS, default="tfc")
    ap.add_argument("--method", choices=sorted(METHODS), default="bnn")
    ap.add_argument("--method-opt", type=KeyValue(), action="append", default=[],
                    metavar="KEY=VALUE", help="method option (repeatable), e.g. --method-opt beta=5")
    ap.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    ap.add_argument("--data-dir", type=DataDir(), default="data",
                    help="dataset files/downloads (default: data)")
    ap.add_argument("--epochs", type=Int(1), default=10,
                    help="total epochs (default 10; with --resume, more extends the run)")
    ap.add_argument("--batch-size", type=Int(1), default=100)
    ap.add_argument("--lr", type=Float(0.0), default=0.02)
    ap.add_argument("--lr-schedule", choices=SCHEDULES, default="cosine")
    ap.add_argument("--weight-decay", type=Float(0.0, lo_inclusive=True), default=0.0)
    ap.add_argument("--loss", choices=LOSSES, default="ce")
    ap.add_argument("--seed", type=Int(0, 2**31 - 1), default=0)
    ap.add_argument("--out", type=OutDir(), required=True, help="run directory")
    again = ap.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out: its options come from the checkpoint "
                            "(one given that differs is refused; --epochs may extend it)")
    again.add_argument("--force", action="store_true",
                       help="replace the run already in --out (else it is refused)")
    ap.add_argument("--train-subset", type=Int(0), default=0,
                    help="use the first N training images (default 0: all)")
    ap.add_argument("--test-subset", type=Int(0), default=0,
                    help="use the first N test images (default 0: all)")
    ap.add_argument("--no-export", action="store_true", help="skip the QONNX export")
    ap.add_argument("--no-finn-check", action="store_true",
                    help="skip the finn-plus streamlining check of the export")
    ap.add_argument("--device", type=DeviceName(), default="auto",
                    help="cpu, cuda, cuda:N, or auto (cuda when available; default)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def holds_run(out: Path) -> str | None:
    """What training run ``out`` holds ("a run (checkpoint.pt: 3 of 10 epochs)"), or None."""
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        try:
            saved = load_checkpoint(ckpt)
            return (f"a training run ({ckpt.name}: {saved['epoch']} of "
                    f"{saved['config']['epochs']} epochs)")
        except (ValueError, KeyError, TypeError):
            return f"a training run ({ckpt.name}, unreadable)"
    found = [f for f in RUN_FILES if (out / f).exists()]
    return f"a training run's outputs ({', '.join(found)})" if found else None


def config_from_args(args: argparse.Namespace, explicit: set[str],
                     parser: argparse.ArgumentParser) -> TrainConfig:
    """The run's config: from the checkpoint when resuming (an explicit option that differs is
    refused, a larger --epochs extends the run), else from the arguments."""
    options = dict(args.method_opt)
    if args.resume:
        ckpt_path = Path(args.out) / "checkpoint.pt"
        ckpt = load_checkpoint(ckpt_path)
        try:
            cfg = TrainConfig.from_dict(ckpt["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{ckpt_path}: its config is unreadable ({exc})") from None
        saved = cfg.to_dict()
        given = {**vars(args), "method_opt": options}
        same_run(parser, explicit, given, {d: saved[f] for d, f in RECORDED.items()},
                 str(ckpt_path))
        if "epochs" in explicit and args.epochs != cfg.epochs:
            if args.epochs < max(cfg.epochs, ckpt["epoch"]):
                raise ValueError(f"--epochs {args.epochs}: the run in {ckpt_path} has "
                                 f"{cfg.epochs} epochs ({ckpt['epoch']} done); resume can "
                                 "extend a run, not shorten it")
            log.info("extending the run from %d to %d epochs (the lr schedule is stretched)",
                     cfg.epochs, args.epochs)
            cfg.epochs = args.epochs
        return cfg
    get_method(args.method, **options)  # refuse bad options now, naming them
    c, h, _ = SHAPES[args.dataset]
    side = required_input_side(args.net, h)
    return TrainConfig(
        net=args.net, method=args.method, dataset=args.dataset, in_shape=(c, side, side),
        num_classes=10, method_options=options, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay, loss=args.loss, seed=args.seed,
        train_subset=args.train_subset, test_subset=args.test_subset)


def check_subsets(cfg: TrainConfig, train_ds: Any, test_ds: Any) -> None:
    """A subset larger than its split is refused (it would silently use the whole split)."""
    for opt, n, ds in (("--train-subset", cfg.train_subset, train_ds),
                       ("--test-subset", cfg.test_subset, test_ds)):
        if n > len(ds):
            raise ValueError(f"{opt} {n}: {cfg.dataset} has {len(ds):,} images in that split")


def interrupted_line(out: Path, exc: Interrupted | KeyboardInterrupt) -> str:
    """One line: which signal, what the last checkpoint holds, how to resume."""
    name = exc.args[0] if isinstance(exc, Interrupted) else "SIGINT"
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        saved = load_checkpoint(ckpt)
        return (f"interrupted ({name}): {ckpt} holds epoch {saved['epoch']} of "
                f"{saved['config']['epochs']}; continue with: python -m models.train "
                f"--out {out} --resume")
    return f"interrupted ({name}) before the first epoch ended: nothing to resume in {out}"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0, 1 (a failure, reported in one line), 2 (refused options,
    nothing written) or 128 + signal (interrupted; the last checkpoint is kept)."""
    parser = build_parser()
    args, explicit = parse(parser, argv)
    setup_logging()
    out = Path(args.out)
    try:
        claim_output(out, holds_run, args.force, args.resume)
        cfg = config_from_args(args, explicit, parser)
        side = cfg.in_shape[-1]
        train_ds = load_dataset(cfg.dataset, "train", args.data_dir, pad_to=side)
        test_ds = load_dataset(cfg.dataset, "test", args.data_dir, pad_to=side)
        check_subsets(cfg, train_ds, test_ds)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        return refuse(parser.prog, str(exc))
    created = not out.exists()
    if args.force:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    try:
        with interruptible():
            metrics = train(cfg, train_ds, test_ds, out, resume=args.resume,
                            progress=not args.no_progress, device=args.device)
            if not args.no_export:
                summary = export_checkpoint(out / "checkpoint.pt", out / "model.onnx",
                                            args.data_dir, finn_check=not args.no_finn_check,
                                            force=True)
                metrics["export"] = summary
                write_json(out / "metrics.json", metrics)
    except (Interrupted, KeyboardInterrupt) as exc:
        log.error("%s", interrupted_line(out, exc))
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        return exc.exit_status if isinstance(exc, Interrupted) else 130
    except (DatasetError, ExportError, FileNotFoundError, ValueError) as exc:
        log.error("error: %s", exc)
        return 1
    log.info("test accuracy %.4f after %d epochs; outputs in %s", metrics["test_accuracy"],
             metrics["epochs_completed"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
