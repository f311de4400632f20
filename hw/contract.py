"""The contract every bnnforge command keeps, in one place (standard library only: the deployment
package ships this file beside its scripts).

1. **Options are checked before any work starts.** Each option's argparse ``type`` is a *kind*
   (:class:`Int`, :class:`Float`, :class:`InFile`, :class:`InDir`, :class:`DataDir`,
   :class:`OutDir`, :class:`OutFile`, :class:`KeyValue`) that refuses what is meaningless for it
   (0, negative, NaN or infinite numbers; missing, empty, unreadable or wrong-kind files) with
   one sentence giving the accepted range; argparse puts the option's name in front and exits
   with status 2 (``build.py: error: argument --clock-ns: 0 is out of range: give a number
   > 0``). Each kind also lists :meth:`Kind.bad_values`, the classes of bad input that the test
   matrix (``tests/test_contract.py``) runs through every option of every command, so a new
   option is covered by giving it a kind.
2. **Nothing is lost.** :func:`claim_output` refuses an output that holds an earlier run unless
   ``--force`` (start over) or ``--resume`` (continue the same run) is given, and commands
   check everything before they create a file. :func:`interruptible` turns SIGINT and SIGTERM
   into :class:`Interrupted`, which a command reports in one line saying what was kept and how to
   resume (exit status 128 + signal number).
3. **Resume means the same run.** :func:`parse` tells which options were given explicitly;
   :func:`same_run` compares those with the values recorded with the run and refuses one that
   differs, naming the option and both values.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: exit status of a command refused before any work (argparse's usage errors use it too)
USAGE = 2


class Kind:
    """An option's value kind: ``__call__`` converts the command-line string or raises
    :class:`argparse.ArgumentTypeError` with one sentence (argparse adds the option's name)."""

    #: shown in ``--help`` metavars
    metavar = "VALUE"

    def __call__(self, text: str) -> Any:
        raise NotImplementedError

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        """``(class, value)`` pairs this kind must refuse; files are made under ``tmp``."""
        return []

    @staticmethod
    def refuse(message: str) -> argparse.ArgumentTypeError:
        return argparse.ArgumentTypeError(message)


class Int(Kind):
    """An integer in ``[lo, hi]`` (``hi`` None: unbounded)."""

    metavar = "N"

    def __init__(self, lo: int = 1, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi

    def range_text(self) -> str:
        return (f"an integer from {self.lo:,} to {self.hi:,}" if self.hi is not None
                else f"an integer >= {self.lo:,}")

    def __call__(self, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise self.refuse(f"{text!r} is not an integer: give {self.range_text()}") from None
        if value < self.lo or (self.hi is not None and value > self.hi):
            raise self.refuse(f"{value} is out of range: give {self.range_text()}")
        return value

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        out = [("below range", str(self.lo - 1)), ("not a number", "abc"),
               ("fraction", "1.5"), ("nan", "nan")]
        if self.lo > 0:
            out.append(("negative", "-5"))
        if self.hi is not None:
            out.append(("above range", str(self.hi + 1)))
        return out


class Float(Kind):
    """A finite number ``x`` with ``lo < x`` (or ``lo <= x`` when ``lo_inclusive``) and
    ``x <= hi``."""

    metavar = "X"

    def __init__(self, lo: float = 0.0, lo_inclusive: bool = False,
                 hi: float | None = None) -> None:
        self.lo, self.lo_inclusive, self.hi = lo, lo_inclusive, hi

    def range_text(self) -> str:
        text = f"a number {'>=' if self.lo_inclusive else '>'} {self.lo:g}"
        return text + (f" and <= {self.hi:g}" if self.hi is not None else "")

    def __call__(self, text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise self.refuse(f"{text!r} is not a number: give {self.range_text()}") from None
        if not math.isfinite(value):
            raise self.refuse(f"{text} is not a finite number: give {self.range_text()}")
        low = value < self.lo if self.lo_inclusive else value <= self.lo
        if low or (self.hi is not None and value > self.hi):
            raise self.refuse(f"{value:g} is out of range: give {self.range_text()}")
        return value

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        out = [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("not a number", "abc"),
               ("negative", "-5")]
        if not self.lo_inclusive:
            out.append(("at the bound", f"{self.lo:g}"))
        if self.hi is not None:
            out.append(("above range", f"{self.hi * 2 + 1:g}"))
        return out


class IntList(Kind):
    """Comma-separated integers, each in ``[lo, hi]`` (``1,10,100``)."""

    metavar = "N,N,..."

    def __init__(self, lo: int = 1, hi: int | None = None) -> None:
        self.item = Int(lo, hi)

    def __call__(self, text: str) -> list[int]:
        items = [t for t in text.split(",") if t.strip()]
        if not items:
            raise self.refuse(f"{text!r}: give one or more integers separated by commas")
        try:
            return [self.item(t) for t in items]
        except argparse.ArgumentTypeError as exc:
            raise self.refuse(f"in {text!r}: {exc}") from None

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        return [("empty", ""), ("not numbers", "a,b"), ("one below range", f"4,{self.item.lo - 1}")]


class InFile(Kind):
    """An existing, non-empty, readable regular file, with one of ``suffixes`` when given
    (compared case-blind; ``.gz`` may follow when ``gz``)."""

    metavar = "FILE"

    def __init__(self, what: str, suffixes: Sequence[str] = (), gz: bool = False) -> None:
        self.what, self.suffixes, self.gz = what, tuple(suffixes), gz

    def _suffix_ok(self, path: Path) -> bool:
        name = path.name.lower()
        if self.gz and name.endswith(".gz"):
            name = name[:-3]
        return not self.suffixes or name.endswith(tuple(s.lower() for s in self.suffixes))

    def __call__(self, text: str) -> Path:
        path = Path(text)
        if not path.exists():
            raise self.refuse(f"{path}: no such file (expected the {self.what})")
        if not path.is_file():
            raise self.refuse(f"{path} is not a file (expected the {self.what})")
        if not self._suffix_ok(path):
            raise self.refuse(f"{path}: expected the {self.what} ({' or '.join(self.suffixes)}"
                              f"{' or .gz' if self.gz else ''})")
        if path.stat().st_size == 0:
            raise self.refuse(f"{path} is empty (expected the {self.what})")
        if not os.access(path, os.R_OK):
            raise self.refuse(f"{path} is not readable")
        return path

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        suffix = self.suffixes[0] if self.suffixes else ".bin"
        empty = tmp / f"empty{suffix}"
        empty.touch()
        folder = tmp / f"folder{suffix}"
        folder.mkdir(exist_ok=True)
        out = [("missing", str(tmp / f"missing{suffix}")), ("empty", str(empty)),
               ("a directory", str(folder))]
        if self.suffixes:
            wrong = tmp / "wrong_kind.txt"
            wrong.write_text("not the expected file\n")
            out.append(("wrong kind", str(wrong)))
        return out


class InDir(Kind):
    """An existing directory."""

    metavar = "DIR"

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, text: str) -> Path:
        path = Path(text)
        if not path.is_dir():
            raise self.refuse(f"{path}: no such directory (expected {self.what})")
        return path

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        afile = tmp / "a_file"
        afile.write_text("x\n")
        return [("missing", str(tmp / "missing_dir")), ("a file", str(afile))]


class DataDir(Kind):
    """A directory that may not exist yet (datasets are looked for, or downloaded, there); never
    an existing file."""

    metavar = "DIR"

    def __call__(self, text: str) -> Path:
        path = Path(text)
        if path.exists() and not path.is_dir():
            raise self.refuse(f"{path} is a file, not a directory")
        return path

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        afile = tmp / "data_file"
        afile.write_text("x\n")
        return [("a file", str(afile))]


def _below_a_directory(path: Path, kind: Kind) -> Path:
    """``path`` when its nearest existing ancestor is a directory (it can be created)."""
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise kind.refuse(f"{path}: {parent} is a file, not a directory")
    return path


class OutDir(Kind):
    """An output directory: new, or an existing directory (whether an earlier run in it may be
    replaced is :func:`claim_output`'s business); never an existing file."""

    metavar = "DIR"

    def __call__(self, text: str) -> Path:
        path = Path(text)
        if path.exists() and not path.is_dir():
            raise self.refuse(f"{path} is an existing file, not a directory")
        return _below_a_directory(path, self)

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        afile = tmp / "out_file"
        afile.write_text("x\n")
        return [("an existing file", str(afile)), ("below a file", str(afile / "sub"))]


class OutFile(Kind):
    """An output file with ``suffix``: not a directory, below a directory (or a new one)."""

    metavar = "FILE"

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __call__(self, text: str) -> Path:
        path = Path(text)
        if path.is_dir():
            raise self.refuse(f"{path} is a directory: give a {self.suffix} file name")
        if path.suffix.lower() != self.suffix:
            raise self.refuse(f"{path}: give a {self.suffix} file name")
        return _below_a_directory(path, self)

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        folder = tmp / f"dir{self.suffix}"
        folder.mkdir(exist_ok=True)
        afile = tmp / "plain_file"
        afile.write_text("x\n")
        return [("a directory", str(folder)), ("wrong suffix", str(tmp / "out.txt")),
                ("below a file", str(afile / f"x{self.suffix}"))]


class KeyValue(Kind):
    """``KEY=VALUE``; the value is parsed as JSON when it is JSON (``5``, ``true``, ``"s"``),
    else kept as a string. Whether KEY and VALUE make sense is the command's check."""

    metavar = "KEY=VALUE"

    def __call__(self, text: str) -> tuple[str, Any]:
        import json

        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise self.refuse(f"{text!r}: expected KEY=VALUE")
        try:
            return key.strip(), json.loads(value)
        except json.JSONDecodeError:
            return key.strip(), value

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        return [("no '='", "novalue"), ("no key", "=5")]


# --------------------------------------------------------------------------------------------
# parsing: which options were given

UNSET = object()  #: the default :func:`parse` gives options while it looks for the given ones


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None
          ) -> tuple[argparse.Namespace, set[str]]:
    """Parse ``argv``; return the namespace (defaults filled in) and the ``dest`` names of the
    options given on the command line, a default given explicitly included."""
    for action in parser._actions:
        if isinstance(action.type, Kind) and action.metavar is None and not action.choices:
            action.metavar = action.type.metavar
    saved = {a.dest: a.default for a in parser._actions}
    for action in parser._actions:
        if action.dest != "help":
            # append actions extend their default in place: they start from None
            action.default = None if isinstance(action, argparse._AppendAction) else UNSET
    try:
        args = parser.parse_args(argv)
    finally:
        for action in parser._actions:
            action.default = saved[action.dest]
    explicit = set()
    actions = {a.dest: a for a in parser._actions}
    for dest, value in vars(args).items():
        if value is UNSET or (value is None and isinstance(actions.get(dest),
                                                           argparse._AppendAction)):
            default = saved.get(dest)
            if isinstance(default, str) and dest in actions:  # as argparse converts defaults
                default = parser._get_value(actions[dest], default)
            setattr(args, dest, default)
        else:
            explicit.add(dest)
    return args, explicit


def option_name(parser: argparse.ArgumentParser, dest: str) -> str:
    """``--clock-ns`` for ``clock_ns``: the option string the user types."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)
    return dest


def same_run(parser: argparse.ArgumentParser, explicit: set[str], given: dict[str, Any],
             recorded: dict[str, Any], where: str) -> dict[str, Any]:
    """The recorded run's values for the options in ``recorded``, after checking that every one
    given explicitly equals its recorded value; one that differs raises ValueError naming the
    option and both values. ``given`` holds the parsed values by ``dest``."""
    for dest, value in recorded.items():
        if dest in explicit and given[dest] != value:
            raise ValueError(
                f"{option_name(parser, dest)} {_show(given[dest])} differs from the run in "
                f"{where}, made with {_show(value)}: resume continues the same run (drop "
                f"{option_name(parser, dest)}, or start over with --force)")
    return dict(recorded)


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


# --------------------------------------------------------------------------------------------
# outputs

def claim_output(path: Path, holds_run: Callable[[Path], str | None], force: bool,
                 resume: bool) -> None:
    """Refuse to write into ``path`` when it holds an earlier run (``holds_run`` returns a short
    description of it, or None) unless ``force`` or ``resume``; ``resume`` on a path that holds
    no run is refused too."""
    what = holds_run(path) if path.exists() else None
    if what and not (force or resume):
        raise ValueError(f"{path} holds {what}: give --resume to continue it, or --force to "
                         "replace it (nothing was written)")
    if resume and not what:
        raise ValueError(f"--resume: {path} holds no run to resume")


# --------------------------------------------------------------------------------------------
# interrupts

class Interrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (in the main thread);
    the previous handlers come back afterwards. Code the signal lands in may turn the
    exception into its own (an extension module being imported says ``ImportError:
    initialization failed``): whatever leaves the block after a signal leaves as
    :class:`Interrupted`, from what it was."""
    got: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        got.append(signum)
        raise Interrupted(signum)

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave the signals alone
        yield
        return
    try:
        yield
    except Interrupted:
        raise
    except Exception as exc:
        if got:
            raise Interrupted(got[0]) from exc
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def refuse(prog: str, message: str) -> int:
    """Print ``prog: error: message`` on stderr (no traceback) and return :data:`USAGE`."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return USAGE
