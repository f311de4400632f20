"""The command contract (:mod:`hw.contract`) as a matrix: every option of every command through
the bad-value classes of its kind, and a fixed-seed fuzz over corrupted input files.

The matrix lives in one place: each option's argparse ``type`` is a kind that lists its own bad
values (:meth:`hw.contract.Kind.bad_values`), and :data:`COMMANDS` names the commands. A new
option is checked by giving it a kind; one without a kind or choices fails
:func:`test_every_option_has_a_checked_kind`. Each case must exit non-zero, name the option in
its one message, print no traceback and leave the output directory as it was.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import runpy
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hw.contract import Kind

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "build_flows" / "deploy"


@dataclass
class Command:
    """A command under the contract: its module (``main`` and ``build_parser``/``parser``) and
    the arguments of a valid call, given a directory (its output goes below it)."""

    name: str
    load: Callable[[], dict]
    valid: Callable[[Path], list[str]]


def _module(name: str) -> Callable[[], dict]:
    return lambda: vars(importlib.import_module(name))


def _script(path: Path) -> Callable[[], dict]:
    return lambda: runpy.run_path(str(path), run_name=f"contract_{path.stem}")


def _file(path: Path) -> Path:
    """A stand-in input file: it passes the option's checks (exists, not empty), so a refusal
    can only come from the option under test."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stand-in")
    return path


def _fashion_idx(tmp: Path) -> tuple[Path, Path]:
    images, labels = tmp / "t10k-images-idx3-ubyte", tmp / "t10k-labels-idx1-ubyte"
    write_idx(images, np.zeros((4, 28, 28), np.uint8))
    write_idx(labels, np.arange(4, dtype=np.uint8))
    return images, labels


COMMANDS = [
    Command("models.train", _module("models.train"),
            lambda t: ["--dataset", "synthetic", "--epochs", "1", "--out", str(t / "out"),
                       "--no-export", "--no-progress"]),
    Command("models.export", _module("models.export"),
            lambda t: ["--checkpoint", str(_file(t / "run" / "checkpoint.pt")),
                       "--out", str(t / "out" / "model.onnx")]),
    Command("models.reference", _module("models.reference"),
            lambda t: ["--net", "tfc_1w1a", "--out", str(t / "out" / "tfc.onnx")]),
    Command("build.py", _module("build_flows.build"),
            lambda t: ["--model", str(_file(t / "model.onnx")), "--out", str(t / "out")]),
    Command("validate.py", _script(DEPLOY / "validate.py"),
            lambda t: ["--images", str(_fashion_idx(t)[0]), "--labels", str(_fashion_idx(t)[1]),
                       "--out", str(t / "out" / "validate.json")]),
    Command("throughput.py", _script(DEPLOY / "throughput.py"),
            lambda t: ["--out", str(t / "out" / "throughput.json")]),
]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (the MNIST format)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                     for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def parser_of(ns: dict) -> argparse.ArgumentParser:
    return (ns.get("build_parser") or ns["parser"])()


def run_main(main: Callable, argv: list[str], caplog) -> tuple[int, str]:
    """(exit status, everything printed or logged) of ``main(argv)`` in this process."""
    err, out = io.StringIO(), io.StringIO()
    caplog.clear()
    with redirect_stderr(err), redirect_stdout(out), caplog.at_level(logging.INFO):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, err.getvalue() + out.getvalue() + caplog.text


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(root.rglob("*"))}


def is_kind(value: object) -> bool:
    """A contract kind (``hw.contract``'s, or the copy a deployment script imports)."""
    return isinstance(value, Kind) or callable(getattr(value, "bad_values", None))


def value_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options that take a value (flags and --help excluded)."""
    return [a for a in parser._actions if a.option_strings and a.nargs != 0
            and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_option_has_a_checked_kind(command: Command) -> None:
    """An option is a kind with bad values, or a fixed set of choices; nothing else."""
    parser = parser_of(command.load())
    loose = [max(a.option_strings, key=len) for a in value_options(parser)
             if not a.choices and not is_kind(a.type)]
    assert not loose, f"{command.name}: options without a checked kind: {loose}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_bad_values_are_refused_naming_the_option(command: Command, tmp_path: Path,
                                                  caplog) -> None:
    """Every option x every bad-value class of its kind: exit 2, one message naming the option,
    no traceback, the output directory unchanged (it holds an earlier result)."""
    ns = command.load()
    parser = parser_of(ns)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.json").write_text("{}")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    failures, cases = [], 0
    for action in value_options(parser):
        opt = max(action.option_strings, key=len)
        values = (action.type.bad_values(bad_dir) if is_kind(action.type)
                  else [("not a choice", "no-such-choice")])
        for label, value in values:
            cases += 1
            argv = [a for a in command.valid(tmp_path)]
            if opt in argv:  # replace the valid call's value
                i = argv.index(opt)
                argv[i + 1] = value
            else:
                argv += [opt, value]
            before = snapshot(out)
            rc, text = run_main(ns["main"], argv, caplog)
            problems = []
            errors = [ln for ln in text.splitlines() if "error:" in ln]
            if rc != 2:
                problems.append(f"exit {rc}")
            if len(errors) != 1 or opt not in errors[0]:
                problems.append("not one error line naming the option")
            if "Traceback" in text:
                problems.append("traceback")
            if snapshot(out) != before:
                problems.append("output directory changed")
            if problems:
                failures.append(f"{opt} {value!r} ({label}): {', '.join(problems)}: "
                                f"{text.strip().splitlines()[-1:]}")
    assert cases >= len(value_options(parser))
    assert not failures, f"{command.name}: {len(failures)} of {cases} cases:\n" + \
        "\n".join(failures)


# --------------------------------------------------------------------------------------------
# fuzz: corrupted inputs, fixed seed

def corruptions(data: bytes, seed: int, n: int = 6) -> list[tuple[str, bytes]]:
    """Truncations and single-bit flips of ``data`` (flips in the first 64 bytes too, where
    the headers are)."""
    rng = np.random.default_rng(seed)
    out = [("empty tail", data[:1]), ("half", data[:len(data) // 2])]
    for i in range(n):
        cut = int(rng.integers(1, len(data)))
        out.append((f"truncated at {cut}", data[:cut]))
        pos = int(rng.integers(0, min(64, len(data)))) if i % 2 else int(
            rng.integers(0, len(data)))
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        out.append((f"bit flip at byte {pos}", bytes(flipped)))
    return out


def check_fuzz(name: str, rc: int, text: str, path: Path, failures: list[str],
               accepted: str | None = None) -> None:
    """A corrupted file is accepted (exit 0, or a later failure whose message holds
    ``accepted``) or refused in a message naming it; never a traceback."""
    last = text.strip().splitlines()[-1:]
    if "Traceback" in text:
        failures.append(f"{name}: traceback: {text.strip().splitlines()[-3:]}")
    elif rc not in (0, 1, 2):
        failures.append(f"{name}: exit {rc}: {last}")
    elif rc and not (accepted and accepted in text) and path.name not in text:
        failures.append(f"{name}: exit {rc}, the message does not name {path.name}: {last}")


def fuzz(path: Path, seed: int, run: Callable[[], tuple[int, str]],
         accepted: str | None = None) -> list[str]:
    """Run ``run`` with each corruption of ``path`` written in its place; the failures."""
    good = path.read_bytes()
    failures: list[str] = []
    try:
        for label, data in corruptions(good, seed):
            path.write_bytes(data)
            rc, text = run()
            check_fuzz(f"{path.name} {label}", rc, text, path, failures, accepted)
    finally:
        path.write_bytes(good)
    return failures


#: validate.py run from the repository has no package around it: a dataset file it accepted
#: fails on the missing settings
NO_PACKAGE = "not found: give a deployment package"


def test_fuzz_validate_dataset_files(tmp_path: Path, caplog) -> None:
    """Corrupted IDX label files and npz datasets given to validate.py: refused before the
    accelerator runs, naming the file."""
    ns = _script(DEPLOY / "validate.py")()
    images, labels = _fashion_idx(tmp_path)
    npz = tmp_path / "set.npz"
    np.savez(npz, images=np.zeros((4, 28, 28), np.uint8), labels=np.arange(4))
    out = ["--out", str(tmp_path / "v.json"), "--force"]
    failures = fuzz(labels, 1, lambda: run_main(
        ns["main"], ["--images", str(images), "--labels", str(labels), *out], caplog),
        NO_PACKAGE)
    failures += fuzz(npz, 2, lambda: run_main(ns["main"], ["--images", str(npz), *out], caplog),
                     NO_PACKAGE)
    assert not failures, "\n".join(failures)


def test_fuzz_training_idx_files(tmp_path: Path, caplog) -> None:
    """Corrupted MNIST IDX files (gzip and content) in a training run's data directory: the
    command names the file before it writes anything."""
    import gzip

    from models import train
    from models.data import IDX_FILES

    root = tmp_path / "data" / "mnist"
    root.mkdir(parents=True)
    for img, lbl in IDX_FILES.values():
        for name, arr in ((img, np.zeros((20, 28, 28), np.uint8)),
                          (lbl, np.arange(20, dtype=np.uint8) % 10)):
            write_idx(tmp_path / "raw", arr)
            (root / name).write_bytes(gzip.compress((tmp_path / "raw").read_bytes(), mtime=0))
    argv = ["--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
            "--out", str(tmp_path / "run"), "--no-export", "--no-progress", "--force"]
    labels = root / IDX_FILES["train"][1]
    failures = fuzz(labels, 3, lambda: run_main(train.main, argv, caplog))
    raw = gzip.decompress(labels.read_bytes())  # the content corrupted, gzip intact
    good = labels.read_bytes()
    for label, data in corruptions(raw, 4):
        labels.write_bytes(gzip.compress(data, mtime=0))
        rc, text = run_main(train.main, argv, caplog)
        check_fuzz(f"{labels.name} content {label}", rc, text, labels, failures)
    labels.write_bytes(good)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A one-epoch TFC run on synthetic data: ``run/checkpoint.pt`` and ``run/model.onnx``."""
    from models import train

    run = tmp_path_factory.mktemp("contract") / "run"
    assert train.main(["--dataset", "synthetic", "--epochs", "1", "--out", str(run),
                       "--no-finn-check", "--no-progress"]) == 0
    return run


def test_fuzz_checkpoints(small_run: Path, tmp_path: Path, caplog) -> None:
    """Corrupted checkpoints given to models.export and to a resumed training run."""
    from models import export, train

    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes((small_run / "checkpoint.pt").read_bytes())
    out = tmp_path / "exported.onnx"
    failures = fuzz(ckpt, 5, lambda: run_main(
        export.main, ["--checkpoint", str(ckpt), "--out", str(out), "--force",
                      "--no-finn-check", "--parity-samples", "2"], caplog))
    failures += fuzz(ckpt, 6, lambda: run_main(
        train.main, ["--out", str(ckpt.parent), "--resume", "--no-export", "--no-progress"],
        caplog))
    assert not failures, "\n".join(failures)


@pytest.mark.finn
def test_fuzz_onnx_models(small_run: Path, tmp_path: Path, caplog) -> None:
    """Corrupted QONNX files given to build.py (up to its first step)."""
    from build_flows import build

    model = tmp_path / "model.onnx"
    model.write_bytes((small_run / "model.onnx").read_bytes())
    failures = fuzz(model, 7, lambda: run_main(
        build.main, ["--model", str(model), "--out", str(tmp_path / "b"), "--force",
                     "--verify-samples", "1", "--to-step", "qonnx_to_finn"], caplog))
    assert not failures, "\n".join(failures)


SETTINGS = {  # a deployment package's settings.json (TFC on Pynq-Z2), as the build writes it
    "driver_information": {
        "platform": "zynq-iodma", "fclk_mhz": 100.0,
        "io_shape_dict": {
            "idt": ["DataType['UINT8']"], "odt": ["DataType['UINT8']"],
            "ishape_normal": [[1, 784]], "oshape_normal": [[1, 1]],
            "ishape_folded": [[1, 16, 49]], "oshape_folded": [[1, 1, 1]],
            "ishape_packed": [[1, 16, 49]], "oshape_packed": [[1, 1, 1]],
            "input_dma_name": ["idma0"], "output_dma_name": ["odma0"],
            "number_of_external_weights": 0, "num_inputs": 1, "num_outputs": 1}},
    "bnnforge": {"input_shape": [1, 1, 28, 28], "input_padding": 0, "classes": list("0123456789"),
                 "host_pre": [], "host_post": [], "rtl_dir": "/nonexistent/rtl",
                 "sim_top": "accel_io", "sim_filelist": "accel_io.f", "repository": str(REPO)}}


def test_fuzz_package_settings(tmp_path: Path, caplog) -> None:
    """A deployment package with a corrupted driver/settings.json: validate.py --sim
    --self-test names the file (a readable one fails later, on the missing RTL)."""
    import shutil

    pkg = tmp_path / "deploy"
    (pkg / "driver").mkdir(parents=True)
    for name in ("driver.py", "validate.py", "contract.py"):
        shutil.copyfile(DEPLOY / name, pkg / name)
    settings = pkg / "driver" / "settings.json"
    settings.write_text(json.dumps(SETTINGS, indent=2))
    ns = _script(pkg / "validate.py")()
    failures = fuzz(settings, 8, lambda: run_main(
        ns["main"], ["--sim", "--self-test", "--out", str(tmp_path / "s.json"), "--force"],
        caplog), "accel_io.f not found")
    rc, text = run_main(ns["main"], ["--sim", "--self-test", "--out", str(tmp_path / "s.json")],
                        caplog)
    assert rc == 1 and "accel_io.f not found" in text and "Traceback" not in text, text
    assert not failures, "\n".join(failures)


def test_a_signal_turned_into_another_error_still_leaves_as_the_interruption() -> None:
    """SIGINT landing in code that converts the exception (an extension module's import says
    ``ImportError: initialization failed``) still ends the block as ``Interrupted`` (exit
    status 130), with what it became as its cause; an error with no signal stays itself."""
    import os
    import signal
    import time

    from hw.contract import Interrupted, interruptible

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        with interruptible():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the handler runs by then
            except Interrupted as exc:
                raise ImportError("initialization failed") from exc
    assert info.value.exit_status == 130 and isinstance(info.value.__cause__, ImportError)
    with pytest.raises(ImportError):
        with interruptible():
            raise ImportError("no signal here")
    assert signal.getsignal(signal.SIGINT) is before
