// Stream zip (a join): one beat from each input makes one output beat {in1, in0} (in0 in the
// low bits), the two operands of an elementwise unit (the residual add's branch and shortcut).
// A beat is taken from both inputs at once, when both are valid and the output is free; the
// output is a register, so no ready path crosses the join.
module zip #(
    parameter W0 = 8,
    parameter W1 = 8
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [W0-1:0] in0_tdata,
    input  logic in0_tvalid,
    output logic in0_tready,
    input  logic [W1-1:0] in1_tdata,
    input  logic in1_tvalid,
    output logic in1_tready,
    output logic [W0+W1-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  logic take;
  assign take = in0_tvalid && in1_tvalid && (!out_tvalid || out_tready);
  assign in0_tready = take;
  assign in1_tready = take;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      out_tvalid <= 1'b0;
    end else begin
      if (out_tvalid && out_tready) out_tvalid <= 1'b0;
      if (take) begin
        out_tdata <= {in1_tdata, in0_tdata};
        out_tvalid <= 1'b1;
      end
    end
  end
endmodule
