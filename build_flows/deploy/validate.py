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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from driver import Accelerator, DriverError  # noqa: E402

log = logging.getLogger("bnnforge.validate")


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 8 or raw[:2] != b"\0\0" or raw[2] != 8:
        raise DriverError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], dtype=">u4").astype(int)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(images: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) or (N, H, W) and their labels from the dataset file(s)."""
    if not images.is_file():
        raise DriverError(f"{images}: no such file")
    try:
        return _load(images, labels)
    except (ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DriverError(f"{images}: cannot read it as a dataset file ({type(exc).__name__}: "
                          f"{exc})") from None


def _load(images: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray]:
    name = images.name
    if name.endswith(".npz"):
        d = np.load(images)
        return np.asarray(d["images"], np.uint8), np.asarray(d["labels"], np.int64)
    if name.startswith("test_batch") and name.endswith(".bin"):
        rec = np.frombuffer(images.read_bytes(), np.uint8).reshape(-1, 3073)
        return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)
    if name.startswith("test_batch"):
        d = pickle.loads(images.read_bytes(), encoding="bytes")
        return (np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32),
                np.asarray(d[b"labels"], np.int64))
    if labels is None:
        raise DriverError(f"{images}: IDX images need --labels (the idx1 labels file)")
    x, y = _read_idx(images), _read_idx(labels).astype(np.int64)
    if len(x) != len(y):
        raise DriverError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    return x, y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, help="dataset test file")
    ap.add_argument("--self-test", action="store_true",
                    help="the build's verification frames instead of a dataset")
    ap.add_argument("--labels", type=Path, help="IDX labels file (MNIST, Fashion-MNIST)")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--sim", action="store_true", help="the Verilator simulation, not the board")
    ap.add_argument("--rtl", type=Path, help="with --sim: the build's rtl/ directory")
    ap.add_argument("--out", type=Path, default=Path("validate.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.images and not args.self_test:
        ap.error("give --images (and --labels) or --self-test")
    backend = "simulation" if args.sim else "board"
    try:
        acc = (Accelerator.simulation(HERE, args.batch_size, args.rtl) if args.sim
               else Accelerator.board(HERE, args.batch_size))
        if args.self_test:
            res = {**acc.self_test(), "backend": backend}
            args.out.write_text(json.dumps(res))
            f = res["first_mismatch"]
            log.info("self-test on %s: %d frames, %d mismatches%s", backend, res["frames"],
                     res["mismatches"], f" (first: frame {f['frame']}, position "
                     f"{f['position']}: {f['accelerator']:g}, software {f['software']:g})"
                     if f else "")
            return 1 if res["mismatches"] else 0
        x, y = load(args.images, args.labels)
        x, y = x[:args.limit], y[:args.limit]
        if not len(x):
            raise DriverError(f"{args.images}: no images to validate on")
        t0 = time.time()
        pred = np.concatenate([acc.classify(x[i:i + 1000]) for i in range(0, len(x), 1000)])
        secs = time.time() - t0
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


if __name__ == "__main__":
    sys.exit(main())
