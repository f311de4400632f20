"""The registry of binarization methods: one line per method.

Layers, nets, the training CLI, tests and plots iterate over :data:`METHODS`; adding a method is
one file in this package plus one line here.
"""

from __future__ import annotations

from typing import Any

from models.binarize.base import BinarizationMethod
from models.binarize.bbg import Bbg
from models.binarize.bnn import Bnn
from models.binarize.bnn_plus import BnnPlus
from models.binarize.sd_bnn import SdBnn
from models.binarize.si_bnn import SiBnn
from models.binarize.staged_residual import StagedResidual
from models.binarize.stochastic import Stochastic
from models.binarize.xnor import Xnor

METHODS: dict[str, type[BinarizationMethod]] = {
    "bnn": Bnn,
    "xnor": Xnor,
    "stochastic": Stochastic,
    "staged_residual": StagedResidual,
    "sd_bnn": SdBnn,
    "si_bnn": SiBnn,
    "bnn_plus": BnnPlus,
    "bbg": Bbg,
}


def get_method(key: str, **options: Any) -> BinarizationMethod:
    """An instance of method ``key`` with ``options`` (unknown keys or options raise ValueError)."""
    try:
        cls = METHODS[key]
    except KeyError:
        raise ValueError(f"unknown binarization method {key!r}; registered: "
                         f"{', '.join(METHODS)}") from None
    return cls(**options)
