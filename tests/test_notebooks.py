"""The notebooks: stored without outputs, and executed top to bottom with small settings.

Execution uses nbclient with a ``python3`` kernel spec written for this interpreter (so the kernel
is the venv's Python whatever other kernel specs the machine has) and the repository root as the
working directory. Notebook 02 trains and exports into a temporary ``WORK`` directory once per
session (fixture :func:`notebook_work`); a later notebook that needs ``WORK/tfc_bnn/model.onnx``
gets a test here that takes the fixture::

    def test_03_build_and_verify(notebook_work: Path, notebook_kernels: Path) -> None:
        nb = execute_notebook(NOTEBOOKS / "03_build_and_verify.ipynb", notebook_kernels,
                              notebook_env(notebook_work), notebook_work / "executed")

Executed copies, with their outputs, are written next to the runs for inspection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CELL_TIMEOUT = 600  #: seconds per cell
#: the small settings notebook 02 runs with here (its parameter cell reads them)
SMALL = {"BNNFORGE_NB_EPOCHS": "2", "BNNFORGE_NB_TRAIN_SUBSET": "1000",
         "BNNFORGE_NB_TEST_SUBSET": "200"}


def tracked_notebooks() -> list[Path]:
    """``notebooks/*.ipynb`` known to git (every one on disk outside a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "--", "notebooks/*.ipynb"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(NOTEBOOKS.glob("*.ipynb"))
    return sorted(REPO / line for line in out.splitlines() if line.strip())


@pytest.mark.parametrize("path", tracked_notebooks(), ids=lambda p: p.name)
def test_stored_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert nb.get("metadata", {}).get("kernelspec", {}).get("name") == "python3", \
        f"{path.name}: metadata.kernelspec.name must be python3"
    dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} are stored with outputs or execution "
                       "counts; clear them before committing (`jupyter nbconvert "
                       "--clear-output --inplace`)")


# --------------------------------------------------------------------------------------------
# execution

def notebook_env(work: Path, **overrides: str) -> dict[str, str]:
    """Environment of a notebook kernel: small settings, ``WORK``, the venv's bin first on PATH."""
    env = dict(os.environ)
    env.update(SMALL)
    env["BNNFORGE_NB_WORK"] = str(work)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def notebook_kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec directory holding ``python3`` for this interpreter (``sys.executable``)."""
    from ipykernel.kernelspec import write_kernel_spec

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / "python3")
    return kernels


def execute_notebook(path: Path, kernels: Path, env: dict[str, str], out_dir: Path,
                     timeout: int = CELL_TIMEOUT) -> Any:
    """Run ``path`` from the repository root; return the executed notebook, also written to
    ``out_dir``. A failing cell fails the calling test with the cell's source and traceback."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=timeout,
                            resources={"metadata": {"path": str(REPO)}})
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell failed (executed copy: {out_dir / path.name})\n{exc}",
                    pytrace=False)
    finally:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    return nb


def text_outputs(nb: Any) -> str:
    """The stream and plain-text outputs of an executed notebook, joined."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out["text"])
            texts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def png_count(nb: Any) -> int:
    """How many PNG images (figures) an executed notebook shows."""
    return sum("image/png" in out.get("data", {}) for cell in nb.cells
               for out in cell.get("outputs", []))


def test_kernel_is_this_interpreter(notebook_kernels: Path, tmp_path: Path) -> None:
    """The kernel the notebooks run in is this Python (the venv's), in the repository root."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.cells.append(v4.new_code_cell("import os, sys, models\n"
                                     "print(sys.prefix)\nprint(os.getcwd())"))
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    ran = execute_notebook(path, notebook_kernels, notebook_env(tmp_path), tmp_path / "executed")
    prefix, cwd = text_outputs(ran).split()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve()
    assert Path(cwd).resolve() == REPO


def test_failing_cell_fails_the_test(notebook_kernels: Path, tmp_path: Path) -> None:
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.cells += [v4.new_code_cell("x = 1"), v4.new_code_cell("raise ValueError('cell broke')")]
    path = tmp_path / "failing.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(pytest.fail.Exception, match="cell broke") as info:
        execute_notebook(path, notebook_kernels, notebook_env(tmp_path), tmp_path / "executed")
    assert "ValueError" in str(info.value)
    assert (tmp_path / "executed" / "failing.ipynb").is_file()


def test_01_binarization_methods(notebook_kernels: Path, tmp_path: Path) -> None:
    from models.binarize import METHODS

    nb = execute_notebook(NOTEBOOKS / "01_binarization_methods.ipynb", notebook_kernels,
                          notebook_env(tmp_path), tmp_path)
    text = text_outputs(nb)
    assert all(key in text for key in METHODS)
    assert png_count(nb) >= 2  # the curves and the schedules


@pytest.fixture(scope="session")
def notebook_work(tmp_path_factory: pytest.TempPathFactory, notebook_kernels: Path) -> Path:
    """``WORK`` after notebook 02 ran in it once (small settings): ``WORK/tfc_bnn/model.onnx``
    and the run's other files; the executed notebook is ``WORK/executed/``."""
    work = tmp_path_factory.mktemp("notebooks_work")
    execute_notebook(NOTEBOOKS / "02_train_and_export.ipynb", notebook_kernels,
                     notebook_env(work), work / "executed")
    return work


def test_02_train_and_export(notebook_work: Path) -> None:
    import nbformat

    run = notebook_work / "tfc_bnn"
    for name in ("checkpoint.pt", "metrics.json", "curves.png", "model.onnx"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == int(SMALL["BNNFORGE_NB_EPOCHS"])
    assert metrics["config"]["net"] == "tfc" and metrics["config"]["method"] == "bnn"
    assert metrics["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert metrics["export"]["parity"]["ok"] and metrics["export"]["deployable"]
    nb = nbformat.read(notebook_work / "executed" / "02_train_and_export.ipynb", as_version=4)
    text = text_outputs(nb)
    assert "parity: ok" in text and "test accuracy after 2 epoch(s)" in text
    assert png_count(nb) >= 2  # the training curve and the predictions


@pytest.mark.finn
@pytest.mark.verilator
@pytest.mark.yosys
@pytest.mark.slow
def test_03_build_and_verify(notebook_work: Path, notebook_kernels: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"  # a build of its own: notebook 04's test does not depend on it
    (work / "tfc_bnn").mkdir(parents=True)
    (work / "tfc_bnn" / "model.onnx").symlink_to(notebook_work / "tfc_bnn" / "model.onnx")
    nb = execute_notebook(NOTEBOOKS / "03_build_and_verify.ipynb", notebook_kernels,
                          notebook_env(work, BNNFORGE_NB_VERIFY_SAMPLES="50"), tmp_path)
    report = json.loads((work / "tfc_bnn" / "build" / "report.json").read_text())
    assert report["verification"]["rtlsim"]["mismatches"] == 0
    assert {r["module"] for r in report["resources"]["per_node"]} == {"thresholding", "mvtu",
                                                                     "label_select"}
    assert report["deploy"]["directory"]
    assert "rtlsim: 50 samples, 0 mismatches" in text_outputs(nb)
    assert png_count(nb) >= 2  # cycles per layer, resources


@pytest.mark.finn
@pytest.mark.verilator
@pytest.mark.slow
def test_04_deploy(notebook_work: Path, notebook_kernels: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "tfc_bnn").mkdir(parents=True)
    (work / "tfc_bnn" / "model.onnx").symlink_to(notebook_work / "tfc_bnn" / "model.onnx")
    nb = execute_notebook(NOTEBOOKS / "04_deploy.ipynb", notebook_kernels,
                          notebook_env(work, BNNFORGE_NB_VERIFY_SAMPLES="100"), tmp_path)
    text = text_outputs(nb)
    assert "100 images: 0 predictions differ from the software" in text
    assert "'mismatches': 0" in text and text.count("DriverError:") == 3
    assert "not on a PYNQ board" in text
    assert png_count(nb) >= 2  # predictions, throughput


@pytest.mark.finn
@pytest.mark.verilator
@pytest.mark.slow
def test_05_residual(notebook_kernels: Path, tmp_path: Path) -> None:
    """The residual path: resnet trained briefly, built with FIFOs sized by simulation, verified
    in rtlsim, the deployment driver on the simulation (the build streamlines, so the export's
    own FINN check is skipped here)."""
    env = notebook_env(tmp_path, BNNFORGE_NB_EPOCHS="1", BNNFORGE_NB_VERIFY_SAMPLES="3",
                       BNNFORGE_NB_FINN_CHECK="0")
    nb = execute_notebook(NOTEBOOKS / "05_residual.ipynb", notebook_kernels, env,
                          tmp_path / "executed")
    report = json.loads((tmp_path / "resnet_bnn" / "build" / "report.json").read_text())
    assert report["verification"]["rtlsim"]["mismatches"] == 0
    assert report["rtl"]["fifo_sizing"]["efficiency"] >= 0.95
    text = text_outputs(nb)
    assert "rtlsim: 3 samples, 0 mismatches" in text
    assert "3 images: 0 predictions differ from the software" in text
    assert "residual adds;" in text and "on shortcuts" in text and "'mismatches': 0" in text
    assert png_count(nb) >= 1  # the FIFO depths
