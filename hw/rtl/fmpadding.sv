// Feature-map padding (FINN's FMPadding): an IFM_H x IFM_W x C map (NHWC, SIMD elements of ELEM_W
// bits per beat, CF = C / SIMD beats per pixel) goes out as (PAD_T + IFM_H + PAD_B) x
// (PAD_L + IFM_W + PAD_R) with all-zero beats in the border. Zero is the code FINN pads with: 0 for
// integers and {0,1} values, and -1 on bipolar streams (bit 0).
module fmpadding #(
    parameter IFM_H = 4,
    parameter IFM_W = 4,
    parameter C = 1,
    parameter SIMD = 1,
    parameter ELEM_W = 1,
    parameter PAD_T = 1,
    parameter PAD_L = 1,
    parameter PAD_B = 1,
    parameter PAD_R = 1
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [SIMD*ELEM_W-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [SIMD*ELEM_W-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam CF = C / SIMD;
  localparam OH = PAD_T + IFM_H + PAD_B;
  localparam OW = PAD_L + IFM_W + PAD_R;
  localparam YW = $clog2(OH + 1);
  localparam XW = $clog2(OW + 1);
  localparam FW = $clog2(CF + 1);
  logic [YW-1:0] y;
  logic [XW-1:0] x;
  logic [FW-1:0] cf;
  logic in_map, fire;
  assign in_map = y >= YW'(PAD_T) && y < YW'(PAD_T + IFM_H) && x >= XW'(PAD_L)
                  && x < XW'(PAD_L + IFM_W);
  // in_map the map a beat passes through; in the border a zero beat is made
  assign out_tvalid = in_map ? in_tvalid : 1'b1;
  assign out_tdata = in_map ? in_tdata : '0;
  assign in_tready = in_map && out_tready;
  assign fire = out_tvalid && out_tready;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      y <= '0;
      x <= '0;
      cf <= '0;
    end else if (fire) begin
      if (cf != FW'(CF - 1)) cf <= cf + 1'b1;
      else begin
        cf <= '0;
        if (x != XW'(OW - 1)) x <= x + 1'b1;
        else begin
          x <= '0;
          y <= (y == YW'(OH - 1)) ? '0 : y + 1'b1;
        end
      end
    end
  end
endmodule
