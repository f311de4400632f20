// Multi-threshold unit: C channels of IN_W-bit inputs (IN_SIGNED: two's complement) arrive PE per
// beat (NF = C / PE beats per pixel). Channel c = nf * PE + pe produces
//     y = OUT_BIAS + sum_{i < NT} (x >= T[c][i])          (OUT_W bits, two's complement)
// i.e. FINN's MultiThreshold with out_bias = ActVal. Two implementations, same function:
//   TABLE = 0: NT comparators per lane; thresholds in a memory of NF words of PE * NT * (IN_W + 2)
//              bits (signed, so that "never fires" = max + 1 fits), word nf, lane pe, threshold i
//              at bits (pe * NT + i) * (IN_W + 2), from THRESH_FILE;
//   TABLE = 1: a lookup table of y per (channel, input code): entry (pe * NF + nf) * 2**IN_W + code
//              holds OUT_W bits, from THRESH_FILE. Cheaper for wide NT on narrow inputs (CNV's 8-bit
//              input quantizer: 255 thresholds, one 256-entry table).
// One registered output stage with back-pressure.
module thresholding #(
    parameter C = 1,
    parameter PE = 1,
    parameter IN_W = 8,
    parameter IN_SIGNED = 0,
    parameter NT = 1,
    parameter OUT_W = 1,
    parameter OUT_BIAS = 0,
    parameter TABLE = 0,
    parameter THRESH_FILE = "thresholds.hex"
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [PE*IN_W-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [PE*OUT_W-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam NF = C / PE;
  localparam NF_W = NF > 1 ? $clog2(NF) : 1;
  localparam TW = IN_W + 2;  // thresholds span [min, max + 1] of the input, signed
  logic [NF_W-1:0] nf;
  logic push;
  assign in_tready = !out_tvalid || out_tready;
  assign push = in_tvalid && in_tready;
  logic [PE*OUT_W-1:0] y;

  generate
    if (TABLE) begin : g_table
      logic [OUT_W-1:0] tab [0:PE*NF*(2**IN_W)-1];
      initial $readmemh(THRESH_FILE, tab);
      always_comb
        for (int p = 0; p < PE; p++)
          y[p*OUT_W +: OUT_W] = tab[(p * NF + 32'(nf)) * (2**IN_W) + 32'(in_tdata[p*IN_W +: IN_W])];
    end else begin : g_compare
      logic [PE*NT*TW-1:0] tmem [0:NF-1];
      logic [PE*NT*TW-1:0] t;
      initial $readmemh(THRESH_FILE, tmem);
      assign t = tmem[nf];
      // OUT_BIAS + number of thresholds in tv that xv reaches (signed TW-bit compare)
      function automatic [OUT_W-1:0] count(input [IN_W-1:0] xv, input [NT*TW-1:0] tv);
        integer i;
        reg [TW-1:0] xe;
        begin
          xe = {{2{IN_SIGNED != 0 && xv[IN_W-1]}}, xv};
          count = OUT_BIAS;
          for (i = 0; i < NT; i = i + 1)
            if ($signed(xe) >= $signed(tv[i*TW +: TW])) count = count + 1'b1;
        end
      endfunction
      always_comb
        for (int p = 0; p < PE; p++)
          y[p*OUT_W +: OUT_W] = count(in_tdata[p*IN_W +: IN_W], t[p*NT*TW +: NT*TW]);
    end
  endgenerate

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      nf <= '0;
      out_tvalid <= 1'b0;
    end else begin
      if (out_tvalid && out_tready) out_tvalid <= 1'b0;
      if (push) begin
        out_tdata <= y;
        out_tvalid <= 1'b1;
        nf <= (nf == NF_W'(NF - 1)) ? '0 : nf + 1'b1;
      end
    end
  end
endmodule
