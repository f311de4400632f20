// Top-1 label select: LABELS values of ELEM_W bits (SIGNED: two's complement) arrive PE per beat;
// after the last beat of a vector the index of the largest value goes out as one OUT_W-bit beat.
// Ties go to the lowest index, as ONNX TopK specifies.
module label_select #(
    parameter LABELS = 10,
    parameter PE = 1,
    parameter ELEM_W = 8,
    parameter SIGNED = 1,
    parameter OUT_W = 8
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [PE*ELEM_W-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [OUT_W-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam NF = LABELS / PE;
  localparam NF_W = NF > 1 ? $clog2(NF) : 1;
  logic [NF_W-1:0] nf;
  logic [ELEM_W:0] best;  // sign-extended (or zero-extended) to ELEM_W + 1 bits
  logic [OUT_W-1:0] best_i;
  logic push;
  assign in_tready = !out_tvalid || out_tready;
  assign push = in_tvalid && in_tready;

  function automatic [ELEM_W:0] ext(input [ELEM_W-1:0] v);
    ext = {SIGNED != 0 && v[ELEM_W-1], v};
  endfunction

  // best over this beat and the running best (lower index first, strict > to replace)
  logic [ELEM_W:0] b [PE+1];
  logic [OUT_W-1:0] bi [PE+1];
  always_comb begin
    b[0] = (nf == '0) ? ext(in_tdata[ELEM_W-1:0]) : best;
    bi[0] = (nf == '0) ? '0 : best_i;
    for (int p = 0; p < PE; p++) begin
      if ((nf != '0 || p != 0) && $signed(ext(in_tdata[p*ELEM_W +: ELEM_W])) > $signed(b[p])) begin
        b[p+1] = ext(in_tdata[p*ELEM_W +: ELEM_W]);
        bi[p+1] = OUT_W'(nf * PE + p);
      end else begin
        b[p+1] = b[p];
        bi[p+1] = bi[p];
      end
    end
  end

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      nf <= '0;
      out_tvalid <= 1'b0;
    end else begin
      if (out_tvalid && out_tready) out_tvalid <= 1'b0;
      if (push) begin
        best <= b[PE];
        best_i <= bi[PE];
        if (nf == NF_W'(NF - 1)) begin
          nf <= '0;
          out_tdata <= bi[PE];
          out_tvalid <= 1'b1;
        end else begin
          nf <= nf + 1'b1;
        end
      end
    end
  end
endmodule
