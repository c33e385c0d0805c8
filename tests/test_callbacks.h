#pragma once
// Callbacks that tests use to break a run at a chosen iteration: an interrupt, a crash, a non-finite loss.

#include <limits>
#include <stdexcept>

#include "experiment/config.h"
#include "test_util.h"
#include "train/interrupt.h"
#include "train/trainer.h"

namespace reslab::testing {

/// Asks for an interrupt (as Ctrl-C would) during the step that makes iteration `at`.
class InterruptAt : public Callback {
 public:
  explicit InterruptAt(int64_t at) : at_(at) {}
  void on_batch_begin(TrainContext& ctx) override {
    if (ctx.state.iter + 1 == at_) request_interrupt();
  }

 private:
  int64_t at_;
};

/// A short run of `model` on Fashion-MNIST's first `train_size` training and `test_size` test images: `epochs`
/// epochs at `batch`, the learning rate divided by 10 after epoch 2, a training record every `log_every`
/// iterations, 2 threads.
inline RunConfig fashion_run(const std::string& model, int64_t train_size, int64_t test_size, int64_t batch,
                             double epochs, int64_t log_every) {
  RunConfig run;
  run.name = model;
  run.model.name = model;
  run.data.dataset = "fashion-mnist";
  run.data.dir = fashion_dir();
  run.data.split.train_size = train_size;
  run.data.split.test_size = test_size;
  run.optim.batch = batch;
  run.optim.epochs = epochs;
  run.optim.schedule.milestones = {2};
  run.optim.schedule.milestones_in_epochs = true;
  run.train.log_every = log_every;
  run.threads = 2;
  return run;
}

/// What CrashAt throws.
struct SimulatedCrash : std::runtime_error {
  SimulatedCrash() : std::runtime_error("simulated crash") {}
};

/// Throws after the step that makes iteration `at`, before anything else sees it: the files on disk are then
/// what a SIGKILL at that moment leaves.
class CrashAt : public Callback {
 public:
  explicit CrashAt(int64_t at) : at_(at) {}
  void on_batch_end(TrainContext& ctx) override {
    if (ctx.state.iter == at_) throw SimulatedCrash();
  }

 private:
  int64_t at_;
};

/// Poisons a weight with NaN just before the step that makes iteration `at`, but only while the learning rate is
/// at least `min_lr` (0: at any rate): with a minimum, a run that diverges at its learning rate and trains at a
/// lower one.
class PoisonAt : public Callback {
 public:
  explicit PoisonAt(int64_t at, double min_lr = 0.0) : at_(at), min_lr_(min_lr) {}
  void on_batch_begin(TrainContext& ctx) override {
    if (ctx.state.iter + 1 != at_ || ctx.state.lr < min_lr_) return;
    torch::NoGradGuard no_grad;
    ctx.model.parameters()[0].fill_(std::numeric_limits<float>::quiet_NaN());
  }

 private:
  int64_t at_;
  double min_lr_;
};

}  // namespace reslab::testing
