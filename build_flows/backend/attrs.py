"""Our own options of FINN's layers, kept as plain ONNX attributes of the FINN node (FINN's op
does not read them; our units do).

- ``ConvolutionInputGenerator.window_words``: window words of SIMD elements per output beat of
  our sliding-window unit (:func:`hw.units.swg_words_ok`); 1 where absent.
"""

from __future__ import annotations

from typing import Any

#: op type (without backend suffix) -> our options of it
OWN: dict[str, set[str]] = {"ConvolutionInputGenerator": {"window_words"}}


def own_attr(node: Any, name: str, default: int) -> int:
    """Our option ``name`` of ``node``, or ``default`` where it is not set."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return int(helper.get_attribute_value(a))
    return default


def set_own_attr(node: Any, name: str, value: int) -> None:
    """Set our option ``name`` of ``node`` (replacing its value)."""
    from onnx import helper

    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, int(value)))
