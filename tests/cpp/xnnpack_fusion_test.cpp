// The residual-add fusion as a rewrite in XNNPACK's subgraph optimiser
// (tools/setup/xnnpack-residual-add.patch, petal_fuse_residual_adds), tested as XNNPACK's own
// test/fusion.cc tests its rewrites: a small subgraph built through the public API, the operators
// that xnn_create_runtime leaves counted, and the output compared with the same subgraph with the
// fusion turned off (bit for bit: same arithmetic) and with a plain double-precision reference.
// Each rule of the rewrite has a case where it must decline; none needs a model file.
#include <gtest/gtest.h>
#include <xnnpack.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr uint32_t kInput = 0, kResidualInput = 1, kOutput = 2, kConvOutput = 3;

struct Case {
  int size = 9;             // input height and width
  int kernel = 1;           // 1 or 3 (padded by 1)
  int channels = 8;         // in and out
  bool conv_relu = false;   // the convolution clamps its own output first
  bool add_relu = true;     // the add's ReLU (a Clamp node xnn_define_binary inserts)
  bool broadcast = false;   // the residual is one pixel, broadcast over the map
  bool conv_output_external = false;  // the convolution's output is also read by the caller
  bool residual_after_conv = false;   // the residual is computed by a node defined after the convolution
  uint32_t conv_flags = 0;
};

struct Graph {
  std::vector<float> input, residual, weights, bias;
};

Graph random_graph(const Case& c) {
  std::mt19937 rng(17 + c.kernel * 3 + c.channels);
  std::normal_distribution<float> n(0.f, 1.f);
  Graph g;
  auto fill = [&](std::vector<float>& v, size_t count, float scale) {
    v.resize(count);
    for (float& x : v) x = n(rng) * scale;
  };
  const size_t px = size_t(c.size) * c.size, ch = size_t(c.channels);
  fill(g.input, px * ch, 1.f);
  fill(g.residual, (c.broadcast ? 1 : px) * ch, 1.f);
  fill(g.weights, ch * c.kernel * c.kernel * ch, 1.f / std::sqrt(float(c.kernel * c.kernel * ch)));
  fill(g.bias, ch, 0.1f);
  return g;
}

// What a runtime computed, and the names of the operators it ran.
struct Outcome {
  xnn_status status = xnn_status_success;
  std::vector<float> output, conv_output;
  std::vector<std::string> operators;
};

size_t count(const Outcome& r, const std::string& part) {
  size_t k = 0;
  for (auto& name : r.operators) k += name.find(part) != std::string::npos;
  return k;
}

std::string listed(const Outcome& r) {
  std::string s;
  for (auto& name : r.operators) s += (s.empty() ? "" : ", ") + name;
  return "operators: " + s;
}

std::vector<std::string> operator_names(xnn_runtime_t rt) {
  size_t n = 0, size = 0;
  xnn_get_runtime_profiling_info(rt, xnn_profile_info_num_operators, sizeof(n), &n, &size);
  xnn_get_runtime_profiling_info(rt, xnn_profile_info_operator_name, 0, nullptr, &size);
  std::vector<char> buf(size);
  xnn_get_runtime_profiling_info(rt, xnn_profile_info_operator_name, buf.size(), buf.data(), &size);
  std::vector<std::string> names;
  for (size_t pos = 0, i = 0; i < n && pos < buf.size(); ++i) {
    names.emplace_back(buf.data() + pos);
    pos += names.back().size() + 1;
  }
  return names;
}

// conv(input) + residual, ReLU'd, as a subgraph; `residual_batch` reshapes the residual input
// alone before setup (the fused operator must refuse it).
Outcome run(const Case& c, const Graph& g, uint32_t extra_conv_flags = 0, size_t residual_batch = 1, bool second_runtime = false) {
  Outcome r;
  xnn_subgraph_t sg = nullptr;
  EXPECT_EQ(xnn_create_subgraph(4, 0, &sg), xnn_status_success);
  const size_t s = size_t(c.size), ch = size_t(c.channels), k = size_t(c.kernel);
  const size_t map[4] = {1, s, s, ch}, one_pixel[4] = {1, 1, 1, ch}, filter[4] = {ch, k, k, ch}, bias[1] = {ch};
  uint32_t in = 0, res_in = 0, w = 0, b = 0, conv_out = 0, out = 0, res = 0;
  xnn_define_tensor_value(sg, xnn_datatype_fp32, 4, map, nullptr, kInput, XNN_VALUE_FLAG_EXTERNAL_INPUT, &in);
  xnn_define_tensor_value(sg, xnn_datatype_fp32, 4, c.broadcast ? one_pixel : map, nullptr, kResidualInput,
                          XNN_VALUE_FLAG_EXTERNAL_INPUT, &res_in);
  xnn_define_tensor_value(sg, xnn_datatype_fp32, 4, map, nullptr, kOutput, XNN_VALUE_FLAG_EXTERNAL_OUTPUT, &out);
  xnn_define_tensor_value(sg, xnn_datatype_fp32, 4, map, nullptr, c.conv_output_external ? kConvOutput : XNN_INVALID_VALUE_ID,
                          c.conv_output_external ? XNN_VALUE_FLAG_EXTERNAL_OUTPUT : 0, &conv_out);
  xnn_define_tensor_value(sg, xnn_datatype_fp32, 4, filter, g.weights.data(), XNN_INVALID_VALUE_ID, 0, &w);
  xnn_define_tensor_value(sg, xnn_datatype_fp32, 1, bias, g.bias.data(), XNN_INVALID_VALUE_ID, 0, &b);
  const uint32_t pad = c.kernel == 3 ? 1 : 0;
  EXPECT_EQ(xnn_define_convolution_2d(sg, pad, pad, pad, pad, k, k, 1, 1, 1, 1, 1, ch, ch, c.conv_relu ? 0.f : -INFINITY,
                                      INFINITY, in, w, b, conv_out, c.conv_flags | extra_conv_flags),
            xnn_status_success);
  res = res_in;
  if (c.residual_after_conv) {  // the residual, copied by a node defined after the convolution
    xnn_define_tensor_value(sg, xnn_datatype_fp32, 4, map, nullptr, XNN_INVALID_VALUE_ID, 0, &res);
    EXPECT_EQ(xnn_define_copy(sg, res_in, res, 0), xnn_status_success);
  }
  const xnn_binary_params relu{0.f, INFINITY};
  EXPECT_EQ(xnn_define_binary(sg, xnn_binary_add, c.add_relu ? &relu : nullptr, conv_out, res, out, 0), xnn_status_success);

  xnn_runtime_t rt = nullptr;
  EXPECT_EQ(xnn_create_runtime_v4(sg, nullptr, nullptr, nullptr, XNN_FLAG_BASIC_PROFILING, &rt), xnn_status_success);
  if (second_runtime && rt) {  // the subgraph, optimised by the first, makes another (as the int8 backbone does)
    xnn_delete_runtime(rt);
    rt = nullptr;
    EXPECT_EQ(xnn_create_runtime_v4(sg, nullptr, nullptr, nullptr, XNN_FLAG_BASIC_PROFILING, &rt), xnn_status_success);
  }
  xnn_delete_subgraph(sg);
  if (!rt) return r;
  if (residual_batch != 1) {
    const size_t dims[4] = {residual_batch, s, s, ch};
    EXPECT_EQ(xnn_reshape_external_value(rt, kResidualInput, 4, dims), xnn_status_success);
  }
  r.output.assign(s * s * ch, NAN);
  r.conv_output.assign(s * s * ch, NAN);
  std::vector<float> residual = g.residual;
  residual.resize(g.residual.size() * residual_batch);
  std::vector<xnn_external_value> ext{{kInput, const_cast<float*>(g.input.data())},
                                      {kResidualInput, residual.data()},
                                      {kOutput, r.output.data()}};
  if (c.conv_output_external) ext.push_back({kConvOutput, r.conv_output.data()});
  r.status = xnn_reshape_runtime(rt);
  if (r.status == xnn_status_success) r.status = xnn_setup_runtime_v2(rt, ext.size(), ext.data());
  if (r.status == xnn_status_success) r.status = xnn_invoke_runtime(rt);
  if (r.status == xnn_status_success) r.operators = operator_names(rt);
  xnn_delete_runtime(rt);
  return r;
}

// relu?(relu?(conv(input)) + residual), in double precision.
std::vector<double> reference(const Case& c, const Graph& g) {
  const int s = c.size, ch = c.channels, k = c.kernel, pad = c.kernel == 3 ? 1 : 0;
  std::vector<double> out(size_t(s) * s * ch);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x)
      for (int o = 0; o < ch; ++o) {
        double acc = g.bias[size_t(o)];
        for (int ky = 0; ky < k; ++ky)
          for (int kx = 0; kx < k; ++kx) {
            const int iy = y + ky - pad, ix = x + kx - pad;
            if (iy < 0 || ix < 0 || iy >= s || ix >= s) continue;
            for (int i = 0; i < ch; ++i)
              acc += double(g.input[(size_t(iy) * s + ix) * ch + i]) * g.weights[((size_t(o) * k + ky) * k + kx) * ch + i];
          }
        if (c.conv_relu) acc = std::max(acc, 0.0);
        acc += g.residual[(c.broadcast ? 0 : size_t(y) * s + x) * ch + o];
        out[(size_t(y) * s + x) * ch + o] = c.add_relu ? std::max(acc, 0.0) : acc;
      }
  return out;
}

// Runs `c` with the fusion on and off: the operators left must show whether the add was fused,
// both must match the reference, and a fused run must match the unfused one to the bit.
void check(const Case& c, bool fuses) {
  const Graph g = random_graph(c);
  const Outcome on = run(c, g), off = run(c, g, XNN_FLAG_PETAL_NO_RESIDUAL_FUSION);
  ASSERT_EQ(on.status, xnn_status_success);
  ASSERT_EQ(off.status, xnn_status_success);
  EXPECT_EQ(count(off, "Binary Elementwise"), 1u) << "unfused, the add runs as its own operator; " << listed(off);
  EXPECT_EQ(count(on, "Binary Elementwise"), fuses ? 0u : 1u) << (fuses ? "the add should have been fused; " : "the add should stay apart; ")
                                               << listed(on);
  // with the add fused, so is its ReLU: the convolution (and a copy, in one case) is all that is left
  if (fuses) EXPECT_EQ(count(on, "Unary Elementwise"), 0u) << listed(on);
  const std::vector<double> ref = reference(c, g);
  for (size_t i = 0; i < ref.size(); ++i) {
    const double tol = 1e-5 * (1 + std::fabs(ref[i]));
    ASSERT_NEAR(on.output[i], ref[i], tol) << "fusion on, element " << i;
    ASSERT_NEAR(off.output[i], ref[i], tol) << "fusion off, element " << i;
  }
  if (fuses) EXPECT_EQ(on.output, off.output) << "a fused add must give the same bits as the add on its own";
}

}  // namespace

class ResidualFusion : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_EQ(xnn_initialize(nullptr), xnn_status_success); }
};

TEST_F(ResidualFusion, FusesTheAddAndItsReluIntoA1x1Convolution) { check(Case{}, true); }

TEST_F(ResidualFusion, FusesAnAddWithoutRelu) {
  Case c;
  c.add_relu = false;
  check(c, true);
}

TEST_F(ResidualFusion, FusesIntoA3x3ConvolutionTooFewChannelsForWinograd) {
  Case c;
  c.kernel = 3;
  check(c, true);
}

TEST_F(ResidualFusion, DeclinesAWinogradConvolution) {
  Case c;
  c.kernel = 3;
  c.channels = 32;  // 3x3, stride 1, padding 1, 32 channels: Winograd (xnnpack-winograd.patch)
  check(c, false);
  const Outcome r = run(c, random_graph(c));
  EXPECT_EQ(count(r, "Winograd"), 1u);
  // and with Winograd off, the direct convolution takes the add
  c.conv_flags = XNN_FLAG_PETAL_NO_WINOGRAD;
  check(c, true);
}

TEST_F(ResidualFusion, DeclinesAConvolutionWithItsOwnRelu) {
  Case c;
  c.conv_relu = true;  // relu(relu(conv) + r) is not relu(conv + r)
  check(c, false);
}

TEST_F(ResidualFusion, DeclinesABroadcastResidual) {
  Case c;
  c.broadcast = true;
  check(c, false);
}

TEST_F(ResidualFusion, DeclinesAConvolutionOutputTheCallerReads) {
  Case c;
  c.conv_output_external = true;
  check(c, false);
}

TEST_F(ResidualFusion, DeclinesAResidualComputedAfterTheConvolution) {
  Case c;
  c.residual_after_conv = true;  // the convolution would run before its residual exists
  check(c, false);
}

TEST_F(ResidualFusion, TheFlagKeepsTheAddApart) {
  Case c;
  c.conv_flags = XNN_FLAG_PETAL_NO_RESIDUAL_FUSION;
  check(c, false);
}

// The fused operator reads the residual as laid out like its output: a residual input reshaped
// alone (batch 2 against an output of batch 1) is refused at setup, not read out of bounds.
TEST_F(ResidualFusion, AResidualReshapedAloneIsRefusedAtSetup) {
  const Case c;
  const Outcome r = run(c, random_graph(c), 0, 2);
  EXPECT_EQ(r.status, xnn_status_invalid_parameter);
}

// Creating a runtime optimises its subgraph in place, and Petal's int8 backbone creates a second
// one from it when the batch grows: the fused graph, with the nodes the fusion removed, must give
// the same runtime and results again (XNNPACK's propagate_rank used to reach an unreachable point
// on a removed node, which UBSan reports).
TEST_F(ResidualFusion, AnOptimisedSubgraphCreatesASecondRuntime) {
  const Case c;
  const Graph g = random_graph(c);
  const Outcome first = run(c, g), second = run(c, g, 0, 1, true);
  ASSERT_EQ(second.status, xnn_status_success);
  EXPECT_EQ(second.operators, first.operators) << listed(second);
  EXPECT_EQ(count(second, "Binary Elementwise"), 0u) << listed(second);
  EXPECT_EQ(second.output, first.output);
}
