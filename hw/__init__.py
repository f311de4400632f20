"""bnnforge hardware side: parameterised SystemVerilog for the streaming units plus numpy and
Verilator glue. Imports neither torch nor FINN, so it is testable on its own.

``hw.contract`` (standard library only) is the one module the other packages share: the option
checks, output claims, interrupts and resume records every command keeps."""
