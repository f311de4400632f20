// Matrix-vector-threshold unit with binary weights, PE rows in parallel, SIMD columns per cycle.
//
// Weights W (MH x MW) are bits, 1 = +1 and 0 = -1. Two datapaths:
//   XNOR = 1: inputs are bits in the same encoding; acc[r] = popcount(~(x ^ W[r])) (unsigned).
//   XNOR = 0: inputs are IN_W-bit integers (IN_SIGNED: two's complement), e.g. CNV's 8-bit first
//             layer or {0,1} activations (IN_W = 1); acc[r] = sum_c (W[r][c] ? x[c] : -x[c])
//             (two's complement, ACC_W bits). With W_W > 1 the weights are W_W-bit two's
//             complement integers instead (8-bit stems, 1x1 shortcut convs, FC heads):
//             acc[r] = sum_c W[r][c] * x[c], one multiplier per lane (DSP48 where the synthesis
//             tool maps it).
// Then y[r] = (acc[r] >= T[r]) (ACTIVATION = 1: one threshold per row, 1-bit outputs; signed
// compare when XNOR = 0) or the raw acc[r] (ACTIVATION = 0: the last layer). Folding as FINN's
// MVAU: SF = MW / SIMD input beats of SIMD elements, NF = MH / PE output beats of PE results;
// SF * NF cycles per vector at full flow. The input vector is kept in a buffer while the NF row
// groups are computed; weights sit in a memory of SF * NF words of PE * SIMD bits (row
// r = nf * PE + pe, column c = sf * SIMD + s at bit pe * SIMD + s of word nf * SF + sf), loaded
// from WEIGHT_FILE ($readmemh). Each row's sum starts at -T, so acc >= T is the sign bit of the
// sum (no comparator). THRESH_FILE holds the -T words of the row groups (PE * (ACC_W + 1) bits
// each; hw.model.mvtu_threshold_memory lays it out; on the integer datapath with bipolar weights
// -(T - Z) instead, Z the row's -1 weights: see FOLDZ below) in one of two forms:
//   SLICED = 0: NF words, read whole at each group's first beat. With NF <= 4 the ROM's few
//               address bits fold into the accumulator's adder LUTs.
//   SLICED = 1: each word in SF slices of TB = ceil(PE * (ACC_W + 1) / SF) bits, one read per
//               beat at the weight address into a shift register during the previous group
//               (SF * NF words of TB bits): a deep, narrow LUT ROM uses every LUT entry, where
//               NF deep words would leave most empty. After reset the unit first reads group 0's
//               slices (SF - 1 cycles, accepting no input). Needs SF > 1.
// PIPE = 1 registers the dot products before the accumulator (one more cycle of latency, the
// same rate): the popcount tree of a wide SIMD and the accumulator's adder become two paths, for
// the clocks of the UltraScale+ boards (hw.timing estimates both). PIPE = 2 also registers the
// operands read from the memories (a block RAM's output register, whose clock-to-out without it
// is 2.5 ns on a 7-series -1) before the dot products: one more cycle, the same rate. PIPE = 3
// (XNOR only) also registers each popcount chunk's count between the chunks and their adder
// tree, for the widest popcounts at 200 MHz: one more cycle, the same rate.
// The input buffer (SF words of SIMD * IN_W bits, read asynchronously into the operand register)
// is LUT RAM up to 256 words (a block RAM read has no place in that path); deeper, the tool picks.
// RAM_STYLE ("block" or "distributed") selects the weight memory's implementation
// (block RAM, or a ROM in LUTs). Streams: AXI-Stream style valid/ready, element 0 in the least
// significant bits.
module mvtu #(
    parameter MW = 64,
    parameter MH = 64,
    parameter SIMD = 8,
    parameter PE = 4,
    parameter XNOR = 1,
    parameter IN_W = 1,
    parameter IN_SIGNED = 0,
    parameter W_W = 1,
    parameter ACTIVATION = 1,
    parameter ACC_W = $clog2(MW + 2),
    parameter RAM_STYLE = "block",
    parameter SLICED = 0,
    parameter PIPE = 0,
    parameter WEIGHT_FILE = "weights.hex",
    parameter THRESH_FILE = "thresholds.hex"
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [SIMD*IN_W-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [(ACTIVATION ? PE : PE * ACC_W)-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  // Yosys 0.23 and Verilator both accept this subset: untyped parameters, no header localparams.
  localparam SF = MW / SIMD;
  localparam NF = MH / PE;
  localparam OUT_W = ACTIVATION ? PE : PE * ACC_W;
  localparam SF_W = SF > 1 ? $clog2(SF) : 1;
  localparam NF_W = NF > 1 ? $clog2(NF) : 1;
  localparam WADDR_W = SF * NF > 1 ? $clog2(SF * NF) : 1;

  localparam AW = ACTIVATION ? ACC_W + 1 : ACC_W;  // sums start at -T: one more (sign) bit
  localparam SLICE = ACTIVATION && SLICED && SF > 1;
  localparam TB = SLICE ? (PE * AW + SF - 1) / SF : PE * AW;  // threshold bits read per beat
  localparam PRIME = SLICE;  // after reset, read group 0's first SF - 1 slices
  logic [SIMD*IN_W-1:0] x0;  // the beat's input: the stream at the first row group, else ibuf
  logic [SIMD*IN_W-1:0] ibuf_rd;
  logic ibuf_we;
  logic [SF_W-1:0] ibuf_a;
  generate
    if (SF <= 256) begin : g_ibuf_lutram
      (* ram_style = "distributed" *) logic [SIMD*IN_W-1:0] ibuf [0:SF-1];
      assign ibuf_rd = ibuf[ibuf_a];
      always_ff @(posedge clk) if (ibuf_we) ibuf[ibuf_a] <= in_tdata;
    end else begin : g_ibuf
      logic [SIMD*IN_W-1:0] ibuf [0:SF-1];
      assign ibuf_rd = ibuf[ibuf_a];
      always_ff @(posedge clk) if (ibuf_we) ibuf[ibuf_a] <= in_tdata;
    end
  endgenerate

  // ---- stage 0: fold counters; the first row group reads the input stream into the buffer ----
  logic [SF_W-1:0] sf;
  logic [NF_W-1:0] nf;
  logic primed;  // group 0's thresholds are in the shift register (the priming beats are done)
  logic first;  // nf == 0: the input beat comes from the stream
  assign first = (nf == '0) && (NF > 1 || primed);
  // go: the pipeline moves (the output register is free or being read), written as an OR: as
  // !(out_full && !out_tready), with the popcount in submodules, Yosys 0.23 gave every register
  // it enables an inverter LUT of its own (2,796 in a 64 x 36 unit)
  logic go;
  logic s1_valid;
  logic advance;  // a beat enters stage 1 this cycle
  assign in_tready = first && go;
  assign advance = go && (!first || in_tvalid);

  assign ibuf_a = sf;
  assign ibuf_we = advance && first;
  assign x0 = first ? in_tdata : ibuf_rd;

  // ---- stage 1: registered operands (weight memory read, input beat) ----
  logic [PE*SIMD*W_W-1:0] w1;
  // waddr = nf * SF + sf: the counters side by side when SF is a power of two, else counted
  // (a multiplier would cost a DSP)
  localparam SF_POW2 = (SF & (SF - 1)) == 0 && SF > 1;
  logic [WADDR_W-1:0] waddr, waddr_q;
  generate
    if (SF_POW2) begin : g_waddr_cat
      if (NF > 1) begin : g_nf
        assign waddr = {nf, sf};
      end else begin : g_sf
        assign waddr = sf;
      end
    end else begin : g_waddr_count
      assign waddr = waddr_q;
    end
  endgenerate
  generate  // synchronous-read weight memory, with the implementation the node asks for
    if (RAM_STYLE == "distributed") begin : g_lutram
`ifdef YOSYS  // Yosys 0.23 has no LUT-RAM ROM mapping for xc7: a ROM in LUTs is the same thing
      (* rom_style = "logic" *) logic [PE*SIMD*W_W-1:0] wmem [0:SF*NF-1];
`else
      (* rom_style = "distributed" *) logic [PE*SIMD*W_W-1:0] wmem [0:SF*NF-1];
`endif
      logic [PE*SIMD*W_W-1:0] wread;  // LUT RAM reads asynchronously; the register follows
      initial $readmemh(WEIGHT_FILE, wmem);
      assign wread = wmem[waddr];
      always_ff @(posedge clk) if (advance) w1 <= wread;
    end else begin : g_bram
      (* ram_style = "block", rom_style = "block" *) logic [PE*SIMD*W_W-1:0] wmem [0:SF*NF-1];
      initial $readmemh(WEIGHT_FILE, wmem);
      always_ff @(posedge clk) if (advance) w1 <= wmem[waddr];
    end
  endgenerate
  logic [SIMD*IN_W-1:0] x1;
  logic last1, start1;
  always_ff @(posedge clk) begin
    if (advance) begin
      x1 <= x0;
      start1 <= (sf == '0);
      last1 <= (sf == SF_W'(SF - 1));
    end
  end

  // tsh: the -T word of the group whose first beat (start1) is in stage 1. SLICED: one slice per
  // beat of the next group's word into a shift register; else the group's word, read whole
  logic [(SLICE ? SF : 1)*TB-1:0] tsh;
  generate
    if (SLICE) begin : g_tslices
`ifdef YOSYS
      (* rom_style = "logic" *) logic [TB-1:0] tmem [0:SF*NF-1];
`else
      (* rom_style = "distributed" *) logic [TB-1:0] tmem [0:SF*NF-1];
`endif
      initial $readmemh(THRESH_FILE, tmem);
      always_ff @(posedge clk) if (advance) tsh <= {tmem[waddr], tsh[SF*TB-1:TB]};
    end else if (ACTIVATION) begin : g_twords
      logic [TB-1:0] tmem [0:NF-1];
      logic [NF_W-1:0] nf1;  // the row group of the beat in stage 1
      initial $readmemh(THRESH_FILE, tmem);
      always_ff @(posedge clk) if (advance) nf1 <= nf;
      assign tsh = tmem[nf1];
    end else begin : g_no_tmem
      assign tsh = '0;
    end
  endgenerate

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      // priming: start at beat 1 of the last group, whose beats carry group 0's first slices
      sf <= PRIME ? SF_W'(1) : '0;
      nf <= PRIME ? NF_W'(NF - 1) : '0;
      waddr_q <= PRIME ? WADDR_W'((NF - 1) * SF + 1) : '0;
      primed <= !PRIME;
      s1_valid <= 1'b0;
    end else begin
      if (go) s1_valid <= advance && primed;
      if (advance && sf == SF_W'(SF - 1)) primed <= 1'b1;
      if (advance) begin
        waddr_q <= (waddr_q == WADDR_W'(SF * NF - 1)) ? '0 : waddr_q + 1'b1;
        if (sf == SF_W'(SF - 1)) begin
          sf <= '0;
          nf <= (nf == NF_W'(NF - 1)) ? '0 : nf + 1'b1;
        end else begin
          sf <= sf + 1'b1;
        end
      end
    end
  end

  // ---- stage 2: accumulation per PE; at the last fold, threshold and emit ----
  logic [AW-1:0] acc [PE];
  logic [OUT_W-1:0] result;
  logic out_full;
  assign go = !out_full || out_tready;

  // The integer dot product with bipolar weights (W_W = 1) adds, per lane, x or its complement
  // ~x = -x - 1 (one adder per lane, the choice folded into its LUTs; negating would take a
  // second adder): sum_s (w[s] ? x[s] : ~x[s]) = sum_s (w[s] ? x[s] : -x[s]) - Z, Z the beat's
  // -1 weights. With thresholds (FOLDZ) every row's Z over all its beats is a constant that the
  // threshold memory takes (it holds -(T - Z_r), hw.model.mvtu_int_thresholds): one adder per
  // lane. Raw accumulators get Z back per beat as carry-ins. DW bits hold the beat's sum
  // (|sum| <= SIMD * 2^IN_W <= 2^ACC_W).
  localparam FOLDZ = !XNOR && W_W == 1 && ACTIVATION;
  localparam DW = FOLDZ ? AW : ACC_W;
  // sum_s (w[s] ? x[s] : ~x[s]) (+ Z unless FOLDZ) (W_W = 1) or sum_s w[s] * x[s], DW-bit two's
  // complement
  function automatic [DW-1:0] dot(input [SIMD*IN_W-1:0] xv, input [SIMD*W_W-1:0] wv);
    integer i;
    reg [DW+IN_W-1:0] e;
    reg [ACC_W+W_W-1:0] f;
    begin
      dot = 0;
      for (i = 0; i < SIMD; i = i + 1) begin
        e = {{DW{IN_SIGNED != 0 && xv[i*IN_W+IN_W-1]}}, xv[i*IN_W +: IN_W]};
        if (W_W == 1) begin
          if (FOLDZ) dot = dot + (e[DW-1:0] ^ {DW{!wv[i]}});
          else dot = dot + (e[DW-1:0] ^ {DW{!wv[i]}}) + DW'(!wv[i]);
        end else begin
          f = {{ACC_W{wv[i*W_W+W_W-1]}}, wv[i*W_W +: W_W]};
          dot = dot + DW'($signed(e[ACC_W-1:0]) * $signed(f[ACC_W-1:0]));
        end
      end
    end
  endfunction

  // PIPE = 2: the operands read from the memories, and what goes with them, one register later
  logic [SIMD*IN_W-1:0] xq;
  logic [PE*SIMD*W_W-1:0] wq;
  logic [PE*AW-1:0] tshq;
  logic vq, startq, lastq;
  generate
    if (PIPE >= 2) begin : g_opreg
      always_ff @(posedge clk) begin
        if (!rst_n) vq <= 1'b0;
        else if (go) vq <= s1_valid;
        if (go) begin
          xq <= x1;
          wq <= w1;
          tshq <= ACTIVATION ? tsh[PE*AW-1:0] : '0;
          startq <= start1;
          lastq <= last1;
        end
      end
    end else begin : g_noopreg
      always_comb begin
        xq = x1;
        wq = w1;
        tshq = ACTIVATION ? tsh[PE*AW-1:0] : '0;
        vq = s1_valid;
        startq = start1;
        lastq = last1;
      end
    end
  endgenerate

  // XNOR popcount per PE over chunks of at most CHUNK lanes (mvtu_popcount, a module of its own
  // so that synthesis keeps each chunk's adder tree apart: one tree over 128 lanes took Yosys
  // 25 % more LUTs than six chunks of 24 and their sum), a balanced adder tree over the chunks'
  // counts (heap order as below), each chunk's left-over lane as the carry-in of one of its
  // NC - 1 adders or of the accumulator's adder.
  localparam CHUNK = 24;  // hw.model.POPCOUNT_CHUNK
  localparam NC = (SIMD + CHUNK - 1) / CHUNK;
  logic [ACC_W-1:0] pc [PE];
  logic cin_acc [PE];
  generate
    if (XNOR) begin : g_pop
      for (genvar p = 0; p < PE; p++) begin : g_pe
        logic [ACC_W-1:0] u [2*NC-1];
        logic [NC-1:0] co;
        for (genvar k = 0; k < NC; k++) begin : g_chunk
          localparam L = SIMD - k * CHUNK < CHUNK ? SIMD - k * CHUNK : CHUNK;
          localparam CW = $clog2(L + 1);
          logic [CW-1:0] cs, csq;
          logic cc, ccq;
          mvtu_popcount #(.L(L), .W(CW)) i_pop (
              .x(xq[k*CHUNK +: L]), .w(wq[p*SIMD + k*CHUNK +: L]), .count(cs), .carry(cc));
          if (PIPE >= 3) begin : g_creg  // the chunk's count registered (PIPE = 3)
            always_ff @(posedge clk) if (go) {csq, ccq} <= {cs, cc};
          end else begin : g_nocreg
            assign {csq, ccq} = {cs, cc};
          end
          assign u[NC-1+k] = ACC_W'(csq);
          assign co[k] = ccq;
        end
        for (genvar j = 0; j < NC - 1; j++) begin : g_node
          assign u[j] = u[2*j+1] + u[2*j+2] + ACC_W'(co[j]);
        end
        assign pc[p] = u[0];
        assign cin_acc[p] = co[NC-1];
      end
    end else begin : g_nopop
      for (genvar p = 0; p < PE; p++) begin : g_pe
        assign pc[p] = '0;
        assign cin_acc[p] = 1'b0;
      end
    end
  endgenerate

  // PIPE = 3 (XNOR): what goes with the chunk counts, one register later
  logic [PE*AW-1:0] tshc;
  logic vc, startc, lastc;
  generate
    if (PIPE >= 3 && XNOR) begin : g_chunkreg
      always_ff @(posedge clk) begin
        if (!rst_n) vc <= 1'b0;
        else if (go) vc <= vq;
        if (go) begin
          tshc <= tshq;
          startc <= startq;
          lastc <= lastq;
        end
      end
    end else begin : g_nochunkreg
      always_comb begin
        tshc = tshq;
        vc = vq;
        startc = startq;
        lastc = lastq;
      end
    end
  endgenerate

  // the beat's dot products (popcounts), and with PIPE = 1 a register stage after them that
  // moves with the rest of the pipeline (when go): the popcount tree and the accumulator's adder
  // become two paths, one cycle more latency, the same rate
  logic [DW-1:0] draw [PE];
  always_comb
    for (int p = 0; p < PE; p++) draw[p] = XNOR ? pc[p] : dot(xq, wq[p*SIMD*W_W +: SIMD*W_W]);
  logic [DW-1:0] d [PE];
  logic cin_d [PE];
  logic [PE*AW-1:0] tsh_d;
  logic v2, start2, last2;
  generate
    if (PIPE) begin : g_pipe
      always_ff @(posedge clk) begin
        if (!rst_n) v2 <= 1'b0;
        else if (go) v2 <= vc;
        if (go) begin
          for (int p = 0; p < PE; p++) begin
            d[p] <= draw[p];
            cin_d[p] <= cin_acc[p];
          end
          tsh_d <= tshc;
          start2 <= startc;
          last2 <= lastc;
        end
      end
    end else begin : g_nopipe
      always_comb begin
        for (int p = 0; p < PE; p++) begin
          d[p] = draw[p];
          cin_d[p] = cin_acc[p];
        end
        tsh_d = tshc;
        v2 = vc;
        start2 = startc;
        last2 = lastc;
      end
    end
  endgenerate

  // a row's sum starts at -T (thresholds) or 0 (raw): acc >= T becomes sum >= 0, the sign bit
  logic [AW-1:0] sum [PE];
  always_comb begin
    for (int p = 0; p < PE; p++) begin
      sum[p] = (start2 ? (ACTIVATION ? tsh_d[p*AW +: AW] : '0) : acc[p])
               + ((XNOR || DW == AW) ? AW'(d[p]) : AW'($signed(d[p]))) + AW'(cin_d[p]);
    end
  end

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      out_full <= 1'b0;
    end else if (go) begin
      out_full <= v2 && last2;
      if (v2) begin
        for (int p = 0; p < PE; p++) acc[p] <= sum[p];
      end
    end
  end

  generate
    if (ACTIVATION) begin : g_thresholds
      always_ff @(posedge clk) begin
        if (go && v2 && last2)
          for (int p = 0; p < PE; p++)
            result[p] <= !sum[p][AW-1];
      end
    end else begin : g_raw
      always_ff @(posedge clk) begin
        if (go && v2 && last2)
          for (int p = 0; p < PE; p++) result[p*ACC_W +: ACC_W] <= sum[p][ACC_W-1:0];
      end
    end
  endgenerate
  assign out_tvalid = out_full;
  assign out_tdata = result;
endmodule


// XNOR popcount of L lanes: count + carry = #{i : x[i] == w[i]}. G = ceil(L / 4) full adders on
// groups of three lanes (each output bit one 6-input function of three input/weight pairs, the
// XNOR folded in), a balanced adder tree over their 2-bit counts (heap order: node i sums nodes
// 2i+1 and 2i+2; the leaves come last), and the remaining lanes (at most G) as the carry-ins of
// the tree's G - 1 adders and, the last one, as ``carry`` (the caller's adder takes it: carry-ins
// cost nothing on a carry chain).
module mvtu_popcount #(
    parameter L = 24,
    parameter W = 5
) (
    input  logic [L-1:0] x,
    input  logic [L-1:0] w,
    output logic [W-1:0] count,
    output logic carry
);
  localparam G = (L + 3) / 4;
  localparam CIN = L > 3 * G ? L - 3 * G : 0;  // lanes that enter as carry-ins
  logic [L-1:0] match;
  logic [4*G-1:0] m;  // matches, zero lanes of padding (they never match)
  assign match = ~(x ^ w);
  assign m = (4*G)'(match);  // zero-extended (a cast of ~(x ^ w) would widen x and w first)
  logic [W-1:0] t [2*G-1];
  logic [G-1:0] ci;  // ci[i]: carry-in of tree node i; ci[G-1]: the caller's
  for (genvar i = 0; i < G; i++) begin : g_ci
    assign ci[i] = (i < CIN) ? m[3*G+i] : 1'b0;
  end
  for (genvar g = 0; g < G; g++) begin : g_leaf
    assign t[G-1+g] = W'({(m[3*g] & m[3*g+1]) | (m[3*g+2] & (m[3*g] ^ m[3*g+1])),
                          m[3*g] ^ m[3*g+1] ^ m[3*g+2]});
  end
  for (genvar i = 0; i < G - 1; i++) begin : g_node
    assign t[i] = t[2*i+1] + t[2*i+2] + W'(ci[i]);
  end
  assign count = t[0];
  assign carry = ci[G-1];
endmodule
