#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace reslab {

StepDecay::StepDecay(std::vector<int64_t> milestones, double gamma)
    : milestones_(std::move(milestones)), gamma_(gamma) {
  std::sort(milestones_.begin(), milestones_.end());
}

double StepDecay::apply(double lr, int64_t iter) const {
  for (int64_t m : milestones_) {
    if (iter >= m) lr *= gamma_;
  }
  return lr;
}

CosineDecay::CosineDecay(int64_t total) : total_(total) {
  if (total <= 0) throw std::invalid_argument("cosine schedule needs a positive number of iterations");
}

double CosineDecay::apply(double lr, int64_t iter) const {
  const double t = std::min<double>(1.0, static_cast<double>(iter) / static_cast<double>(total_));
  return lr * 0.5 * (1.0 + std::cos(M_PI * t));
}

Warmup::Warmup(double lr, std::optional<double> until_error, std::optional<int64_t> iterations)
    : lr_(lr), until_error_(until_error), iterations_(iterations) {
  if (!until_error_ && !iterations_) {
    throw std::invalid_argument("warmup needs 'until_error' or 'iterations' (or both) to know when it ends");
  }
}

double Warmup::apply(double lr, int64_t iter) const {
  if (ended_at_ && iter >= *ended_at_) return lr;
  if (iterations_ && iter >= *iterations_) return lr;
  return lr_;
}

void Warmup::observe_train_error(double error, int64_t iter) {
  if (!ended_at_ && until_error_ && error < *until_error_) ended_at_ = iter;
}

nlohmann::json Warmup::state() const {
  return {{"ended_at", ended_at_ ? nlohmann::json(*ended_at_) : nlohmann::json(nullptr)}};
}

void Warmup::load_state(const nlohmann::json& state) {
  ended_at_.reset();
  if (state.is_object() && state.value("ended_at", nlohmann::json()).is_number_integer()) {
    ended_at_ = state["ended_at"].get<int64_t>();
  }
}

nlohmann::json LrSchedule::state() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& rule : rules_) out.push_back(rule->state());
  return out;
}

void LrSchedule::load_state(const nlohmann::json& state) {
  if (!state.is_array() || state.size() != rules_.size()) {
    throw std::invalid_argument("schedule state has " + std::to_string(state.size()) + " rules, expected " +
                                std::to_string(rules_.size()));
  }
  for (size_t i = 0; i < rules_.size(); ++i) rules_[i]->load_state(state[i]);
}

LrSchedule& LrSchedule::add(std::unique_ptr<LrRule> rule) {
  rules_.push_back(std::move(rule));
  return *this;
}

double LrSchedule::lr(int64_t iter) const {
  double lr = base_lr_;
  for (const auto& rule : rules_) lr = rule->apply(lr, iter);
  return lr;
}

void LrSchedule::observe_train_error(double error, int64_t iter) {
  for (auto& rule : rules_) rule->observe_train_error(error, iter);
}

LrSchedule make_schedule(const ScheduleConfig& config, double base_lr, int64_t iters_per_epoch, int64_t total_iters) {
  LrSchedule schedule(base_lr);
  if (!config.milestones.empty()) {
    std::vector<int64_t> at;
    for (double m : config.milestones) {
      at.push_back(config.milestones_in_epochs ? static_cast<int64_t>(std::llround(m * iters_per_epoch))
                                               : static_cast<int64_t>(std::llround(m)));
    }
    schedule.add(std::make_unique<StepDecay>(at, config.gamma));
  }
  if (config.cosine) schedule.add(std::make_unique<CosineDecay>(total_iters));
  if (config.warmup_lr) {
    schedule.add(std::make_unique<Warmup>(*config.warmup_lr, config.warmup_until_error, config.warmup_iterations));
  }
  return schedule;
}

}  // namespace reslab
