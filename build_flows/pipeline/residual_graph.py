"""The graph rewrites of the ``residual`` step (the reductions are explained in
:mod:`build_flows.pipeline.residual`): shortcut convs (AvgPool + 1x1, strided 1x1) and global
pools to integer forms, each
add and its quantizer to one AddRequant, wide uniform quantizers to one-input AddRequants,
transposes pushed through forks and channelwise ops until the streams are NHWC."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from build_flows.backend.addrequant import DOMAIN as HW_DOMAIN
from build_flows.checks import BuildError, residual_adds
from build_flows.pipeline import residual as R

log = logging.getLogger(__name__)

TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _perm(node: Any) -> list[int]:
    return list(next(a.ints for a in node.attribute if a.name == "perm"))


def _attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _tensor(model: Any, shape: list[int], dt: Any) -> str:
    name = model.make_new_valueinfo_name()
    model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    model.set_tensor_datatype(name, dt)
    return name


def _transpose(model: Any, src: str, perm: list[int], dst: str | None = None) -> str:
    """A Transpose of ``src`` (to ``dst`` or a new tensor); returns the output's name."""
    shape = model.get_tensor_shape(src)
    if dst is None:
        dst = _tensor(model, [shape[p] for p in perm], model.get_tensor_datatype(src))
    model.graph.node.append(helper.make_node("Transpose", [src], [dst], perm=perm,
                                             name=f"Transpose_{dst}"))
    return dst


def _nhwc(model: Any, aff: R.Affine) -> str:
    return aff.src if aff.nhwc else _transpose(model, aff.src, TO_NHWC)


def joins(model: Any) -> list[Any]:
    """Add nodes of two dynamic tensors (:func:`build_flows.checks.residual_adds`)."""
    return residual_adds(model)


def forks(model: Any) -> list[str]:
    """Tensors read by more than one node."""
    reads: dict[str, int] = {}
    for n in model.graph.node:
        for i in set(n.input):
            reads[i] = reads.get(i, 0) + 1
    return [t for t, k in reads.items() if k > 1 and model.get_initializer(t) is None]


def downsample_shortcuts(model: Any) -> Any:
    """AveragePool(2) -> Transpose -> MatMul(integer W) becomes a 2x2 stride-2 Im2Col and a
    MatMul by W repeated over the window, then (alpha / 4) and alpha-free bias per channel."""
    for pool in [n for n in model.graph.node if n.op_type == "AveragePool"]:
        k, s = list(_attr(pool, "kernel_shape")), list(_attr(pool, "strides", [1, 1]))
        shape = model.get_tensor_shape(pool.input[0])
        if k == list(shape[2:]) or k != s:
            continue  # global pools: global_pools; overlapping: not a shortcut form
        tr = model.find_consumer(pool.output[0])
        mm = model.find_consumer(tr.output[0]) if tr is not None else None
        if tr is None or tr.op_type != "Transpose" or mm is None or mm.op_type != "MatMul" \
                or model.get_initializer(mm.input[1]) is None:
            raise BuildError(f"node {pool.name}: average pooling not followed by a 1x1 conv; "
                             "this residual form cannot be made exact")
        w = np.asarray(model.get_initializer(mm.input[1]), np.float64)
        if not np.array_equal(w, np.rint(w)):
            raise BuildError(f"node {mm.name}: non-integer shortcut weights")
        cin = shape[1]
        aff = R.trace(model, pool.input[0], cin, nchw=True)
        if not np.allclose(aff.alpha, aff.alpha[0]):
            raise BuildError(f"node {pool.name}: per-channel scales before a shortcut conv; "
                             "this residual form cannot be made exact")
        kk = int(np.prod(k))
        x = _nhwc(model, aff)
        n, h, wd, c = model.get_tensor_shape(x)
        oh, ow = h // k[0], wd // k[1]
        cols = _tensor(model, [n, oh, ow, kk * c], model.get_tensor_datatype(x))
        model.graph.node.append(helper.make_node(
            "Im2Col", [x], [cols], domain="qonnx.custom_op.general", stride=s,
            kernel_size=k, pad_amount=[0, 0, 0, 0], input_shape=f"(1, {h}, {wd}, {c})",
            dilations=[1, 1], name=f"Im2Col_{pool.name}"))
        wname = model.make_new_valueinfo_name()
        model.set_initializer(wname, np.tile(w, (kk, 1)).astype(np.float32))
        model.set_tensor_datatype(wname, _int_dtype(w))
        acc = _tensor(model, [n, oh, ow, w.shape[1]], _int_dtype(np.array([-(1 << 30)])))
        model.graph.node.append(helper.make_node("MatMul", [cols, wname], [acc],
                                                 name=f"MatMul_{pool.name}"))
        scaled = _const_op(model, "Mul", acc, np.full(w.shape[1], aff.alpha[0] / kk))
        _const_op(model, "Add", scaled, aff.beta[0] * w.sum(axis=0) if aff.beta.any()
                  else np.zeros(w.shape[1]), dst=mm.output[0])
        for old in (pool, tr, mm):
            model.graph.node.remove(old)
    return model


def _int_dtype(values: np.ndarray) -> Any:
    """The smallest signed integer datatype holding ``values``."""
    from qonnx.core.datatype import DataType

    lo, hi = int(np.min(values)), int(np.max(values))
    return DataType[f"INT{max(lo.bit_length(), hi.bit_length(), 1) + 1}"]


def _const_op(model: Any, op: str, src: str, c: np.ndarray, dst: str | None = None) -> str:
    from qonnx.core.datatype import DataType

    cname = model.make_new_valueinfo_name()  # (C,) on channels-last tensors, else shaped
    model.set_initializer(cname, np.asarray(c, np.float32))
    shape = model.get_tensor_shape(src)
    dst = dst or _tensor(model, shape, DataType["FLOAT32"])
    model.graph.node.append(helper.make_node(op, [src, cname], [dst], name=f"{op}_{dst}"))
    return dst


def integer_matmuls(model: Any) -> Any:
    """A MatMul by integer weights on a float tensor that is alpha q + beta of an integer q
    (through an Im2Col without padding: a strided 1x1 shortcut conv) becomes the MatMul on q,
    then alpha and beta times the weights' column sums: W . (alpha q + beta) =
    alpha (W . q) + beta sum(W)."""
    for mm in [n for n in model.graph.node if n.op_type == "MatMul"]:
        w = model.get_initializer(mm.input[1])
        if w is None or model.get_tensor_datatype(mm.input[0]).is_integer():
            continue
        w = np.asarray(w, np.float64)
        if not np.array_equal(w, np.rint(w)):
            continue  # check_streamlined names it
        cols = model.find_producer(mm.input[0])
        im2col = cols if cols is not None and cols.op_type == "Im2Col" else None
        start = im2col.input[0] if im2col else mm.input[0]
        if im2col is not None and any(_attr(im2col, "pad_amount", [0])):
            raise BuildError(f"node {im2col.name}: a padded window on a float stream before "
                             f"{mm.name}; this residual form cannot be made exact")
        shape = model.get_tensor_shape(start)
        try:
            aff = R.trace(model, start, shape[-1], nchw=False)
        except BuildError:
            continue
        if not (np.allclose(aff.alpha, aff.alpha[0]) and np.allclose(aff.beta, aff.beta[0])):
            raise BuildError(f"node {mm.name}: per-channel scales before an integer-weight "
                             "MatMul; this residual form cannot be made exact")
        x = aff.src if aff.nhwc or len(shape) != 4 else _transpose(model, aff.src, TO_NHWC)
        if im2col is not None:
            out_shape = model.get_tensor_shape(im2col.output[0])
            y = _tensor(model, out_shape, model.get_tensor_datatype(x))
            model.graph.node.append(helper.make_node(
                "Im2Col", [x], [y], domain=im2col.domain, name=f"{im2col.name}_int",
                **{a.name: helper.get_attribute_value(a) for a in im2col.attribute}))
            x = y
        wname = model.make_new_valueinfo_name()
        model.set_initializer(wname, w.astype(np.float32))
        model.set_tensor_datatype(wname, _int_dtype(w))
        acc = _tensor(model, model.get_tensor_shape(mm.output[0]),
                      _int_dtype(np.array([-(1 << 30)])))
        model.graph.node.append(helper.make_node("MatMul", [x, wname], [acc],
                                                 name=f"{mm.name}_int"))
        scaled = _const_op(model, "Mul", acc, np.full(w.shape[1], aff.alpha[0]))
        _const_op(model, "Add", scaled, aff.beta[0] * w.sum(axis=0), dst=mm.output[0])
        model.graph.node.remove(mm)
    return model


def global_pools(model: Any) -> Any:
    """AveragePool over the whole map of (alpha q + beta) becomes FINN's GlobalAccPool on q (the
    sum S), then alpha / (H W) and beta per channel."""
    for pool in [n for n in model.graph.node if n.op_type in ("AveragePool",
                                                                "GlobalAveragePool")]:
        shape = model.get_tensor_shape(pool.input[0])
        k = _attr(pool, "kernel_shape")
        if pool.op_type == "AveragePool" and list(k) != list(shape[2:]):
            continue
        c = shape[1]
        try:
            aff = R.trace(model, pool.input[0], c, nchw=True)
        except BuildError:
            continue  # not on an integer stream: what reads it is refused where it is named
        x = _nhwc(model, aff)
        n, h, w, _ = model.get_tensor_shape(x)
        idt = model.get_tensor_datatype(x)
        s_nhwc = _tensor(model, [n, 1, 1, c], _int_dtype(np.array([idt.min(), idt.max()]) * h * w))
        model.graph.node.append(helper.make_node(
            "GlobalAccPool", [x], [s_nhwc], domain=HW_DOMAIN, backend="fpgadataflow",
            NumChannels=c, PE=1, inputDataType=idt.name, numInputVectors=[n, h, w],
            name=f"GlobalAccPool_{pool.name}"))
        s = _transpose(model, s_nhwc, TO_NCHW)
        scaled = _const_op(model, "Mul", s, (aff.alpha / (h * w)).reshape(1, c, 1, 1))
        _const_op(model, "Add", scaled, aff.beta.reshape(1, c, 1, 1), dst=pool.output[0])
        model.graph.node.remove(pool)
    return model


def _mt(model: Any, node: Any) -> tuple[np.ndarray, int, Any]:
    """(thresholds (C or 1, N), out_bias, output datatype) of a MultiThreshold."""
    from qonnx.core.datatype import DataType

    if float(_attr(node, "out_scale", 1.0)) != 1.0:
        raise BuildError(f"node {node.name}: quantizer with out_scale "
                         f"{_attr(node, 'out_scale')}; this residual form cannot be made exact")
    t = np.asarray(model.get_initializer(node.input[1]), np.float64)
    odt = _attr(node, "out_dtype", b"INT8")
    odt = odt.decode() if isinstance(odt, bytes) else odt
    return t, int(round(float(_attr(node, "out_bias", 0.0)))), DataType[odt]


def _emit(model: Any, srcs: list[str], out: str, out_nchw: bool, q: R.Requant,
          odt: Any, name: str) -> None:
    """An AddRequant on NHWC ``srcs`` producing ``out`` (through a Transpose if NCHW)."""
    shape = model.get_tensor_shape(srcs[0])
    c = shape[-1]
    y = _tensor(model, list(shape), odt) if out_nchw else out
    attrs = dict(NumChannels=c, PE=1, NumInputs=len(srcs), numInputVectors=list(shape[:-1]),
                 inputDataType=model.get_tensor_datatype(srcs[0]).name,
                 outputDataType=odt.name, coefA=[int(v) for v in q.a], coefB=[int(v) for v in q.b],
                 shift=q.shift, outLo=q.lo, outHi=q.hi)
    if len(srcs) > 1:
        attrs.update(coefG=[int(v) for v in q.g],
                     inputDataType1=model.get_tensor_datatype(srcs[1]).name)
    model.graph.node.append(helper.make_node("AddRequant", srcs, [y], domain=HW_DOMAIN,
                                             backend="fpgadataflow", name=name, **attrs))
    if out_nchw:
        _transpose(model, y, TO_NCHW, dst=out)


def fuse_joins(model: Any) -> Any:
    """Each add of two branches and the quantizer after it become one two-input AddRequant."""
    for add in joins(model):
        cons = model.find_consumers(add.output[0]) or []
        if len(cons) != 1 or cons[0].op_type != "MultiThreshold":
            raise BuildError(f"node {add.name}: an add of two streams with no quantizer after "
                             "it; a residual sum must be re-quantized (an 8-bit stream)")
        mt = cons[0]
        sa, sb = (model.get_tensor_shape(i) for i in add.input)
        if sa != sb:
            raise BuildError(f"node {add.name}: the shortcut's shape {sb} and the branch's {sa} "
                             "disagree")
        c = sa[1]
        u, v = (R.trace(model, i, c, nchw=True) for i in add.input)
        t, bias, odt = _mt(model, mt)
        t = np.broadcast_to(t, (c, t.shape[1]))
        t0, step = R.uniform_steps(t, mt)
        xr, zr = R.int_range(model, u.src), R.int_range(model, v.src)
        x_max = float(np.max(np.abs(np.stack(np.broadcast_arrays(*xr)))))
        z_max = float(np.max(np.abs(np.stack(np.broadcast_arrays(*zr)))))
        b = (u.beta + v.beta - t0) / step + 1 + bias
        q = R.fit(u.alpha / step, v.alpha / step, b, x_max, z_max, bias, bias + t.shape[1], add)
        _emit(model, [_nhwc(model, u), _nhwc(model, v)], mt.output[0], True, q, odt,
              f"AddRequant_{add.name}")
        log.info("%s + %s: AddRequant with %d-bit shift", add.name, mt.name, q.shift)
        model.graph.node.remove(add)
        model.graph.node.remove(mt)
    return model


def wide_requants(model: Any, min_span: int = 1024) -> Any:
    """A uniform quantizer on an integer stream wider than ``min_span`` values becomes a
    one-input AddRequant equal to it on every input value (else it stays a threshold layer)."""
    for mt in [n for n in model.graph.node if n.op_type == "MultiThreshold"]:
        t, bias, odt = _mt(model, mt)
        if t.shape[1] < 2:
            continue
        shape = model.get_tensor_shape(mt.input[0])
        layout = _attr(mt, "data_layout", b"NCHW")
        nchw = (layout.decode() if isinstance(layout, bytes) else layout) == "NCHW" \
            and len(shape) == 4
        c = shape[1] if nchw else shape[-1]
        try:
            aff = R.trace(model, mt.input[0], c, nchw=nchw)
        except BuildError:
            continue
        lo, hi = R.int_range(model, aff.src)
        if float(np.max(np.asarray(hi) - np.asarray(lo))) < min_span or (aff.alpha <= 0).any():
            continue
        tc = np.broadcast_to(t, (c, t.shape[1]))
        ti = np.ceil((tc - aff.beta[:, None]) / aff.alpha[:, None])  # x >= T exactly
        q = R.fit_exact(ti, np.broadcast_to(lo, c), np.broadcast_to(hi, c), bias, mt)
        if q is None:
            log.info("%s: no exact shift-and-add form; stays a threshold layer", mt.name)
            continue
        src = _nhwc(model, aff) if len(shape) == 4 else aff.src
        _emit(model, [src], mt.output[0], nchw, q, odt, f"AddRequant_{mt.name}")
        model.graph.node.remove(mt)
    return model


def remove_dead(model: Any) -> Any:
    """Drop nodes none of whose outputs is used."""
    outs = {o.name for o in model.graph.output}
    changed = True
    while changed:
        used = {i for n in model.graph.node for i in n.input} | outs
        dead = [n for n in model.graph.node if not any(o in used for o in n.output)]
        for n in dead:
            model.graph.node.remove(n)
        changed = bool(dead)
    return model


def _channelwise(model: Any, node: Any) -> bool:
    if node.op_type == "MultiThreshold":
        return _attr(node, "data_layout", b"NCHW") in (b"NCHW", "NCHW")
    if node.op_type in ("Mul", "Add") and R._const(model, node) is not None:
        _, c = R._const(model, node)
        return c.size == 1 or (c.ndim == 4 and c.shape[0] == c.shape[2] == c.shape[3] == 1)
    return False


def push_transposes(model: Any) -> Any:
    """Move every NHWC->NCHW Transpose downstream past channelwise consumers (MultiThreshold,
    Mul/Add by per-channel constants), splitting it at forks, and cancel it against inverse
    transposes, until none moves."""
    changed = True
    while changed:
        changed = False
        for tr in [n for n in model.graph.node if n.op_type == "Transpose"
                   and _perm(n) == TO_NCHW]:
            src = tr.input[0]
            for cons in list(model.find_consumers(tr.output[0]) or []):
                if cons.op_type == "Transpose" and _perm(cons) == TO_NHWC:
                    for c2 in list(model.find_consumers(cons.output[0]) or []):
                        c2.input[:] = [src if i == cons.output[0] else i for i in c2.input]
                    if cons.output[0] in {o.name for o in model.graph.output}:
                        continue
                    model.graph.node.remove(cons)
                    changed = True
                elif _channelwise(model, cons):
                    out = cons.output[0]
                    mid = _tensor(model, model.get_tensor_shape(src),
                                  model.get_tensor_datatype(out))
                    cons.input[0] = src
                    cons.output[0] = mid
                    if cons.op_type == "MultiThreshold":
                        for a in [a for a in cons.attribute if a.name == "data_layout"]:
                            cons.attribute.remove(a)
                        cons.attribute.append(helper.make_attribute("data_layout", "NHWC"))
                    else:
                        cname = cons.input[1]
                        cval = np.asarray(model.get_initializer(cname))
                        model.set_initializer(cname, cval.reshape(1, 1, 1, -1)
                                              if cval.size > 1 else cval)
                    _transpose(model, mid, TO_NCHW, dst=out)
                    changed = True
            if not model.find_consumers(tr.output[0]) and tr.output[0] not in {
                    o.name for o in model.graph.output}:
                model.graph.node.remove(tr)
                changed = True
    return model


def lower(model: Any) -> Any:
    """All rewrites, in order; a graph without residual adds is returned unchanged."""
    import finn.transformation.streamline.absorb as absorb

    if not joins(model):
        return model
    for rewrite in (downsample_shortcuts, integer_matmuls, remove_dead, global_pools, fuse_joins,
                    wide_requants, remove_dead):
        model = rewrite(model)
    from qonnx.transformation.general import SortGraph

    model = model.transform(SortGraph())
    model = model.transform(absorb.AbsorbMulIntoMultiThreshold())
    model = model.transform(absorb.AbsorbAddIntoMultiThreshold())
    return remove_dead(push_transposes(model)).transform(SortGraph())
