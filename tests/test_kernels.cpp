// The kernel plan: candidates by policy, measurement and the per-machine cache (and a cache that is not one),
// the record a run keeps and reads back to resume, and the shapes a model asks for.
#include <algorithm>
#include <fstream>
#include <limits>

#include "models/registry.h"
#include "test_util.h"
#include "train/kernels.h"
#include "train/metrics.h"

namespace reslab {
namespace {

using testing::TempDir;

class KernelsTest : public testing::SeededTest {
 protected:
  void SetUp() override {
    testing::SeededTest::SetUp();
    set_conv_policy(ConvPolicy::kAuto);
    set_conv_isa(std::nullopt);
  }
  void TearDown() override { set_conv_policy(ConvPolicy::kAuto); }
};

const std::vector<ConvShape> kShapes = {{16, 16, 8, 8}, {32, 32, 4, 4}};

TEST_F(KernelsTest, AModelAsksForItsStageShapesOnce) {
  // Fashion-MNIST resnet20: three stages of 16, 32 and 64 channels on 28, 14 and 7 pixels; the stem (1 channel in)
  // and the strided convolutions are not Winograd's.
  const auto net = build_model("resnet20", ModelSpec{{1, 28, 28}, 10, Shortcut::A});
  EXPECT_EQ(winograd_shapes(*net), (std::vector<ConvShape>{{16, 16, 28, 28}, {32, 32, 14, 14}, {64, 64, 7, 7}}));
}

TEST_F(KernelsTest, CandidatesFollowThePolicyAndTheCpu) {
  const ConvShape s{16, 16, 8, 8};
  const auto autos = plan_candidates(ConvPolicy::kAuto, s);
  ASSERT_FALSE(autos.empty());
  EXPECT_EQ(autos[0].algorithm, ConvAlgorithm::kDirect);
  // F(2x2) and the mixed scheme at each width; never F(4x4) throughout.
  EXPECT_EQ(autos.size(), 1 + 2 * static_cast<size_t>(isa_available(ConvIsa::kAvx2)) +
                              2 * static_cast<size_t>(isa_available(ConvIsa::kAvx512)));
  for (size_t i = 1; i < autos.size(); ++i) {
    EXPECT_EQ(autos[i].algorithm, i % 2 == 1 ? ConvAlgorithm::kWinograd2x2 : ConvAlgorithm::kWinogradMixed);
    EXPECT_EQ(autos[i].isa, i <= 2 ? ConvIsa::kAvx2 : ConvIsa::kAvx512);
  }
  // 24 channels are not a multiple of AVX-512's 16 floats: AVX2 alone.
  for (const auto& k : plan_candidates(ConvPolicy::kAuto, ConvShape{24, 24, 8, 8})) EXPECT_NE(k.isa, ConvIsa::kAvx512);
  EXPECT_EQ(plan_candidates(ConvPolicy::kDirect, s).size(), 1u);
  EXPECT_EQ(plan_candidates(ConvPolicy::kDirect, s)[0].algorithm, ConvAlgorithm::kDirect);
  if (isa_available(ConvIsa::kAvx2)) {
    EXPECT_EQ(plan_candidates(ConvPolicy::kWinograd4x4, s)[0].algorithm, ConvAlgorithm::kWinograd4x4);
    EXPECT_EQ(plan_candidates(ConvPolicy::kWinogradMixed, s)[0].algorithm, ConvAlgorithm::kWinogradMixed);
    set_conv_isa(ConvIsa::kAvx2);
    for (const auto& k : plan_candidates(ConvPolicy::kAuto, s)) EXPECT_NE(k.isa, ConvIsa::kAvx512);
    set_conv_isa(std::nullopt);
  }
}

TEST_F(KernelsTest, InStepTimingTimesEveryCandidateAndLeavesTheModelAsItWas) {
  const auto net = build_model("resnet8", ModelSpec{{1, 28, 28}, 10, Shortcut::A});
  to_channels_last(*net);
  const auto x = torch::randn({8, 1, 28, 28}).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto y = torch::randint(0, 10, {8}, torch::kInt64);
  KernelPlan start;
  start.batch = 8;
  for (const auto& shape : winograd_shapes(*net)) start.shapes.push_back({shape, {}, {}, false});
  ASSERT_EQ(start.shapes.size(), 3u);
  std::vector<torch::Tensor> params, buffers;
  for (const auto& p : net->parameters()) params.push_back(p.clone());
  for (const auto& b : net->buffers()) buffers.push_back(b.clone());
  net->eval();
  const ConvPlan sentinel = {{ConvShape{16, 16, 28, 28}, {ConvAlgorithm::kWinograd4x4, ConvIsa::kAvx2}}};
  set_conv_plan(sentinel);
  const auto chosen = time_kernels_in_step(*net, start, x, y, 3);
  ASSERT_EQ(chosen.size(), start.shapes.size());
  for (size_t i = 0; i < chosen.size(); ++i) {
    EXPECT_EQ(chosen[i].shape, start.shapes[i].shape);
    const auto candidates = plan_candidates(ConvPolicy::kAuto, chosen[i].shape);
    if (candidates.size() < 2) {
      EXPECT_TRUE(chosen[i].seconds.empty());  // nothing to choose between on this CPU
      EXPECT_EQ(chosen[i].kernel, ConvKernel{});
      continue;
    }
    ASSERT_EQ(chosen[i].seconds.size(), candidates.size());
    double fastest = std::numeric_limits<double>::infinity();
    for (size_t c = 0; c < candidates.size(); ++c) {
      EXPECT_EQ(chosen[i].seconds[c].first, candidates[c]);
      EXPECT_GT(chosen[i].seconds[c].second, 0.0);
      fastest = std::min(fastest, chosen[i].seconds[c].second);
    }
    const auto it = std::find_if(chosen[i].seconds.begin(), chosen[i].seconds.end(),
                                 [&](const auto& s) { return s.first == chosen[i].kernel; });
    ASSERT_NE(it, chosen[i].seconds.end());
    EXPECT_EQ(it->second, fastest);
  }
  // Weights, BatchNorm statistics, mode and the plan in force as they were; no gradient left behind.
  const auto now_params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::equal(now_params[i], params[i])) << i;
    EXPECT_TRUE(!now_params[i].grad().defined() || now_params[i].grad().abs().sum().item<double>() == 0.0) << i;
  }
  const auto now_buffers = net->buffers();
  for (size_t i = 0; i < buffers.size(); ++i) EXPECT_TRUE(torch::equal(now_buffers[i], buffers[i])) << i;
  EXPECT_FALSE(net->is_training());
  EXPECT_EQ(conv_plan(), sentinel);
}

TEST_F(KernelsTest, AutoMeasuresOnceAndThenReadsTheCache) {
  if (!isa_available(ConvIsa::kAvx2)) GTEST_SKIP() << "no Winograd kernels on this CPU: auto has one candidate";
  TempDir dir;
  const std::string cache = dir.file("sub/conv-plans.json");
  const KernelPlan first = plan_kernels(kShapes, 4, cache, nullptr);
  EXPECT_EQ(first.source, "measured");
  ASSERT_EQ(first.shapes.size(), kShapes.size());
  for (const auto& s : first.shapes) {
    ASSERT_EQ(s.seconds.size(), plan_candidates(ConvPolicy::kAuto, s.shape).size());
    // The choice is the fastest candidate.
    for (const auto& [kernel, seconds] : s.seconds) {
      EXPECT_GT(seconds, 0.0);
      const auto chosen =
          std::find_if(s.seconds.begin(), s.seconds.end(), [&](const auto& t) { return t.first == s.kernel; });
      ASSERT_NE(chosen, s.seconds.end());
      EXPECT_LE(chosen->second, seconds);
    }
  }
  ASSERT_TRUE(std::filesystem::exists(cache));
  const auto doc = read_json_file(cache);
  EXPECT_TRUE(doc["timings"].contains(machine_signature(at::get_num_threads())));
  // A second plan measures nothing and takes the same kernels; another batch is measured afresh.
  const KernelPlan second = plan_kernels(kShapes, 4, cache, nullptr);
  EXPECT_EQ(second.source, "cache");
  EXPECT_EQ(second.plan(), first.plan());
  EXPECT_EQ(plan_kernels({kShapes[0]}, 2, cache, nullptr).source, "measured");
  EXPECT_EQ(plan_kernels({}, 4, cache, nullptr).source, "none");
  // The record round-trips.
  const KernelPlan back = plan_from_json(to_json(first), "kernels.json");
  EXPECT_EQ(back.source, "resumed");
  EXPECT_EQ(back.plan(), first.plan());
  EXPECT_EQ(back.batch, 4);
}

TEST_F(KernelsTest, MeasuringLeavesTheGlobalGeneratorAlone) {
  torch::manual_seed(7);
  const auto expected = torch::randn({4});
  torch::manual_seed(7);
  (void)time_conv_kernel(ConvShape{16, 16, 8, 8}, 2, ConvKernel{ConvAlgorithm::kDirect, ConvIsa::kAvx2}, 1);
  EXPECT_TRUE(torch::equal(torch::randn({4}), expected));
}

TEST_F(KernelsTest, AFixedPolicyMeasuresNothing) {
  TempDir dir;
  set_conv_policy(ConvPolicy::kDirect);
  const KernelPlan plan = plan_kernels(kShapes, 4, dir.file("c.json"), nullptr);
  EXPECT_EQ(plan.source, "fixed");
  for (const auto& s : plan.shapes) {
    EXPECT_EQ(s.kernel.algorithm, ConvAlgorithm::kDirect);
    EXPECT_TRUE(s.seconds.empty());
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.json")));
  if (isa_available(ConvIsa::kAvx2)) {
    set_conv_policy(ConvPolicy::kWinograd2x2);
    const KernelPlan w = plan_kernels(kShapes, 4, "", nullptr);
    for (const auto& s : w.shapes) EXPECT_EQ(s.kernel, (ConvKernel{ConvAlgorithm::kWinograd2x2, *widest_isa()}));
    // A run begun before plans were kept ran F(2x2, 3x3) everywhere.
    EXPECT_EQ(earlier_plan(kShapes, 4).plan(), w.plan());
  }
}

TEST_F(KernelsTest, ACacheThatIsNotOneIsNamed) {
  if (!isa_available(ConvIsa::kAvx2)) GTEST_SKIP() << "no Winograd kernels on this CPU: nothing is cached";
  TempDir dir;
  const std::string cache = dir.file("conv-plans.json");
  const auto write = [&](const std::string& text) { std::ofstream(cache) << text; };
  write("{\"format\": \"reslab-conv-plans\", \"version\"");
  testing::expect_error<std::runtime_error>([&] { plan_kernels(kShapes, 4, cache, nullptr); }, {cache, "delete it"});
  write(R"({"format": "something-else", "version": 1, "timings": {}})");
  testing::expect_error<std::runtime_error>([&] { plan_kernels(kShapes, 4, cache, nullptr); },
                                            {cache, "not a cache", "reslab-conv-plans"});
  write(R"({"format": "reslab-conv-plans", "version": 1, "timings": {"m": {"b4": {"16-16-8x8": {"direct": -1}}}}})");
  testing::expect_error<std::runtime_error>([&] { plan_kernels(kShapes, 4, cache, nullptr); },
                                            {cache, "16-16-8x8.direct", "-1", "positive number of seconds"});
  write(R"({"format": "reslab-conv-plans", "version": 1, "timings": {"m": {"b4": {"16-16-8x8": {"fast": 1}}}}})");
  testing::expect_error<std::runtime_error>([&] { plan_kernels(kShapes, 4, cache, nullptr); }, {cache, "fast"});
  write(R"({"format": "reslab-conv-plans", "version": 1, "timings": {"m": {"b4": {"16-16": {"direct": 1}}}}})");
  testing::expect_error<std::runtime_error>([&] { plan_kernels(kShapes, 4, cache, nullptr); }, {cache, "16-16"});
}

TEST_F(KernelsTest, ARecordedPlanIsReadStrictly) {
  const nlohmann::json good = {{"policy", "auto"},
                               {"batch", 128},
                               {"threads", 2},
                               {"source", "measured"},
                               {"shapes", {{"16-16-8x8", {{"kernel", "direct"}}}}}};
  EXPECT_EQ(plan_from_json(good, "k.json").plan().at(ConvShape{16, 16, 8, 8}).algorithm, ConvAlgorithm::kDirect);
  auto bad = good;
  bad["policy"] = "fastest";
  testing::expect_error<std::runtime_error>([&] { plan_from_json(bad, "k.json"); }, {"k.json", "policy", "fastest"});
  bad = good;
  bad["batch"] = -1;
  testing::expect_error<std::runtime_error>([&] { plan_from_json(bad, "k.json"); }, {"k.json", "batch"});
  bad = good;
  bad["shapes"]["16-16-8x8"]["kernel"] = "winograd2x2-mmx";
  testing::expect_error<std::runtime_error>([&] { plan_from_json(bad, "k.json"); },
                                            {"k.json", "shapes.16-16-8x8.kernel", "mmx"});
  bad = good;
  bad["shapes"] = {{"sixteen", {{"kernel", "direct"}}}};
  testing::expect_error<std::runtime_error>([&] { plan_from_json(bad, "k.json"); }, {"k.json", "sixteen"});
  bad = good;
  bad.erase("shapes");
  testing::expect_error<std::runtime_error>([&] { plan_from_json(bad, "k.json"); }, {"k.json", "shapes"});
  testing::expect_error<std::runtime_error>([&] { plan_from_json(nlohmann::json::array(), "k.json"); }, {"k.json"});
  if (isa_available(ConvIsa::kAvx2)) {
    // A width this CPU lacks, or one that does not take the shape, runs at AVX2: the same floats.
    bad = good;
    bad["shapes"] = {{"24-24-8x8", {{"kernel", "winograd2x2-avx512"}}}};
    EXPECT_EQ(plan_from_json(bad, "k.json").plan().at(ConvShape{24, 24, 8, 8}).isa, ConvIsa::kAvx2);
    // The mixed scheme, as a run under auto or RESLAB_CONV=winograd-mixed records it.
    auto mixed = good;
    mixed["policy"] = "winograd-mixed";
    mixed["shapes"] = {{"16-16-8x8", {{"kernel", "winograd-mixed-avx2"}}}};
    const KernelPlan resumed = plan_from_json(mixed, "k.json");
    EXPECT_EQ(resumed.policy, ConvPolicy::kWinogradMixed);
    EXPECT_EQ(resumed.plan().at(ConvShape{16, 16, 8, 8}), (ConvKernel{ConvAlgorithm::kWinogradMixed, ConvIsa::kAvx2}));
    EXPECT_EQ(to_json(resumed)["shapes"]["16-16-8x8"]["kernel"], "winograd-mixed-avx2");
    bad["shapes"] = {{"12-12-8x8", {{"kernel", "winograd2x2-avx2"}}}};
    testing::expect_error<std::runtime_error>([&] { plan_from_json(bad, "k.json"); },
                                              {"k.json", "12-12-8x8", "a shape the Winograd kernels take"});
  }
}

}  // namespace
}  // namespace reslab
