// Blocks and CIFAR-style networks: shapes, gradients, parameter counts (paper Table 6) and multiply-adds.
#include <optional>
#include <tuple>

#include "models/batch_norm.h"
#include "models/resnet.h"
#include "test_util.h"
#include "train/precision.h"

namespace reslab {
namespace {

using testing::SeededTest;

class ModelsTest : public SeededTest {};

TEST_F(ModelsTest, ResidualBlockShapesForEveryShortcutOption) {
  for (Shortcut s : {Shortcut::A, Shortcut::B, Shortcut::C}) {
    for (bool residual : {true, false}) {
      ResidualBlock same(ResidualBlockOptions(16, 16).shortcut(s).residual(residual));
      ResidualBlock down(ResidualBlockOptions(16, 32).stride(2).shortcut(s).residual(residual));
      auto x = torch::randn({2, 16, 8, 8});
      EXPECT_EQ(same->forward(x).sizes(), (std::vector<int64_t>{2, 16, 8, 8}));
      EXPECT_EQ(down->forward(x).sizes(), (std::vector<int64_t>{2, 32, 4, 4}));
    }
  }
}

TEST_F(ModelsTest, OptionAIdentityPadsNewChannelsWithZeros) {
  ResidualBlock block(ResidualBlockOptions(4, 8).stride(2).shortcut(Shortcut::A));
  // Zero the branch: the output is then relu(shortcut(x)).
  {
    torch::NoGradGuard no_grad;
    for (auto& p : block->named_parameters()) {
      if (p.key().find("bn2.weight") != std::string::npos) p.value().zero_();
    }
  }
  block->eval();
  auto x = torch::rand({1, 4, 6, 6}) + 0.1;  // positive, so the ReLU keeps it
  auto y = block->forward(x);
  auto expected_first = x.slice(2, 0, c10::nullopt, 2).slice(3, 0, c10::nullopt, 2);
  EXPECT_TRUE(torch::allclose(y.slice(1, 0, 4), expected_first));
  EXPECT_EQ(y.slice(1, 4, 8).abs().sum().item<float>(), 0.0f);
}

TEST_F(ModelsTest, OnlyAnIdentityShortcutCannotShrinkChannels) {
  auto x = torch::randn({2, 32, 8, 8});
  ResidualBlock plain(ResidualBlockOptions(32, 16).residual(false));
  EXPECT_EQ(plain->forward(x).size(1), 16);
  ResidualBlock projected(ResidualBlockOptions(32, 16).shortcut(Shortcut::B));
  EXPECT_EQ(projected->forward(x).size(1), 16);
  testing::expect_error<c10::Error>([] { ResidualBlock b(ResidualBlockOptions(32, 16).shortcut(Shortcut::A)); },
                                    {"cannot shrink channels", "32 -> 16"});
}

TEST_F(ModelsTest, ProjectionOnlyWhereTheOptionSaysSo) {
  EXPECT_FALSE(ResidualBlock(ResidualBlockOptions(16, 32).stride(2).shortcut(Shortcut::A))->has_projection());
  EXPECT_TRUE(ResidualBlock(ResidualBlockOptions(16, 32).stride(2).shortcut(Shortcut::B))->has_projection());
  EXPECT_FALSE(ResidualBlock(ResidualBlockOptions(16, 16).shortcut(Shortcut::B))->has_projection());
  EXPECT_TRUE(ResidualBlock(ResidualBlockOptions(16, 16).shortcut(Shortcut::C))->has_projection());
  EXPECT_FALSE(ResidualBlock(ResidualBlockOptions(16, 16).shortcut(Shortcut::C).residual(false))->has_projection());
}

TEST_F(ModelsTest, ForwardAndBackwardGiveGradientsOfParameterShape) {
  ResNet net(ResNetOptions(8).spec(ModelSpec{{3, 16, 16}, 7, Shortcut::B}));
  auto x = torch::randn({4, 3, 16, 16});
  auto logits = net->forward(x);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{4, 7}));
  torch::nn::functional::cross_entropy(logits, torch::tensor({0, 1, 2, 3})).backward();
  for (const auto& p : net->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().sizes(), p.sizes());
  }
}

TEST_F(ModelsTest, ParameterCountsMatchTable6) {
  // Paper Table 6 (CIFAR-10, option A): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M.
  const std::vector<std::pair<int64_t, double>> table = {{20, 0.27}, {32, 0.46}, {44, 0.66},
                                                         {56, 0.85}, {110, 1.7}, {1202, 19.4}};
  for (const auto& [depth, millions] : table) {
    ResNet resnet(ResNetOptions(depth).spec(ModelSpec{{3, 32, 32}, 10, Shortcut::A}));
    const double m = count_parameters(*resnet) / 1e6;
    const double digits = millions < 1.0 ? 0.005 : 0.05;  // the table's rounding
    EXPECT_NEAR(m, millions, digits) << "depth " << depth;
    ResNet plain(ResNetOptions(depth).spec(ModelSpec{{3, 32, 32}, 10, Shortcut::A}).blocks([](ResidualBlockOptions& b) {
      b.residual(false);
    }));
    EXPECT_EQ(count_parameters(*plain), count_parameters(*resnet)) << "depth " << depth;
  }
  // The exact figure for ResNet-20, as in the common PyTorch reference.
  ResNet r20(ResNetOptions(20));
  EXPECT_EQ(count_parameters(*r20), 269722);
}

TEST_F(ModelsTest, ProjectionShortcutsAddExactlyTheirConvAndBn) {
  const ModelSpec a{{3, 32, 32}, 10, Shortcut::A};
  ModelSpec b = a;
  b.shortcut = Shortcut::B;
  const int64_t pa = count_parameters(*ResNet(ResNetOptions(20).spec(a)));
  const int64_t pb = count_parameters(*ResNet(ResNetOptions(20).spec(b)));
  // Two projections: 16->32 and 32->64, each a 1x1 conv and a BN (gamma, beta).
  EXPECT_EQ(pb - pa, (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64));
}

TEST_F(ModelsTest, MultiplyAddsOfABlockByHand) {
  // 16->32 channels, stride 2 on an 8x8 map gives 4x4. conv1: 32*4*4 outputs x 16*9 inputs each;
  // conv2: 32*4*4 x 32*9. Option B adds the 1x1 projection: 32*4*4 x 16.
  ResidualBlock a(ResidualBlockOptions(16, 32).stride(2).shortcut(Shortcut::A));
  ResidualBlock b(ResidualBlockOptions(16, 32).stride(2).shortcut(Shortcut::B));
  std::vector<ConvAt> of_a, of_b;
  const auto [h, w] = a->convolutions(8, 8, of_a);
  EXPECT_EQ(conv_macs(of_a), 32 * 16 * 16 * 9 + 32 * 16 * 32 * 9);
  EXPECT_EQ(h, 4);
  EXPECT_EQ(w, 4);
  b->convolutions(8, 8, of_b);
  EXPECT_EQ(conv_macs(of_b), 32 * 16 * 16 * 9 + 32 * 16 * 32 * 9 + 32 * 16 * 16);
}

TEST_F(ModelsTest, MultiplyAddsOfResNet20ByHand) {
  // conv1 16x32x32 x 3*9; stage 1: six convs 16x32x32 x 16*9; stages 2 and 3: a first conv reading half the
  // channels plus five full ones, at 16x16 and 8x8; fc 64x10.
  const int64_t conv1 = 16 * 32 * 32 * 3 * 9;
  const int64_t stage1 = 6 * (16 * 32 * 32 * 16 * 9);
  const int64_t stage2 = 32 * 16 * 16 * 16 * 9 + 5 * (32 * 16 * 16 * 32 * 9);
  const int64_t stage3 = 64 * 8 * 8 * 32 * 9 + 5 * (64 * 8 * 8 * 64 * 9);
  ResNet net(ResNetOptions(20));
  EXPECT_EQ(net->macs(), conv1 + stage1 + stage2 + stage3 + 64 * 10);
  EXPECT_EQ(net->macs(), 40551040);
  // Fashion-MNIST's 28x28 maps: 28, 14, 7.
  ResNet small(ResNetOptions(20).spec(ModelSpec{{1, 28, 28}, 10, Shortcut::A}));
  EXPECT_EQ(small->macs(), 16 * 28 * 28 * 9 + 6 * (16 * 28 * 28 * 144) + 32 * 14 * 14 * 144 + 5 * (32 * 14 * 14 * 288) +
                               64 * 7 * 7 * 288 + 5 * (64 * 7 * 7 * 576) + 640);
}

TEST_F(ModelsTest, ConvolutionsListEveryConvWithItsMapsInForwardOrder) {
  // Fashion-MNIST resnet20, option B: the stem, 18 branch convs, and a projection after the first block of
  // stages 2 and 3, reading that block's input.
  ResNet net(ResNetOptions(20).spec(ModelSpec{{1, 28, 28}, 10, Shortcut::B}));
  const auto convs = net->convolutions();
  ASSERT_EQ(convs.size(), 21u);
  auto at = [&](size_t i) {
    const auto& c = convs[i];
    return std::vector<int64_t>{c.conv->options.in_channels(), c.conv->options.out_channels(), c.in_h, c.out_h};
  };
  EXPECT_EQ(at(0), (std::vector<int64_t>{1, 16, 28, 28}));
  EXPECT_EQ(at(6), (std::vector<int64_t>{16, 16, 28, 28}));
  EXPECT_EQ(at(7), (std::vector<int64_t>{16, 32, 28, 14}));  // stage 2's first conv, stride 2
  EXPECT_EQ(at(9), (std::vector<int64_t>{16, 32, 28, 14}));  // its projection, 1x1 stride 2
  EXPECT_EQ(convs[9].conv->options.kernel_size()->at(0), 1);
  EXPECT_EQ(at(14), (std::vector<int64_t>{32, 64, 14, 7}));
  EXPECT_EQ(at(16), (std::vector<int64_t>{32, 64, 14, 7}));  // stage 3's projection
  EXPECT_EQ(at(20), (std::vector<int64_t>{64, 64, 7, 7}));
  // macs() is these convolutions' multiply-adds and the classifier's.
  EXPECT_EQ(net->macs(), conv_macs(convs) + 64 * 10);
  // The module they point at is the net's own (the bench times the net's weights).
  EXPECT_EQ(convs[0].conv->weight.data_ptr(), net->named_parameters()["conv1.weight"].data_ptr());
}

TEST_F(ModelsTest, ConvolutionOutputsAndTheTrainingMemoryEstimateByHand) {
  // Fashion-MNIST resnet20: the stem and six convs at 16x28x28, six at 32x14x14, six at 64x7x7.
  ResNet net(ResNetOptions(20).spec(ModelSpec{{1, 28, 28}, 10, Shortcut::A}));
  const int64_t outputs = 7 * 16 * 28 * 28 + 6 * 32 * 14 * 14 + 6 * 64 * 7 * 7;
  EXPECT_EQ(net->conv_outputs(), outputs);
  EXPECT_EQ(estimate_training_bytes(*net, 128),
            128 * outputs * kSavedPerOutput * 4 + 2 * count_parameters(*net) * 4 + kScratchBytes);
  // Option B adds the two projections' outputs (32x14x14 and 64x7x7); depth and batch scale it linearly.
  ResNet b(ResNetOptions(20).spec(ModelSpec{{1, 28, 28}, 10, Shortcut::B}));
  EXPECT_EQ(b->conv_outputs(), outputs + 32 * 14 * 14 + 64 * 7 * 7);
  ResNet deep(ResNetOptions(56).spec(ModelSpec{{1, 28, 28}, 10, Shortcut::A}));
  EXPECT_EQ(deep->conv_outputs(), 19 * 16 * 28 * 28 + 18 * 32 * 14 * 14 + 18 * 64 * 7 * 7);
}

TEST_F(ModelsTest, DepthMustBe6nPlus2) {
  for (int64_t bad : {0, 7, 21, 57}) {
    testing::expect_error<std::invalid_argument>([&] { ResNet net{ResNetOptions(bad)}; },
                                                 {std::to_string(bad), "6n+2", "20", "56", "110"});
  }
  EXPECT_EQ(cifar_blocks_per_stage(8), 1);
  EXPECT_EQ(cifar_blocks_per_stage(1202), 200);
  EXPECT_EQ(cifar_blocks_per_stage(kMaxCifarDepth), 1000);
  testing::expect_error<std::invalid_argument>([] { cifar_blocks_per_stage(kMaxCifarDepth + 6); },
                                               {std::to_string(kMaxCifarDepth)});
}

TEST_F(ModelsTest, HeInitialisationHasTheRightScale) {
  ResNet net(ResNetOptions(56));
  // A 3x3 conv with 64 input channels: std sqrt(2 / (9*64)).
  const auto& w = net->blocks().back()->named_parameters()["conv2.weight"];
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / (9 * 64)), 0.002);
}

TEST_F(ModelsTest, ChannelsLastKeepsTheFunction) {
  ResNet net(ResNetOptions(8).spec(ModelSpec{{3, 16, 16}, 10, Shortcut::A}));
  net->eval();
  auto x = torch::randn({2, 3, 16, 16});
  auto before = net->forward(x);
  to_channels_last(*net);
  auto after = net->forward(x.contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(before, after, 1e-4, 1e-5));
  EXPECT_TRUE(net->blocks()[0]->named_parameters()["conv1.weight"].is_contiguous(at::MemoryFormat::ChannelsLast));
}

TEST_F(ModelsTest, ImageNetFamilyMatchesTable1AndTheReferenceCounts) {
  // Parameters with option B equal the common PyTorch reference's; multiply-adds at 224x224 are within 5% of
  // Table 1's FLOPs (the paper's bottleneck strides on its first 1x1 conv).
  const std::vector<std::tuple<int64_t, int64_t, double>> table = {{18, 11689512, 1.8e9},
                                                                   {34, 21797672, 3.6e9},
                                                                   {50, 25557032, 3.8e9},
                                                                   {101, 44549160, 7.6e9},
                                                                   {152, 60192808, 11.3e9}};
  for (const auto& [depth, params, flops] : table) {
    ResNet net(imagenet_options(depth));
    EXPECT_EQ(count_parameters(*net), params) << depth;
    EXPECT_NEAR(static_cast<double>(net->macs()) / flops, 1.0, 0.05) << depth << ": " << net->macs();
    EXPECT_EQ(net->depth(), depth);
    int64_t weighted = 2;  // the first conv and the classifier
    for (const auto& b : net->blocks()) weighted += static_cast<int64_t>(b->convs().size());
    EXPECT_EQ(weighted, depth);
  }
  // The reference's stride on the 3x3 conv: the same parameters, more multiply-adds (4.1G for ResNet-50).
  ResNet paper(imagenet_options(50)),
      reference(imagenet_options(50).blocks([](ResidualBlockOptions&b) { b.stride_on_3x3(true); }));
  EXPECT_EQ(count_parameters(*paper), count_parameters(*reference));
  EXPECT_GT(reference->macs(), paper->macs());
  EXPECT_NEAR(reference->macs() / 1e9, 4.09, 0.02);
  // Plain-34 has the same layers and no projection.
  ResNet plain(imagenet_options(34).blocks([](ResidualBlockOptions& b) { b.residual(false); }));
  EXPECT_LT(count_parameters(*plain), 21797672);
  EXPECT_EQ(plain->depth(), 34);
}

// One network of each family and block option, on small inputs.
std::vector<ResNetOptions> every_family() {
  return {imagenet_options(18).spec(ModelSpec{{3, 32, 32}, 5, Shortcut::B}),
          imagenet_options(50).spec(ModelSpec{{3, 32, 32}, 5, Shortcut::A}),
          imagenet_options(50)
              .blocks([](ResidualBlockOptions& b) { b.preact(true); })
              .spec(ModelSpec{{3, 32, 32}, 5, Shortcut::B}),
          ResNetOptions(11)
              .blocks([](ResidualBlockOptions& b) { b.kind(BlockKind::kBottleneck); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::A}),
          ResNetOptions(11)
              .blocks([](ResidualBlockOptions& b) { b.kind(BlockKind::kBottleneck).preact(true); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::B}),
          ResNetOptions(14)
              .blocks([](ResidualBlockOptions& b) { b.preact(true); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::A}),
          ResNetOptions(11)
              .blocks([](ResidualBlockOptions& b) { b.branch_layers(1); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::A}),
          ResNetOptions(11)
              .blocks([](ResidualBlockOptions& b) { b.branch_layers(3); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::C}),
          ResNetOptions(8)
              .blocks([](ResidualBlockOptions& b) { b.norm(Norm::kBatchNormNoAffine); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::B}),
          ResNetOptions(8)
              .blocks([](ResidualBlockOptions& b) { b.norm(Norm::kNone); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::A}),
          ResNetOptions(8)
              .blocks([](ResidualBlockOptions& b) { b.norm(Norm::kNone).branch_scale(BranchScale::kOne); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::A}),
          ResNetOptions(8)
              .blocks([](ResidualBlockOptions& b) { b.norm(Norm::kNone).fixup(true); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::B}),
          ResNetOptions(8)
              .blocks([](ResidualBlockOptions& b) { b.branch_scale(BranchScale::kZero); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::A}),
          ResNetOptions(8)
              .blocks([](ResidualBlockOptions& b) { b.residual(false); })
              .spec(ModelSpec{{1, 16, 16}, 5, Shortcut::A})};
}

TEST_F(ModelsTest, EveryFamilyRunsForwardAndBackward) {
  for (const auto& o : every_family()) {
    ResNet net(o);
    SCOPED_TRACE(c10::str(*net));
    const auto x = torch::randn({2, o.spec().input.channels, o.spec().input.height, o.spec().input.width});
    const auto logits = net->forward(x);
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 5}));
    logits.sum().backward();
    EXPECT_EQ(static_cast<int64_t>(net->layers().size()), o.depth());
  }
  // A bottleneck expands its output four times; the CIFAR bottleneck net is 9n+2 deep.
  EXPECT_EQ(ResidualBlock(ResidualBlockOptions(64, 16).kind(BlockKind::kBottleneck))->options.out_planes(), 64);
  testing::expect_error<std::invalid_argument>(
      [] { ResNet net(ResNetOptions(21).blocks([](ResidualBlockOptions& b) { b.kind(BlockKind::kBottleneck); })); },
      {"21", "9n+2", "164"});
  testing::expect_error<std::invalid_argument>(
      [] { ResNet net(ResNetOptions(21).blocks([](ResidualBlockOptions& b) { b.branch_layers(1); })); },
      {"21", "3n+2"});
}

// Unwatched, the ReLUs and residual additions work in place; a tap that watches (here one that only looks) makes
// the forward pass out of place. Both must give the same floats, forward and backward, in training and in
// evaluation, and neither may write into the caller's input: in float32, in channels-last (reslab's Winograd
// convolutions), with synchronised BN's own forward (an identity reducer), and under bf16 autocast (where a
// block's terms may differ in type).
TEST_F(ModelsTest, InPlaceActivationsGiveTheWatchedPassesFloats) {
  struct Case {
    Precision precision;
    bool channels_last, sync_bn;
  };
  ForwardTap looking;
  for (const Case c : {Case{Precision::kFloat32, false, false}, Case{Precision::kFloat32, true, false},
                       Case{Precision::kFloat32, false, true}, Case{Precision::kBf16, false, false}}) {
    for (const auto& o : every_family()) {
      ResNet net(o);
      SCOPED_TRACE(to_string(c.precision) + (c.channels_last ? " channels-last" : "") +
                   (c.sync_bn ? " sync-bn " : " ") + c10::str(*net));
      if (c.sync_bn && set_batch_norm_sync(*net, [](const torch::Tensor& t) { return t; }) == 0) continue;
      auto x = torch::randn({2, o.spec().input.channels, o.spec().input.height, o.spec().input.width});
      if (c.channels_last) {
        to_channels_last(*net);
        x = x.contiguous(at::MemoryFormat::ChannelsLast);
      }
      const auto x_before = x.clone();
      // Evaluation first: training passes move BN's running statistics. Each pass has an autocast scope of its own,
      // as a run's have: autocast caches its casts of the weights until the outermost scope ends.
      std::vector<torch::Tensor> evaluated, logits, grads;
      net->eval();
      for (bool watched : {false, true}) {
        std::optional<TapGuard> guard;
        if (watched) guard.emplace(*net, looking);
        const AutocastScope autocast(c.precision, torch::kCPU);
        torch::NoGradGuard no_grad;
        evaluated.push_back(net->forward(x));
      }
      net->train();
      for (bool watched : {false, true}) {
        std::optional<TapGuard> guard;
        if (watched) guard.emplace(*net, looking);
        const AutocastScope autocast(c.precision, torch::kCPU);
        net->zero_grad();
        logits.push_back(net->forward(x));
        // Minus 1: a loss whose gradient is not zero where Fixup zeroes the classifier.
        (logits.back().to(torch::kFloat32) - 1).square().sum().backward();
        std::vector<torch::Tensor> g;
        for (const auto& p : net->parameters()) g.push_back(p.grad().flatten().clone());
        grads.push_back(torch::cat(g));
      }
      EXPECT_TRUE(torch::equal(x, x_before));
      EXPECT_TRUE(torch::equal(evaluated[0], evaluated[1]));
      EXPECT_TRUE(torch::equal(logits[0], logits[1]));
      EXPECT_TRUE(torch::equal(grads[0], grads[1]));
      EXPECT_GT(grads[0].abs().sum().item<double>(), 0.0);
    }
  }
}

TEST_F(ModelsTest, AZeroBranchScaleMakesEveryBlockTheIdentityAtTheStart) {
  const auto x = torch::rand({3, 16, 8, 8});  // non-negative, as a post-activation block's input is
  const std::vector<ResidualBlockOptions> starts_as_identity = {
      ResidualBlockOptions(16, 16).branch_scale(BranchScale::kZero),
      ResidualBlockOptions(16, 16).zero_init_last(true),
      ResidualBlockOptions(16, 16).norm(Norm::kNone).fixup(true),
      ResidualBlockOptions(16, 16).preact(true).branch_scale(BranchScale::kZero),
      ResidualBlockOptions(16, 16).branch_layers(1).zero_init_last(true),
      ResidualBlockOptions(16, 4).kind(BlockKind::kBottleneck).zero_init_last(true),
      ResidualBlockOptions(16, 4).kind(BlockKind::kBottleneck).preact(true).zero_init_last(true)};
  for (const auto& o : starts_as_identity) {
    ResidualBlock block(o);
    block->init_branch();
    if (o.fixup()) block->init_fixup(/*residual_blocks=*/9);
    block->train();
    SCOPED_TRACE(c10::str(*block));
    EXPECT_TRUE(torch::allclose(block->forward(x), x, 1e-6, 1e-7));
  }
  // Without a zero scale the branch adds something.
  ResidualBlock normal(ResidualBlockOptions(16, 16));
  EXPECT_FALSE(torch::allclose(normal->forward(x), x, 1e-3, 1e-3));
  // Fixup's rescaling: the first conv of a two-layer branch in a net of 9 blocks shrinks by 9^(-1/2).
  torch::manual_seed(3);
  ResidualBlock fix(ResidualBlockOptions(16, 16).norm(Norm::kNone).fixup(true));
  const auto before = fix->convs()[0]->weight.clone();
  fix->init_fixup(9);
  EXPECT_TRUE(torch::allclose(fix->convs()[0]->weight, before / 3.0));
  EXPECT_EQ(fix->convs()[1]->weight.abs().sum().item<double>(), 0.0);
}

TEST_F(ModelsTest, FixupDownsamplesTheBiasedInputAsItsReferenceDoes) {
  // Fixup's reference (hongyi-zhang/Fixup, cifar): where the shape changes, the option A shortcut subsamples
  // x + bias1a and pads zero channels; where it does not, the shortcut is x itself.
  const auto x = torch::rand({2, 16, 8, 8});
  for (int64_t stride : {1, 2}) {
    ResidualBlock block(ResidualBlockOptions(16, stride == 1 ? 16 : 32).stride(stride).norm(Norm::kNone).fixup(true));
    block->init_fixup(/*residual_blocks=*/9);  // the last conv is zero: the branch adds bias2b (0) alone
    {
      torch::NoGradGuard no_grad;
      block->named_parameters()["bias1a"].fill_(0.25);
    }
    SCOPED_TRACE("stride " + std::to_string(stride));
    const auto y = block->forward(x);
    if (stride == 1) {
      EXPECT_TRUE(torch::allclose(y, x));
    } else {
      const auto kept = x.slice(2, 0, c10::nullopt, 2).slice(3, 0, c10::nullopt, 2) + 0.25;
      EXPECT_TRUE(torch::allclose(y.slice(1, 0, 16), kept));
      EXPECT_EQ(y.slice(1, 16, 32).abs().sum().item<double>(), 0.0);
    }
  }
}

TEST_F(ModelsTest, APlainTwinHasNoShortcutPath) {
  // Silence the branch (its last BN scale and shift 0): the residual block passes its input on, the plain block
  // outputs zeros whatever its input, since its only path goes through the branch.
  const auto x = torch::rand({2, 16, 8, 8});
  for (bool preact : {false, true}) {
    ResidualBlock residual(ResidualBlockOptions(16, 16).preact(preact));
    ResidualBlock plain(ResidualBlockOptions(16, 16).preact(preact).residual(false));
    for (auto* block : {&residual, &plain}) {
      torch::NoGradGuard no_grad;
      (*block)->named_parameters()["bn2.weight"].zero_();
      (*block)->named_parameters()["bn2.bias"].zero_();
    }
    EXPECT_TRUE(torch::allclose(residual->forward(x), x));
    EXPECT_EQ(plain->forward(x).abs().sum().item<double>(), 0.0);
    EXPECT_EQ(count_parameters(*residual), count_parameters(*plain));
  }
}

}  // namespace
}  // namespace reslab
