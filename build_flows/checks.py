"""Checks that stop a build with one sentence naming the file, node or option at fault."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np


class BuildError(RuntimeError):
    """The build cannot go on; the message names the node, file or option and says why."""


HOST_TAIL_OPS = {"Mul", "Add", "Sub", "Div"}
HOST_HEAD_OPS = {"Reshape", "Flatten", "Transpose"}


def load_onnx(path: Path) -> Any:
    """Open ``path`` as a qonnx ModelWrapper, or raise BuildError saying why it is not a model."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    if not path.is_file():
        raise BuildError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types on garbage
        raise BuildError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if not proto.graph.node:
        raise BuildError(f"{path}: not an ONNX model (empty graph)")
    # the default domain's opset first: qonnx executes single nodes under the first entry, and
    # Brevitas may list its custom domain first (then every ONNX op looks like opset 2)
    order = sorted(proto.opset_import, key=lambda o: o.domain not in ("", "ai.onnx"))
    if list(order) != list(proto.opset_import):
        del proto.opset_import[:]
        proto.opset_import.extend(order)
    return ModelWrapper(proto)


def infer_shapes(model: Any, path: Path) -> Any:
    """qonnx shape inference (the executor needs every tensor shape); BuildError if it fails."""
    from qonnx.transformation.infer_shapes import InferShapes

    try:
        return model.transform(InferShapes())
    except Exception as exc:
        raise BuildError(f"{path}: shape inference failed: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def metadata(model: Any) -> dict[str, str]:
    """The model's metadata_props as a dict."""
    return {p.key: p.value for p in model.model.metadata_props}


def check_deployable(model: Any, path: Path) -> None:
    """Refuse graphs that the exporter marked as not deployable (e.g. dynamic ASD)."""
    meta = metadata(model)
    if meta.get("bnnforge.deployable", "true") == "false":
        what = f"{meta.get('bnnforge.method', '?')} {meta.get('bnnforge.method_options', '')}"
        raise BuildError(f"{path}: this {what.strip()} model does not deploy as XNOR-popcount + "
                         f"thresholds: {meta.get('bnnforge.deployment', 'marked not deployable')}")


def check_binarized(model: Any) -> None:
    """The graph must have binary weights on every Conv/Gemm/MatMul except 8-bit ones."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w = producers.get(node.input[1])
        if w is None or w.op_type not in ("BipolarQuant", "Quant"):
            raise BuildError(f"node {node.name} ({node.op_type}): float weights; not a binarized "
                             "network (export weights with a binary Brevitas quantizer)")
        if w.op_type == "Quant":
            bits = model.get_initializer(w.input[3])
            if bits is None or float(np.asarray(bits).max()) > 8:
                raise BuildError(f"node {node.name} ({node.op_type}): weights of more than 8 bits; "
                                 "only binary (and up to 8-bit first/last) layers deploy")


def check_padding(model: Any) -> None:
    """Zero padding of a convolution on bipolar activations cannot be represented in hardware.

    0 is not a value of {-1, +1}, so FINN stops later with "Im2Col dtype must allow pad_val".
    """
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        src = producers.get(node.input[0])
        if node.op_type == "Pad" and src is not None and src.op_type == "BipolarQuant":
            value = model.get_initializer(node.input[2]) if len(node.input) > 2 and \
                node.input[2] else None
            value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
            if value not in (-1.0, 1.0):
                raise BuildError(f"node {node.name} (Pad): padding bipolar activations with "
                                 f"{value:g} cannot deploy ({value:g} is not -1 or +1); pad "
                                 "with -1")
        if node.op_type != "Conv":
            continue
        pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
        if any(pads) and src is not None and src.op_type == "BipolarQuant":
            raise BuildError(
                f"node {node.name} (Conv): zero padding {pads} on bipolar activations cannot deploy "
                "(0 is not -1 or +1); pad explicitly with -1 before the conv (the bnnforge nets do "
                "this with the method's pad_value) and use padding=0 in the conv")


def per_channel_tail(model: Any) -> list[str]:
    """Names of the elementwise Mul/Add/Sub/Div/BatchNormalization nodes between the last matrix
    product and the graph output, when one of them is per-channel (a final BatchNorm, a
    per-class alpha); else []."""
    chain: list[Any] = []
    name = model.graph.output[0].name
    while True:
        node = model.find_producer(name)
        if node is None or node.op_type not in HOST_TAIL_OPS | {"BatchNormalization"}:
            break
        if model.get_initializer(node.input[1]) is None:
            break
        chain.insert(0, node)
        name = node.input[0]
    if not any(np.asarray(model.get_initializer(n.input[1])).size > 1 for n in chain):
        return []
    return [n.name for n in chain]


def residual_adds(model: Any) -> list[Any]:
    """Add nodes of two dynamic tensors: the joins of residual shortcuts."""
    return [n for n in model.graph.node if n.op_type == "Add" and len(n.input) == 2
            and all(model.get_initializer(i) is None for i in n.input)]


def check_streamlined(model: Any) -> None:
    """After streamlining, every matrix product must be on integer/bipolar data, no float
    BatchNorm/Conv/Quant may remain, and signs must have become thresholds."""
    ops = Counter(n.op_type for n in model.graph.node)
    for node in model.graph.node:
        if node.op_type in ("BatchNormalization", "Conv", "Gemm", "Quant", "BipolarQuant"):
            raise BuildError(f"node {node.name} ({node.op_type}) is left after streamlining: "
                             "FINN could not fold it into thresholds")
        if node.op_type == "MatMul":
            din = model.get_tensor_datatype(node.input[0])
            dw = model.get_tensor_datatype(node.input[1])
            if "FLOAT" in din.name or "FLOAT" in dw.name:
                raise BuildError(f"node {node.name} (MatMul) multiplies {din.name} by {dw.name} "
                                 "after streamlining: a float scale or residual sum sits between "
                                 "layers (e.g. staged residual order 2 or a dynamic scale)")
    if "MultiThreshold" not in ops:
        raise BuildError("no thresholds after streamlining: the graph has no binary activations")


def check_all_hw(model: Any, allowed_host_tail: bool) -> list[str]:
    """Every node must be a HW layer, except data-layout nodes before the first one (the host
    reshapes the input) and the host post-processing tail (and TopK) after the last one.
    Returns the names of the nodes that run on the host."""
    hw_domain = "finn.custom_op.fpgadataflow"
    seen_hw = False
    host = []
    for node in model.graph.node:
        if node.domain.startswith(hw_domain):
            seen_hw = True
            continue
        if not seen_hw and node.op_type in HOST_HEAD_OPS:
            host.append(node.name)
            continue
        if seen_hw and allowed_host_tail and node.op_type in HOST_TAIL_OPS | {"TopK", "ArgMax"}:
            host.append(node.name)
            continue
        raise BuildError(f"node {node.name} ({node.op_type}) has no hardware layer: FINN would "
                         "leave it outside the dataflow partition, so the model cannot deploy")
    return host


def read_folding_file(path: Path) -> dict[str, Any]:
    """Load a folding JSON ({layer: {PE, SIMD, ...}}), or BuildError naming the file."""
    try:
        cfg = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BuildError(f"{path}: folding file not found") from None
    except json.JSONDecodeError as exc:
        raise BuildError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise BuildError(f"{path}: a folding file maps layer names to {{\"PE\": .., \"SIMD\": ..}}")
    return cfg
