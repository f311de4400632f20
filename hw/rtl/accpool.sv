// Global sum pooling (FINN's GlobalAccPool): per channel, the sum of its PIXELS values, one beat
// of PE sums (OUT_W-bit two's complement, or unsigned when IN_SIGNED = 0) per channel group once
// the last pixel has arrived. Input: PIXELS pixels of CF = C / PE beats of PE elements of IN_W
// bits. The running sums sit in CF words of PE x OUT_W bits (registers or LUT RAM); one beat per
// cycle, an output beat per input beat of the last pixel.
module accpool #(
    parameter C = 64,
    parameter PE = 4,
    parameter PIXELS = 49,
    parameter IN_W = 8,
    parameter IN_SIGNED = 1,
    parameter OUT_W = 14
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
  localparam CF = C / PE;
  localparam CFW = CF > 1 ? $clog2(CF) : 1;
  localparam PW = PIXELS > 1 ? $clog2(PIXELS) : 1;
  logic [PE*OUT_W-1:0] acc [0:CF-1];
  logic [CFW-1:0] cf;
  logic [PW-1:0] pix;
  logic push;
  logic [PE*OUT_W-1:0] sum;
  assign in_tready = !out_tvalid || out_tready;
  assign push = in_tvalid && in_tready;
  always_comb
    for (int p = 0; p < PE; p++)
      sum[p*OUT_W +: OUT_W] = (pix == '0 ? OUT_W'(0) : acc[cf][p*OUT_W +: OUT_W]) +
          (IN_SIGNED ? OUT_W'($signed(in_tdata[p*IN_W +: IN_W])) : OUT_W'(in_tdata[p*IN_W +: IN_W]));
  always_ff @(posedge clk) if (push) acc[cf] <= sum;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      cf <= '0;
      pix <= '0;
      out_tvalid <= 1'b0;
    end else begin
      if (out_tvalid && out_tready) out_tvalid <= 1'b0;
      if (push) begin
        if (pix == PW'(PIXELS - 1)) begin
          out_tdata <= sum;
          out_tvalid <= 1'b1;
        end
        if (cf == CFW'(CF - 1)) begin
          cf <= '0;
          pix <= (pix == PW'(PIXELS - 1)) ? '0 : pix + 1'b1;
        end else begin
          cf <= cf + 1'b1;
        end
      end
    end
  end
endmodule
