// The Winograd 3x3 convolution against torch::conv2d computed in double precision: the forward pass and both
// gradients, on map sizes with odd edges, several blocks of tiles and channel counts that take every kernel
// shape, at every vector width this CPU has (and the widths against each other, to the bit); where it applies and
// where conv_forward falls back; the plan and the policy; and inside a ResNet.

#include <cstdlib>

#include "models/resnet.h"
#include "ops/torch_compat.h"
#include "ops/winograd.h"
#include "test_util.h"

namespace reslab {
namespace {

class WinogradTest : public testing::SeededTest {
 protected:
  void SetUp() override {
    testing::SeededTest::SetUp();
    set_conv_policy(ConvPolicy::kWinograd2x2);
    set_conv_isa(std::nullopt);
    if (!isa_available(ConvIsa::kAvx2)) GTEST_SKIP() << "this CPU has no AVX2 and FMA";
  }
  void TearDown() override {
    set_conv_policy(ConvPolicy::kAuto);
    set_conv_isa(std::nullopt);
  }
};

torch::Tensor channels_last(const torch::Tensor& t) { return t.contiguous(torch::MemoryFormat::ChannelsLast); }

// Largest difference relative to the reference's largest magnitude.
double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

struct Case {
  int64_t n, c, k, h, w;
};

// The widths this CPU runs the kernels at.
std::vector<ConvIsa> available_isas() {
  std::vector<ConvIsa> out;
  for (ConvIsa isa : {ConvIsa::kAvx2, ConvIsa::kAvx512}) {
    if (isa_available(isa)) out.push_back(isa);
  }
  return out;
}

// 7x7, 5x6 and 10x9: edge tiles partly outside the map; 28x28 at batch 5: hundreds of tiles, many blocks and a
// ragged last one; 24 and 8 output channels: the one-register kernels; 64: the widest it takes. AVX-512 takes the
// multiples of 16 among them.
void expect_matches_conv2d(ConvAlgorithm algorithm, ConvIsa isa, double tolerance) {
  int64_t taken = 0;
  for (const Case& s : {Case{3, 16, 16, 7, 7}, Case{2, 8, 24, 5, 6}, Case{5, 16, 32, 28, 28}, Case{2, 64, 64, 8, 8},
                        Case{4, 32, 8, 1, 3}, Case{2, 16, 16, 10, 9}, Case{2, 16, 48, 6, 7}}) {
    SCOPED_TRACE(::testing::Message() << to_string(ConvKernel{algorithm, isa}) << " n " << s.n << " c " << s.c << " k "
                                      << s.k << " " << s.h << "x" << s.w);
    const auto x = channels_last(torch::randn({s.n, s.c, s.h, s.w})).requires_grad_();
    const auto w = (torch::randn({s.k, s.c, 3, 3}) * 0.2).requires_grad_();
    const bool multiple =
        s.c % (isa == ConvIsa::kAvx512 ? 16 : 8) == 0 && s.k % (isa == ConvIsa::kAvx512 ? 16 : 8) == 0;
    ASSERT_EQ(winograd_applies(x, w, isa), multiple);
    if (!multiple) continue;
    ++taken;
    const auto y = winograd_conv3x3(x, w, algorithm, isa);
    EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{s.n, s.k, s.h, s.w}));
    const auto grad = torch::randn_like(y);
    const auto got = torch::autograd::grad({y}, {x, w}, {grad});

    const auto xd = x.detach().to(torch::kDouble).requires_grad_();
    const auto wd = w.detach().to(torch::kDouble).requires_grad_();
    const auto yd = torch::conv2d(xd, wd, {}, 1, 1);
    const auto want = torch::autograd::grad({yd}, {xd, wd}, {grad.to(torch::kDouble)});
    EXPECT_LT(relative_error(y, yd), tolerance);
    EXPECT_LT(relative_error(got[0], want[0]), tolerance);
    EXPECT_LT(relative_error(got[1], want[1]), tolerance);
  }
  EXPECT_GE(taken, 4);
}

TEST_F(WinogradTest, ForwardAndGradientsMatchConv2dInDoublePrecision) {
  for (ConvIsa isa : available_isas()) {
    expect_matches_conv2d(ConvAlgorithm::kWinograd2x2, isa, 1e-5);
    // F(4x4, 3x3) rounds more: its transforms multiply by up to 8 and divide by 24.
    expect_matches_conv2d(ConvAlgorithm::kWinograd4x4, isa, 1e-4);
    expect_matches_conv2d(ConvAlgorithm::kWinogradMixed, isa, 1e-4);
  }
}

TEST_F(WinogradTest, EveryWidthComputesTheSameFloats) {
  // Each lane is one channel and every sum runs in the same order, so AVX-512 gives AVX2's bits: a plan's width
  // is a matter of speed, and a run resumed on a CPU without AVX-512 computes as it did. Where this CPU has no
  // AVX-512, the check is that the kernels say so and take nothing at that width.
  const auto x = channels_last(torch::randn({3, 32, 13, 11})).requires_grad_();
  const auto w = (torch::randn({16, 32, 3, 3}) * 0.2).requires_grad_();
  if (!isa_available(ConvIsa::kAvx512)) {
    EXPECT_FALSE(winograd_applies(x, w, ConvIsa::kAvx512));
    testing::expect_error<std::invalid_argument>([] { set_conv_isa(ConvIsa::kAvx512); }, {"no avx512"});
    return;
  }
  for (ConvAlgorithm a : {ConvAlgorithm::kWinograd2x2, ConvAlgorithm::kWinograd4x4, ConvAlgorithm::kWinogradMixed}) {
    SCOPED_TRACE(to_string(a));
    const auto y2 = winograd_conv3x3(x, w, a, ConvIsa::kAvx2);
    const auto y5 = winograd_conv3x3(x, w, a, ConvIsa::kAvx512);
    EXPECT_TRUE(torch::equal(y2, y5));
    const auto grad = torch::randn_like(y2);
    const auto g2 = torch::autograd::grad({y2}, {x, w}, {grad});
    const auto g5 = torch::autograd::grad({y5}, {x, w}, {grad});
    EXPECT_TRUE(torch::equal(g2[0], g5[0]));
    EXPECT_TRUE(torch::equal(g2[1], g5[1]));
  }
}

TEST_F(WinogradTest, BackwardAloneGivesWhatAutogradGives) {
  const auto x = channels_last(torch::randn({2, 16, 9, 9})).requires_grad_();
  const auto w = (torch::randn({32, 16, 3, 3}) * 0.2).requires_grad_();
  const auto y = winograd_conv3x3(x, w);
  const auto grad = torch::randn_like(y);
  const auto via_autograd = torch::autograd::grad({y}, {x, w}, {grad});
  const auto [grad_input, grad_weight] = winograd_conv3x3_backward(grad, x.detach(), w.detach());
  EXPECT_TRUE(torch::equal(grad_input, via_autograd[0]));
  EXPECT_TRUE(torch::equal(grad_weight, via_autograd[1]));
  // Only the input, or only the weight, needing a gradient.
  EXPECT_TRUE(torch::equal(torch::autograd::grad({winograd_conv3x3(x, w.detach())}, {x}, {grad})[0], grad_input));
  EXPECT_TRUE(torch::equal(torch::autograd::grad({winograd_conv3x3(x.detach(), w)}, {w}, {grad})[0], grad_weight));
}

TEST_F(WinogradTest, TheWeightGradientDoesNotDependOnTheRun) {
  // Partial sums are added in a fixed order: the same inputs give the same bits, run after run.
  const auto x = channels_last(torch::randn({8, 32, 14, 14}));
  const auto w = torch::randn({32, 32, 3, 3}) * 0.1;
  const auto grad = channels_last(torch::randn({8, 32, 14, 14}));
  const auto first = winograd_conv3x3_backward(grad, x, w).second;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(winograd_conv3x3_backward(grad, x, w).second, first));
}

TEST_F(WinogradTest, TakesOnlyWhatItComputes) {
  const auto x = channels_last(torch::randn({2, 16, 8, 8}));
  const auto w = torch::randn({16, 16, 3, 3});
  EXPECT_TRUE(winograd_applies(x, w));
  EXPECT_FALSE(winograd_applies(x.contiguous(), w));                           // NCHW
  EXPECT_FALSE(winograd_applies(x.to(torch::kDouble), w.to(torch::kDouble)));  // double
  EXPECT_FALSE(winograd_applies(x, torch::randn({16, 16, 5, 5})));             // 5x5
  EXPECT_FALSE(winograd_applies(channels_last(torch::randn({2, 12, 8, 8})), torch::randn({16, 12, 3, 3})));
  EXPECT_FALSE(winograd_applies(x, torch::randn({12, 16, 3, 3})));  // 12 out
  EXPECT_FALSE(winograd_applies(channels_last(torch::randn({2, 128, 4, 4})), torch::randn({128, 128, 3, 3})));
  testing::expect_error<c10::Error>([&] { winograd_conv3x3(x.contiguous(), w); },
                                    {"winograd_conv3x3", "[2, 16, 8, 8]"});
  testing::expect_error<c10::Error>([&] { winograd_conv3x3(x, w, ConvAlgorithm::kDirect); }, {"direct"});
  testing::expect_error<std::invalid_argument>([] { parse_conv_algorithm("winograd3x3"); },
                                               {"winograd3x3", "direct, winograd2x2, winograd4x4 or winograd-mixed"});
  testing::expect_error<std::invalid_argument>([] { parse_conv_kernel("winograd2x2-sse"); }, {"sse", "avx2 or avx512"});
  testing::expect_error<std::invalid_argument>([] { parse_conv_shape("16-16-32"); }, {"16-16-32", "IN-OUT-HxW"});
  testing::expect_error<std::invalid_argument>([] { parse_conv_shape("16-16-32x32 "); }, {"IN-OUT-HxW"});
  EXPECT_EQ(parse_conv_shape("16-32-8x9"), (ConvShape{16, 32, 8, 9}));
  EXPECT_EQ(parse_conv_kernel("winograd4x4-avx2"), (ConvKernel{ConvAlgorithm::kWinograd4x4, ConvIsa::kAvx2}));
  EXPECT_EQ(parse_conv_kernel("winograd-mixed-avx512"), (ConvKernel{ConvAlgorithm::kWinogradMixed, ConvIsa::kAvx512}));
  EXPECT_EQ(to_string(ConvKernel{ConvAlgorithm::kWinogradMixed, ConvIsa::kAvx2}), "winograd-mixed-avx2");
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(16, 16, 3).padding(1).bias(false));
  EXPECT_TRUE(winograd_takes(*conv, x));
  // Under CPU autocast the convolution is LibTorch's, in bfloat16: the Winograd kernels compute float32 only.
  compat::set_autocast_enabled(at::kCPU, true);
  const bool under_autocast = winograd_takes(*conv, x);
  compat::set_autocast_enabled(at::kCPU, false);
  EXPECT_FALSE(under_autocast);
  EXPECT_TRUE(winograd_takes(*conv, x));
  set_conv_policy(ConvPolicy::kDirect);
  EXPECT_FALSE(winograd_takes(*conv, x));
  EXPECT_EQ(convolution_policy(), "direct");
}

TEST_F(WinogradTest, ThePlanDecidesEachShapeAndThePolicyTheRest) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(16, 16, 3).padding(1).bias(false));
  const auto small = channels_last(torch::randn({2, 16, 8, 8}));
  const auto large = channels_last(torch::randn({2, 16, 12, 12}));
  set_conv_plan({{ConvShape{16, 16, 8, 8}, ConvKernel{ConvAlgorithm::kDirect, ConvIsa::kAvx2}},
                 {ConvShape{16, 16, 12, 12}, ConvKernel{ConvAlgorithm::kWinograd4x4, ConvIsa::kAvx2}}});
  EXPECT_EQ(conv_kernel(*conv, small).algorithm, ConvAlgorithm::kDirect);
  EXPECT_TRUE(torch::equal(conv_forward(*conv, small), conv->forward(small)));
  EXPECT_EQ(conv_kernel(*conv, large), (ConvKernel{ConvAlgorithm::kWinograd4x4, ConvIsa::kAvx2}));
  EXPECT_TRUE(torch::equal(conv_forward(*conv, large),
                           winograd_conv3x3(large, conv->weight, ConvAlgorithm::kWinograd4x4, ConvIsa::kAvx2)));
  // A shape the plan does not name: the policy's algorithm at the widest width.
  const auto other = channels_last(torch::randn({2, 16, 10, 10}));
  EXPECT_EQ(conv_kernel(*conv, other).algorithm, ConvAlgorithm::kWinograd2x2);
  EXPECT_EQ(conv_kernel(*conv, other).isa, *widest_isa());
  // A fixed width applies to the plan's shapes too; setting a policy clears the plan.
  set_conv_isa(ConvIsa::kAvx2);
  EXPECT_EQ(conv_kernel(*conv, other).isa, ConvIsa::kAvx2);
  set_conv_policy(ConvPolicy::kWinograd2x2);
  EXPECT_TRUE(conv_plan().empty());
  EXPECT_EQ(conv_kernel(*conv, small).algorithm, ConvAlgorithm::kWinograd2x2);
}

TEST_F(WinogradTest, ConvForwardFallsBackForEveryOtherConvolution) {
  const auto x = channels_last(torch::randn({2, 16, 8, 8}));
  using torch::nn::Conv2dOptions;
  torch::nn::Conv2d same(Conv2dOptions(16, 16, 3).padding(1).bias(false));
  EXPECT_TRUE(winograd_takes(*same, x));
  const auto want = torch::conv2d(x.to(torch::kDouble), same->weight.detach().to(torch::kDouble), {}, 1, 1);
  EXPECT_LT(relative_error(conv_forward(*same, x), want), 1e-5);
  for (const auto& other :
       {Conv2dOptions(16, 16, 3).padding(1).stride(2).bias(false), Conv2dOptions(16, 16, 3).padding(1).bias(true),
        Conv2dOptions(16, 16, 3).padding(0).bias(false), Conv2dOptions(16, 16, 3).padding(2).dilation(2).bias(false),
        Conv2dOptions(16, 16, 3).padding(1).groups(2).bias(false),
        Conv2dOptions(16, 16, 3).padding(1).padding_mode(torch::kReflect).bias(false),
        Conv2dOptions(16, 16, 1).bias(false)}) {
    torch::nn::Conv2d conv(other);
    EXPECT_FALSE(winograd_takes(*conv, x));
    EXPECT_TRUE(torch::equal(conv_forward(*conv, x), conv->forward(x)));
  }
}

// One training step's logits and whole gradient (every parameter's, flattened, in double) of `net` on x under
// `policy`, computed in `dtype`; the net is left in float32 with no gradients.
std::pair<torch::Tensor, torch::Tensor> network_step(ResNet& net, const torch::Tensor& x, const torch::Tensor& labels,
                                                     ConvPolicy policy, torch::Dtype dtype) {
  set_conv_policy(policy);
  net->zero_grad(/*set_to_none=*/true);
  net->to(dtype);
  const auto logits = net->forward(x.to(dtype));
  torch::nn::functional::cross_entropy(logits, labels).backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : net->parameters()) grads.push_back(p.grad().to(torch::kDouble).flatten());
  net->zero_grad(/*set_to_none=*/true);
  net->to(torch::kFloat);  // exact: the weights started in float
  return std::make_pair(logits.detach().to(torch::kDouble), torch::cat(grads));
}

double gradient_distance(const torch::Tensor& got, const torch::Tensor& exact) {
  return ((got - exact).norm() / exact.norm()).item<double>();
}

TEST_F(WinogradTest, AResNetRunsItsStrideOneConvolutionsThroughIt) {
  // Fashion-MNIST resnet20: 16 of its 19 convolutions have stride 1 and 16 to 64 channels (the stem reads one
  // channel, two convs have stride 2).
  ResNet net(ResNetOptions(20).spec(ModelSpec{{1, 28, 28}, 10, Shortcut::A}));
  to_channels_last(*net);
  int64_t taken = 0;
  for (const ConvAt& c : net->convolutions()) {
    taken += winograd_takes(*c.conv, channels_last(torch::zeros({1, c.conv->options.in_channels(), c.in_h, c.in_w})));
  }
  EXPECT_EQ(taken, 16);
  const auto x = channels_last(torch::randn({8, 1, 28, 28}));
  const auto labels = torch::randint(10, {8}, torch::kLong);
  // The reference in double precision (LibTorch's convolutions), then both float paths against it: the default
  // F(2x2, 3x3)'s whole gradient stays within ten times the direct path's distance (measured: equal, 2.4e-6).
  // F(4x4, 3x3) fails this with this batch (2.5e-3: its rounding flips ReLUs whose inputs lie within it of zero),
  // which is why it is not the default.
  const auto [exact_logits, exact_grads] = network_step(net, x, labels, ConvPolicy::kDirect, torch::kDouble);
  const auto [direct_logits, direct_grads] = network_step(net, x, labels, ConvPolicy::kDirect, torch::kFloat);
  const auto [logits, grads] = network_step(net, x, labels, ConvPolicy::kWinograd2x2, torch::kFloat);
  EXPECT_LT(relative_error(logits, exact_logits), 1e-5);
  EXPECT_FALSE(torch::equal(logits, direct_logits));  // a different computation ran
  EXPECT_LT(gradient_distance(grads, exact_grads), std::max(10 * gradient_distance(direct_grads, exact_grads), 1e-6))
      << "direct " << gradient_distance(direct_grads, exact_grads);
}

TEST_F(WinogradTest, TheMixedSchemeKeepsTheForwardPassAndGradientsWithoutJumps) {
  // F(2x2) forward and F(4x4) gradients: the forward pass, and so every ReLU's mask, is F(2x2)'s to the bit, and
  // the whole gradient stays within ten times the direct path's distance from double precision for every seed,
  // as F(2x2)'s does. Measured over 24 seeds (batch 8): a jump of 1e-4 to 7e-3 (a ReLU flipped against double
  // precision) in 6 seeds for direct, 5 for F(2x2) and mixed (the same seeds and sizes; 4 of the 5 jump alike under
  // all four, from the parts they share: the stem, the stride-2 convolutions), 16 for F(4x4) throughout; between
  // jumps 1.4-2.0e-6 direct,
  // 1.4-1.9e-6 F(2x2), 2.0-3.0e-6 mixed, 3.0-4.5e-6 F(4x4) (docs/performance.md).
  const auto x0 = channels_last(torch::randn({2, 16, 9, 10}));
  const auto w0 = torch::randn({32, 16, 3, 3}) * 0.2;
  EXPECT_TRUE(torch::equal(winograd_conv3x3(x0, w0, ConvAlgorithm::kWinogradMixed),
                           winograd_conv3x3(x0, w0, ConvAlgorithm::kWinograd2x2)));
  const auto dy = channels_last(torch::randn({2, 32, 9, 10}));
  const auto mixed = winograd_conv3x3_backward(dy, x0, w0, ConvAlgorithm::kWinogradMixed);
  const auto four = winograd_conv3x3_backward(dy, x0, w0, ConvAlgorithm::kWinograd4x4);
  EXPECT_TRUE(torch::equal(mixed.first, four.first));
  EXPECT_TRUE(torch::equal(mixed.second, four.second));
  for (int seed : {1, 2, 3, 4}) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    torch::manual_seed(seed);
    ResNet net(ResNetOptions(20).spec(ModelSpec{{1, 28, 28}, 10, Shortcut::A}));
    to_channels_last(*net);
    const auto x = channels_last(torch::randn({8, 1, 28, 28}));
    const auto labels = torch::randint(10, {8}, torch::kLong);
    const auto exact = network_step(net, x, labels, ConvPolicy::kDirect, torch::kDouble).second;
    const double direct =
        gradient_distance(network_step(net, x, labels, ConvPolicy::kDirect, torch::kFloat).second, exact);
    const auto [two_logits, two_grads] = network_step(net, x, labels, ConvPolicy::kWinograd2x2, torch::kFloat);
    const auto [mixed_logits, mixed_grads] = network_step(net, x, labels, ConvPolicy::kWinogradMixed, torch::kFloat);
    const double all_four =
        gradient_distance(network_step(net, x, labels, ConvPolicy::kWinograd4x4, torch::kFloat).second, exact);
    EXPECT_TRUE(torch::equal(mixed_logits, two_logits));
    EXPECT_FALSE(torch::equal(mixed_grads, two_grads));  // the gradients ran F(4x4)
    // The same ReLUs as F(2x2): no jump between the two, only F(4x4)'s continuous rounding (measured 1e-6).
    EXPECT_LT(gradient_distance(mixed_grads, two_grads), 1e-5);
    EXPECT_LT(gradient_distance(mixed_grads, exact), std::max(10 * direct, 1e-6))
        << "direct " << direct << ", F(2x2) " << gradient_distance(two_grads, exact) << ", F(4x4) throughout "
        << all_four;
  }
}

TEST_F(WinogradTest, TheEnvironmentChoosesAndABadValueIsNamed) {
  ::setenv("RESLAB_CONV", "direct", 1);
  EXPECT_EQ(choose_convolutions(), "direct");
  EXPECT_EQ(conv_policy(), ConvPolicy::kDirect);
  ::setenv("RESLAB_CONV", "winograd4x4", 1);
  EXPECT_EQ(choose_convolutions(), "winograd4x4");
  ::setenv("RESLAB_CONV", "winograd-mixed", 1);
  EXPECT_EQ(choose_convolutions(), "winograd-mixed");
  ::setenv("RESLAB_CONV", "winograd2x2", 1);
  EXPECT_EQ(choose_convolutions(), "winograd2x2");
  ::setenv("RESLAB_CONV", "winograd", 1);  // the older name of F(2x2, 3x3) everywhere
  EXPECT_EQ(choose_convolutions(), "winograd2x2");
  ::setenv("RESLAB_CONV", "fast", 1);
  testing::expect_error<std::invalid_argument>([] { choose_convolutions(); }, {"RESLAB_CONV", "fast", "auto"});
  ::unsetenv("RESLAB_CONV");
  EXPECT_EQ(choose_convolutions(), "auto");
  ::setenv("RESLAB_CONV_ISA", "avx2", 1);
  EXPECT_EQ(choose_convolutions(), "auto");
  EXPECT_EQ(conv_isa(), ConvIsa::kAvx2);
  EXPECT_EQ(widest_isa(), ConvIsa::kAvx2);
  ::setenv("RESLAB_CONV_ISA", "neon", 1);
  testing::expect_error<std::invalid_argument>([] { choose_convolutions(); }, {"RESLAB_CONV_ISA", "neon", "avx512"});
  ::unsetenv("RESLAB_CONV_ISA");
  EXPECT_EQ(choose_convolutions(), "auto");
  EXPECT_FALSE(conv_isa().has_value());
  EXPECT_EQ(convolution_policy(torch::Device("cuda:0")), "direct");
}

}  // namespace
}  // namespace reslab
