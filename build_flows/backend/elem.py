"""How FINN tensor values travel on our units' streams, and the exact comparison of outputs.

A stream element is ``width`` bits, two's complement when signed; BIPOLAR values travel as one
bit (1 = +1, 0 = -1). FINN's tensor order of a window, (k, c), differs from the order the
sliding-window and pooling units stream it in, (c / fold, k, fold); :func:`reorder_k_c` converts
between the two. Needs neither FINN nor Verilator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hw import model as hwm


@dataclass(frozen=True)
class Elem:
    """How one stream element is encoded: ``width`` bits, two's complement when ``signed``;
    ``bipolar`` 1-bit elements stand for -1 (0) and +1 (1)."""

    width: int
    signed: bool = False
    bipolar: bool = False


def dtype_elem(dt: Any) -> Elem:
    """The stream encoding of a FINN DataType."""
    if dt.name == "BIPOLAR":
        return Elem(1, False, True)
    return Elem(dt.bitwidth(), dt.signed())


def encode(values: np.ndarray, elem: Elem) -> np.ndarray:
    """FINN tensor values as stream element codes: bipolar ``v -> [v > 0]``, integers
    ``v -> v mod 2^width``."""
    v = np.asarray(values)
    if elem.bipolar:
        return (v > 0).astype(np.int64)
    return hwm.twos(np.rint(v).astype(np.int64), elem.width)


def decode(codes: np.ndarray, elem: Elem) -> np.ndarray:
    """Stream element codes as FINN tensor values: bipolar ``c -> 2c - 1``, signed codes from
    two's complement, unsigned codes as they are."""
    codes = np.asarray(codes, dtype=np.int64)
    if elem.bipolar:
        return 2 * codes - 1
    return hwm.signed(codes, elem.width) if elem.signed else codes


def reorder_k_c(t: np.ndarray, kk: int, fold: int, inverse: bool = False) -> np.ndarray:
    """(..., KK * C) in FINN's tensor order (k, c) -> stream order (cf, k, fold); ``inverse``
    goes back."""
    lead = t.shape[:-1]
    c = t.shape[-1] // kk
    if inverse:
        return t.reshape(*lead, c // fold, kk, fold).swapaxes(-3, -2).reshape(*lead, kk * c)
    return t.reshape(*lead, kk, c // fold, fold).swapaxes(-3, -2).reshape(*lead, kk * c)


def compare(rtl: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Exact comparison of (samples, elements) arrays: mismatch count and the first one (sample,
    position, both values)."""
    bad = np.argwhere(rtl != ref)
    first = None
    if len(bad):
        s, pos = (int(i) for i in bad[0])
        first = {"sample": s, "position": pos, "rtl": int(rtl[s, pos]), "finn": float(ref[s, pos])}
    return {"samples": int(len(rtl)), "mismatches": int(len(bad)), "first_mismatch": first}
