// Sliding-window generator (FINN's ConvolutionInputGenerator) for K_H x K_W windows with stride.
// Input: an IFM_H x IFM_W x C feature map (NHWC), SIMD elements of ELEM_W bits per beat, CF = C /
// SIMD beats per pixel. Output: for each output pixel (oy, ox), its window as K_H * K_W * CF beats
// of SIMD elements, in the order FINN's MVAU expects: (ky, kx, cf) for a standard convolution,
// (cf, ky, kx) when DEPTHWISE (pooling and depthwise convolutions). No padding here: FINN puts a
// padding node in front.
//
// M > 1 (standard order only): each output beat carries M consecutive words of the window
// stream (word j in bits [j * W +: W]), M a divisor of a window row's K_W * CF words, or a
// multiple of them whose rows divide K_H (M = K_H * K_W * CF: the whole window, FINN's
// parallel_window). The beat's words sit at fixed offsets from its first:
// off(j) = (j / RUN) * ROW + j % RUN (RUN = K_W * CF), so M read ports of the buffer (Yosys
// replicates the memory) read them in one cycle.
//
// Input words go to a circular buffer of DEPTH words (a power of two, at least
// (K_H + S_H) * IFM_W * CF) at their index in the frame; the reader emits word
// idx = ((oy * S_H + ky) * IFM_W + ox * S_W + kx) * CF + cf once it has been written, and the
// writer may overwrite words from rows above the current window's first row. Writing runs ahead
// into the next frame while the reader finishes this one, so frames stream back to back.
// idx is kept in a register and stepped with the counters (no multiplier on the read path):
// +1 along a window row (standard order) or +CF along kx (depthwise), a constant jump at each
// new window row or channel group, and the next window's base (wbase: the window's first word;
// ybase = oy * S_H * IFM_W * CF: its row's) at each window's end.
module swg #(
    parameter IFM_H = 4,
    parameter IFM_W = 4,
    parameter C = 2,
    parameter SIMD = 1,
    parameter K_H = 3,
    parameter K_W = 3,
    parameter S_H = 1,
    parameter S_W = 1,
    parameter OFM_H = 2,
    parameter OFM_W = 2,
    parameter ELEM_W = 1,
    parameter DEPTHWISE = 0,
    parameter M = 1,
    parameter DEPTH = 64,
    parameter RAM_STYLE = "auto"
) (
    input  logic clk,
    input  logic rst_n,
    input  logic [SIMD*ELEM_W-1:0] in_tdata,
    input  logic in_tvalid,
    output logic in_tready,
    output logic [M*SIMD*ELEM_W-1:0] out_tdata,
    output logic out_tvalid,
    input  logic out_tready
);
  localparam W = SIMD * ELEM_W;
  localparam CF = C / SIMD;
  localparam FRAME = IFM_H * IFM_W * CF;  // input words per frame
  localparam ROW = IFM_W * CF;
  localparam AW = $clog2(DEPTH);
  localparam CW = $clog2(FRAME + DEPTH) + 2;  // word counts, compared as signed differences
  localparam YW = $clog2(OFM_H + 1);
  localparam XW = $clog2(OFM_W + 1);
  localparam KYW = $clog2(K_H + 1);
  localparam KXW = $clog2(K_W + 1);
  localparam FW = $clog2(CF + 1);
  localparam RUN = K_W * CF;                 // words of one window row
  localparam G = M < RUN ? M : RUN;          // words of a row per beat
  localparam MR = M < RUN ? 1 : M / RUN;     // rows per beat
  localparam RW = $clog2(RUN + 1);
  localparam SPAN = (MR - 1) * ROW + G;      // a beat's last word is idx + SPAN - 1

  logic [CW-1:0] wcnt;    // words written since reset (mod 2**CW)
  logic [CW-1:0] rframe;  // count at which the reader's frame starts
  logic [YW-1:0] oy;
  logic [XW-1:0] ox;
  logic [KYW-1:0] ky;
  logic [KXW-1:0] kx;
  logic [FW-1:0] cf;
  logic [RW-1:0] rp;      // M > 1: the beat's first word's place in its window row
  logic [CW-1:0] idx;     // word index in the frame of the next output
  logic [CW-1:0] wbase;   // the current window's first word (ky = kx = cf = 0)
  logic [CW-1:0] ybase;   // oy * S_H * ROW: the first word of the window's first row
  logic [CW-1:0] low;     // first word the reader still needs
  logic [CW-1:0] avail;   // words of the reader's frame written so far
  logic stall, vb, can_read, fire, win_last, last_word, push;
  logic [M*W-1:0] rdata;

  assign low = rframe + ybase;
  assign avail = wcnt - rframe;
  assign in_tready = $signed(wcnt - low) < $signed(CW'(DEPTH));
  assign push = in_tvalid && in_tready;

  generate
    if (M == 1) begin : g_m1
      assign win_last = (ky == KYW'(K_H - 1)) && (kx == KXW'(K_W - 1)) && (cf == FW'(CF - 1));
    end else begin : g_mn
      assign win_last = (ky == KYW'(K_H - MR)) && (rp == RW'(RUN - G));
    end
  endgenerate
  assign last_word = win_last && (oy == YW'(OFM_H - 1)) && (ox == XW'(OFM_W - 1));
  // the last word of a frame also waits for the whole frame (rows no window reads included)
  assign can_read = avail > idx + CW'(SPAN - 1) && (!last_word || avail >= CW'(FRAME));
  assign stall = vb && !out_tready;
  assign fire = can_read && !stall;

  // buffer memory: one write port, M synchronous read ports (word j of a beat at its offset)
  generate
    if (RAM_STYLE == "block") begin : g_bram
      (* ram_style = "block" *) logic [W-1:0] mem [0:DEPTH-1];
      always_ff @(posedge clk) if (push) mem[AW'(wcnt)] <= in_tdata;
      for (genvar j = 0; j < M; j++) begin : g_rd
        always_ff @(posedge clk)
          if (!stall) rdata[j*W +: W] <= mem[AW'(rframe + idx + CW'((j / RUN) * ROW + j % RUN))];
      end
    end else if (RAM_STYLE == "distributed") begin : g_lutram
      (* ram_style = "distributed" *) logic [W-1:0] mem [0:DEPTH-1];
      always_ff @(posedge clk) if (push) mem[AW'(wcnt)] <= in_tdata;
      for (genvar j = 0; j < M; j++) begin : g_rd
        always_ff @(posedge clk)
          if (!stall) rdata[j*W +: W] <= mem[AW'(rframe + idx + CW'((j / RUN) * ROW + j % RUN))];
      end
    end else begin : g_auto
      logic [W-1:0] mem [0:DEPTH-1];
      always_ff @(posedge clk) if (push) mem[AW'(wcnt)] <= in_tdata;
      for (genvar j = 0; j < M; j++) begin : g_rd
        always_ff @(posedge clk)
          if (!stall) rdata[j*W +: W] <= mem[AW'(rframe + idx + CW'((j / RUN) * ROW + j % RUN))];
      end
    end
  endgenerate

  always_ff @(posedge clk) begin
    if (!rst_n) begin
      wcnt <= '0;
      rframe <= '0;
      oy <= '0; ox <= '0; ky <= '0; kx <= '0; cf <= '0; rp <= '0;
      idx <= '0; wbase <= '0; ybase <= '0;
      vb <= 1'b0;
    end else begin
      if (push) wcnt <= wcnt + 1'b1;
      if (!stall) vb <= can_read;
      if (fire) begin
        // next window element, innermost counter first in the stream order, and its index
        if (DEPTHWISE) begin
          if (kx != KXW'(K_W - 1)) begin
            kx <= kx + 1'b1;
            idx <= idx + CW'(CF);
          end else begin
            kx <= '0;
            if (ky != KYW'(K_H - 1)) begin
              ky <= ky + 1'b1;
              idx <= idx + CW'(ROW - (K_W - 1) * CF);
            end else begin
              ky <= '0;
              cf <= (cf == FW'(CF - 1)) ? '0 : cf + 1'b1;
              idx <= idx + CW'(1 - (K_H - 1) * ROW - (K_W - 1) * CF);
            end
          end
        end else if (M > 1) begin  // G words along a row, MR rows at a time
          if (rp != RW'(RUN - G)) begin
            rp <= rp + RW'(G);
            idx <= idx + CW'(G);
          end else begin
            rp <= '0;
            ky <= (ky == KYW'(K_H - MR)) ? '0 : ky + KYW'(MR);
            idx <= idx + CW'(MR * ROW - RUN + G);
          end
        end else begin
          idx <= idx + 1'b1;
          if (cf != FW'(CF - 1)) cf <= cf + 1'b1;
          else begin
            cf <= '0;
            if (kx != KXW'(K_W - 1)) kx <= kx + 1'b1;
            else begin
              kx <= '0;
              ky <= (ky == KYW'(K_H - 1)) ? '0 : ky + 1'b1;
              idx <= idx + CW'(ROW - K_W * CF + 1);
            end
          end
        end
        if (win_last) begin  // the next window's first word
          if (ox != XW'(OFM_W - 1)) begin
            ox <= ox + 1'b1;
            wbase <= wbase + CW'(S_W * CF);
            idx <= wbase + CW'(S_W * CF);
          end else begin
            ox <= '0;
            if (oy != YW'(OFM_H - 1)) begin
              oy <= oy + 1'b1;
              ybase <= ybase + CW'(S_H * ROW);
              wbase <= ybase + CW'(S_H * ROW);
              idx <= ybase + CW'(S_H * ROW);
            end else begin
              oy <= '0;
              ybase <= '0;
              wbase <= '0;
              idx <= '0;
              rframe <= rframe + CW'(FRAME);
            end
          end
        end
      end
    end
  end
  assign out_tdata = rdata;
  assign out_tvalid = vb;
endmodule
