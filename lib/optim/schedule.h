#pragma once
// Learning-rate schedules as small composable rules: step drops, cosine decay, warm-up.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace reslab {

/// One piece of a schedule: maps the learning rate so far to the one in force at `iter` (iterations done).
class LrRule {
 public:
  virtual ~LrRule() = default;
  virtual double apply(double lr, int64_t iter) const = 0;
  /// Sees the training error (percent) measured up to `iter`; rules that react to it override this.
  virtual void observe_train_error(double /*error*/, int64_t /*iter*/) {}
  /// What the rule has learned while training (for checkpoints); null for stateless rules.
  virtual nlohmann::json state() const { return nullptr; }
  virtual void load_state(const nlohmann::json& /*state*/) {}
};

/// Multiplies by `gamma` at each milestone (an iteration count): the paper's /10 at 32k and 48k.
class StepDecay : public LrRule {
 public:
  StepDecay(std::vector<int64_t> milestones, double gamma);
  double apply(double lr, int64_t iter) const override;

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
};

/// Half-cosine from the learning rate down to 0 over `total` iterations.
class CosineDecay : public LrRule {
 public:
  explicit CosineDecay(int64_t total);
  double apply(double lr, int64_t iter) const override;

 private:
  int64_t total_;
};

/// A fixed learning rate at the start: until the training error falls below `until_error` percent (the paper's
/// ResNet-110: 0.01 until below 80%), or for `iterations`, whichever ends first. Unset bounds do not end it;
/// at least one must be set.
class Warmup : public LrRule {
 public:
  Warmup(double lr, std::optional<double> until_error, std::optional<int64_t> iterations);
  double apply(double lr, int64_t iter) const override;
  void observe_train_error(double error, int64_t iter) override;
  nlohmann::json state() const override;
  void load_state(const nlohmann::json& state) override;
  /// The iteration at which the warm-up ended (by error), if it has.
  std::optional<int64_t> ended_at() const { return ended_at_; }

 private:
  double lr_;
  std::optional<double> until_error_;
  std::optional<int64_t> iterations_;
  std::optional<int64_t> ended_at_;
};

/// A base learning rate passed through rules in order (warm-up last, so that it overrides the others).
class LrSchedule {
 public:
  explicit LrSchedule(double base_lr) : base_lr_(base_lr) {}
  LrSchedule& add(std::unique_ptr<LrRule> rule);
  double lr(int64_t iter) const;
  void observe_train_error(double error, int64_t iter);
  double base_lr() const { return base_lr_; }
  /// The rules' states in order, for checkpoints.
  nlohmann::json state() const;
  void load_state(const nlohmann::json& state);

 private:
  double base_lr_;
  std::vector<std::unique_ptr<LrRule>> rules_;
};

/// How a run's schedule is described in an experiment file (see experiments/*.json).
struct ScheduleConfig {
  /// Drop points, in iterations or (when milestones_in_epochs) in epochs.
  std::vector<double> milestones;
  bool milestones_in_epochs = false;
  double gamma = 0.1;
  bool cosine = false;
  std::optional<double> warmup_lr;
  std::optional<double> warmup_until_error;
  std::optional<int64_t> warmup_iterations;
  /// Warm-up applies only to runs at least this deep (the paper warms up ResNet-110 only); 0: all runs. The
  /// runner applies it (make_schedule does not know the depth).
  int64_t warmup_min_depth = 0;
};

/// Builds the schedule for a run of `total_iters` iterations with `iters_per_epoch` iterations per epoch.
LrSchedule make_schedule(const ScheduleConfig& config, double base_lr, int64_t iters_per_epoch, int64_t total_iters);

}  // namespace reslab
