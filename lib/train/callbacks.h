#pragma once
// The standard callbacks: learning-rate schedule, evaluation, metrics records, progress line.

#include <chrono>
#include <iosfwd>
#include <optional>
#include <set>
#include <string>

#include "models/batch_norm.h"
#include "optim/schedule.h"
#include "train/trainer.h"

namespace reslab {

/// Sets the learning rate before every step and feeds the training error to the schedule (for warm-up).
class ScheduleCallback : public Callback {
 public:
  explicit ScheduleCallback(LrSchedule schedule) : schedule_(std::move(schedule)) {}
  void on_batch_begin(TrainContext& ctx) override;
  void on_log(TrainContext& ctx, const WindowStats& window) override;
  std::string state_name() const override { return "schedule"; }
  /// The rules' state; with a scale other than 1, {"rules": that, "lr_scale": scale}.
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;
  /// Multiplies every learning rate the schedule gives from now on (a retry after divergence lowers it).
  void set_lr_scale(double scale) { lr_scale_ = scale; }
  double lr_scale() const { return lr_scale_; }

 private:
  LrSchedule schedule_;
  double lr_scale_ = 1.0;
};

/// Writes a "train" record for every statistics window.
class TrainRecordCallback : public Callback {
 public:
  void on_log(TrainContext& ctx, const WindowStats& window) override;
};

/// Evaluates on the validation and test sets at each epoch end (when asked), at chosen iterations and at the
/// end, writing "eval" records; remembers the latest and best errors.
class EvalCallback : public Callback {
 public:
  EvalCallback(const BatchSource* val, const BatchSource* test, bool every_epoch, std::set<int64_t> at_iters);
  void on_batch_end(TrainContext& ctx) override;
  void on_epoch_end(TrainContext& ctx) override;
  void on_train_end(TrainContext& ctx) override;

  std::optional<double> val_error() const { return val_error_; }
  std::optional<double> test_error() const { return test_error_; }
  std::optional<double> best_test_error() const { return best_test_error_; }
  double seconds() const { return seconds_; }
  std::string state_name() const override { return "eval"; }
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;

 private:
  void run_eval(TrainContext& ctx);

  const BatchSource* val_;
  const BatchSource* test_;
  bool every_epoch_;
  std::set<int64_t> at_iters_;
  int64_t last_eval_iter_ = -1;
  std::optional<double> val_error_, test_error_, best_test_error_;
  double seconds_ = 0.0;
};

/// One line of progress: iteration, epoch, loss, error, img/s, ETA. On a terminal it rewrites itself a few
/// times a second; otherwise it prints a plain line every `plain_interval_s` seconds and at the end.
class ProgressCallback : public Callback {
 public:
  ProgressCallback(std::string label, std::ostream& out, bool terminal, double plain_interval_s = 15.0);
  void on_train_begin(TrainContext& ctx) override;
  void on_batch_end(TrainContext& ctx) override;
  void on_train_end(TrainContext& ctx) override;

 private:
  void print(TrainContext& ctx, bool final_line);

  std::string label_;
  std::ostream& out_;
  bool terminal_;
  double interval_s_;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t start_iter_ = 0;
};

/// Writes a checkpoint every `every_epochs` epochs and when the run stops (completed or interrupted), keeping
/// the newest `keep`. Its meta holds the trainer's state, the byte length of metrics.jsonl it matches and
/// `config` (what the run was started with), so that a resumed run can check it continues the same run.
class CheckpointCallback : public Callback {
 public:
  /// `save_at_start`: also write one before the first step of a fresh run, so that a retry after an early
  /// divergence has a checkpoint to go back to.
  CheckpointCallback(const Trainer& trainer, std::string dir, int64_t every_epochs, nlohmann::json config,
                     int64_t keep = 2, bool save_at_start = false);
  void on_train_begin(TrainContext& ctx) override;
  void on_epoch_end(TrainContext& ctx) override;
  void on_train_end(TrainContext& ctx) override;
  /// Writes one now, even at an iteration already saved (a retry changed the learning-rate scale there).
  void save_now(TrainContext& ctx);

 private:
  void save(TrainContext& ctx);

  const Trainer& trainer_;
  std::string dir_;
  int64_t every_epochs_;
  nlohmann::json config_;
  int64_t keep_;
  bool save_at_start_;
  int64_t last_saved_ = -1;
};

/// "1h02m", "3m05s", "42s".
std::string format_duration(double seconds);

/// Runs a rank-0-only callback (a probe) with every BatchNorm on this rank's own statistics: a probe's extra
/// forward and backward passes must not start the collectives of synchronised BN, which the other ranks, busy
/// with their training step, would never join.
class RankLocalBatchNorm : public Callback {
 public:
  RankLocalBatchNorm(std::shared_ptr<Callback> inner, NetworkBase& model, StatReduce reduce)
      : inner_(std::move(inner)), model_(model), reduce_(std::move(reduce)) {}
  void on_train_begin(TrainContext& ctx) override {
    local([&] { inner_->on_train_begin(ctx); });
  }
  void on_batch_begin(TrainContext& ctx) override {
    local([&] { inner_->on_batch_begin(ctx); });
  }
  void on_after_backward(TrainContext& ctx) override {
    local([&] { inner_->on_after_backward(ctx); });
  }
  bool watches_step() const override { return inner_->watches_step(); }
  void on_batch_end(TrainContext& ctx) override {
    local([&] { inner_->on_batch_end(ctx); });
  }
  void on_log(TrainContext& ctx, const WindowStats& w) override {
    local([&] { inner_->on_log(ctx, w); });
  }
  void on_epoch_end(TrainContext& ctx) override {
    local([&] { inner_->on_epoch_end(ctx); });
  }
  void on_train_end(TrainContext& ctx) override {
    local([&] { inner_->on_train_end(ctx); });
  }
  std::string state_name() const override { return inner_->state_name(); }
  nlohmann::json save_state() const override { return inner_->save_state(); }
  void load_state(const nlohmann::json& state) override { inner_->load_state(state); }

 private:
  template <typename F>
  void local(F&& f) {
    set_batch_norm_sync(model_, nullptr);
    try {
      f();
    } catch (...) {
      set_batch_norm_sync(model_, reduce_);
      throw;
    }
    set_batch_norm_sync(model_, reduce_);
  }
  std::shared_ptr<Callback> inner_;
  NetworkBase& model_;
  StatReduce reduce_;
};

}  // namespace reslab
