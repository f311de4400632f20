// Stream duplicate, a fork (FINN's DuplicateStreams): every input beat goes to both outputs.
// Each output has its own valid/ready; a beat leaves the input once both outputs have taken it
// (in the same cycle or one after the other), so a stalled branch holds the other back only by
// what the FIFO on its edge holds. out0 and out1 carry the same data.
module dup #(
    parameter WIDTH = 8
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [WIDTH-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [WIDTH-1:0] out0_tdata,
    output logic out0_tvalid,
    input  logic out0_tready,
    output logic [WIDTH-1:0] out1_tdata,
    output logic out1_tvalid,
    input  logic out1_tready
);
  logic done0, done1;  // this output already took the current beat
  logic take0, take1;
  assign out0_tdata = in_tdata;
  assign out1_tdata = in_tdata;
  assign out0_tvalid = in_tvalid && !done0;
  assign out1_tvalid = in_tvalid && !done1;
  assign take0 = out0_tvalid && out0_tready;
  assign take1 = out1_tvalid && out1_tready;
  assign in_tready = (done0 || out0_tready) && (done1 || out1_tready);
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      done0 <= 1'b0;
      done1 <= 1'b0;
    end else if (in_tvalid && in_tready) begin
      done0 <= 1'b0;
      done1 <= 1'b0;
    end else begin
      done0 <= done0 || take0;
      done1 <= done1 || take1;
    end
  end
endmodule
