#pragma once
// CUDA graphs for the training step and for evaluation (train.cuda_graphs, `reslab bench --cuda-graphs`). On a
// GPU a step at the run's batch size is captured once (forward, loss, backward, clipping, the optimiser's update)
// and replayed for every batch after it: one launch instead of about a thousand. The host code of a replayed
// step does not run, so what the step reads must stay where it was captured: the batch is copied into static
// tensors, and the step is captured again whenever the learning rate or the storage of a weight, BatchNorm
// buffer or momentum buffer changed (a schedule's drop, a checkpoint loaded). Warm-up steps, a batch of another
// size and a step a probe watches run eagerly, as train_step.

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "models/network.h"
#include "train/precision.h"
#include "train/trainer.h"

namespace reslab {

/// Eager steps before a training step is first captured (PyTorch's recipe for whole-network capture).
inline constexpr int64_t kGraphWarmup = 3;

/// Whether this build of reslab can capture CUDA graphs: built against a CUDA LibTorch (scripts/build-cuda).
bool cuda_graphs_built();

/// Scales the gradients of `parameters` so that their joint L2 norm is at most `max_norm`: the arithmetic of
/// torch::nn::utils::clip_grad_norm_ (the same floats), without reading the norm back to the host, so that it
/// neither waits for a GPU nor breaks a capture.
void clip_gradients(const std::vector<torch::Tensor>& parameters, double max_norm);

/// What records a step's work and runs it again. On a CUDA device a CUDA graph: record() captures the kernels
/// without running them, replay() launches them. On the CPU (tests: a CPU has no graphs) record() keeps the
/// function and replay() calls it, so the host code runs again where a graph would replay its kernels only;
/// everything else about a step (static inputs, when to capture again) is the same.
class Recording {
 public:
  virtual ~Recording() = default;
  virtual void record(const std::function<void()>& body) = 0;
  virtual void replay() = 0;
  virtual void reset() = 0;
};
/// A CUDA graph on a CUDA device (in a build that has them), the CPU's stand-in on the CPU; throws
/// std::invalid_argument for a CUDA device in a build without graphs.
std::unique_ptr<Recording> make_recording(const torch::Device& device);

/// How the steps (or evaluation batches) ran: eagerly, captured, replayed (a capture is also replayed once).
struct GraphCounts {
  int64_t eager = 0;
  int64_t captures = 0;
  int64_t replays = 0;
};
nlohmann::json to_json(const GraphCounts& counts);

/// Runs `model`'s work on a side stream of its CUDA device (captures need one), ordered after everything queued
/// before on the current stream, and everything queued after it on the current stream after it. Nothing on the CPU.
class SideStream;

/// The training step under CUDA graphs: computes what train_step computes (single process: no gradient
/// all-reduce) and returns the logits and the loss as tensors of their own.
class CapturedStep {
 public:
  /// `warmup`: steps at the captured size run eagerly before the first capture (the momentum buffers, cuDNN's and
  /// cuBLAS's lazy setup). `recording`: make_recording(the model's device) when null.
  CapturedStep(NetworkBase& model, torch::optim::SGD& optimizer, Precision precision, double clip_grad_norm,
               int64_t warmup = kGraphWarmup, std::unique_ptr<Recording> recording = nullptr);
  ~CapturedStep();
  CapturedStep(const CapturedStep&) = delete;
  CapturedStep& operator=(const CapturedStep&) = delete;

  /// One step on (inputs, targets), in train mode. Eager (train_step, with `after_backward`) when `eager` is set
  /// (a probe watches it), while warming up, when the batch's shape is not the first full step's, or when
  /// optimiser state is missing that a step would create (a checkpoint from before the first step); otherwise
  /// replayed, captured first where nothing is captured or what the capture read has moved. `after_backward` runs
  /// only in an eager step. After every step each parameter's .grad holds that step's gradient.
  StepOutput step(const torch::Tensor& inputs, const torch::Tensor& targets, bool eager = false,
                  const std::function<void()>& after_backward = {});
  const GraphCounts& counts() const { return counts_; }

 private:
  struct Fingerprint {
    std::vector<const void*> storage;  ///< weights, buffers and momentum buffers, in a fixed order
    std::vector<double> lr;            ///< per parameter group
    int64_t missing_state = 0;         ///< parameters with momentum but no momentum buffer yet
    bool operator==(const Fingerprint& o) const { return storage == o.storage && lr == o.lr; }
  };
  Fingerprint fingerprint() const;
  void body();
  /// Lets go of what the last capture allocated (its outputs and gradients), before the next capture.
  void drop_outputs();

  NetworkBase& model_;
  torch::optim::SGD& optimizer_;
  Precision precision_;
  double clip_;
  int64_t warmup_left_;
  std::unique_ptr<Recording> recording_;
  std::unique_ptr<SideStream> side_;
  std::vector<torch::Tensor> params_;
  std::vector<int64_t> shape_, target_shape_;  ///< of the first full step: the captured size
  bool captured_ = false;
  Fingerprint captured_with_;
  int64_t settled_missing_ = 0;  ///< missing_state after the latest eager step: what a step does not fill
  torch::Tensor inputs_, targets_, logits_, loss_;  // static: the graph reads and writes these
  std::vector<torch::Tensor> graph_grads_;          ///< each parameter's gradient as the graph writes it
  GraphCounts counts_;
};

/// Evaluation batches under CUDA graphs: one forward pass in eval mode without gradients, captured at the largest
/// batch size seen after one eager batch of it and replayed, captured again when a weight's or buffer's storage
/// moved or a larger batch arrived; smaller batches run eagerly.
class CapturedEval {
 public:
  CapturedEval(NetworkBase& model, Precision precision, std::unique_ptr<Recording> recording = nullptr);
  ~CapturedEval();
  CapturedEval(const CapturedEval&) = delete;
  CapturedEval& operator=(const CapturedEval&) = delete;

  /// The batch's summed cross-entropy (float32 at least) and its misclassified count (int64), as tensors of their
  /// own on the model's device; the model must be in eval mode.
  std::pair<torch::Tensor, torch::Tensor> batch(const torch::Tensor& inputs, const torch::Tensor& targets);
  const GraphCounts& counts() const { return counts_; }

 private:
  std::vector<const void*> fingerprint() const;
  void body();

  NetworkBase& model_;
  Precision precision_;
  int64_t warmup_left_ = 1;
  std::unique_ptr<Recording> recording_;
  std::unique_ptr<SideStream> side_;
  std::vector<int64_t> shape_, target_shape_;
  bool captured_ = false;
  std::vector<const void*> captured_with_;
  torch::Tensor inputs_, targets_, loss_sum_, wrong_;
  GraphCounts counts_;
};

/// How a run's (or bench's) steps and evaluation batches ran, as summary.json and bench's JSON record it:
/// {"train": counts, "eval": counts}.
nlohmann::json to_json(const CapturedStep& step, const CapturedEval& eval);

/// One evaluation batch computed eagerly: (summed cross-entropy, misclassified count), as CapturedEval::batch.
std::pair<torch::Tensor, torch::Tensor> eval_batch(NetworkBase& model, const torch::Tensor& inputs,
                                                   const torch::Tensor& targets, Precision precision);

}  // namespace reslab
