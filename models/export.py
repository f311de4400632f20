"""QONNX export with a parity check, and the ``python -m models.export`` CLI.

Steps: Brevitas QONNX export (batch 1, NCHW float input in [0, 1]) -> qonnx cleanup -> metadata
-> parity: qonnx's executor on real test images must give the PyTorch eval-mode logits within
``tol`` relative to the sample's largest logit magnitude (at least 1: float32 rounding grows with
the logits, which a long training run makes large), else :class:`ExportError` names the worst
sample and its difference. Then,
when finn-plus is installed, ``build_flows.streamline_check`` (run in a subprocess: ``models``
never imports FINN) checks that the graph converts to FINN and streamlines.

Contract of ``model.onnx``: input ``float32[1, C, H, W]`` in [0, 1] (uint8 / 255, zero-padded as
``bnnforge.input_padding`` says), output class logits ``float32[1, classes]``; ``metadata_props``
(keys ``bnnforge.*``) record dataset, classes, input shape, scaling, padding, net and method.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from hw.contract import (DataDir, Float, InFile, Int, Interrupted, OutFile, interruptible, parse,
                         refuse)

log = logging.getLogger("models.export")

META_PREFIX = "bnnforge."


class ExportError(RuntimeError):
    """The export or one of its checks failed; the message says which sample or node."""


@dataclass
class ParityReport:
    """Result of comparing ONNX execution with PyTorch on ``samples`` inputs."""

    samples: int
    max_abs_diff: float  #: of the worst sample (largest difference relative to its scale)
    worst_sample: int
    tol: float  #: relative tolerance
    scale: float = 1.0  #: the worst sample's largest |logit|, at least 1

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tol * self.scale


def metadata_for(config: dict[str, Any], classes: list[str], pad: int,
                 extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``bnnforge.*`` metadata of an exported model, as strings."""
    meta = {
        "dataset": config.get("dataset", "unknown"),
        "classes": json.dumps(classes),
        "input_shape": json.dumps([1, *config["in_shape"]]),
        "input_layout": "NCHW",
        "input_scaling": "float32 in [0, 1]: uint8 pixel / 255",
        "input_padding": str(pad),
        "output": "logits",
        "num_classes": str(config["num_classes"]),
        "net": config["net"],
        "method": config["method"],
        "method_options": json.dumps(config.get("method_options", {})),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return {META_PREFIX + k: v for k, v in meta.items()}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``bnnforge.*`` metadata of an ONNX file, without the prefix (empty for foreign models)."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(META_PREFIX)}


def export_model(model: nn.Module, in_shape: tuple[int, ...], out_path: str | Path,
                 metadata: dict[str, str] | None = None) -> Path:
    """Export ``model`` (eval mode) to QONNX at ``out_path``, cleaned up, with ``metadata``."""
    with warnings.catch_warnings():  # brevitas warns about an optional CUDA kernel package
        warnings.filterwarnings("ignore", message="fast_hadamard_transform")
        from brevitas.export import export_qonnx
    from qonnx.util.cleanup import cleanup

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.rand(1, *in_shape)
    chatter = io.StringIO()  # torch.onnx prints its progress to stdout
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    # torch's exporter may write its weights beside the raw file (``.onnx.data``): the raw
    # export lives in a directory of its own that goes away with it
    with tempfile.TemporaryDirectory(prefix="bnnforge-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed" notices
        try:
            with torch.no_grad(), contextlib.redirect_stdout(chatter):
                export_qonnx(model, input_t=dummy, export_path=str(raw))
        finally:
            onnx_log.setLevel(level)
        log.debug(chatter.getvalue())
        cleanup(str(raw), out_file=str(out_path))
    onnx_model = onnx.load(str(out_path))
    del onnx_model.metadata_props[:]
    for key, value in (metadata or {}).items():
        onnx_model.metadata_props.add(key=key, value=value)
    onnx.save(onnx_model, str(out_path))
    log.info("exported %s", out_path)
    return out_path


def run_onnx(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Logits from qonnx's executor, one image at a time (images: N x C x H x W float32)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = ModelWrapper(str(path))
    iname = wrapper.graph.input[0].name
    oname = wrapper.graph.output[0].name
    outs = [execute_onnx(wrapper, {iname: img[None].astype(np.float32)})[oname] for img in images]
    return np.concatenate(outs, axis=0)


def check_parity(path: str | Path, model: nn.Module, images: torch.Tensor,
                 tol: float = 1e-5) -> ParityReport:
    """Compare qonnx execution of ``path`` with ``model`` in eval mode on ``images``."""
    model = model.eval()
    with torch.no_grad():
        ref = model(images).numpy()
    got = run_onnx(path, images.numpy())
    diff = np.abs(got - ref).max(axis=1)
    scale = np.maximum(1.0, np.abs(ref).max(axis=1))
    worst = int((diff / scale).argmax())
    return ParityReport(samples=len(images), max_abs_diff=float(diff[worst]), worst_sample=worst,
                        tol=tol, scale=float(scale[worst]))


def deployability(net: str, method: str, options: dict[str, Any] | None = None
                  ) -> tuple[bool, str]:
    """(deployable now, how) for ``method`` in ``net``: whether the exported graph folds into
    XNOR-popcount (or {0,1} x bipolar) matrix units plus integer thresholds, or what it needs."""
    from models.binarize import get_method

    ok, how = get_method(method, **(options or {})).deployment()
    if net == "resnet" and ok:
        how += ("; 8-bit shortcut streams forked and re-added in integer add-requantize units, "
                "8-bit stem, 1x1 shortcut convs, global sum pooling and head")
    return ok, how


def deployability_table() -> str:
    """Markdown table: per registered method and net family, deployable now or what it needs."""
    from models.binarize import METHODS

    rows = ["| method | BNN-PYNQ nets (tfc/sfc/lfc/cnv) | residual net |", "|---|---|---|"]
    variants = [(key, {}) for key in METHODS] + [("sd_bnn", {"asd": "dynamic"})]
    for key, options in variants:
        cells = []
        for net in ("tfc", "resnet"):
            ok, how = deployability(net, key, options)
            cells.append(("**yes**: " if ok else "no: ") + how)
        name = key + "".join(f" {k}={v}" for k, v in options.items())
        rows.append(f"| `{name}` | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def finn_available() -> bool:
    """True when finn-plus is importable (checked without importing it)."""
    return importlib.util.find_spec("finn") is not None


def check_streamlines(path: str | Path, samples: int = 3, timeout: float = 900) -> dict[str, Any]:
    """Run ``build_flows.streamline_check`` on ``path`` in a subprocess; raise on failure."""
    cmd = [sys.executable, "-m", "build_flows.streamline_check", str(path),
           "--samples", str(samples), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ExportError(f"{path}: the exported graph does not streamline in finn-plus: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_checkpoint(checkpoint: str | Path, out_path: str | Path, data_dir: str | Path = "data",
                      parity_samples: int = 20, tol: float = 1e-5,
                      finn_check: bool = True, force: bool = False) -> dict[str, Any]:
    """Export a training checkpoint to QONNX and run the parity (and FINN) checks.

    The model is exported and checked in a temporary directory and moved to ``out_path`` only
    when every check passed: a failed export leaves nothing, a successful one replaces the file
    at once. An existing ``out_path`` is replaced only with ``force``.
    Returns a summary dict; raises :class:`ExportError` when a check fails.
    """
    from models.binarize import get_method
    from models.checkpoint import load_model
    from models.data import load_dataset

    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise ValueError(f"{out_path} exists: give --force to replace it (nothing was written)")
    model, config, _ = load_model(checkpoint)
    method = get_method(config["method"], **config.get("method_options", {}))
    try:
        exportable = method.prepare_export(model)
    except ValueError as exc:
        raise ExportError(f"{checkpoint}: {exc}") from None
    deployable, how = deployability(config["net"], config["method"],
                                    config.get("method_options", {}))
    if config.get("dataset") in (None, "synthetic"):
        ds = load_dataset("synthetic", "test", pad_to=config["in_shape"][-1])
    else:
        ds = load_dataset(config["dataset"], "test", data_dir=data_dir,
                          pad_to=config["in_shape"][-1])
    meta = metadata_for(config, ds.classes, ds.pad,
                        {"deployable": str(deployable).lower(), "deployment": how})
    with tempfile.TemporaryDirectory(prefix="bnnforge-export-") as tmp:
        staged = export_model(exportable, tuple(config["in_shape"]), Path(tmp) / out_path.name,
                              meta)
        summary = check_export(staged, out_path, model, ds, config, parity_samples, tol,
                               finn_check, deployable, how)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        part = out_path.with_name(out_path.name + ".part")
        shutil.copyfile(staged, part)
        os.replace(part, out_path)
    log.info("wrote %s", out_path)
    return summary


def check_export(path: Path, final: Path, model: nn.Module, ds: Any, config: dict[str, Any],
                 parity_samples: int, tol: float, finn_check: bool, deployable: bool,
                 how: str) -> dict[str, Any]:
    """The parity check of the export at ``path`` (reported under its ``final`` name), and the
    finn-plus streamlining check where it applies."""
    images = ds.images[:parity_samples].float() / 255.0
    parity = check_parity(path, model, images, tol)
    if not parity.ok:
        raise ExportError(
            f"{final}: QONNX execution differs from PyTorch: max |diff| {parity.max_abs_diff:.3g} "
            f"> {tol:g} x {parity.scale:.3g} (largest |logit|) on test sample "
            f"{parity.worst_sample}")
    log.info("parity: %d test images, max |diff| %.3g", parity.samples, parity.max_abs_diff)
    summary: dict[str, Any] = {"onnx": str(final), "parity": vars(parity) | {"ok": parity.ok},
                               "deployable": deployable, "deployment": how}
    log.info("%s %s: %s%s", config["net"], config["method"],
             "deployable: " if deployable else "not deployable yet: ", how)
    if finn_check and not deployable:
        log.info("skipped the finn-plus streamlining check: the graph is not deployable yet")
    elif finn_check and finn_available():
        summary["finn"] = check_streamlines(path)
        log.info("finn-plus: converts and streamlines (%s)", summary["finn"])
    elif finn_check:
        log.warning("finn-plus is not installed: skipped the streamlining check")
    return summary


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m models.export", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=InFile("training checkpoint", (".pt",)),
                    help="checkpoint.pt written by models.train")
    ap.add_argument("--out", type=OutFile(".onnx"), help="output ONNX path")
    ap.add_argument("--force", action="store_true", help="replace an existing --out file")
    ap.add_argument("--methods", action="store_true",
                    help="print, per registered method, whether its graphs deploy now, and exit")
    ap.add_argument("--data-dir", type=DataDir(), default="data",
                    help="dataset directory (default: data)")
    ap.add_argument("--parity-samples", type=Int(1, 10_000), default=20)
    ap.add_argument("--tol", type=Float(0.0), default=1e-5)
    ap.add_argument("--no-finn-check", action="store_true",
                    help="skip the finn-plus ConvertQONNXtoFINN + Streamline check")
    return ap


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0, 1 (a check failed; nothing written), 2 (refused options) or
    128 + signal (interrupted; nothing written)."""
    from models import setup_logging
    from models.checkpoint import load_checkpoint

    ap = build_parser()
    args, _ = parse(ap, argv)
    setup_logging()
    if args.methods:
        print(deployability_table())
        return 0
    if not args.checkpoint or not args.out:
        ap.error("--checkpoint and --out are required (or --methods)")
    if args.out.exists() and not args.force:
        return refuse(ap.prog, f"{args.out} exists: give --force to replace it "
                               "(nothing was written)")
    try:
        load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        return refuse(ap.prog, str(exc))
    try:
        with interruptible():
            summary = export_checkpoint(args.checkpoint, args.out, args.data_dir,
                                        args.parity_samples, args.tol, not args.no_finn_check,
                                        force=args.force)
    except Interrupted as exc:
        log.error("interrupted (%s): nothing written to %s", exc, args.out)
        return exc.exit_status
    except (ExportError, FileNotFoundError, ValueError) as exc:
        log.error("export failed: %s", exc)
        return 1
    log.info(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
