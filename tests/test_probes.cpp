// Probes on tiny nets whose answers are known by construction.
#include <cmath>
#include <numeric>
#include <sstream>

#include "data/loader.h"
#include "experiment/runner.h"
#include "models/registry.h"
#include "models/resnet.h"
#include "probes/gradients.h"
#include "probes/lesions.h"
#include "probes/over_seeds.h"
#include "probes/probe_callback.h"
#include "probes/refinement.h"
#include "probes/responses.h"
#include "probes/statistics.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace reslab {
namespace {

using testing::TempDir;

class ProbesTest : public testing::SeededTest {};
/// Trains: left out of the sanitizer run.
class ProbeTrainingTest : public testing::SeededTest {};

/// A CIFAR-style net of `depth` layers, `width` channels in every stage and `width` input channels.
ResNet narrow_net(int64_t depth, bool residual, int64_t width = 4) {
  return ResNet(ResNetOptions(depth)
                    .spec(ModelSpec{{width, 8, 8}, 3, Shortcut::A})
                    .blocks([residual](ResidualBlockOptions& b) { b.residual(residual); })
                    .widths({width, width, width}));
}

/// Every conv the identity (a centred 1 on the channel diagonal), every BN the identity up to its epsilon.
void make_identity(ResNetImpl& net) {
  torch::NoGradGuard no_grad;
  for (const auto& layer : net.layers()) {
    if (!layer.conv) continue;
    auto w = layer.weight;
    w.zero_();
    for (int64_t c = 0; c < w.size(0); ++c) w[c][c][1][1] = 1.0;
  }
  for (auto& m : net.modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      bn->weight.fill_(1.0);
      bn->bias.zero_();
      bn->running_mean.zero_();
      bn->running_var.fill_(1.0);
    }
  }
  net.eval();
}

double population_std(const torch::Tensor& t) { return t.to(torch::kFloat64).std(/*unbiased=*/false).item<double>(); }

/// `n` images of `channels` x 8 x 8 with random pixels and labels in 0..2, and a loader over them (no mean).
struct TinyData {
  TinyData(int64_t n, int64_t channels, int64_t batch, bool shuffle = false)
      : data(torch::randint(0, 256, {n, channels, 8, 8}, torch::kUInt8), torch::randint(0, 3, {n}, torch::kInt64), 3) {
    LoaderOptions o;
    o.batch = batch;
    o.shuffle = shuffle;
    o.drop_last = shuffle;
    loader = std::make_unique<BatchLoader>(data, torch::zeros({channels, 8, 8}), o);
  }
  ImageDataset data;
  std::unique_ptr<BatchLoader> loader;
};

TEST_F(ProbesTest, IdentityLayersRespondWithTheirInputsStd) {
  auto net = narrow_net(8, /*residual=*/false);
  make_identity(*net);
  TinyData tiny(10, 4, /*batch=*/4);
  const auto result = layer_responses(*net, *tiny.loader);
  // Inputs are pixel / 255 >= 0, so every ReLU passes them through: each layer's response is its input, divided
  // by sqrt(1 + eps) in BN, and subsampled by the stride-2 convs of stages 2 and 3.
  const auto x = tiny.data.images().to(torch::kFloat32) / 255.0;
  // Layer l's response has passed through l + 1 BNs, each dividing by sqrt(1 + eps).
  const double full = population_std(x);
  const double half = population_std(x.slice(2, 0, 8, 2).slice(3, 0, 8, 2));
  const double quarter = population_std(x.slice(2, 0, 8, 4).slice(3, 0, 8, 4));
  const std::vector<double> expected = {full, full, full, half, half, quarter, quarter};
  ASSERT_EQ(result["std"].size(), expected.size());
  for (size_t l = 0; l < expected.size(); ++l) {
    const double bn = std::pow(1.0 + 1e-5, -0.5 * static_cast<double>(l + 1));
    EXPECT_NEAR(result["std"][l].get<double>(), expected[l] * bn, 1e-6) << l;
  }
  EXPECT_EQ(result["layers"][3]["name"], "stage2.0.conv1");
  EXPECT_EQ(result["examples"], 10);
  // Sorted by magnitude, descending.
  const auto sorted = result["std_sorted"].get<std::vector<double>>();
  EXPECT_TRUE(std::is_sorted(sorted.rbegin(), sorted.rend()));
}

TEST_F(ProbesTest, GradientMomentsMatchADirectComputation) {
  const auto g = torch::randn({7, 30}, torch::kFloat64) + 0.5;
  GradientMoments m;
  for (int64_t i = 0; i < 7; ++i) m.add(g[i].view({5, 6}));
  const auto mean = g.mean(0);
  const double rms = std::sqrt((g - mean).pow(2).sum(1).mean().item<double>());
  EXPECT_NEAR(m.mean_norm(), mean.norm().item<double>(), 1e-9);
  EXPECT_NEAR(m.rms_deviation(), rms, 1e-9);
  EXPECT_NEAR(m.snr_plugin(), mean.norm().item<double>() / rms, 1e-9);
  const double mu2 = std::max(0.0, mean.norm().pow(2).item<double>() - rms * rms / 6.0);
  EXPECT_NEAR(m.snr(), std::sqrt(mu2) / (rms * std::sqrt(7.0 / 6.0)), 1e-9);
  EXPECT_EQ(m.count(), 7);
  // Pure noise: the plug-in ratio sits at its floor 1/sqrt(n - 1), the debiased one near 0.
  GradientMoments noise;
  const auto z = torch::randn({64, 5000}, torch::kFloat64);
  for (int64_t i = 0; i < 64; ++i) noise.add(z[i]);
  EXPECT_NEAR(noise.snr_plugin(), noise.noise_floor(), 0.01);
  EXPECT_NEAR(noise.noise_floor(), 1.0 / std::sqrt(63.0), 1e-12);
  EXPECT_LT(noise.snr(), 0.03);
  // A shared direction of norm 1 under noise of rms 2: the debiased ratio recovers 0.5.
  GradientMoments signal;
  auto direction = torch::zeros({5000}, torch::kFloat64);
  direction[0] = 1.0;
  for (int64_t i = 0; i < 64; ++i) signal.add(direction + z[i] * (2.0 / std::sqrt(5000.0)));
  EXPECT_NEAR(signal.snr(), 0.5, 0.05);
  // Identical vectors: no noise at all.
  GradientMoments same;
  for (int i = 0; i < 3; ++i) same.add(torch::ones({4}));
  EXPECT_NEAR(same.rms_deviation(), 0.0, 1e-12);
  EXPECT_TRUE(std::isinf(same.snr_plugin()));
}

TEST_F(ProbesTest, PerExampleGradientsAreEachExamplesOwn) {
  auto net = narrow_net(8, /*residual=*/true);
  TinyData tiny(6, 4, /*batch=*/6);
  const Batch batch = tiny.loader->batch(0);
  const auto weights = net->layers();
  // Eval mode: each equals the gradient of the example run alone.
  for_each_example_gradient(*net, batch, /*train_mode=*/false, [&](int64_t i, const std::vector<torch::Tensor>& g) {
    net->eval();
    const auto loss =
        torch::nn::functional::cross_entropy(net->forward(batch.inputs.narrow(0, i, 1)), batch.targets.narrow(0, i, 1));
    std::vector<torch::Tensor> wrt;
    for (const auto& l : weights) wrt.push_back(l.weight);
    const auto alone = torch::autograd::grad({loss}, wrt);
    ASSERT_EQ(g.size(), alone.size());
    for (size_t l = 0; l < g.size(); ++l) EXPECT_TRUE(torch::allclose(g[l], alone[l], 1e-4, 1e-6)) << i << " " << l;
  });
  // Train mode: their mean is the gradient of the batch's mean loss (the training step's gradient).
  std::vector<torch::Tensor> sum;
  for_each_example_gradient(*net, batch, /*train_mode=*/true, [&](int64_t, const std::vector<torch::Tensor>& g) {
    if (sum.empty()) {
      for (const auto& t : g) sum.push_back(t.clone());
    } else {
      for (size_t l = 0; l < g.size(); ++l) sum[l] += g[l];
    }
  });
  net->train();
  const auto loss = torch::nn::functional::cross_entropy(net->forward(batch.inputs), batch.targets);
  std::vector<torch::Tensor> wrt;
  for (const auto& l : weights) wrt.push_back(l.weight);
  const auto full = torch::autograd::grad({loss}, wrt);
  for (size_t l = 0; l < full.size(); ++l) EXPECT_TRUE(torch::allclose(sum[l] / 6.0, full[l], 1e-4, 1e-6)) << l;
  // The probe's mean norm is that gradient's norm.
  const auto snr = gradient_snr(*net, batch);
  EXPECT_NEAR(snr["layers"][0]["mean_norm"].get<double>(), full[0].norm().item<double>(), 1e-5);
  std::vector<double> ratios;
  for (const auto& row : snr["layers"]) {
    if (!row["snr"].is_null()) ratios.push_back(row["snr"].get<double>());
  }
  EXPECT_DOUBLE_EQ(snr["snr_median"].get<double>(), median_of(ratios));
}

TEST_F(ProbesTest, GradientNormsMatchBackwardAndLeaveTheNetAlone) {
  auto net = narrow_net(14, /*residual=*/false);
  TinyData tiny(8, 4, /*batch=*/8);
  const Batch batch = tiny.loader->batch(0);
  const auto before = net->layers()[2].weight.clone();
  const auto running = net->blocks()[0]->named_buffers()["bn1.running_mean"].clone();
  const auto result = gradient_norms(*net, batch);
  // The probe's own forward pass did not move BN's running statistics, nor the weights.
  EXPECT_TRUE(torch::equal(running, net->blocks()[0]->named_buffers()["bn1.running_mean"]));
  EXPECT_TRUE(torch::equal(before, net->layers()[2].weight));

  net->train();
  auto x = batch.inputs.clone().requires_grad_(true);
  torch::nn::functional::cross_entropy(net->forward(x), batch.targets).backward();
  const auto layers = net->layers();
  ASSERT_EQ(result["layers"].size(), layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    EXPECT_NEAR(result["layers"][l]["weight_grad_norm"].get<double>(), layers[l].weight.grad().norm().item<double>(),
                1e-5);
  }
  EXPECT_NEAR(result["layers"][0]["input_grad_norm"].get<double>(), x.grad().norm().item<double>(), 1e-6);
  // The classifier's input gradient in closed form: (softmax - onehot) / batch times its weight.
  torch::NoGradGuard no_grad;
  const auto logits = net->forward(batch.inputs);
  const auto dlogits = (logits.softmax(1) - torch::one_hot(batch.targets, 3).to(torch::kFloat32)) / 8.0;
  const auto expected = dlogits.mm(layers.back().weight).norm().item<double>();
  EXPECT_NEAR(result["layers"].back()["input_grad_norm"].get<double>(), expected, 1e-6);
}

TEST_F(ProbesTest, DeletingAZeroInitialisedBranchChangesNothing) {
  auto net = narrow_net(14, /*residual=*/true);
  TinyData tiny(12, 4, /*batch=*/12);
  net->eval();
  torch::NoGradGuard no_grad;
  const auto inputs = tiny.loader->batch(0).inputs;
  const auto baseline = net->forward(inputs);
  // Block 1's branch ends in a BN whose scale is zero: the block is its shortcut.
  net->blocks()[1]->named_parameters()["bn2.weight"].zero_();
  RouteTap tap;
  tap.removed = {1};
  torch::Tensor zeroed = net->forward(inputs), lesioned;
  {
    TapGuard installed(*net, tap);
    lesioned = net->forward(inputs);
  }
  EXPECT_TRUE(torch::allclose(zeroed, lesioned, 1e-6, 1e-7));
  EXPECT_FALSE(torch::allclose(baseline, zeroed, 1e-3, 1e-4));  // the branch did matter before
  tap.removed = {2};
  {
    TapGuard installed(*net, tap);
    EXPECT_FALSE(torch::allclose(zeroed, net->forward(inputs), 1e-3, 1e-4));
  }
}

TEST_F(ProbesTest, LesionStudyCoversEveryBlockAndPlainNetsOnlyWhereShapesAllow) {
  auto residual = narrow_net(14, true);
  auto plain = narrow_net(14, false, /*width=*/4);
  TinyData tiny(20, 4, /*batch=*/10);
  ProbeSettings s;
  s.lesion_k = {1, 2, 100};
  s.samples = 3;
  residual->eval();
  plain->eval();
  const auto r = lesion_study(*residual, *tiny.loader, s);
  EXPECT_EQ(r["blocks"], 6);
  EXPECT_EQ(r["removable"], 6);
  ASSERT_EQ(r["random"].size(), 2u);  // k = 100 exceeds the blocks and is skipped
  EXPECT_EQ(r["random"][1]["errors"].size(), 3u);
  std::vector<double> single;
  for (const auto& row : r["single"]) single.push_back(row["error"].get<double>());
  EXPECT_DOUBLE_EQ(r["single_median_error"].get<double>(), median_of(single));
  const auto p = lesion_study(*plain, *tiny.loader, s);
  // Stride-2 blocks (the first of stages 2 and 3) change the shape: a plain net cannot lose them.
  EXPECT_EQ(p["removable"], 4);
  EXPECT_TRUE(p["single"][2]["error"].is_null());
  EXPECT_FALSE(p["single"][2]["removable"].get<bool>());
  EXPECT_THROW(plain->block_removable(6), c10::Error);
  // Removing a block of the random plain net changes its output ...
  {
    torch::NoGradGuard no_grad;
    const auto inputs = tiny.loader->batch(0).inputs;
    const auto before = plain->forward(inputs);
    RouteTap tap;
    tap.removed = {1};
    TapGuard installed(*plain, tap);
    EXPECT_FALSE(torch::allclose(before, plain->forward(inputs), 1e-3, 1e-4));
  }
  // ... and a removed plain block is the identity: with identity convs it changed nothing anyway.
  make_identity(*plain);
  EXPECT_DOUBLE_EQ(error_without(*plain, *tiny.loader, {0, 1}), error_without(*plain, *tiny.loader, {}));
}

TEST_F(ProbesTest, PathLengthsAreBinomial) {
  const auto p = path_length_distribution(9);
  ASSERT_EQ(p.size(), 10u);
  double sum = 0;
  const int64_t choose[] = {1, 9, 36, 84, 126, 126, 84, 36, 9, 1};
  for (size_t k = 0; k < p.size(); ++k) {
    EXPECT_NEAR(p[k], choose[k] / 512.0, 1e-12);
    sum += p[k];
  }
  EXPECT_NEAR(sum, 1.0, 1e-12);
  // Deep nets: no overflow, still sums to one, peaked at n/2.
  const auto deep = path_length_distribution(1000);
  EXPECT_NEAR(std::accumulate(deep.begin(), deep.end(), 0.0), 1.0, 1e-9);
  EXPECT_EQ(std::max_element(deep.begin(), deep.end()) - deep.begin(), 500);
}

TEST_F(ProbesTest, SinglePathGradientsSumToTheFullGradient) {
  // Three blocks: 8 paths. The backward pass is linear once the forward pass is fixed, so the input gradients
  // of the eight single paths add up to the net's input gradient.
  auto net = narrow_net(8, /*residual=*/true);
  TinyData tiny(5, 4, /*batch=*/5);
  const Batch batch = tiny.loader->batch(0);
  net->eval();
  auto grad_with = [&](ForwardTap* tap) {
    auto x = batch.inputs.clone().requires_grad_(true);
    torch::Tensor loss;
    if (tap != nullptr) {
      TapGuard installed(*net, *tap);
      loss = torch::nn::functional::cross_entropy(net->forward(x), batch.targets);
    } else {
      loss = torch::nn::functional::cross_entropy(net->forward(x), batch.targets);
    }
    return torch::autograd::grad({loss}, {x})[0];
  };
  const auto full = grad_with(nullptr);
  auto sum = torch::zeros_like(full);
  for (int mask = 0; mask < 8; ++mask) {
    RouteTap tap;
    tap.paths = true;
    for (int b = 0; b < 3; ++b) {
      if (mask & (1 << b)) tap.branch.insert(b);
    }
    sum += grad_with(&tap);
  }
  EXPECT_TRUE(torch::allclose(sum, full, 1e-4, 1e-7)) << (sum - full).abs().max();
  ProbeSettings s;
  s.samples = 2;
  const auto paths = path_gradients(*net, batch, s);
  EXPECT_EQ(paths["lengths"].size(), 4u);
  const auto share = paths["gradient_share"].get<std::vector<double>>();
  EXPECT_NEAR(std::accumulate(share.begin(), share.end(), 0.0), 1.0, 1e-9);
  EXPECT_FALSE(path_gradients(*narrow_net(8, false), batch, s)["applicable"].get<bool>());
  // Fewer sampled lengths than lengths: 0, 2 and 3 are sampled, length 1 interpolated geometrically.
  s.max_lengths = 3;
  const auto sparse = path_gradients(*net, batch, s);
  ASSERT_EQ(sparse["lengths"].size(), 3u);
  EXPECT_EQ(sparse["lengths"][1]["length"], 2);
  std::vector<double> g;
  for (const auto& r : sparse["lengths"]) g.push_back(r["grad_norm"].get<double>());
  const std::vector<double> total = {1 * g[0], 3 * std::sqrt(g[0] * g[1]), 3 * g[1], 1 * g[2]};
  const double all = std::accumulate(total.begin(), total.end(), 0.0);
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_NEAR(sparse["gradient_share"][k].get<double>(), total[k] / all, 1e-9) << k;
  }
}

TEST_F(ProbesTest, GradientsOfALinearNetAreFullyCorrelated) {
  // Identity layers on non-negative images: every ReLU is open, so along a line between two images the net is
  // linear and its input gradient does not change (cosine 1 at every lag).
  auto net = narrow_net(14, /*residual=*/false);
  make_identity(*net);
  TinyData tiny(6, 4, /*batch=*/6);
  ProbeSettings s;
  s.points = 10;
  s.lines = 2;
  s.max_lag = 3;
  const auto r = gradient_correlation(*net, *tiny.loader, s);
  ASSERT_EQ(r["cosine"].size(), 3u);
  for (const auto& c : r["cosine"]) EXPECT_NEAR(c.get<double>(), 1.0, 1e-6);
  // A random deep plain net is not linear: its gradients decorrelate.
  auto random = narrow_net(26, /*residual=*/false);
  calibrate_batchnorm(*random, *tiny.loader, 1);
  EXPECT_LT(gradient_correlation(*random, *tiny.loader, s)["cosine"][0].get<double>(), 0.999);
}

TEST_F(ProbesTest, CalibrationSetsBatchNormStatisticsFromData) {
  auto net = narrow_net(8, /*residual=*/true);
  TinyData tiny(16, 4, /*batch=*/8, /*shuffle=*/true);
  calibrate_batchnorm(*net, *tiny.loader, 2);
  EXPECT_FALSE(net->is_training());
  // The first BN sees conv1 of the data: its running mean is the mean of those responses over both batches.
  auto* bn = net->named_modules()["bn1"]->as<torch::nn::BatchNorm2dImpl>();
  torch::NoGradGuard no_grad;
  const auto conv = net->named_modules()["conv1"]->as<torch::nn::Conv2dImpl>();
  const auto a = conv->forward(tiny.loader->batch(0).inputs).mean({0, 2, 3});
  const auto b = conv->forward(tiny.loader->batch(1).inputs).mean({0, 2, 3});
  EXPECT_TRUE(torch::allclose(bn->running_mean, (a + b) / 2, 1e-4, 1e-6));
  EXPECT_TRUE(bn->options.momentum().has_value());  // restored
}

/// Per example, the cosine of rows of `a` and `b`, averaged.
double mean_row_cosine(const torch::Tensor& a, const torch::Tensor& b) {
  const auto x = a.reshape({a.size(0), -1}).to(torch::kFloat64), y = b.reshape({b.size(0), -1}).to(torch::kFloat64);
  return ((x * y).sum(1) / (x.norm(2, 1) * y.norm(2, 1))).mean().item<double>();
}

TEST_F(ProbesTest, RefinementOfAZeroBranchHasSizeZeroAndNoDirection) {
  auto net = narrow_net(14, /*residual=*/true);
  TinyData tiny(12, 4, /*batch=*/6);
  {
    torch::NoGradGuard no_grad;
    net->blocks()[1]->named_parameters()["bn2.weight"].zero_();
    net->blocks()[1]->named_parameters()["bn2.bias"].zero_();
  }
  ProbeSettings s;
  s.batch = 4;  // chunks of 4, 2 of each loader batch of 6
  const auto r = refinement_study(*net, *tiny.loader, s);
  ASSERT_TRUE(r["applies"].get<bool>());
  EXPECT_EQ(r["examples"], 12);
  const auto& zero = r["per_block"][1];
  EXPECT_EQ(zero["relative_size"].get<double>(), 0.0);
  EXPECT_TRUE(zero["cosine"].is_null());
  EXPECT_TRUE(zero["cosine_pooled"].is_null());
  EXPECT_EQ(zero["undefined_examples"], 12);
  // The other blocks have a direction, and the headline is over them only.
  std::vector<double> others;
  for (int64_t b : {0, 2, 3, 4, 5}) {
    EXPECT_EQ(r["per_block"][b]["undefined_examples"], 0) << b;
    others.push_back(r["per_block"][b]["cosine"].get<double>());
  }
  EXPECT_NEAR(r["cosine_median"].get<double>(), median_of(others), 1e-12);
  EXPECT_NEAR(
      r["relative_size_first_half"].get<double>(),
      (r["per_block"][0]["relative_size"].get<double>() + r["per_block"][2]["relative_size"].get<double>()) / 3.0,
      1e-12);
  // Option A: the stride-2 blocks' shortcuts subsample, the others are the identity; option C projects everywhere.
  for (int64_t b = 0; b < 6; ++b) {
    EXPECT_EQ(r["per_block"][b]["against"], b == 2 || b == 4 ? "shortcut_output" : "input") << b;
  }
  ResNet projected(ResNetOptions(8).spec(ModelSpec{{4, 8, 8}, 3, Shortcut::C}).widths({4, 8, 8}));
  const auto everywhere = refinement_study(*projected, *tiny.loader, s);  // kept: the loop reads into it
  for (const auto& row : everywhere["per_block"]) {
    EXPECT_EQ(row["against"], "shortcut_output");
  }
  const auto plain = refinement_study(*narrow_net(8, /*residual=*/false), *tiny.loader, s);
  EXPECT_FALSE(plain["applies"].get<bool>());
  EXPECT_FALSE(plain["reason"].get<std::string>().empty());
}

TEST_F(ProbesTest, RefinementOfAnIdentityBranchMatchesAutograd) {
  // Identity convs and BNs on non-negative images: every branch copies its input (F(h) = h, up to BN's epsilon;
  // at the stride-2 blocks, F(h) = s(h), the subsampled input), and every ReLU is open where its input is positive.
  auto net = narrow_net(14, /*residual=*/true);
  make_identity(*net);
  TinyData tiny(8, 4, /*batch=*/8);
  ProbeSettings s;
  s.batch = 8;
  const auto r = refinement_study(*net, *tiny.loader, s);
  // The same gradients, by hand: the stem, then each block, with each block's input kept.
  const Batch batch = tiny.loader->batch(0);
  auto modules = net->named_modules();
  auto h = torch::relu(modules["bn1"]->as<torch::nn::BatchNorm2dImpl>()->forward(
      modules["conv1"]->as<torch::nn::Conv2dImpl>()->forward(batch.inputs)));
  std::vector<torch::Tensor> hs;
  for (auto block : net->blocks()) {
    hs.push_back(h);
    h = block->forward(h);
  }
  hs.push_back(h);
  const auto logits = modules["fc"]->as<torch::nn::LinearImpl>()->forward(h.mean({2, 3}));
  const auto loss = torch::nn::functional::cross_entropy(
      logits, batch.targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  const auto g = torch::autograd::grad({loss}, hs);
  for (size_t b = 0; b < 6; ++b) {
    const auto& row = r["per_block"][b];
    EXPECT_NEAR(row["relative_size"].get<double>(), 1.0, 1e-4) << b;
    double expected = 0.0;
    if (b == 2 || b == 4) {
      // dL/ds = dL/dy where the block's output y = relu(F + s) is positive.
      const auto sub = hs[b].slice(2, 0, c10::nullopt, 2).slice(3, 0, c10::nullopt, 2);
      expected = mean_row_cosine(sub, g[b + 1] * hs[b + 1].gt(0));
    } else {
      expected = mean_row_cosine(hs[b], g[b]);
    }
    EXPECT_NEAR(row["cosine"].get<double>(), expected, 1e-5) << b;
  }
}

TEST_F(ProbesTest, RefinementReadoutOfTheLastBlockIsTheNetsOwnOutput) {
  TinyData tiny(20, 4, /*batch=*/10);
  ProbeSettings s;
  s.batch = 10;
  for (bool preact : {false, true}) {
    ResNet net(ResNetOptions(14)
                   .spec(ModelSpec{{4, 8, 8}, 3, Shortcut::A})
                   .widths({4, 8, 16})
                   .blocks([preact](ResidualBlockOptions& b) { b.preact(preact); }));
    calibrate_batchnorm(*net, *tiny.loader, 2);
    EXPECT_EQ(net->readable_blocks(), (std::vector<int64_t>{4, 5}));
    const auto r = refinement_study(*net, *tiny.loader, s);
    const auto full = evaluate(*net, *tiny.loader);
    ASSERT_EQ(r["readout"].size(), 2u);
    EXPECT_EQ(r["readout"][1]["block"], 5);
    EXPECT_NEAR(r["readout"][1]["loss"].get<double>(), full.loss, 1e-6 * full.loss) << preact;
    EXPECT_DOUBLE_EQ(r["readout"][1]["error"].get<double>(), full.error) << preact;
    EXPECT_EQ(r["readout_steps"], 1);
    // The taps change nothing in the forward pass.
    torch::NoGradGuard no_grad;
    const auto inputs = tiny.loader->batch(0).inputs;
    const auto plain_pass = net->forward(inputs);
    RefinementTap tap;
    TapGuard installed(*net, tap);
    EXPECT_TRUE(torch::equal(plain_pass, net->forward(inputs)));
    EXPECT_TRUE(torch::equal(plain_pass, net->head(tap.blocks().back().output)));
  }
}

TEST_F(ProbesTest, HeadlineFiguresOverSeedsByHand) {
  auto subject = [](const std::string& label, const std::string& model, bool residual, int seed, double lr,
                    double cosine) {
    return nlohmann::json{
        {"label", label},       {"source", "trained"}, {"model", model},         {"depth", 56},
        {"residual", residual}, {"seed", seed},        {"config", {{"lr", lr}}}, {"cosine", {cosine, 0.0}}};
  };
  nlohmann::json subjects = {subject("resnet56-s1", "resnet56", true, 1, 0.1, 0.5),
                             subject("plain56-s1", "plain56", false, 1, 0.1, 0.1),
                             subject("resnet56-s2", "resnet56", true, 2, 0.1, 0.7),
                             subject("resnet56-lr0.01-s1", "resnet56", true, 1, 0.01, 0.3),
                             subject("resnet56-s3", "resnet56", true, 3, 0.1, 0.9)};
  subjects.push_back({{"label", "no figure"}, {"model", "resnet56"}, {"depth", 56}, {"residual", true}});
  const auto over = over_seeds("shattered", subjects);
  ASSERT_EQ(over.size(), 3u);  // resnet56 at lr 0.1, plain56, resnet56 at lr 0.01; the subject without a figure
  EXPECT_EQ(over[0]["seeds"], nlohmann::json({1, 2, 3}));
  EXPECT_EQ(over[0]["labels"][2], "resnet56-s3");
  const auto& f = over[0]["cosine_lag1"];
  // Mean (0.5 + 0.7 + 0.9) / 3 = 0.7; sample sd sqrt((0.04 + 0 + 0.04) / 2) = 0.2.
  EXPECT_NEAR(f["mean"].get<double>(), 0.7, 1e-12);
  EXPECT_NEAR(f["sd"].get<double>(), 0.2, 1e-12);
  EXPECT_EQ(f["n"], 3);
  EXPECT_EQ(over[1]["model"], "plain56");
  EXPECT_TRUE(over[1]["cosine_lag1"]["sd"].is_null());  // one seed
  EXPECT_NEAR(over[2]["cosine_lag1"]["mean"].get<double>(), 0.3, 1e-12);
  std::ostringstream text;
  print_over_seeds("shattered", over, text);
  EXPECT_NE(text.str().find("resnet56 (trained; resnet56-s1, resnet56-s2, resnet56-s3): cosine of input gradients "
                            "at lag 1 0.7 ± 0.2 (3)"),
            std::string::npos)
      << text.str();
  std::ostringstream single;
  print_over_seeds("shattered", over_seeds("shattered", {subjects[0], subjects[1]}), single);
  EXPECT_EQ(single.str(), "");                             // no configuration ran at two seeds
  EXPECT_TRUE(over_seeds("responses", subjects).empty());  // no headline figure
  // Every headline figure's pointer reads its probe's output; a plain net's paths have none.
  EXPECT_TRUE(over_seeds("paths", {{{"model", "plain56"}, {"applicable", false}}}).empty());
  EXPECT_EQ(over_seeds("refinement", {{{"cosine_median", -0.25}}})[0]["cosine_median"]["mean"], -0.25);
  EXPECT_DOUBLE_EQ(median_of({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_DOUBLE_EQ(median_of({5.0, 1.0, 3.0}), 3.0);
}

TEST_F(ProbeTrainingTest, RecordsWithoutChangingTraining) {
  RunConfig run;
  run.name = run.model.name = "resnet8";
  run.data.dir = testing::fashion_dir();
  run.data.split.train_size = 256;
  run.data.split.test_size = 100;
  run.optim.batch = 32;
  run.optim.iterations = 6;
  run.train.log_every = 3;
  run.threads = 2;
  DataCache data;
  // Two folders of one TempDir (TempDir names its folder after the test).
  TempDir dir;
  const std::string plain_path = dir.file("plain"), probed_path = dir.file("probed");
  train_run(run, plain_path, data, RunOptions{});
  run.probes.during_training = {"grad_norms", "grad_snr"};
  run.probes.at = {0, 4};
  train_run(run, probed_path, data, RunOptions{});
  std::vector<nlohmann::json> probes, others_plain, others_probed;
  for (auto& r : read_jsonl_file(probed_path + "/metrics.jsonl")) {
    r.erase("img_per_s");
    (r["kind"] == "probe" ? probes : others_probed).push_back(r);
  }
  for (auto& r : read_jsonl_file(plain_path + "/metrics.jsonl")) {
    r.erase("img_per_s");
    others_plain.push_back(r);
  }
  // Training and evaluation records (eval-mode BN reads the running statistics) and the final weights and
  // statistics are all the same: the probes changed nothing.
  auto plain_net = build_model("resnet8", ModelSpec{{1, 28, 28}, 10, Shortcut::A});
  auto probed_net = build_model("resnet8", ModelSpec{{1, 28, 28}, 10, Shortcut::A});
  load_model_file(plain_path + "/model.pt", *plain_net);
  load_model_file(probed_path + "/model.pt", *probed_net);
  for (const auto& item : plain_net->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), probed_net->named_parameters()[item.key()])) << item.key();
  }
  for (const auto& item : plain_net->named_buffers()) {
    EXPECT_TRUE(torch::equal(item.value(), probed_net->named_buffers()[item.key()])) << item.key();
  }
  EXPECT_EQ(others_plain, others_probed);  // the probes changed nothing in training
  ASSERT_EQ(probes.size(), 4u);
  EXPECT_EQ(probes[0]["name"], "grad_snr");
  EXPECT_EQ(probes[1]["name"], "grad_norms");
  EXPECT_EQ(probes[2]["iter"], 4);
  EXPECT_EQ(probes[1]["layers"].size(), 8u);  // conv1, 3 blocks x 2, fc
  // Same step, same batch: the SNR probe's mean gradient is the step's gradient.
  for (size_t l = 0; l < 8; ++l) {
    EXPECT_NEAR(probes[0]["layers"][l]["mean_norm"].get<double>(),
                probes[1]["layers"][l]["weight_grad_norm"].get<double>(), 1e-4);
  }
  EXPECT_THROW(GradientProbeCallback({"lesions"}, {0}), std::invalid_argument);
}

}  // namespace
}  // namespace reslab
