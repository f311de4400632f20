// Stream FIFO of DEPTH entries of WIDTH bits: in_tready and out_tvalid come from registers only,
// so a FIFO between two units breaks every combinational path between them. Storage is an
// array with asynchronous read (distributed RAM or registers for small depths). In simulation
// (not under SYNTHESIS) it keeps its peak occupancy and prints it at the end of the run,
// "fifo_profile <instance> <peak> <count> <DEPTH>", which FIFO sizing (hw.fifosize) reads.
module fifo #(
    parameter WIDTH = 8,
    parameter DEPTH = 2
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [WIDTH-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [WIDTH-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam AW = DEPTH > 1 ? $clog2(DEPTH) : 1;
  logic [WIDTH-1:0] mem [0:DEPTH-1];
  logic [AW-1:0] rd, wr;
  logic [AW:0] count;
  logic push, pop;
  assign in_tready = count != (AW + 1)'(DEPTH);
  assign out_tvalid = count != '0;
  assign out_tdata = mem[rd];
  assign push = in_tvalid && in_tready;
  assign pop = out_tvalid && out_tready;
  always_ff @(posedge clk) if (push) mem[wr] <= in_tdata;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      rd <= '0;
      wr <= '0;
      count <= '0;
    end else begin
      if (push) wr <= (wr == AW'(DEPTH - 1)) ? '0 : wr + 1'b1;
      if (pop) rd <= (rd == AW'(DEPTH - 1)) ? '0 : rd + 1'b1;
      count <= count + (AW + 1)'(push) - (AW + 1)'(pop);
    end
  end
`ifndef SYNTHESIS
  logic [AW:0] peak;
  always_ff @(posedge clk) begin
    if (!rst_n) peak <= '0;
    else if (count > peak) peak <= count;
  end
  final $display("fifo_profile %m %0d %0d %0d", peak, count, DEPTH);
`endif
endmodule
