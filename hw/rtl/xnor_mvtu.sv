// Binary matrix-vector-threshold unit: XNOR-popcount over SIMD bits, PE rows in parallel.
//
// Computes, for each input vector x of MW bits (bit 1 = +1, bit 0 = -1) and weight matrix W
// (MH x MW, same encoding), the popcounts acc[r] = popcount(~(x ^ W[r])) for r in 0..MH-1, then
// either y[r] = (acc[r] >= T[r]) (ACTIVATION = 1: one threshold per row, 1-bit outputs) or the raw
// acc[r] (ACTIVATION = 0: the last layer). Folding as FINN's MVAU: SF = MW / SIMD input beats of
// SIMD bits, NF = MH / PE output beats of PE results; SF * NF cycles per vector at full flow.
// The input vector is kept in a buffer while the NF row groups are computed; weights sit in a
// memory of SF * NF words of PE * SIMD bits (row r = nf * PE + pe, column c = sf * SIMD + s at
// bit pe * SIMD + s of word nf * SF + sf), loaded from WEIGHT_FILE ($readmemh); thresholds in a
// memory of NF words of PE * ACC_W bits from THRESH_FILE. Streams: AXI-Stream style valid/ready,
// element 0 in the least significant bits.
module xnor_mvtu #(
    parameter int MW = 64,
    parameter int MH = 64,
    parameter int SIMD = 8,
    parameter int PE = 4,
    parameter int ACTIVATION = 1,
    parameter int ACC_W = $clog2(MW + 1),
    parameter string RAM_STYLE = "block",
    parameter string WEIGHT_FILE = "weights.hex",
    parameter string THRESH_FILE = "thresholds.hex",
    localparam int SF = MW / SIMD,
    localparam int NF = MH / PE,
    localparam int OUT_W = ACTIVATION ? PE : PE * ACC_W
) (
    input  logic             clk,
    input  logic             rst_n,
    input  logic [SIMD-1:0]  in_tdata,
    input  logic             in_tvalid,
    output logic             in_tready,
    output logic [OUT_W-1:0] out_tdata,
    output logic             out_tvalid,
    input  logic             out_tready
);
  localparam int SF_W = SF > 1 ? $clog2(SF) : 1;
  localparam int NF_W = NF > 1 ? $clog2(NF) : 1;
  localparam int WADDR_W = SF * NF > 1 ? $clog2(SF * NF) : 1;

  initial begin
    assert (MW % SIMD == 0) else $fatal(1, "SIMD must divide MW");
    assert (MH % PE == 0) else $fatal(1, "PE must divide MH");
  end

  (* ram_style = RAM_STYLE *) logic [PE*SIMD-1:0] wmem [SF*NF];
  logic [PE*ACC_W-1:0] tmem [NF];
  logic [SIMD-1:0] ibuf [SF];
  initial begin
    $readmemh(WEIGHT_FILE, wmem);
    if (ACTIVATION) $readmemh(THRESH_FILE, tmem);
  end

  // ---- stage 0: fold counters; the first row group reads the input stream into the buffer ----
  logic [SF_W-1:0] sf;
  logic [NF_W-1:0] nf;
  logic first;  // nf == 0: the input beat comes from the stream
  assign first = (nf == '0);
  logic stall;
  logic s1_valid;
  logic advance;  // a beat enters stage 1 this cycle
  assign in_tready = first && !stall;
  assign advance = !stall && (!first || in_tvalid);

  logic [SIMD-1:0] x0;
  assign x0 = first ? in_tdata : ibuf[sf];

  // ---- stage 1: registered operands (weight memory read, input beat) ----
  logic [PE*SIMD-1:0] w1;
  logic [SIMD-1:0] x1;
  logic last1, start1;
  logic [NF_W-1:0] nf1;
  always_ff @(posedge clk) begin
    if (advance) begin
      w1 <= wmem[WADDR_W'(nf * SF + sf)];
      x1 <= x0;
      start1 <= (sf == '0);
      last1 <= (sf == SF_W'(SF - 1));
      nf1 <= nf;
      if (first) ibuf[sf] <= in_tdata;
    end
  end

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      sf <= '0;
      nf <= '0;
      s1_valid <= 1'b0;
    end else begin
      if (!stall) s1_valid <= advance;
      if (advance) begin
        if (sf == SF_W'(SF - 1)) begin
          sf <= '0;
          nf <= (nf == NF_W'(NF - 1)) ? '0 : nf + 1'b1;
        end else begin
          sf <= sf + 1'b1;
        end
      end
    end
  end

  // ---- stage 2: popcount accumulation per PE; at the last fold, threshold and emit ----
  logic [ACC_W-1:0] acc [PE];
  logic [OUT_W-1:0] result;
  logic out_full;
  assign stall = out_full && !out_tready;

  function automatic logic [ACC_W-1:0] popcount(input logic [SIMD-1:0] v);
    logic [ACC_W-1:0] n = '0;
    for (int i = 0; i < SIMD; i++) n += ACC_W'(v[i]);
    return n;
  endfunction

  logic [ACC_W-1:0] sum [PE];
  always_comb begin
    for (int p = 0; p < PE; p++)
      sum[p] = (start1 ? '0 : acc[p]) + popcount(~(x1 ^ w1[p*SIMD +: SIMD]));
  end

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      out_full <= 1'b0;
    end else if (!stall) begin
      out_full <= s1_valid && last1;
      if (s1_valid) begin
        for (int p = 0; p < PE; p++) acc[p] <= sum[p];
      end
    end
  end

  generate
    if (ACTIVATION) begin : g_thresholds
      always_ff @(posedge clk) begin
        if (!stall && s1_valid && last1)
          for (int p = 0; p < PE; p++) result[p] <= (sum[p] >= tmem[nf1][p*ACC_W +: ACC_W]);
      end
    end else begin : g_raw
      always_ff @(posedge clk) begin
        if (!stall && s1_valid && last1)
          for (int p = 0; p < PE; p++) result[p*ACC_W +: ACC_W] <= sum[p];
      end
    end
  endgenerate
  assign out_tvalid = out_full;
  assign out_tdata = result;
endmodule
