// Learning-rate rules at their boundaries, and the SGD setup.
#include <map>
#include <set>

#include "models/registry.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "test_util.h"

namespace reslab {
namespace {

TEST(Schedule, PaperStepDropsAtExactly32kAnd48k) {
  LrSchedule s(0.1);
  s.add(std::make_unique<StepDecay>(std::vector<int64_t>{48000, 32000}, 0.1));
  EXPECT_DOUBLE_EQ(s.lr(0), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(31999), 0.1);
  EXPECT_NEAR(s.lr(32000), 0.01, 1e-12);
  EXPECT_NEAR(s.lr(47999), 0.01, 1e-12);
  EXPECT_NEAR(s.lr(48000), 0.001, 1e-12);
  EXPECT_NEAR(s.lr(63999), 0.001, 1e-12);
}

TEST(Schedule, CosineFromBaseToZero) {
  LrSchedule s(0.2);
  s.add(std::make_unique<CosineDecay>(100));
  EXPECT_DOUBLE_EQ(s.lr(0), 0.2);
  EXPECT_NEAR(s.lr(50), 0.1, 1e-12);
  EXPECT_NEAR(s.lr(100), 0.0, 1e-12);
  EXPECT_NEAR(s.lr(150), 0.0, 1e-12);
  EXPECT_THROW(CosineDecay(0), std::invalid_argument);
}

TEST(Schedule, WarmupUntilTrainingErrorFallsBelowThreshold) {
  // ResNet-110: 0.01 until the training error is below 80%, then back to 0.1 (and the step drops after).
  LrSchedule s(0.1);
  s.add(std::make_unique<StepDecay>(std::vector<int64_t>{32000}, 0.1));
  s.add(std::make_unique<Warmup>(0.01, 80.0, std::nullopt));
  EXPECT_DOUBLE_EQ(s.lr(0), 0.01);
  s.observe_train_error(85.0, 200);
  EXPECT_DOUBLE_EQ(s.lr(200), 0.01);
  s.observe_train_error(80.0, 300);  // not below
  EXPECT_DOUBLE_EQ(s.lr(300), 0.01);
  s.observe_train_error(79.9, 400);
  EXPECT_DOUBLE_EQ(s.lr(399), 0.01);
  EXPECT_DOUBLE_EQ(s.lr(400), 0.1);
  s.observe_train_error(95.0, 500);  // once ended, it stays ended
  EXPECT_DOUBLE_EQ(s.lr(500), 0.1);
  EXPECT_NEAR(s.lr(32000), 0.01, 1e-12);
}

TEST(Schedule, WarmupForFixedIterationsAndItsLimit) {
  Warmup fixed(0.01, std::nullopt, 400);
  EXPECT_DOUBLE_EQ(fixed.apply(0.1, 399), 0.01);
  EXPECT_DOUBLE_EQ(fixed.apply(0.1, 400), 0.1);
  Warmup capped(0.01, 80.0, 1000);
  capped.observe_train_error(90.0, 999);
  EXPECT_DOUBLE_EQ(capped.apply(0.1, 999), 0.01);
  EXPECT_DOUBLE_EQ(capped.apply(0.1, 1000), 0.1);
  EXPECT_THROW(Warmup(0.01, std::nullopt, std::nullopt), std::invalid_argument);
}

TEST(Schedule, MilestonesInEpochsBecomeIterations) {
  ScheduleConfig c;
  c.milestones = {2, 3.5};
  c.milestones_in_epochs = true;
  LrSchedule s = make_schedule(c, 0.1, /*iters_per_epoch=*/100, /*total_iters=*/400);
  EXPECT_DOUBLE_EQ(s.lr(199), 0.1);
  EXPECT_NEAR(s.lr(200), 0.01, 1e-12);
  EXPECT_NEAR(s.lr(349), 0.01, 1e-12);
  EXPECT_NEAR(s.lr(350), 0.001, 1e-12);
}

TEST(Sgd, PaperDefaultsAndLearningRateUpdates) {
  auto w = torch::ones({3}, torch::requires_grad());
  auto opt = make_sgd({w}, SgdConfig{});
  const auto& o = static_cast<const torch::optim::SGDOptions&>(opt->param_groups()[0].options());
  EXPECT_DOUBLE_EQ(o.momentum(), 0.9);
  EXPECT_DOUBLE_EQ(o.weight_decay(), 1e-4);
  set_learning_rate(*opt, 0.5);
  EXPECT_DOUBLE_EQ(o.lr(), 0.5);
  // One step from zero momentum: w -= lr * (grad + wd * w).
  w.sum().backward();
  opt->step();
  EXPECT_NEAR(w[0].item<double>(), 1.0 - 0.5 * (1.0 + 1e-4), 1e-6);
}

TEST(Sgd, ParametersAreClassifiedByKind) {
  const ModelSpec spec{{1, 16, 16}, 10, Shortcut::A};
  auto fixup = build_model("resnet8-fixup", spec);
  const auto kinds = classify_parameters(*fixup);
  std::map<std::string, std::string> by_name;
  size_t i = 0;
  for (const auto& p : fixup->named_parameters()) by_name[p.key()] = kinds.at(i++);
  EXPECT_EQ(by_name.at("conv1.weight"), "weight");
  EXPECT_EQ(by_name.at("bias1"), "scalar_bias");
  EXPECT_EQ(by_name.at("stage1.0.bias1a"), "scalar_bias");
  EXPECT_EQ(by_name.at("stage1.0.scale"), "multiplier");
  EXPECT_EQ(by_name.at("fc.weight"), "weight");
  EXPECT_EQ(by_name.at("fc.bias"), "bias");
  auto bn = build_model("resnet8", spec);
  std::set<std::string> bn_kinds;
  for (const auto& k : classify_parameters(*bn)) bn_kinds.insert(k);
  EXPECT_EQ(bn_kinds, (std::set<std::string>{"weight", "bias", "norm"}));
  testing::expect_error<std::invalid_argument>(
      [] {
        check_rules({ParamGroupRule{{"gamma"}, 0.1, true}});
      },
      {"unknown parameter kind 'gamma'", "scalar_bias"});
  testing::expect_error<std::invalid_argument>(
      [] {
        check_rules({ParamGroupRule{{"bias"}, 0.1, true}, ParamGroupRule{{"bias"}, 1, false}});
      },
      {"'bias' is in two groups"});
}

TEST(Sgd, GroupsTrainAtTheirOwnRateThroughEverySchedule) {
  // A linear layer: its weight in the base group, its bias at lr x 0.1 without weight decay.
  torch::nn::Linear layer(2, 1);
  {
    torch::NoGradGuard no_grad;
    layer->weight.fill_(1.0);
    layer->bias.fill_(1.0);
  }
  SgdConfig config;
  config.lr = 0.5;
  config.momentum = 0;
  config.groups = {ParamGroupRule{{"bias"}, 0.1, /*weight_decay=*/false}};
  auto opt = make_sgd(*layer, config);
  ASSERT_EQ(opt->param_groups().size(), 2u);
  EXPECT_EQ(learning_rate_multipliers(*opt), (std::vector<double>{1.0, 0.1}));
  auto lr = [&](size_t g) {
    return static_cast<const torch::optim::SGDOptions&>(opt->param_groups()[g].options()).lr();
  };
  EXPECT_DOUBLE_EQ(lr(0), 0.5);
  EXPECT_DOUBLE_EQ(lr(1), 0.05);
  // A schedule sets the base rate; each group follows at its multiple.
  set_learning_rate(*opt, 0.2);
  EXPECT_DOUBLE_EQ(lr(0), 0.2);
  EXPECT_NEAR(lr(1), 0.02, 1e-15);
  // One step, gradients 1 (weight: x = 1) and 1 (bias): w -= 0.2 (1 + 1e-4 w); b -= 0.02 x 1, no decay.
  layer->forward(torch::ones({1, 2})).sum().backward();
  opt->step();
  EXPECT_NEAR(layer->weight[0][0].item<double>(), 1.0 - 0.2 * (1.0 + 1e-4), 1e-7);
  EXPECT_NEAR(layer->bias[0].item<double>(), 1.0 - 0.02, 1e-7);
  // No rule: one group, the paper's (weight decay on everything).
  auto plain = make_sgd(*layer, SgdConfig{});
  EXPECT_EQ(plain->param_groups().size(), 1u);
  testing::expect_error<std::invalid_argument>([&] { make_sgd(layer->parameters(), config); }, {"need the module"});
}

}  // namespace
}  // namespace reslab
