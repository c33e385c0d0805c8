#include "train/graphs.h"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "optim/sgd.h"
#include "train/device.h"

#ifdef RESLAB_CUDA_GRAPHS
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace reslab {

bool cuda_graphs_built() {
#ifdef RESLAB_CUDA_GRAPHS
  return true;
#else
  return false;
#endif
}

void clip_gradients(const std::vector<torch::Tensor>& parameters, double max_norm) {
  // torch::nn::utils::clip_grad_norm_'s L2 branch, step for step, less its final item().
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return;
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(g.data().norm(2.0));
  const auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2.0);
  const auto coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for (auto& g : grads) g.data().mul_(coef);
}

nlohmann::json to_json(const GraphCounts& counts) {
  return {{"eager", counts.eager}, {"captures", counts.captures}, {"replays", counts.replays}};
}

namespace {

/// The CPU's stand-in for a graph: the recorded function, called again at each replay.
class CallAgain : public Recording {
 public:
  void record(const std::function<void()>& body) override { body_ = body; }
  void replay() override {
    TORCH_CHECK(body_, "replay before record");
    body_();
  }
  void reset() override { body_ = nullptr; }

 private:
  std::function<void()> body_;
};

#ifdef RESLAB_CUDA_GRAPHS
class CudaGraph : public Recording {
 public:
  void record(const std::function<void()>& body) override {
    // No cached block is released while a capture runs: free the last graph's memory first (what Python's
    // torch.cuda.graph does on entry), or a re-capture needs the old pool and the new one at once.
    graph_.reset();
    c10::cuda::device_synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    graph_ = std::make_unique<at::cuda::CUDAGraph>();
    graph_->capture_begin();
    try {
      body();
    } catch (...) {
      try {
        graph_->capture_end();  // ends the stream's capture, so that the error below is the one reported
      } catch (...) {
      }
      graph_.reset();
      throw;
    }
    graph_->capture_end();
  }
  void replay() override {
    TORCH_CHECK(graph_ != nullptr, "replay before record");
    graph_->replay();
  }
  void reset() override { graph_.reset(); }

 private:
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
};
#endif

/// The weights' and buffers' storage, in the module's order.
void add_storage(const torch::nn::Module& model, std::vector<const void*>& out) {
  for (const auto& p : model.parameters()) out.push_back(p.data_ptr());
  for (const auto& b : model.buffers()) out.push_back(b.defined() ? b.data_ptr() : nullptr);
}

/// Copies a batch into the graph's static tensors (made on first use, in the batch's memory format); with
/// `capture`, records `body` anew from them first. Then replays the recording.
void stage_and_replay(Recording& recording, bool capture, torch::Tensor& static_inputs, torch::Tensor& static_targets,
                      const torch::Tensor& inputs, const torch::Tensor& targets, const std::function<void()>& body,
                      GraphCounts& counts) {
  if (capture) recording.reset();
  if (!static_inputs.defined()) {
    static_inputs = torch::empty_like(inputs);
    static_targets = torch::empty_like(targets);
  }
  static_inputs.copy_(inputs);
  static_targets.copy_(targets);
  if (capture) {
    recording.record(body);
    ++counts.captures;
  }
  recording.replay();
  ++counts.replays;
}

}  // namespace

std::unique_ptr<Recording> make_recording(const torch::Device& device) {
  if (device.is_cpu()) return std::make_unique<CallAgain>();
#ifdef RESLAB_CUDA_GRAPHS
  if (device.is_cuda()) return std::make_unique<CudaGraph>();
#endif
  throw std::invalid_argument("CUDA graphs on " + device.str() + ": this reslab " +
                              (cuda_graphs_built() ? "captures graphs on CUDA devices only"
                                                   : "was built without CUDA (scripts/build-cuda builds one with it)"));
}

class SideStream {
 public:
  explicit SideStream(const torch::Device& device) {
#ifdef RESLAB_CUDA_GRAPHS
    if (device.is_cuda()) side_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
#else
    (void)device;
#endif
  }

  /// While it lives, work goes to the side stream, after the current stream's.
  class Scope {
   public:
    explicit Scope(SideStream& s) {
#ifdef RESLAB_CUDA_GRAPHS
      if (!s.side_) return;
      current_ = c10::cuda::getCurrentCUDAStream(s.side_->device_index());
      at::cuda::CUDAEvent ready;
      ready.record(*current_);
      ready.block(*s.side_);
      guard_.emplace(*s.side_);
      side_ = s.side_;
#else
      (void)s;
#endif
    }
    /// Back to the current stream, which waits for the side stream's work.
    void end() {
#ifdef RESLAB_CUDA_GRAPHS
      if (!guard_) return;
      guard_.reset();
      at::cuda::CUDAEvent done;
      done.record(*side_);
      done.block(*current_);
#endif
    }
    ~Scope() { end(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
#ifdef RESLAB_CUDA_GRAPHS
    std::optional<c10::cuda::CUDAStream> current_, side_;
    std::optional<c10::cuda::CUDAStreamGuard> guard_;
#endif
  };

 private:
#ifdef RESLAB_CUDA_GRAPHS
  std::optional<c10::cuda::CUDAStream> side_;
#endif
};

// ---- the training step ----

CapturedStep::CapturedStep(NetworkBase& model, torch::optim::SGD& optimizer, Precision precision, double clip_grad_norm,
                           int64_t warmup, std::unique_ptr<Recording> recording)
    : model_(model),
      optimizer_(optimizer),
      precision_(precision),
      clip_(clip_grad_norm),
      warmup_left_(std::max<int64_t>(warmup, 1)),  // the first capture needs the momentum buffers in place
      recording_(recording ? std::move(recording) : make_recording(device_of(model))),
      side_(std::make_unique<SideStream>(device_of(model))),
      params_(model.parameters()) {}

CapturedStep::~CapturedStep() = default;

CapturedStep::Fingerprint CapturedStep::fingerprint() const {
  Fingerprint f;
  add_storage(model_, f.storage);
  for (const auto& group : optimizer_.param_groups()) {
    const auto& options = static_cast<const torch::optim::SGDOptions&>(group.options());
    f.lr.push_back(options.lr());
    for (const auto& p : group.params()) {
      const auto buffer = momentum_buffer(optimizer_, p);
      f.storage.push_back(buffer.defined() ? buffer.data_ptr() : nullptr);
      if (!buffer.defined() && options.momentum() != 0) ++f.missing_state;
    }
  }
  return f;
}

void CapturedStep::drop_outputs() {
  logits_ = torch::Tensor();
  loss_ = torch::Tensor();
  graph_grads_.clear();
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

void CapturedStep::body() {
  // No gradient yet: the backward pass writes each one afresh (captured, it writes the same memory each replay).
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
  const auto logits = forward_at(model_, inputs_, precision_);
  auto loss = torch::nn::functional::cross_entropy(at_least_float(logits), targets_);
  loss.backward();
  if (clip_ > 0) clip_gradients(params_, clip_);
  optimizer_.step();
  logits_ = logits.detach();
  loss_ = loss.detach();
}

StepOutput CapturedStep::step(const torch::Tensor& inputs, const torch::Tensor& targets, bool eager,
                              const std::function<void()>& after_backward) {
  TORCH_CHECK(model_.is_training(), "CapturedStep: the model must be in train mode (a graph holds the mode)");
  const bool full = shape_.empty() || (inputs.sizes().vec() == shape_ && targets.sizes().vec() == target_shape_);
  SideStream::Scope on_side(*side_);
  const Fingerprint now = eager || !full || warmup_left_ > 0 ? Fingerprint{} : fingerprint();
  // Optimiser state missing that an eager step would create (a checkpoint saved before the first step, loaded
  // for a retry): one eager step first, so that the capture finds it in place.
  if (eager || !full || warmup_left_ > 0 || now.missing_state > settled_missing_) {
    if (!eager && full && warmup_left_ > 0) {
      shape_ = inputs.sizes().vec();
      target_shape_ = targets.sizes().vec();
      --warmup_left_;
    }
    ++counts_.eager;
    auto out = train_step(model_, optimizer_, inputs, targets, nullptr, after_backward, clip_, precision_);
    settled_missing_ = fingerprint().missing_state;  // parameters without a gradient never get state
    if (!graph_grads_.empty()) {
      // .grad of every parameter stays the tensor the graph writes, holding this step's gradient: a callback
      // reading .grad after a later replay sees that replay's, not this step's.
      for (size_t i = 0; i < params_.size(); ++i) {
        auto& grad = params_[i].mutable_grad();
        if (!graph_grads_[i].defined() || !grad.defined() || grad.is_same(graph_grads_[i])) continue;
        graph_grads_[i].copy_(grad);
        grad = graph_grads_[i];
      }
    }
    return out;
  }
  const bool capture = !captured_ || !(now == captured_with_);
  if (capture) {
    drop_outputs();  // the last graph's memory goes with it
    captured_ = false;
  }
  stage_and_replay(
      *recording_, capture, inputs_, targets_, inputs, targets, [this] { body(); }, counts_);
  if (capture) {
    captured_ = true;
    captured_with_ = now;
  }
  if (graph_grads_.empty()) {
    for (const auto& p : params_) graph_grads_.push_back(p.grad());
  }
  on_side.end();
  // The next replay overwrites logits_ and loss_: the caller keeps copies (made on the current stream).
  return {logits_.clone(), loss_.clone()};
}

nlohmann::json to_json(const CapturedStep& step, const CapturedEval& eval) {
  return {{"train", to_json(step.counts())}, {"eval", to_json(eval.counts())}};
}

// ---- evaluation ----

std::pair<torch::Tensor, torch::Tensor> eval_batch(NetworkBase& model, const torch::Tensor& inputs,
                                                   const torch::Tensor& targets, Precision precision) {
  torch::NoGradGuard no_grad;
  const auto logits = at_least_float(forward_at(model, inputs, precision));
  auto loss = torch::nn::functional::cross_entropy(
      logits, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  return {loss, logits.argmax(1).ne(targets).sum()};
}

CapturedEval::CapturedEval(NetworkBase& model, Precision precision, std::unique_ptr<Recording> recording)
    : model_(model),
      precision_(precision),
      recording_(recording ? std::move(recording) : make_recording(device_of(model))),
      side_(std::make_unique<SideStream>(device_of(model))) {}

CapturedEval::~CapturedEval() = default;

std::vector<const void*> CapturedEval::fingerprint() const {
  std::vector<const void*> f;
  add_storage(model_, f);
  return f;
}

void CapturedEval::body() {
  auto [loss, wrong] = eval_batch(model_, inputs_, targets_, precision_);
  loss_sum_ = loss;
  wrong_ = wrong;
}

std::pair<torch::Tensor, torch::Tensor> CapturedEval::batch(const torch::Tensor& inputs, const torch::Tensor& targets) {
  TORCH_CHECK(!model_.is_training(), "CapturedEval: the model must be in eval mode");
  // The full size is the largest batch seen: a split shorter than a batch evaluated first (a small validation set)
  // must not fix the capture at its size, leaving every later full batch eager.
  if (!shape_.empty() && inputs.dim() > 0 && inputs.size(0) > shape_[0]) {
    shape_.clear();
    target_shape_.clear();
    warmup_left_ = 1;
    captured_ = false;
  }
  const bool full = shape_.empty() || (inputs.sizes().vec() == shape_ && targets.sizes().vec() == target_shape_);
  SideStream::Scope on_side(*side_);
  if (!full || warmup_left_ > 0) {
    if (full) {
      shape_ = inputs.sizes().vec();
      target_shape_ = targets.sizes().vec();
      --warmup_left_;
    }
    ++counts_.eager;
    return eval_batch(model_, inputs, targets, precision_);
  }
  const auto now = fingerprint();
  const bool capture = !captured_ || now != captured_with_;
  if (capture) {
    loss_sum_ = torch::Tensor();  // the last graph's memory goes with it
    wrong_ = torch::Tensor();
    captured_ = false;
  }
  stage_and_replay(
      *recording_, capture, inputs_, targets_, inputs, targets, [this] { body(); }, counts_);
  if (capture) {
    captured_ = true;
    captured_with_ = now;
  }
  on_side.end();
  return {loss_sum_.clone(), wrong_.clone()};
}

}  // namespace reslab
