"""Graph rewrites the FINN flow needs for the bnnforge methods, each exact on integer data.

* :func:`split_bipolar_act_scales`: scaled sign activations (staged residual) -> sign, then Mul.
* :func:`factor_out_threshold_scales`: {0, c} threshold outputs (Si-BNN) -> {0, 1}, then Mul(c).
* :func:`fold_pads_into_im2col`: explicit -1 padding of bipolar activations (the bnnforge nets pad
  with the method's ``pad_value`` instead of zero-padding the conv) moves into the sliding
  window, where the XNOR encoding stores -1 as bit 0: FINN's zero-padding generator pads it
  exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from build_flows.checks import BuildError


def split_bipolar_act_scales(model: Any) -> Any:
    """BipolarQuant activations with a scalar scale s != 1 (e.g. staged residual's b1) become
    BipolarQuant(scale 1) followed by Mul(s), which FINN's conversion accepts and streamlining
    folds into the next layer's thresholds. Per-channel activation scales raise BuildError."""
    from onnx import helper

    for node in list(model.graph.node):
        if node.op_type != "BipolarQuant" or model.get_initializer(node.input[0]) is not None:
            continue
        scale = np.asarray(model.get_initializer(node.input[1]), dtype=np.float32)
        if scale.size == 1 and float(scale.reshape(-1)[0]) == 1.0:
            continue
        if scale.size != 1:
            raise BuildError(f"node {node.name} (BipolarQuant): per-channel activation scale "
                             "cannot deploy; use a per-tensor scale")
        one = node.input[1] + "_one"
        model.set_initializer(one, np.ones_like(scale))
        node.input[1] = one
        unscaled, out = node.output[0] + "_unscaled", node.output[0]
        node.output[0] = unscaled
        const = node.name + "_scale"
        model.set_initializer(const, scale)
        mul = helper.make_node("Mul", [unscaled, const], [out], name=node.name + "_Mul")
        idx = list(model.graph.node).index(node)
        model.graph.node.insert(idx + 1, mul)
    return model


#: ops that a positive scale commutes with (max pooling, layout changes, zero padding)
SCALE_INVARIANT = {"MaxPool", "MaxPoolNHWC", "Transpose", "Reshape", "Flatten", "Im2Col"}


def factor_out_threshold_scales(model: Any) -> Any:
    """MultiThreshold nodes with ``out_bias == 0`` and a positive ``out_scale`` c != 1 (Si-BNN's
    {0,1} activations come out of conversion as {0, 2}) get ``out_scale = 1``, and a Mul(c) goes
    after the next matrix product (past pooling and layout nodes, which commute with a positive
    scale), where streamlining folds it into the next thresholds."""
    from onnx import helper
    from qonnx.custom_op.registry import getCustomOp

    for node in list(model.graph.node):
        if node.op_type != "MultiThreshold":
            continue
        inst = getCustomOp(node)
        c, b = float(inst.get_nodeattr("out_scale")), float(inst.get_nodeattr("out_bias"))
        if c == 1.0 or b != 0.0 or c <= 0:
            continue
        inst.set_nodeattr("out_scale", 1.0)
        target = node
        nxt = model.find_consumer(node.output[0])
        while nxt is not None and nxt.op_type in SCALE_INVARIANT and (
                nxt.op_type != "Im2Col" or getCustomOp(nxt).get_nodeattr("pad_value") == 0):
            nxt = model.find_consumer(nxt.output[0])
        if nxt is not None and nxt.op_type in ("MatMul", "XnorPopcountMatMul") \
                and len(model.find_consumers(node.output[0]) or []) == 1:
            target = nxt
        out = target.output[0]
        target.output[0] = out + "_unscaled"
        const = node.name + "_out_scale"
        model.set_initializer(const, np.asarray(c, dtype=np.float32))
        idx = list(model.graph.node).index(target)
        model.graph.node.insert(idx + 1, helper.make_node("Mul", [target.output[0], const], [out],
                                                          name=node.name + "_Mul"))
    return model


def fold_pads_into_im2col(model: Any) -> Any:
    """``Pad(v) -> Transpose -> Im2Col`` (a lowered conv after explicit constant padding) becomes
    ``Transpose -> Im2Col(pad_amount, pad_value=v)``: the padding happens in the sliding window."""
    from qonnx.custom_op.registry import getCustomOp

    for pad in list(model.graph.node):
        if pad.op_type != "Pad":
            continue
        tr = model.find_consumer(pad.output[0])
        im2col = model.find_consumer(tr.output[0]) if tr is not None else None
        if tr is None or tr.op_type != "Transpose" or im2col is None \
                or im2col.op_type != "Im2Col":
            continue
        inst = getCustomOp(im2col)
        pads = np.asarray(model.get_initializer(pad.input[1])).astype(int).tolist()
        value = model.get_initializer(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else 0
        value = float(np.asarray(value).reshape(-1)[0]) if value is not None else 0.0
        shape = model.get_tensor_shape(pad.input[0])
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or any(inst.get_nodeattr(
                "pad_amount")) or value != int(value) or len(shape) != 4:
            raise BuildError(f"node {pad.name} (Pad): only constant, integer, spatial padding "
                             "directly before a convolution can deploy")
        inst.set_nodeattr("pad_amount", [pads[2], pads[3], pads[6], pads[7]])
        inst.set_nodeattr("pad_value", int(value))
        n, c, h, w = shape
        inst.set_nodeattr("input_shape", str((n, h, w, c)))
        tr.input[0] = pad.input[0]
        model.set_tensor_shape(tr.output[0], [n, h, w, c])
        model.graph.node.remove(pad)
    return model


def binary_pad_values(model: Any) -> Any:
    """After XNOR conversion a bipolar stream holds -1 as bit 0: a sliding window feeding an
    XNOR-popcount product pads with 0 where the model pads with -1. +1 padding would need
    ones, which FINN's padding unit cannot insert: refused with the node named."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if node.op_type != "Im2Col":
            continue
        inst = getCustomOp(node)
        value = inst.get_nodeattr("pad_value")
        if not any(inst.get_nodeattr("pad_amount")) or value == 0:
            continue
        consumer = model.find_consumer(node.output[0])
        xnor = consumer is not None and consumer.op_type == "XnorPopcountMatMul"
        if xnor and value == -1:
            inst.set_nodeattr("pad_value", 0)
            continue
        raise BuildError(f"node {node.name} (Im2Col): padding with {value} cannot deploy (FINN's "
                         "padding unit inserts zero bits, which encode -1 on bipolar streams and "
                         "0 on {0,1} streams): pad bipolar activations with -1, {0,1} with 0")
    return model
