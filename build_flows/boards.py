"""The boards a build can target: FPGA part, default clock and platform, in one table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hw.contract import Kind

#: bits per cycle the shell's input DMA delivers, per family: the HP port's 64 bits on
#: Zynq-7000, 128 on Zynq UltraScale+ (the folding search's input limit, and the pace of the
#: stitched rtlsim's input)
DMA_BITS = {"zynq7": 64, "zynquplus": 128}


@dataclass(frozen=True)
class Board:
    """One target board.

    ``finn_name`` is the key finn-plus uses in its part/shell maps; ``family`` is the Xilinx family
    (``zynq7`` or ``zynquplus``) that decides which Yosys ``synth_xilinx -family`` applies.
    """

    name: str
    part: str
    clock_ns: float
    platform: str
    family: str
    finn_name: str
    luts: int
    ffs: int
    bram36: int
    dsps: int

    @property
    def dma_bits(self) -> int:
        """Bits per cycle the shell's input DMA delivers (:data:`DMA_BITS`)."""
        return DMA_BITS[self.family]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("Pynq-Z1", "xc7z020clg400-1", 10.0, "zynq", "zynq7", "Pynq-Z1", 53200, 106400, 140, 220),
    Board("Pynq-Z2", "xc7z020clg400-1", 10.0, "zynq", "zynq7", "Pynq-Z2", 53200, 106400, 140, 220),
    Board("Ultra96", "xczu3eg-sbva484-1-e", 5.0, "zynq", "zynquplus", "Ultra96",
          70560, 141120, 216, 360),
    Board("Ultra96-V2", "xczu3eg-sbva484-1-i", 5.0, "zynq", "zynquplus", "Ultra96-V2",
          70560, 141120, 216, 360),
    Board("ZCU104", "xczu7ev-ffvc1156-2-e", 5.0, "zynq", "zynquplus", "ZCU104",
          230400, 460800, 312, 1728),
    Board("KV260", "xck26-sfvc784-2LV-c", 5.0, "zynq", "zynquplus", "KV260_SOM",
          117120, 234240, 144, 1248),
)}
ALIASES = {"pynq-z1": "Pynq-Z1", "pynq-z2": "Pynq-Z2", "ultra96": "Ultra96",
           "ultra96-v2": "Ultra96-V2", "ultra96v2": "Ultra96-V2", "zcu104": "ZCU104",
           "kv260": "KV260", "kv260_som": "KV260"}


def get_board(name: str) -> Board:
    """Look a board up by name (case-insensitive); ValueError lists the known boards."""
    key = ALIASES.get(name.lower(), name)
    if key not in BOARDS:
        raise ValueError(f"unknown board {name!r}: choose one of {', '.join(BOARDS)}")
    return BOARDS[key]


class BoardName(Kind):
    """A board of :data:`BOARDS` (case-insensitive); the value is the board's own name."""

    metavar = "BOARD"

    def __call__(self, text: str) -> str:
        try:
            return get_board(text).name
        except ValueError as exc:
            raise self.refuse(str(exc)) from None

    def bad_values(self, tmp: Path) -> list[tuple[str, str]]:
        return [("unknown", "Pynq-Z9"), ("empty", "")]
