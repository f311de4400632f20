"""Binarization methods as Brevitas quantizers, one file per method, listed in ``registry.py``."""

from models.binarize.base import BinarizationMethod, Surrogate, SurrogateBinaryQuant, sign
from models.binarize.registry import METHODS, get_method

__all__ = ["METHODS", "BinarizationMethod", "Surrogate", "SurrogateBinaryQuant", "get_method",
           "sign"]
