// Linear requantizer: per channel c, y = clamp(floor((A[c] * x + G[c] * z + B[c]) / 2^F), LO, HI)
// on PE lanes per beat, in OUT_W-bit two's complement (or unsigned when LO >= 0).
//   NIN = 1: the input beat holds PE elements x of XW bits (e.g. a global sum, an 8-bit stem's
//            accumulators) and G is not used.
//   NIN = 2: the input beat is {z lanes (PE x ZW bits), x lanes (PE x XW bits)}, as hw/rtl/zip.sv
//            makes it from two streams: the residual add of a branch x and a shortcut z, each
//            rescaled by its own per-channel integer, summed and requantized in one unit.
// XSIGNED/ZSIGNED: two's complement operands. A, G and B are signed integers of CW bits, read
// per channel group cf = beat mod (C / PE) from COEF_FILE (word cf: lane p's {B, G, A} at bits
// p * 3 * CW). hw.requant fits A, G, B and F to a float scale-add-quantize so that the integer
// result equals it on every input pair the streams can carry (checked exhaustively). SW is the
// width of the exact sum. Three pipeline stages (operands, products, sum/shift/clamp), one beat
// per cycle; the whole pipeline holds while the output is not taken.
module requant #(
    parameter C = 16,
    parameter PE = 4,
    parameter NIN = 2,
    parameter XW = 12,
    parameter XSIGNED = 1,
    parameter ZW = 8,
    parameter ZSIGNED = 1,
    parameter CW = 16,
    parameter SW = 32,
    parameter F = 8,
    parameter OUT_W = 8,
    parameter LO = -128,
    parameter HI = 127,
    parameter COEF_FILE = "coef.hex"
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [PE*(XW+(NIN > 1 ? ZW : 0))-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [PE*OUT_W-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam CF = C / PE;
  localparam CFW = CF > 1 ? $clog2(CF) : 1;
  logic [PE*3*CW-1:0] cmem [0:CF-1];
  initial $readmemh(COEF_FILE, cmem);

  logic advance;
  logic v1, v2, v3;
  assign advance = !v3 || out_tready;
  assign in_tready = advance;
  assign out_tvalid = v3;

  logic [CFW-1:0] cf;
  always_ff @(posedge clk) begin
    if (!rst_n) cf <= '0;
    else if (in_tvalid && in_tready) cf <= (cf == CFW'(CF - 1)) ? '0 : cf + 1'b1;
  end

  // stage 1: operands (one bit wider: unsigned ones stay positive) and the group's coefficients
  // stage 2: the products at their own widths (a DSP48's 25 x 18 holds XW < 25, CW <= 18), the
  // offset; stage 3: their exact sum, an arithmetic shift (floor division by 2^F), the clamp
  logic [PE*3*CW-1:0] c1;
  always_ff @(posedge clk) if (advance) c1 <= cmem[cf];
  logic signed [SW-1:0] q [PE];
  generate
    for (genvar p = 0; p < PE; p++) begin : g_lane
      logic signed [XW:0] x1;
      logic signed [ZW:0] z1;
      logic signed [XW+CW:0] px;
      logic signed [ZW+CW:0] pz;
      logic signed [CW-1:0] b2;
      logic signed [SW-1:0] s;
      always_ff @(posedge clk) begin
        if (advance) begin
          x1 <= XSIGNED ? {in_tdata[p*XW+XW-1], in_tdata[p*XW +: XW]} : {1'b0, in_tdata[p*XW +: XW]};
          if (NIN > 1)
            z1 <= ZSIGNED ? {in_tdata[PE*XW+p*ZW+ZW-1], in_tdata[PE*XW+p*ZW +: ZW]}
                          : {1'b0, in_tdata[PE*XW+p*ZW +: ZW]};
          else
            z1 <= '0;
          px <= x1 * $signed(c1[p*3*CW +: CW]);
          pz <= z1 * $signed(c1[p*3*CW+CW +: CW]);
          b2 <= $signed(c1[p*3*CW+2*CW +: CW]);
        end
      end
      assign s = SW'(px) + SW'(pz) + SW'(b2);
      assign q[p] = s >>> F;
    end
  endgenerate
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      v1 <= 1'b0;
      v2 <= 1'b0;
      v3 <= 1'b0;
    end else if (advance) begin
      v1 <= in_tvalid;
      v2 <= v1;
      v3 <= v2;
    end
  end
  always_ff @(posedge clk) begin
    if (advance && v2) begin
      for (int p = 0; p < PE; p++) begin
        if (q[p] < SW'(LO)) out_tdata[p*OUT_W +: OUT_W] <= OUT_W'(LO);
        else if (q[p] > SW'(HI)) out_tdata[p*OUT_W +: OUT_W] <= OUT_W'(HI);
        else out_tdata[p*OUT_W +: OUT_W] <= q[p][OUT_W-1:0];
      end
    end
  end
endmodule
