// Learning-rate rules at their boundaries, and the SGD setup.
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

}  // namespace
}  // namespace reslab
