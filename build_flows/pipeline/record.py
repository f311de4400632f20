"""What a build directory records about its build, so that ``--resume`` continues the same build.

``state.json`` holds, besides the results later steps read, ``options``: every option that shapes
the result (model hash, board, clock, folding source and contents, target FPS, the verification
settings). On ``--resume`` (or ``--from-step``) the options not given are taken from there; one
given that differs is refused, naming the option and both values, unless the first step that
reads it has not finished yet (then the build goes on with the new value and records it).
A fresh build never writes into a directory that holds another build unless ``--force`` is given,
and ``--force`` removes only what a build writes (:data:`BUILD_OUTPUTS`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from hw.contract import option_name
from build_flows.pipeline import STEP_NAMES

#: what a build writes into its directory (``--force`` removes these, and nothing else)
BUILD_OUTPUTS = ("steps", "rtl", "deploy", "finn_build", "work", "vivado", "model.onnx",
                 "report.json", "report.md", "cycles.png", "state.json")
#: recorded option (argparse ``dest``) -> the first step whose output depends on it
RECORDED = {"model": "qonnx_to_finn", "verify_samples": "qonnx_to_finn",
            "seed": "qonnx_to_finn", "data_dir": "qonnx_to_finn", "board": "specialize",
            "clock_ns": "folding", "target_fps": "folding", "folding": "folding",
            "mvau_wwidth_max": "folding", "budget": "folding", "folding_engine": "folding"}


def step_dirs(out: Path) -> list[Path]:
    """``out/steps/NN_<name>/`` for every step, in order."""
    return [out / "steps" / f"{i:02d}_{name}" for i, name in enumerate(STEP_NAMES, 1)]


def finished(out: Path) -> list[str]:
    """Names of the steps whose output ``out`` holds (``done.json`` written)."""
    return [name for name, d in zip(STEP_NAMES, step_dirs(out), strict=True)
            if (d / "done.json").is_file()]


def holds_build(out: Path) -> str | None:
    """A description of the build in ``out`` ("a build (13 of 17 steps finished, the last
    estimates)"), or None when it holds none."""
    done = finished(out)
    if done:
        return f"a build ({len(done)} of {len(STEP_NAMES)} steps finished, the last {done[-1]})"
    if any((out / name).exists() for name in BUILD_OUTPUTS):
        return "a build's outputs"
    return None


def remove_build(out: Path) -> None:
    """``--force``: delete what a build wrote into ``out`` (other files stay)."""
    for name in BUILD_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def options_record(args: argparse.Namespace, model_sha: str,
                   folding_cfg: dict[str, Any] | None) -> dict[str, Any]:
    """The recorded value of each option of :data:`RECORDED` (JSON-able); the model and the
    folding file by content, the paths kept for messages."""
    return {"model": {"path": str(args.model), "sha256": model_sha},
            "verify_samples": args.verify_samples, "seed": args.seed,
            "data_dir": None if args.data_dir is None else str(Path(args.data_dir).absolute()),
            "board": args.board, "clock_ns": args.clock_ns, "target_fps": args.target_fps,
            "folding": None if folding_cfg is None else {"path": str(args.folding),
                                                         "contents": folding_cfg},
            "mvau_wwidth_max": args.mvau_wwidth_max, "budget": args.budget,
            "folding_engine": args.folding_engine}


def _same(dest: str, given: Any, recorded: Any) -> bool:
    if dest in ("model", "folding"):
        key = "sha256" if dest == "model" else "contents"
        return (given or {}).get(key) == (recorded or {}).get(key)
    if dest == "board":
        return str(given).lower() == str(recorded).lower()
    return given == recorded


def _show(dest: str, value: Any) -> str:
    if value is None:
        return "(none)" if dest != "clock_ns" else "(the board's)"
    if dest == "model":
        return f"{value['path']} (sha256 {value['sha256'][:12]})"
    if dest == "folding":
        return f"{value['path']} ({len(value['contents'])} layers)"
    return str(value)


def resume_options(parser: argparse.ArgumentParser, explicit: set[str],
                   given: dict[str, Any], recorded: dict[str, Any], start: int,
                   out: Path) -> dict[str, Any]:
    """The options a resumed build (restarting at step index ``start``) runs with: the recorded
    ones, except those given explicitly whose first step is not finished. One given that
    differs from the record while its first step is finished raises ValueError."""
    result = dict(recorded)
    for dest, first in RECORDED.items():
        if dest not in explicit or dest not in recorded:
            continue
        if not _same(dest, given[dest], recorded[dest]):
            if STEP_NAMES.index(first) < start:
                opt = option_name(parser, dest)
                raise ValueError(
                    f"{opt} {_show(dest, given[dest])} differs from the build in {out}, made "
                    f"with {_show(dest, recorded[dest])} (its step {first} has finished): "
                    f"resume continues the same build; drop {opt}, resume from an earlier "
                    "step with --from-step, or start over with --force")
            result[dest] = given[dest]
    return result


def read_state(out: Path) -> dict[str, Any]:
    """``state.json`` of the build in ``out`` ({} when there is none)."""
    path = out / "state.json"
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); start over with --force") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a build state; start over with --force")
    return state
