// Generic Verilator harness for one streaming unit with ports
//   clk, rst_n, in_tdata, in_tvalid, in_tready, out_tdata, out_tvalid, out_tready.
// Usage: sim IN_HEX OUT_HEX N_OUT SEED P_VALID P_READY MAX_CYCLES [IN_INTERVAL [IDLE_LIMIT]]
// IN_HEX holds one input beat per line (hex, most significant digit first); the harness offers
// each beat with probability P_VALID per cycle (keeping it stable until accepted, as AXI-Stream
// requires), asserts out_tready with probability P_READY, and writes every accepted output beat
// to OUT_HEX as "<cycle> <hex>". The last line of stdout is "cycles <n>" (reset release to the
// last output beat). Exit code 2 when MAX_CYCLES pass before N_OUT beats arrive.
// IN_INTERVAL (default 0): input beat i is not offered before cycle i * IN_INTERVAL, which paces
// the input at a given rate. IDLE_LIMIT (default 0, off): exit code 3, with "stalled <cycle>" on
// stdout, when neither port moves a beat for that many cycles although beats are still expected
// (a deadlock: the simulation stops making progress). Final blocks run in both cases.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

using Words = std::vector<uint32_t>;

static Words parse_hex(const std::string& s) {
  Words w;
  int end = static_cast<int>(s.size());
  while (end > 0) {
    int start = end - 8 > 0 ? end - 8 : 0;
    w.push_back(static_cast<uint32_t>(std::stoul(s.substr(start, end - start), nullptr, 16)));
    end = start;
  }
  return w;
}

static std::string to_hex(const Words& w) {
  std::string out;
  char buf[9];
  for (int i = static_cast<int>(w.size()) - 1; i >= 0; --i) {
    std::snprintf(buf, sizeof buf, "%08x", w[i]);
    out += buf;
  }
  return out;
}

template <typename T> static void put(T& port, const Words& w) {
  uint64_t v = w.empty() ? 0 : w[0];
  if (w.size() > 1) v |= static_cast<uint64_t>(w[1]) << 32;
  port = static_cast<T>(v);
}
template <std::size_t N> static void put(VlWide<N>& port, const Words& w) {
  for (std::size_t i = 0; i < N; ++i) port[i] = i < w.size() ? w[i] : 0;
}
template <typename T> static Words get(const T& port) {
  uint64_t v = static_cast<uint64_t>(port);
  return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)};
}
template <std::size_t N> static Words get(const VlWide<N>& port) {
  Words w(N);
  for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
  return w;
}

static uint64_t rng_state;
static double uniform() {  // xorshift64*
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return static_cast<double>((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

int main(int argc, char** argv) {
  if (argc < 8) {
    std::cerr << "usage: sim IN_HEX OUT_HEX N_OUT SEED P_VALID P_READY MAX_CYCLES\n";
    return 1;
  }
  std::vector<Words> beats;
  {
    std::ifstream in(argv[1]);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) beats.push_back(parse_hex(line));
  }
  std::ofstream out(argv[2]);
  const long n_out = std::atol(argv[3]);
  rng_state = std::strtoull(argv[4], nullptr, 10) * 0x9E3779B97F4A7C15ULL + 1;
  const double p_valid = std::atof(argv[5]), p_ready = std::atof(argv[6]);
  const long max_cycles = std::atol(argv[7]);
  const double in_interval = argc > 8 ? std::atof(argv[8]) : 0.0;
  const long idle_limit = argc > 9 ? std::atol(argv[9]) : 0;

  VerilatedContext ctx;
  Vtop top{&ctx};
  top.clk = 0;
  top.rst_n = 0;
  top.in_tvalid = 0;
  top.out_tready = 0;
  for (int i = 0; i < 4; ++i) {
    top.clk = 1; top.eval();
    top.clk = 0; top.eval();
  }
  top.rst_n = 1;
  top.eval();

  std::size_t next = 0;
  bool offering = false;
  long got = 0, cycle = 0, last_out = 0, last_move = 0;
  bool stalled = false;
  while (got < n_out && cycle < max_cycles) {
    if (!offering && next < beats.size() && cycle >= static_cast<double>(next) * in_interval &&
        uniform() < p_valid)
      offering = true;
    top.in_tvalid = offering;
    if (offering) put(top.in_tdata, beats[next]);
    top.out_tready = uniform() < p_ready;
    top.eval();
    const bool fire_in = top.in_tvalid && top.in_tready;
    const bool fire_out = top.out_tvalid && top.out_tready;
    if (fire_out) {
      out << cycle << " " << to_hex(get(top.out_tdata)) << "\n";
      ++got;
      last_out = cycle;
    }
    top.clk = 1; top.eval();
    top.clk = 0; top.eval();
    if (fire_in) { ++next; offering = false; }
    if (fire_in || fire_out) last_move = cycle;
    ++cycle;
    if (idle_limit > 0 && cycle - last_move > idle_limit) { stalled = true; break; }
  }
  top.final();
  if (stalled) std::cout << "stalled " << last_move + 1 << std::endl;
  std::cout << "cycles " << last_out + 1 << std::endl;
  return stalled ? 3 : (got < n_out ? 2 : 0);
}
