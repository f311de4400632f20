// Max pooling over windows that arrive as a stream (FINN's Pool with Function = MaxPool, fed by
// a depthwise sliding window): per output pixel and channel group cf (CF = C / PE), KK = K_H * K_W
// beats of PE elements of ELEM_W bits (SIGNED: two's complement), in the order (cf, k, pe); one
// beat of the PE maxima goes out after the last k. On 1-bit streams (bipolar or {0,1}) the maximum
// is an OR.
module pool #(
    parameter C = 64,
    parameter PE = 64,
    parameter KK = 4,
    parameter ELEM_W = 1,
    parameter SIGNED = 0
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [PE*ELEM_W-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [PE*ELEM_W-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam KW = $clog2(KK + 1);
  logic [KW-1:0] k;
  logic [PE*ELEM_W-1:0] acc, m;
  logic push;
  assign in_tready = !out_tvalid || out_tready;
  assign push = in_tvalid && in_tready;

  function automatic [ELEM_W-1:0] max2(input [ELEM_W-1:0] a, input [ELEM_W-1:0] b);
    reg [ELEM_W:0] ae, be;
    begin
      ae = {SIGNED != 0 && a[ELEM_W-1], a};
      be = {SIGNED != 0 && b[ELEM_W-1], b};
      max2 = $signed(be) > $signed(ae) ? b : a;
    end
  endfunction

  always_comb
    for (int p = 0; p < PE; p++)
      m[p*ELEM_W +: ELEM_W] = (k == '0) ? in_tdata[p*ELEM_W +: ELEM_W]
                                        : max2(acc[p*ELEM_W +: ELEM_W], in_tdata[p*ELEM_W +: ELEM_W]);

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      k <= '0;
      out_tvalid <= 1'b0;
    end else begin
      if (out_tvalid && out_tready) out_tvalid <= 1'b0;
      if (push) begin
        acc <= m;
        if (k == KW'(KK - 1)) begin
          k <= '0;
          out_tdata <= m;
          out_tvalid <= 1'b1;
        end else begin
          k <= k + 1'b1;
        end
      end
    end
  end
endmodule
