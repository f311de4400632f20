"""Binarization methods as Brevitas quantizers, one file per method, listed in ``registry.py``."""

from models.binarize.base import (BinarizationMethod, Surrogate, SurrogateBinaryQuant,
                                   binary_weight_layers, sign)
from models.binarize.registry import METHODS, get_method

__all__ = ["METHODS", "BinarizationMethod", "Surrogate", "SurrogateBinaryQuant",
           "binary_weight_layers", "get_method", "sign"]
