"""Test-set accuracy of the accelerator: ``python validate.py --images FILE [--labels FILE]``.

Runs on the board (the package's bitfile) or, with ``--sim``, on the Verilator simulation of the
same accelerator, through the same driver. Dataset files: MNIST/Fashion-MNIST IDX
(``t10k-images-idx3-ubyte[.gz]`` with ``--labels t10k-labels-idx1-ubyte[.gz]``), CIFAR-10's
binary ``test_batch.bin`` or Python ``test_batch`` (labels inside), or an ``.npz`` with
``images`` and ``labels``. Prints the accuracy and writes it to ``validate.json``.

``python validate.py --self-test`` needs no dataset: the build's verification frames
(``driver/selftest.npz``) must come out bit for bit as the build's software execution of the
graph computed them; the first mismatch is reported with its frame and position.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import pickle
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from contract import (InDir, InFile, Int, Interrupted, OutFile, interruptible,  # noqa: E402
                      parse, refuse)
from driver import Accelerator, DriverError  # noqa: E402

log = logging.getLogger("bnnforge.validate")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or raw); DriverError naming it when it is not."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DriverError(f"{path}: corrupt or truncated ({type(exc).__name__}: {exc})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 8:
        raise DriverError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DriverError(f"{path}: truncated IDX header")
    dims = np.frombuffer(raw[4:header], dtype=">u4").astype(np.int64)
    if int(np.prod(dims)) != len(raw) - header:
        raise DriverError(f"{path}: the header declares {tuple(int(d) for d in dims)} "
                          f"({int(np.prod(dims))} bytes), the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load(images: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) or (N, H, W), as stored (the driver checks their dtype and range),
    and their labels (N integers >= 0) from the dataset file(s)."""
    if not images.is_file():
        raise DriverError(f"{images}: no such file")
    try:
        x, y = _load(images, labels)
    except DriverError:
        raise
    except (ValueError, KeyError, IndexError, OSError, EOFError, pickle.UnpicklingError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise DriverError(f"{images}: cannot read it as a dataset file ({type(exc).__name__}: "
                          f"{exc})") from None
    where = labels or images
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DriverError(f"{where}: labels must be one integer per image, found "
                          f"{y.dtype} of shape {y.shape}")
    if len(x) != len(y):
        raise DriverError(f"{images} has {len(x)} images but {where} has {len(y)} labels")
    if len(y) and y.min() < 0:
        raise DriverError(f"{where}: label {int(y.min())} is negative")
    return x, y.astype(np.int64)


def _load(images: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray]:
    name = images.name
    if name.endswith(".npz"):
        with np.load(images) as d:
            if "images" not in d or "labels" not in d:
                raise KeyError(f"the npz needs arrays 'images' and 'labels', has {list(d)}")
            return np.asarray(d["images"]), np.asarray(d["labels"])
    if name.startswith("test_batch") and name.endswith(".bin"):
        rec = np.frombuffer(images.read_bytes(), np.uint8).reshape(-1, 3073)
        return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)
    if name.startswith("test_batch"):
        d = pickle.loads(images.read_bytes(), encoding="bytes")
        return (np.asarray(d[b"data"]).reshape(-1, 3, 32, 32), np.asarray(d[b"labels"]))
    if labels is None:
        raise DriverError(f"{images}: IDX images need --labels (the idx1 labels file)")
    x, y = _read_idx(images), _read_idx(labels)
    if y.ndim != 1:
        raise DriverError(f"{labels}: not an IDX labels file (it holds an array of shape "
                          f"{tuple(y.shape)}, labels are one number per image)")
    return x, y


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=InFile("dataset test file"), help="dataset test file")
    ap.add_argument("--self-test", action="store_true",
                    help="the build's verification frames instead of a dataset")
    ap.add_argument("--labels", type=InFile("IDX labels file"),
                    help="IDX labels file (MNIST, Fashion-MNIST)")
    ap.add_argument("--limit", type=Int(1), help="only the first N images")
    ap.add_argument("--batch-size", type=Int(1, 100_000), default=100)
    ap.add_argument("--sim", action="store_true", help="the Verilator simulation, not the board")
    ap.add_argument("--rtl", type=InDir("a build's rtl/ directory"),
                    help="with --sim: the build's rtl/ directory")
    ap.add_argument("--out", type=OutFile(".json"), default="validate.json",
                    help="result file (default validate.json)")
    ap.add_argument("--force", action="store_true", help="replace an existing --out file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit 0 (valid; for --self-test: no mismatch), 1 (mismatches, or the accelerator or data
    failed), 2 (refused options or files; nothing ran) or 128 + signal (interrupted)."""
    ap = build_parser()
    args, _ = parse(ap, argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.images and not args.self_test:
        ap.error("give --images (and --labels) or --self-test")
    if args.self_test and (args.images or args.labels):
        ap.error("--self-test runs the build's own frames: drop --images/--labels")
    if args.rtl and not args.sim:
        ap.error("--rtl goes with --sim")
    if args.out.exists() and not args.force:
        return refuse(ap.prog, f"{args.out} exists: give --force to replace it")
    backend = "simulation" if args.sim else "board"
    try:
        x = y = None
        if not args.self_test:
            x, y = load(args.images, args.labels)
            x, y = x[:args.limit], y[:args.limit]
            if not len(x):
                raise DriverError(f"{args.images}: no images to validate on")
    except DriverError as exc:
        return refuse(ap.prog, str(exc))
    try:
        with interruptible():
            acc = (Accelerator.simulation(HERE, args.batch_size, args.rtl) if args.sim
                   else Accelerator.board(HERE, args.batch_size))
            if args.self_test:
                return self_test(acc, backend, args.out)
            classes = len(acc.meta.get("classes") or []) or None
            if classes and int(y.max()) >= classes:
                raise DriverError(f"{args.labels or args.images}: label {int(y.max())} is not "
                                  f"one of the model's {classes} classes")
            for i in range(0, len(x), acc.batch_size):  # shape, dtype, range: before any frame
                acc.check_input(acc.prepare(x[i:i + acc.batch_size]))
            t0 = time.time()
            pred = np.concatenate([acc.classify(x[i:i + 1000])
                                   for i in range(0, len(x), 1000)])
            secs = time.time() - t0
    except Interrupted as exc:
        log.error("interrupted (%s): nothing written", exc)
        return exc.exit_status
    except DriverError as exc:
        print(f"validate: {exc}", file=sys.stderr)
        return 1
    ok = int(np.sum(pred == y))
    result = {"images": len(y), "correct": ok, "accuracy": ok / len(y), "seconds": secs,
              "backend": backend, "dataset": str(args.images),
              "predictions": pred.tolist()}
    args.out.write_text(json.dumps(result))
    log.info("accuracy %.2f %% (%d of %d) on %s, %.1f s", 100 * ok / len(y), ok, len(y),
             result["backend"], secs)
    return 0


def self_test(acc: Accelerator, backend: str, out: Path) -> int:
    """The build's verification frames through ``acc``; 1 on any mismatch."""
    res = {**acc.self_test(), "backend": backend}
    out.write_text(json.dumps(res))
    f = res["first_mismatch"]
    log.info("self-test on %s: %d frames, %d mismatches%s", backend, res["frames"],
             res["mismatches"], f" (first: frame {f['frame']}, position "
             f"{f['position']}: {f['accelerator']:g}, software {f['software']:g})"
             if f else "")
    return 1 if res["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
