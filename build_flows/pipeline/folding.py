"""Folding files: per-layer parallelism (PE, SIMD, memory styles), validated before they apply.

Format (FINN's): ``{"Defaults": {...}, "<layer name>": {"PE": 16, "SIMD": 49, ...}}``. Layer
names are the dataflow graph's node names after specialization (``MVAU_hls_0``, ...); a name may
also be given without the ``_hls``/``_rtl`` suffix. Every name must exist and every PE/SIMD must
divide the dimension it folds, else :class:`~build_flows.checks.BuildError` names the layer.

``window_words`` (ours) gives a sliding-window generator that many words of SIMD elements per
output beat (:func:`hw.units.swg_words_ok`: a divisor of a window row's K_W x C / SIMD words,
or whole rows of them: ``window_words`` = K_H x K_W x C / SIMD is the whole window, what
FINN's ``parallel_window: 1`` means, which our unit ignores). FINN's own ``M`` of the RTL
generator (several windows per beat) is not ours and is refused.

``inFIFODepths`` (``[depth]``, FINN's key) pins the depth of the FIFO in front of a layer; the
others are sized by simulation (:mod:`hw.fifosize`), and a pinned depth that deadlocks the
accelerator is refused naming the FIFO and the depth it needs.
"""

from __future__ import annotations

import re
from typing import Any

from build_flows.backend.attrs import OWN, set_own_attr
from build_flows.checks import BuildError
from hw import units

#: SetFolding's target when the build is given neither a folding file nor ``--target-fps``
DEFAULT_FPS = 1000.0

# op type (without backend suffix) -> {folding attribute: node attribute it must divide}
DIVIDES: dict[str, dict[str, str]] = {
    "MVAU": {"PE": "MH", "SIMD": "MW"},
    "VVAU": {"PE": "Channels"},
    "Thresholding": {"PE": "NumChannels"},
    "ConvolutionInputGenerator": {"SIMD": "IFMChannels"},
    "StreamingMaxPool": {"PE": "NumChannels"},
    "LabelSelect": {"PE": "Labels"},
    "FMPadding": {"SIMD": "NumChannels"},
    "DuplicateStreams": {"PE": "NumChannels"},
    "GlobalAccPool": {"PE": "NumChannels"},
    "AddRequant": {"PE": "NumChannels"},
}
ALLOWED_OWN = set().union(*OWN.values())
ALLOWED = {"PE", "SIMD", "ram_style", "resType", "mem_mode", "runtime_writeable_weights",
           "inFIFODepths", "outFIFODepths", "depth_trigger_uram", "depth_trigger_bram",
           "parallel_window", "ram_style_thresholds", "impl_style", "window_words"}


def base_op(op_type: str) -> str:
    return re.sub(r"_(hls|rtl)$", "", op_type)


def _value(inst: Any, attr: str) -> int:
    v = inst.get_nodeattr(attr)
    if isinstance(v, (list, tuple)):  # e.g. IFMChannels is an int; some attrs are lists
        v = v[-1]
    return int(v)


def validate(model: Any, config: dict[str, Any], source: str = "folding") -> dict[str, Any]:
    """Resolve layer names against ``model`` and check every value; return {node name: attrs}."""
    from qonnx.custom_op.registry import getCustomOp

    nodes = {n.name: n for n in model.graph.node}
    stripped = {re.sub(r"_(hls|rtl)(?=_\d+$)", "", name): name for name in nodes}
    resolved: dict[str, Any] = {}
    for key, attrs in config.items():
        if key == "Defaults" or key.startswith("_"):  # "_comment" and the like
            continue
        name = key if key in nodes else stripped.get(key)
        if name is None:
            raise BuildError(f"{source}: layer {key!r} is not in the dataflow graph "
                             f"(layers: {', '.join(sorted(nodes))})")
        if not isinstance(attrs, dict):
            raise BuildError(f"{source}: layer {key!r} must map to an object like "
                             '{"PE": 4, "SIMD": 8}')
        unknown = sorted(set(attrs) - ALLOWED)
        if unknown:
            raise BuildError(f"{source}: layer {key!r}: unknown option(s) {unknown}")
        depths = attrs.get("inFIFODepths")
        if depths is not None and (not isinstance(depths, list) or not depths or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths)):
            raise BuildError(f"{source}: layer {key!r}: inFIFODepths={depths!r} must be a list "
                             "of positive integers, one per input stream")
        inst = getCustomOp(nodes[name])
        own = sorted(k for k in attrs if k in ALLOWED_OWN - OWN.get(base_op(nodes[name].op_type),
                                                                    set()))
        if own:
            raise BuildError(f"{source}: layer {key!r} ({nodes[name].op_type}) has no option "
                             f"{own[0]!r}")
        if "window_words" in attrs:
            _check_words(key, inst, attrs, source)
        for fold_attr, dim_attr in DIVIDES.get(base_op(nodes[name].op_type), {}).items():
            if fold_attr not in attrs:
                continue
            value, dim = attrs[fold_attr], _value(inst, dim_attr)
            if not isinstance(value, int) or value < 1 or dim % value:
                raise BuildError(f"{source}: layer {key!r}: {fold_attr}={value!r} is illegal; it "
                                 f"must be a positive divisor of {dim_attr}={dim}")
        resolved[name] = attrs
    return resolved


def _check_words(key: str, inst: Any, attrs: dict[str, Any], source: str) -> None:
    """``window_words`` of a sliding-window generator: legal at the layer's SIMD."""
    words = attrs["window_words"]
    simd = attrs.get("SIMD", inst.get_nodeattr("SIMD"))
    ch, kernel = _value(inst, "IFMChannels"), tuple(inst.get_nodeattr("ConvKernelDim"))
    dw = bool(inst.get_nodeattr("depthwise"))
    if not isinstance(simd, int) or simd < 1 or ch % simd:
        return  # the SIMD check below names it
    legal = units.swg_words(kernel, ch // simd, dw)
    if not isinstance(words, int) or isinstance(words, bool) or words not in legal:
        raise BuildError(f"{source}: layer {key!r}: window_words={words!r} is illegal at SIMD "
                         f"{simd}; legal: {legal} (words of SIMD elements that tile a window "
                         "row, or whole rows of it)")


def apply(model: Any, config: dict[str, Any], source: str = "folding") -> Any:
    """Validate ``config`` against ``model`` and set the attributes (Defaults first)."""
    from qonnx.custom_op.registry import getCustomOp

    resolved = validate(model, config, source)
    defaults = config.get("Defaults", {})
    for node in model.graph.node:
        inst = getCustomOp(node) if node.domain.startswith("finn") else None
        if inst is None:
            continue
        for attr, value in {**defaults, **resolved.get(node.name, {})}.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], list):
                value, ops = value  # FINN's Defaults form: [value, [op types]]
                if base_op(node.op_type) not in ops and "all" not in ops:
                    continue
            if attr in OWN.get(base_op(node.op_type), set()):
                set_own_attr(node, attr, value)
                continue
            try:
                inst.set_nodeattr(attr, value)
            except AttributeError:
                if node.name in resolved and attr in resolved[node.name]:
                    raise BuildError(f"{source}: layer {node.name!r} has no option {attr!r}") \
                        from None
    return model



def fifo_pins(model: Any, config: dict[str, Any] | None,
              source: str = "folding") -> dict[str, int]:
    """{layer name: pinned depth of the FIFO in front of it} from ``inFIFODepths``."""
    if not config:
        return {}
    return {name: int(attrs["inFIFODepths"][0])
            for name, attrs in validate(model, config, source).items()
            if attrs.get("inFIFODepths")}


def fold_own_layers(model: Any, target_cycles: int) -> Any:
    """PE of our own layers (AddRequant), which FINN's SetFolding does not know: the smallest
    divisor of the channels whose cycles per frame meet ``target_cycles`` (else all channels)."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if base_op(node.op_type) != "AddRequant":
            continue
        inst = getCustomOp(node)
        ch = inst.get_nodeattr("NumChannels")
        for pe in [d for d in range(1, ch + 1) if ch % d == 0]:
            inst.set_nodeattr("PE", pe)
            if inst.get_exp_cycles() <= target_cycles:
                break
    return model
