#include "train/callbacks.h"

#include "train/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <ostream>

namespace reslab {

void ScheduleCallback::on_batch_begin(TrainContext& ctx) {
  const double lr = schedule_.lr(ctx.state.iter) * lr_scale_;
  if (lr != ctx.state.lr) {
    set_learning_rate(ctx.optimizer, lr);
    ctx.state.lr = lr;
  }
}

nlohmann::json ScheduleCallback::save_state() const {
  if (lr_scale_ == 1.0) return schedule_.state();
  return {{"rules", schedule_.state()}, {"lr_scale", lr_scale_}};
}

void ScheduleCallback::load_state(const nlohmann::json& state) {
  if (state.is_object() && state.contains("lr_scale")) {
    lr_scale_ = state.at("lr_scale").get<double>();
    schedule_.load_state(state.at("rules"));
  } else {
    lr_scale_ = 1.0;
    schedule_.load_state(state);
  }
}

void ScheduleCallback::on_log(TrainContext& ctx, const WindowStats& window) {
  schedule_.observe_train_error(window.error, ctx.state.iter);
}

void TrainRecordCallback::on_log(TrainContext& ctx, const WindowStats& window) {
  if (ctx.metrics == nullptr) return;
  ctx.metrics->write({{"kind", "train"},
                      {"iter", ctx.state.iter},
                      {"epoch", ctx.state.epoch()},
                      {"lr", ctx.state.lr},
                      {"loss", window.loss},
                      {"error", window.error},
                      {"img_per_s", window.img_per_s}});
}

EvalCallback::EvalCallback(const BatchSource* val, const BatchSource* test, bool every_epoch,
                           std::set<int64_t> at_iters)
    : val_(val), test_(test), every_epoch_(every_epoch), at_iters_(std::move(at_iters)) {}

void EvalCallback::run_eval(TrainContext& ctx) {
  if (last_eval_iter_ == ctx.state.iter) return;
  // Between statistics windows the trainer has not yet seen a non-finite loss; weights that are no longer
  // finite mean the run has diverged, and an evaluation would only record noise.
  bool finite = true;
  for (const auto& p : ctx.model.parameters()) {
    if (!torch::isfinite(p).all().item<bool>()) {
      finite = false;
      break;
    }
  }
  // Ranks evaluate together or not at all (their weights agree unless something changed one rank's alone).
  if (ctx.dist != nullptr) finite = !ctx.dist->any(!finite, "the finite-weights check before evaluation");
  if (!finite) return;
  last_eval_iter_ = ctx.state.iter;
  const auto start = std::chrono::steady_clock::now();
  auto one = [&](const BatchSource* loader, const char* split, std::optional<double>& error) {
    if (loader == nullptr) return;
    const EvalResult r = evaluate(ctx.model, *loader, ctx.dist, ctx.precision, ctx.captured_eval);
    error = r.error;
    if (ctx.metrics != nullptr) {
      ctx.metrics->write({{"kind", "eval"},
                          {"iter", ctx.state.iter},
                          {"epoch", ctx.state.epoch()},
                          {"split", split},
                          {"loss", r.loss},
                          {"error", r.error}});
    }
  };
  one(val_, "val", val_error_);
  one(test_, "test", test_error_);
  if (test_error_ && (!best_test_error_ || *test_error_ < *best_test_error_)) best_test_error_ = test_error_;
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void EvalCallback::on_batch_end(TrainContext& ctx) {
  if (at_iters_.count(ctx.state.iter) != 0) run_eval(ctx);
}

void EvalCallback::on_epoch_end(TrainContext& ctx) {
  if (every_epoch_) run_eval(ctx);
}

void EvalCallback::on_train_end(TrainContext& ctx) {
  if (ctx.state.status == RunStatus::kInterrupted) return;  // the user wants out: keep the last evaluation
  if (ctx.state.status == RunStatus::kDiverged) {
    // The weights are not finite: an evaluation now would measure nothing. The final errors stay empty.
    val_error_.reset();
    test_error_.reset();
    return;
  }
  run_eval(ctx);
}

nlohmann::json EvalCallback::save_state() const {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  return {{"last_eval_iter", last_eval_iter_},
          {"val_error", opt(val_error_)},
          {"test_error", opt(test_error_)},
          {"best_test_error", opt(best_test_error_)},
          {"seconds", seconds_}};
}

void EvalCallback::load_state(const nlohmann::json& state) {
  auto opt = [&](const char* key) {
    return state.at(key).is_number() ? std::optional<double>(state[key].get<double>()) : std::nullopt;
  };
  last_eval_iter_ = state.at("last_eval_iter").get<int64_t>();
  val_error_ = opt("val_error");
  test_error_ = opt("test_error");
  best_test_error_ = opt("best_test_error");
  seconds_ = state.at("seconds").get<double>();
}

CheckpointCallback::CheckpointCallback(const Trainer& trainer, std::string dir, int64_t every_epochs,
                                       nlohmann::json config, int64_t keep, bool save_at_start)
    : trainer_(trainer),
      dir_(std::move(dir)),
      every_epochs_(every_epochs),
      config_(std::move(config)),
      keep_(keep),
      save_at_start_(save_at_start) {
  TORCH_CHECK(every_epochs_ >= 0 && keep_ >= 1, "CheckpointCallback: every_epochs >= 0 and keep >= 1");
}

void CheckpointCallback::save(TrainContext& ctx) {
  if (last_saved_ == ctx.state.iter) return;
  last_saved_ = ctx.state.iter;
  nlohmann::json meta = {{"trainer", trainer_.save_state()},
                         {"metrics_offset", ctx.metrics != nullptr ? ctx.metrics->offset() : 0},
                         {"config", config_}};
  save_checkpoint(checkpoint_path(dir_, ctx.state.iter), ctx.model, ctx.optimizer, meta);
  const auto all = list_checkpoints(dir_);
  for (size_t i = static_cast<size_t>(keep_); i < all.size(); ++i) std::filesystem::remove(all[i]);
}

void CheckpointCallback::save_now(TrainContext& ctx) {
  last_saved_ = -1;
  save(ctx);
}

void CheckpointCallback::on_train_begin(TrainContext& ctx) {
  if (save_at_start_ && ctx.state.iter == 0) save(ctx);
}

void CheckpointCallback::on_epoch_end(TrainContext& ctx) {
  if (every_epochs_ > 0 && ctx.state.epoch_index() % every_epochs_ == 0) save(ctx);
}

void CheckpointCallback::on_train_end(TrainContext& ctx) {
  if (ctx.state.status != RunStatus::kDiverged) save(ctx);
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600) {
    std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else if (s >= 60) {
    std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(text, sizeof text, "%llds", static_cast<long long>(s));
  }
  return text;
}

ProgressCallback::ProgressCallback(std::string label, std::ostream& out, bool terminal, double plain_interval_s)
    : label_(std::move(label)), out_(out), terminal_(terminal), interval_s_(terminal ? 0.25 : plain_interval_s) {}

void ProgressCallback::on_train_begin(TrainContext& ctx) {
  start_ = last_print_ = std::chrono::steady_clock::now();
  start_iter_ = ctx.state.iter;
}

void ProgressCallback::on_batch_end(TrainContext& ctx) {
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_print_).count() < interval_s_) return;
  last_print_ = now;
  print(ctx, /*final_line=*/false);
}

void ProgressCallback::on_train_end(TrainContext& ctx) { print(ctx, /*final_line=*/true); }

void ProgressCallback::print(TrainContext& ctx, bool final_line) {
  const auto& s = ctx.state;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = s.iter - start_iter_;
  const double eta = done > 0 ? elapsed / done * static_cast<double>(s.total_iters - s.iter) : 0.0;
  char line[256];
  const double loss = s.last_window ? s.last_window->loss : 0.0;
  const double error = s.last_window ? s.last_window->error : 0.0;
  const double rate = s.last_window ? s.last_window->img_per_s : 0.0;
  std::snprintf(line, sizeof line, "%-10s it %6lld/%-6lld ep %6.2f  loss %.4f  err %5.2f%%  %6.0f img/s  %s %s",
                label_.c_str(), static_cast<long long>(s.iter), static_cast<long long>(s.total_iters), s.epoch(), loss,
                error, rate, final_line ? "took" : "ETA", format_duration(final_line ? elapsed : eta).c_str());
  if (terminal_) {
    out_ << "\r\033[K" << line;
    if (final_line) out_ << "\n";
  } else {
    out_ << line << "\n";
  }
  out_.flush();
}

}  // namespace reslab
