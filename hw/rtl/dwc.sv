// Stream data-width converter (gearbox) from IN_W-bit to OUT_W-bit beats, any ratio: the stream
// is one little-endian bit string (element 0 of beat 0 first), so converting between SIMD and PE
// foldings keeps every element in order. Requires the frame's bits to be a multiple of both
// widths, as FINN's converter does. Full rate on the wider side: a beat is accepted in the same
// cycle one leaves (in_tready depends on out_tready; the stitched top puts a FIFO on each side).
module dwc #(
    parameter IN_W = 8,
    parameter OUT_W = 16
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [IN_W-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [OUT_W-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam BUF = IN_W + OUT_W;
  localparam CW = $clog2(BUF + 1);
  logic [BUF-1:0] data;
  logic [CW-1:0] cnt;  // valid bits in data, from bit 0
  logic push, pop;
  logic [CW-1:0] kept;
  logic [BUF-1:0] rest;
  assign out_tvalid = cnt >= CW'(OUT_W);
  assign out_tdata = data[OUT_W-1:0];
  assign pop = out_tvalid && out_tready;
  assign push = in_tvalid && in_tready;
  assign kept = pop ? cnt - CW'(OUT_W) : cnt;
  assign in_tready = kept <= CW'(OUT_W);  // kept + IN_W <= BUF
  assign rest = pop ? data >> OUT_W : data;
  always_ff @(posedge clk) begin
    if (!rst_n) begin
      cnt <= '0;
      data <= '0;
    end else begin
      cnt <= push ? kept + CW'(IN_W) : kept;
      data <= push ? (rest & ~({BUF{1'b1}} << kept)) | (BUF'(in_tdata) << kept) : rest;
    end
  end
endmodule
