"""Verification of every build step against the input QONNX model run by qonnx's executor.

Inputs are uint8 images: real test images of the dataset named in the model's metadata when its
files are found (numpy readers here; ``build_flows`` does not import the training code), else
seeded random images. The reference is the input QONNX graph on ``x / 255`` (the export
contract). Per step:

* until top-1 is inserted, the step's output must equal the reference logits: bit for bit where
  the graph keeps the float ops in order, else within float32 rounding of the reassociated
  scales (:func:`logit_tolerance`), far below one accumulator step;
* afterwards, the tensor entering top-1 must be an exact positive affine map ``a * ref + b``
  (``a > 0``) of the reference logits, and the class index must equal the reference's first
  maximum (binary nets tie often, so the index alone proves little).

Residual graphs (an add of two streams) carry 8-bit shortcut streams from quantizer to
quantizer, so a value within float32 rounding of a quantizer threshold may land one step away
in a reassociated graph (FINN's own QONNX-to-thresholds conversion already does this) and the
step is added, not squashed by the next binarization. There a step passes when every logit is
within :data:`RESIDUAL_RTOL` of the largest reference logit (one flipped 8-bit step moves a
logit by 1e-5 to 2e-3 of it, the most where it flips in the pooled head; a wrong shortcut, scale
or sign by its whole size) and the class equals the reference's wherever the reference's top
two are further apart than that; the samples off by more than float32 rounding are counted in
``mismatches``.

Nodes that run on the host after the accelerator (a per-channel affine tail) are part of the
parent graph that is executed, so verification covers them.
"""

from __future__ import annotations

import gzip
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from build_flows import checks

log = logging.getLogger(__name__)

DEBIAN = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
TOP1_OPS = ("TopK", "LabelSelect", "LabelSelect_hls", "LabelSelect_bnn")
#: residual graphs: logits within this fraction of the largest reference logit
RESIDUAL_RTOL = 1e-2


def is_residual(model: Any) -> bool:
    """The graph adds two dynamic tensors (a shortcut)."""
    return bool(checks.residual_adds(model))


class VerificationError(checks.BuildError):
    """A step's output differs from the reference; the message names the step and sample."""


@dataclass
class StepResult:
    """One row of ``report.json``'s ``verification.steps``."""

    step: str
    samples: int
    mismatches: int
    max_error: float
    kind: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Inputs:
    """uint8 images (N, C, H, W), their labels (or None) and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], dtype=">u4").astype(int)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _dataset_test_images(name: str, data_dirs: list[Path]) -> tuple[np.ndarray, np.ndarray,
                                                                    Path] | None:
    for base in data_dirs:
        for root in (base / name, base):
            img, lab = root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"
            if name in ("fashion-mnist", "mnist") and img.is_file() and lab.is_file():
                return _read_idx(img)[:, None], _read_idx(lab), root
            batch = root / "cifar-10-batches-py" / "test_batch"
            if name == "cifar10" and batch.is_file():
                d = pickle.loads(batch.read_bytes(), encoding="bytes")
                return (np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32),
                        np.asarray(d[b"labels"]), root)
    return None


def make_inputs(model: Any, n: int, data_dir: Path | None = None, seed: int = 0) -> Inputs:
    """``n`` uint8 inputs for ``model``: dataset test images if found, else random."""
    meta = checks.metadata(model)
    shape = model.get_tensor_shape(model.graph.input[0].name)
    dataset = meta.get("bnnforge.dataset")
    dirs = [d for d in (data_dir, Path("data"), DEBIAN.get(dataset or "")) if d is not None]
    found = _dataset_test_images(dataset, dirs) if dataset else None
    if found is not None:
        images, labels, root = found
        pad = int(meta.get("bnnforge.input_padding", "0") or 0)
        if pad:
            images = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        if tuple(images.shape[1:]) == tuple(shape[1:]):
            return Inputs(images[:n].copy(), labels[:n].copy(), f"{dataset} test images ({root})")
        log.warning("%s images have shape %s, the model wants %s: using random inputs",
                    dataset, images.shape[1:], shape[1:])
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape[1:]), dtype=np.uint8)
    why = f"no {dataset} files found" if dataset else "no dataset in the model's metadata"
    return Inputs(images, None, f"random uint8 inputs, seed {seed} ({why})")


def reference(model: Any, inputs: Inputs) -> np.ndarray:
    """The input QONNX model's logits for every input (x / 255 as float32)."""
    from qonnx.core.onnx_exec import execute_onnx

    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    out = []
    for img in inputs.images:
        x = img[None].astype(np.float32) / np.float32(255.0)
        out.append(np.asarray(execute_onnx(model, {iname: x})[oname]).reshape(-1))
    return np.stack(out)


def runner(model: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]:
    """A function running a (parent or flat) FINN graph on one input and returning (output,
    top-1 input or None).

    A StreamingDataflowPartition is executed through its child model, despecialized (once, here)
    so that HLS/RTL nodes run their Python model; every tensor of parent and child lands in one
    context.
    """
    from finn.util.verification import despecialize_model
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_node, execute_onnx
    from qonnx.custom_op.registry import getCustomOp

    children = {node.name: despecialize_model(ModelWrapper(getCustomOp(node).get_nodeattr(
        "model"))) for node in model.graph.node if node.op_type == "StreamingDataflowPartition"}
    opset = model.model.opset_import[0].version if model.model.opset_import else 11

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        ctx = model.make_empty_exec_context()
        ctx[model.graph.input[0].name] = x
        top1_in = None
        for node in model.graph.node:
            if node.name in children:
                child = children[node.name]
                cctx = execute_onnx(child, {child.graph.input[0].name: ctx[node.input[0]]},
                                    return_full_exec_context=True)
                ctx[node.output[0]] = cctx[child.graph.output[0].name]
                for cnode in child.graph.node:
                    if cnode.op_type in TOP1_OPS:
                        top1_in = cctx[cnode.input[0]]
            else:
                execute_node(node, ctx, model.graph, opset)
                if node.op_type in TOP1_OPS:
                    top1_in = ctx[node.input[0]]
        return ctx[model.graph.output[0].name], top1_in

    return run


def logit_tolerance(ref: np.ndarray) -> float:
    """Float32 rounding of reassociated scale/shift ops: 16 ulps of the largest logit.

    FINN moves per-layer scales (XNOR-Net alpha, BatchNorm) around, so logits of a correct graph
    may differ in the last bits. One flipped binary activation changes an accumulator by 2 and a
    logit by two accumulator steps, many orders of magnitude more than this.
    """
    return 16 * float(np.finfo(np.float32).eps) * max(1.0, float(np.abs(ref).max()))


def affine_fit(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``got ~ a * ref + b`` over all samples; return (a, b, max |residual|)."""
    r, g = ref.astype(np.float64).reshape(-1), got.astype(np.float64).reshape(-1)
    if np.ptp(r) == 0:
        return 1.0, float(np.mean(g - r)), float(np.ptp(g))
    a, b = np.polyfit(r, g, 1)
    return float(a), float(b), float(np.abs(a * r + b - g).max())


def verify_residual(step: str, outs: list[np.ndarray], top1: list[np.ndarray | None],
                    ref: np.ndarray) -> StepResult:
    """The residual-graph check (module docstring): logits, or the top-1 input as a positive
    affine map of them, within RESIDUAL_RTOL; classes equal away from near-ties."""
    tol = RESIDUAL_RTOL * max(1e-12, float(np.abs(ref).max()))
    if top1[0] is None:
        got, a, b = np.stack(outs).astype(np.float64), 1.0, 0.0
    else:
        got = np.stack(top1).astype(np.float64)
        a, b, _ = affine_fit(ref, got)
        if not a > 0:
            raise VerificationError(f"step {step}: the top-1 input is not a positive affine map "
                                    f"of the reference logits (fit a={a:.6g})")
        got = (got - b) / a
    err = np.abs(got - ref)
    worst = float(err.max())
    if worst > tol:
        i, j = np.unravel_index(int(np.argmax(err)), err.shape)
        raise VerificationError(f"step {step}: sample {i}: logit {j} is {got[i, j]:.6g}, the "
                                f"reference {ref[i, j]:.6g} (more than {RESIDUAL_RTOL:g} of the "
                                "largest logit apart)")
    if top1[0] is None:  # beyond float32 rounding of the logits
        exact = np.stack([np.full(r.shape, logit_tolerance(r)) for r in ref])
    else:  # beyond the rounding of the affine fit (as for plain graphs)
        exact = np.full(err.shape, 1e-6 * max(1.0, float(np.abs(np.stack(top1)).max())) / a)
    off = int((err > exact).any(1).sum())
    if top1[0] is not None:
        for i, (o, r) in enumerate(zip(outs, ref)):
            best = np.flatnonzero(r >= r.max() - 2 * tol).tolist()
            if int(o.reshape(-1)[0]) not in best:
                raise VerificationError(f"step {step}: sample {i}: class {int(o.reshape(-1)[0])},"
                                        f" reference {int(np.argmax(r))}")
    what = "logits" if top1[0] is None else f"top-1 input = {a:.6g} * logits + {b:.6g}"
    return StepResult(step, len(outs), off, worst,
                      f"{what}, within {RESIDUAL_RTOL:g} ({off} samples off by more than float32 rounding)")


def verify_step(step: str, model: Any, inputs: Inputs, ref: np.ndarray,
                uint8_input: bool, residual: bool = False) -> StepResult:
    """Compare ``model`` with the reference logits on every input; raise on the first mismatch
    (``residual``: the tolerance of residual graphs, see the module docstring)."""
    outs, top1 = [], []
    run = runner(model)
    for img in inputs.images:
        x = img[None].astype(np.float32)
        if not uint8_input:
            x = x / np.float32(255.0)
        out, t_in = run(x)
        outs.append(np.asarray(out).reshape(-1))
        top1.append(None if t_in is None else np.asarray(t_in).reshape(-1))
    if residual:
        return verify_residual(step, outs, top1, ref)
    if top1[0] is None:  # logits out: equal up to float32 reassociation of the scales
        worst = 0.0
        for i, (o, r) in enumerate(zip(outs, ref)):
            bad = o.shape != r.shape
            if not bad:
                err = np.abs(o.astype(np.float32) - r)
                worst = max(worst, float(err.max()))
                bad = bool((err > logit_tolerance(r)).any())
            if bad:
                j = int(np.argmax(np.abs(o - r))) if o.shape == r.shape else -1
                raise VerificationError(
                    f"step {step}: sample {i}: output differs from the reference at index {j} "
                    f"(got {o[j] if j >= 0 else o.shape}, reference {r[j] if j >= 0 else r.shape})")
        return StepResult(step, len(outs), 0, worst,
                          "logits equal" if worst == 0 else "logits equal to float32 rounding")
    got = np.stack(top1)
    a, b, resid = affine_fit(ref, got)
    # integers and floats of this size are exact in float64: allow only rounding of the fit
    tol = 1e-6 * max(1.0, float(np.abs(got).max()))
    if not a > 0 or resid > tol:
        i = int(np.argmax(np.abs(a * ref.astype(np.float64) + b - got).max(axis=1)))
        raise VerificationError(
            f"step {step}: sample {i}: the top-1 input is not a positive affine map of the "
            f"reference logits (fit a={a:.6g}, b={b:.6g}, max residual {resid:.3g})")
    for i, (o, r) in enumerate(zip(outs, ref)):
        # the affine map is exact, so tied reference maxima are tied top-1 inputs too: any of
        # them is the same answer (ONNX TopK and FINN's LabelSelect may break ties differently)
        best = np.flatnonzero(r == r.max()).tolist()
        got_class = int(o.reshape(-1)[0])
        if got_class not in best:
            raise VerificationError(f"step {step}: sample {i}: class {got_class}, reference "
                                    f"{best[0] if len(best) == 1 else best}")
    return StepResult(step, len(outs), 0, resid, f"top-1 input = {a:.6g} * logits + {b:.6g}")
