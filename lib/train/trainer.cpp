#include "train/trainer.h"

#include "train/device.h"
#include "train/graphs.h"
#include "train/interrupt.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace reslab {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

const char* to_string(RunStatus status) {
  switch (status) {
    case RunStatus::kRunning:
      return "running";
    case RunStatus::kCompleted:
      return "completed";
    case RunStatus::kDiverged:
      return "diverged";
    case RunStatus::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

torch::Tensor forward_at(NetworkBase& model, const torch::Tensor& inputs, Precision precision) {
  const AutocastScope autocast(precision, inputs.device());
  return model.forward(inputs);
}

StepOutput train_step(NetworkBase& model, torch::optim::SGD& optimizer, const torch::Tensor& inputs,
                      const torch::Tensor& targets, GradientSync* grad_sync,
                      const std::function<void()>& after_backward, double clip_grad_norm, Precision precision) {
  optimizer.zero_grad();
  StepOutput out;
  out.logits = forward_at(model, inputs, precision);
  out.loss = torch::nn::functional::cross_entropy(at_least_float(out.logits), targets);
  if (grad_sync != nullptr) grad_sync->begin_backward();
  out.loss.backward();
  if (grad_sync != nullptr) grad_sync->finish_backward();  // every rank's mean gradient
  if (after_backward) after_backward();
  if (clip_grad_norm > 0) clip_gradients(model.parameters(), clip_grad_norm);
  optimizer.step();
  return out;
}

Trainer::Trainer(TrainContext& ctx, int64_t total_iters, int64_t log_every) : ctx_(ctx), log_every_(log_every) {
  TORCH_CHECK(log_every_ > 0, "Trainer: log_every must be positive");
  TORCH_CHECK(total_iters > 0, "Trainer: the run needs at least one iteration");
  auto& s = ctx_.state;
  s.total_iters = total_iters;
  s.iters_per_epoch = ctx_.train_loader.batches_per_epoch();
  s.batch = ctx_.train_loader.batch_size();
  s.train_size = ctx_.train_loader.size();
  TORCH_CHECK(s.iters_per_epoch > 0, "Trainer: the training set (", s.train_size,
              " examples) is smaller than one batch (", s.batch, ")");
}

void Trainer::add(std::shared_ptr<Callback> callback) { callbacks_.push_back(std::move(callback)); }

void Trainer::run() {
  auto& s = ctx_.state;
  auto& model = ctx_.model;
  const torch::Device device = device_of(model);
  model.train();
  if (window_losses_.empty()) window_begin_ = s.iter;
  for (auto& cb : callbacks_) cb->on_train_begin(ctx_);

  bool epoch_set = false;
  while (s.iter < s.total_iters) {
    bool interrupted = interrupt_requested();
    if (ctx_.dist != nullptr) {
      // Every rank stops at the same iteration: a signal to any of them (or a callback's stop on one) stops all.
      auto flags = torch::tensor({interrupted ? 1.0f : 0.0f, s.stop_requested ? 1.0f : 0.0f});
      ctx_.dist->all_reduce_sum(flags, "the stop check before iteration " + std::to_string(s.iter + 1));
      interrupted = flags[0].item<float>() > 0;
      if (flags[1].item<float>() > 0) s.stop_requested = true;
      if (interrupted) globalize_window();
    }
    if (interrupted) {
      s.status = RunStatus::kInterrupted;
      break;
    }
    if (s.stop_requested) break;
    const auto step_start = std::chrono::steady_clock::now();
    const int64_t in_epoch = s.iter % s.iters_per_epoch;
    if (in_epoch == 0 || !epoch_set) ctx_.train_loader.set_epoch(s.epoch_index());
    epoch_set = true;
    Batch batch = to_device(ctx_.train_loader.batch(in_epoch), device);
    // Time spent in hooks (probes) is not training time: it is left out of img_per_s.
    auto hook_start = std::chrono::steady_clock::now();
    for (auto& cb : callbacks_) cb->on_batch_begin(ctx_);
    // The callbacks that watch this step, and only they, see on_after_backward, with or without graphs: a hook
    // that forgot watches_step() is never called, on the CPU as on a GPU, instead of only where graphs replay.
    std::vector<Callback*> watching;
    for (auto& cb : callbacks_) {
      if (cb->watches_step()) watching.push_back(cb.get());
    }
    double hook_seconds = seconds_since(hook_start);

    const auto after_backward = [&] {
      const auto start = std::chrono::steady_clock::now();
      for (Callback* cb : watching) cb->on_after_backward(ctx_);
      hook_seconds += seconds_since(start);
    };
    StepOutput out;
    if (ctx_.captured_step != nullptr) {
      out = ctx_.captured_step->step(batch.inputs, batch.targets, !watching.empty(), after_backward);
    } else {
      out = train_step(model, ctx_.optimizer, batch.inputs, batch.targets, ctx_.grad_sync, after_backward,
                       ctx_.clip_grad_norm, ctx_.precision);
    }

    window_losses_.push_back(out.loss.detach());
    window_wrong_.push_back(out.logits.detach().argmax(1).ne(batch.targets).sum());
    window_sizes_.push_back(batch.targets.size(0));
    ++s.iter;
    window_seconds_ += seconds_since(step_start) - hook_seconds;
    for (auto& cb : callbacks_) cb->on_batch_end(ctx_);

    const bool epoch_end = s.iter % s.iters_per_epoch == 0;
    if (s.iter % log_every_ == 0 || epoch_end || s.iter == s.total_iters) {
      flush_window();
      if (s.status == RunStatus::kDiverged) break;
    }
    if (epoch_end) {
      for (auto& cb : callbacks_) cb->on_epoch_end(ctx_);
    }
  }
  // An interrupted run keeps its open window for the checkpoint, so a resumed run writes the same records.
  if (!window_losses_.empty() && s.status != RunStatus::kInterrupted) flush_window();
  if (s.status == RunStatus::kRunning) s.status = RunStatus::kCompleted;
  for (auto& cb : callbacks_) cb->on_train_end(ctx_);
}

void Trainer::globalize_window() {
  if (ctx_.dist == nullptr || window_global_ >= window_sizes_.size()) return;
  const auto n = static_cast<int64_t>(window_sizes_.size() - window_global_);
  std::vector<torch::Tensor> local(window_losses_.begin() + static_cast<std::ptrdiff_t>(window_global_),
                                   window_losses_.end());
  std::vector<torch::Tensor> wrong(window_wrong_.begin() + static_cast<std::ptrdiff_t>(window_global_),
                                   window_wrong_.end());
  auto both = torch::cat({torch::stack(local).to(torch::kCPU, torch::kFloat64).view({n}),
                          torch::stack(wrong).to(torch::kCPU, torch::kFloat64).view({n})});
  ctx_.dist->all_reduce_sum(both, "the training statistics up to iteration " + std::to_string(ctx_.state.iter));
  const double ranks = static_cast<double>(ctx_.dist->world_size());
  const auto on = torch::TensorOptions().device(window_losses_.front().device());
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = window_global_ + static_cast<size_t>(i);
    window_losses_[k] = torch::tensor(both[i].item<double>() / ranks, on.dtype(window_losses_[k].scalar_type()));
    window_wrong_[k] =
        torch::tensor(static_cast<int64_t>(std::llround(both[n + i].item<double>())), on.dtype(torch::kInt64));
    window_sizes_[k] *= ctx_.dist->world_size();
  }
  window_global_ = window_sizes_.size();
}

void Trainer::flush_window() {
  auto& s = ctx_.state;
  globalize_window();
  // The window's only host sync: one copy of its losses and counts (from the GPU, where the run is there).
  const auto losses = torch::stack(window_losses_).to(torch::kCPU, torch::kFloat64);
  const auto wrong = torch::stack(window_wrong_).to(torch::kCPU, torch::kInt64);
  const double* l = losses.data_ptr<double>();
  const int64_t* w = wrong.data_ptr<int64_t>();
  const int64_t steps = static_cast<int64_t>(window_sizes_.size());

  WindowStats window;
  window.iter_begin = window_begin_;
  double loss_sum = 0.0;
  int64_t wrong_sum = 0;
  for (int64_t i = 0; i < steps; ++i) {
    if (!std::isfinite(l[i])) {
      s.status = RunStatus::kDiverged;
      s.diverged_at = window_begin_ + i + 1;
      s.iter = *s.diverged_at - 1;  // iterations that ended with a finite loss
      break;
    }
    s.last_finite_loss = l[i];
    loss_sum += l[i] * window_sizes_[i];
    wrong_sum += w[i];
    window.images += window_sizes_[i];
    recent_.emplace_back(w[i], window_sizes_[i]);
    if (static_cast<int64_t>(recent_.size()) > s.iters_per_epoch) recent_.pop_front();
  }
  window.iter_end = s.iter;
  s.train_seconds += window_seconds_;
  if (window.images > 0) {
    window.loss = loss_sum / window.images;
    window.error = 100.0 * static_cast<double>(wrong_sum) / window.images;
    window.img_per_s = window_seconds_ > 0 ? window.images / window_seconds_ : 0.0;
    s.last_window = window;
    for (auto& cb : callbacks_) cb->on_log(ctx_, window);
  }
  window_losses_.clear();
  window_wrong_.clear();
  window_sizes_.clear();
  window_global_ = 0;
  window_seconds_ = 0.0;
  window_begin_ = s.iter;
}

std::optional<double> Trainer::last_epoch_train_error() const {
  int64_t wrong = 0, total = 0;
  for (const auto& [w, n] : recent_) {
    wrong += w;
    total += n;
  }
  if (total == 0) return std::nullopt;
  return 100.0 * static_cast<double>(wrong) / static_cast<double>(total);
}

nlohmann::json Trainer::save_state() const {
  const auto& s = ctx_.state;
  nlohmann::json window_losses = nlohmann::json::array(), window_wrong = nlohmann::json::array();
  for (const auto& l : window_losses_) window_losses.push_back(l.item<double>());
  for (const auto& w : window_wrong_) window_wrong.push_back(w.item<int64_t>());
  nlohmann::json recent = nlohmann::json::array();
  for (const auto& [w, n] : recent_) recent.push_back({w, n});
  nlohmann::json callbacks = nlohmann::json::object();
  for (const auto& cb : callbacks_) {
    if (!cb->state_name().empty()) callbacks[cb->state_name()] = cb->save_state();
  }
  return {{"iter", s.iter},
          {"lr", s.lr},
          {"train_seconds", s.train_seconds},
          {"last_finite_loss", s.last_finite_loss ? nlohmann::json(*s.last_finite_loss) : nlohmann::json(nullptr)},
          {"window",
           {{"begin", window_begin_},
            {"seconds", window_seconds_},
            {"losses", window_losses},
            {"wrong", window_wrong},
            {"sizes", window_sizes_}}},
          {"recent", recent},
          {"callbacks", callbacks}};
}

void Trainer::load_state(const nlohmann::json& state) {
  auto& s = ctx_.state;
  s.iter = state.at("iter").get<int64_t>();
  s.lr = state.at("lr").get<double>();
  s.train_seconds = state.at("train_seconds").get<double>();
  s.last_finite_loss.reset();
  if (state.at("last_finite_loss").is_number()) s.last_finite_loss = state["last_finite_loss"].get<double>();
  const auto& w = state.at("window");
  window_begin_ = w.at("begin").get<int64_t>();
  window_seconds_ = w.at("seconds").get<double>();
  window_losses_.clear();
  window_wrong_.clear();
  const auto on = torch::TensorOptions().device(device_of(ctx_.model));
  for (const auto& l : w.at("losses")) {
    window_losses_.push_back(torch::tensor(l.get<double>(), on.dtype(torch::kFloat32)));
  }
  for (const auto& x : w.at("wrong")) window_wrong_.push_back(torch::tensor(x.get<int64_t>(), on.dtype(torch::kInt64)));
  window_sizes_ = w.at("sizes").get<std::vector<int64_t>>();
  window_global_ = window_sizes_.size();  // a checkpoint's window holds values over all ranks already
  recent_.clear();
  for (const auto& r : state.at("recent")) recent_.emplace_back(r.at(0).get<int64_t>(), r.at(1).get<int64_t>());
  const auto& callbacks = state.at("callbacks");
  for (auto& cb : callbacks_) {
    if (!cb->state_name().empty() && callbacks.contains(cb->state_name())) cb->load_state(callbacks[cb->state_name()]);
  }
  if (s.lr > 0) set_learning_rate(ctx_.optimizer, s.lr);
}

EvalResult evaluate(NetworkBase& model, const BatchSource& loader, Distributed* dist, Precision precision,
                    CapturedEval* captured) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const torch::Device device = device_of(model);
  // Summed on the device (float64: the per-batch float sums added as the host would add them), read once at the end.
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  auto wrong = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  int64_t total = 0;
  int64_t first = 0, step = 1;
  if (dist != nullptr) {
    // Per-rank BN statistics differ: every rank evaluates rank 0's, which are the ones its checkpoints hold.
    std::vector<torch::Tensor> buffers;
    for (const auto& b : model.buffers()) buffers.push_back(b);
    dist->broadcast_from_root(buffers, "sharing rank 0's BatchNorm statistics for evaluation");
    first = dist->rank();
    step = dist->world_size();
  }
  for (int64_t b = first; b < loader.batches_per_epoch(); b += step) {
    Batch batch = to_device(loader.batch(b), device);
    if (batch.crops > 1) {
      // Multi-crop evaluation: the prediction is the softmax averaged over an example's views.
      const auto logits = at_least_float(forward_at(model, batch.inputs, precision));
      const int64_t n = batch.targets.size(0);
      auto log_p = torch::log_softmax(logits.view({n, batch.crops, -1}), 2);
      log_p = torch::logsumexp(log_p, 1) - std::log(static_cast<double>(batch.crops));
      loss_sum += torch::nll_loss(log_p, batch.targets, {}, at::Reduction::Sum).to(torch::kFloat64);
      wrong += log_p.argmax(1).ne(batch.targets).sum();
    } else {
      const auto [l, w] = captured != nullptr ? captured->batch(batch.inputs, batch.targets)
                                              : eval_batch(model, batch.inputs, batch.targets, precision);
      loss_sum += l.to(torch::kFloat64);
      wrong += w;
    }
    total += batch.targets.size(0);
  }
  double loss = loss_sum.item<double>();
  auto wrong_count = wrong.item<int64_t>();
  if (dist != nullptr) {
    auto sums = torch::tensor({loss, static_cast<double>(wrong_count), static_cast<double>(total)}, torch::kFloat64);
    dist->all_reduce_sum(sums, "the evaluation totals");
    loss = sums[0].item<double>();
    wrong_count = std::llround(sums[1].item<double>());
    total = std::llround(sums[2].item<double>());
  }
  model.train(was_training);
  EvalResult result;
  result.examples = total;
  if (total > 0) {
    result.loss = loss / total;
    result.error = 100.0 * static_cast<double>(wrong_count) / total;
  }
  return result;
}

}  // namespace reslab
