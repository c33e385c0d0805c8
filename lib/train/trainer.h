#pragma once
// The training loop: forward, loss, backward, step; everything else is a callback.

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "distributed/grad_sync.h"
#include "models/network.h"
#include "optim/sgd.h"
#include "train/metrics.h"
#include "train/precision.h"

namespace reslab {

class CapturedStep;
class CapturedEval;

/// Training statistics over a window of iterations (from the last log point to this one).
struct WindowStats {
  int64_t iter_begin = 0, iter_end = 0;
  double loss = 0.0;
  double error = 0.0;  ///< percent of the window's training examples misclassified (augmented, train mode)
  int64_t images = 0;
  double img_per_s = 0.0;  ///< images over the time spent in training steps (data, forward, backward, update)
};

/// How a run stands or ended. Summaries, metrics and checkpoints write it as to_string's word.
enum class RunStatus {
  kRunning,
  kCompleted,
  kDiverged,     ///< a non-finite loss (a result, not an error)
  kInterrupted,  ///< a signal (SIGINT, SIGTERM) stopped it after the step in progress
};
/// "running", "completed", "diverged", "interrupted".
const char* to_string(RunStatus status);

/// Where a run stands; callbacks read it and may request a stop.
struct TrainState {
  int64_t iter = 0;  ///< iterations done
  int64_t total_iters = 0;
  int64_t iters_per_epoch = 1;
  int64_t batch = 1;
  int64_t train_size = 1;
  double lr = 0.0;  ///< learning rate of the latest step
  std::optional<WindowStats> last_window;
  RunStatus status = RunStatus::kRunning;
  std::optional<int64_t> diverged_at;  ///< the iteration whose loss was not finite (iter stops just before it)
  std::optional<double> last_finite_loss;
  double train_seconds = 0.0;  ///< time inside training steps
  bool stop_requested = false;

  /// Epochs done, as a fraction: iterations x batch / training-set size (docs/design.md).
  double epoch() const { return static_cast<double>(iter) * batch / static_cast<double>(train_size); }
  /// Whole epochs done, counted in loader epochs (iters_per_epoch batches each).
  int64_t epoch_index() const { return iter / iters_per_epoch; }
};

struct TrainContext {
  NetworkBase& model;
  torch::optim::SGD& optimizer;
  BatchSource& train_loader;
  JsonlWriter* metrics = nullptr;  ///< where records go; null writes none
  TrainState state;
  /// Data-parallel training: the job's process group and the gradient all-reduce (both null in one process).
  /// The loader is then this rank's shard; statistics windows and stop decisions are agreed across ranks.
  Distributed* dist = nullptr;
  GradientSync* grad_sync = nullptr;
  /// Clip the whole gradient to this L2 norm before each step (after the hooks have seen it); 0: no clipping.
  double clip_grad_norm = 0.0;
  /// The arithmetic of every forward pass, in training and in evaluation (train/precision.h).
  Precision precision = Precision::kFloat32;
  /// CUDA graphs (train/graphs.h; single process only): the step and the evaluation batches go through these
  /// when set, replayed where they can be.
  CapturedStep* captured_step = nullptr;
  CapturedEval* captured_eval = nullptr;
};

/// Hooks around the loop; every method does nothing by default. Per-step hooks must stay cheap.
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(TrainContext& /*ctx*/) {}
  virtual void on_batch_begin(TrainContext& /*ctx*/) {}
  /// After the backward pass, before the update, in the steps where this callback's watches_step() said true,
  /// and only in those, with or without CUDA graphs (a replayed graph runs no host code).
  virtual void on_after_backward(TrainContext& /*ctx*/) {}
  /// Called after on_batch_begin: whether this callback reads this step as it happens (a tap on the forward
  /// pass, the gradients in on_after_backward). A watched step runs eagerly under CUDA graphs.
  virtual bool watches_step() const { return false; }
  virtual void on_batch_end(TrainContext& /*ctx*/) {}
  /// Every log_every iterations, at each epoch end and at the end, with the statistics since the last call.
  virtual void on_log(TrainContext& /*ctx*/, const WindowStats& /*window*/) {}
  virtual void on_epoch_end(TrainContext& /*ctx*/) {}
  virtual void on_train_end(TrainContext& /*ctx*/) {}
  /// A callback with state that a resumed run needs names it here (a key of the checkpoint) and saves it.
  virtual std::string state_name() const { return ""; }
  virtual nlohmann::json save_state() const { return nullptr; }
  virtual void load_state(const nlohmann::json& /*state*/) {}
};

class Trainer {
 public:
  /// `log_every`: iterations between statistics windows (and the only host syncs beyond evaluation).
  Trainer(TrainContext& ctx, int64_t total_iters, int64_t log_every);
  void add(std::shared_ptr<Callback> callback);
  /// Trains until total_iters, a non-finite loss (status "diverged"), an interrupt signal (status "interrupted",
  /// after the step in progress) or a callback's stop request.
  void run();
  /// Training error (percent) over the last epoch's worth of iterations done, or nullopt before any.
  std::optional<double> last_epoch_train_error() const;
  /// Everything the loop and its callbacks need to continue exactly from here (the open statistics window
  /// included), as JSON for a checkpoint.
  nlohmann::json save_state() const;
  /// Continues from a saved state: sets the iteration, the window and every named callback's state.
  void load_state(const nlohmann::json& state);

 private:
  void flush_window();
  /// Data-parallel: replaces the window's entries from `window_global_` on with their values over all ranks
  /// (mean loss, summed errors and sizes), on every rank at once.
  void globalize_window();

  TrainContext& ctx_;
  int64_t log_every_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  // Per-step loss and misclassification counts since the last flush, kept as tensors (no sync per step).
  std::vector<torch::Tensor> window_losses_, window_wrong_;
  std::vector<int64_t> window_sizes_;
  int64_t window_begin_ = 0;
  size_t window_global_ = 0;  ///< leading window entries already over all ranks
  double window_seconds_ = 0.0;
  // (wrong, examples) of the last iters_per_epoch iterations, for the final training error.
  std::deque<std::pair<int64_t, int64_t>> recent_;
};

/// One training step, the same for the trainer and `reslab bench`: gradients zeroed, forward, cross-entropy,
/// backward (through `grad_sync`'s all-reduce in a data-parallel job, null otherwise), `after_backward` (the
/// trainer's hooks; may be empty), the gradient clipped to `clip_grad_norm` when above 0 (on every rank alike: it
/// is the all-reduced gradient), the optimiser's step. The forward pass runs at `precision` (bf16: under autocast;
/// the loss is computed from the logits in float32 at least, and the backward pass outside autocast). Returns
/// the logits and the loss, left on the device.
struct StepOutput {
  torch::Tensor logits, loss;
};
/// `model`'s forward pass at `precision` (bf16: under autocast, its logits in bf16; one pass, so no cast weight
/// outlives it): the one forward pass of train_step, evaluation and the CUDA graphs' step.
torch::Tensor forward_at(NetworkBase& model, const torch::Tensor& inputs, Precision precision);
StepOutput train_step(NetworkBase& model, torch::optim::SGD& optimizer, const torch::Tensor& inputs,
                      const torch::Tensor& targets, GradientSync* grad_sync = nullptr,
                      const std::function<void()>& after_backward = {}, double clip_grad_norm = 0.0,
                      Precision precision = Precision::kFloat32);

/// Loss and error (percent) of `model` over every batch of `loader`, in eval mode without gradients. With
/// `dist`, every rank evaluates rank 0's weights and running statistics on its share of the batches and every
/// rank returns the totals. The forward passes run at `precision`, the loss in float32 at least.
struct EvalResult {
  double loss = 0.0;
  double error = 0.0;
  int64_t examples = 0;
};
/// With `captured`, batches of the full size replay a CUDA graph (train/graphs.h); the sums are the same.
EvalResult evaluate(NetworkBase& model, const BatchSource& loader, Distributed* dist = nullptr,
                    Precision precision = Precision::kFloat32, CapturedEval* captured = nullptr);

}  // namespace reslab
