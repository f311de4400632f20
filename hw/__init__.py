"""bnnforge hardware side: parameterised SystemVerilog for the streaming units plus numpy and
Verilator glue. Imports neither torch nor FINN, so it is testable on its own."""
