#include "probes/lesions.h"

#include <cmath>
#include <numeric>

#include "data/random.h"
#include "probes/gradients.h"
#include "probes/statistics.h"
#include "train/trainer.h"

namespace reslab {

BranchRoute RouteTap::route(int64_t block) {
  if (removed.count(block) > 0) return BranchRoute::kRemoved;
  if (!paths) return BranchRoute::kNormal;
  return branch.count(block) > 0 ? BranchRoute::kBranchGradient : BranchRoute::kShortcutGradient;
}

double error_without(NetworkBase& net, const BatchSource& test, const std::set<int64_t>& removed) {
  RouteTap tap;
  tap.removed = removed;
  TapGuard installed(net, tap);
  return evaluate(net, test).error;
}

namespace {

std::pair<double, double> mean_std(const std::vector<double>& v) {
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double sq = 0.0;
  for (double x : v) sq += (x - mean) * (x - mean);
  return {mean, std::sqrt(sq / static_cast<double>(v.size()))};
}

/// `k` distinct elements of `pool`, drawn from `rng`.
std::set<int64_t> draw(const std::vector<int64_t>& pool, int64_t k, Rng& rng) {
  std::vector<int64_t> items = pool;
  for (int64_t i = 0; i < k; ++i) {  // a partial Fisher-Yates shuffle
    const auto j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(items.size() - i)));
    std::swap(items[i], items[j]);
  }
  return {items.begin(), items.begin() + k};
}

double log_choose(int64_t n, int64_t k) {
  return std::lgamma(static_cast<double>(n + 1)) - std::lgamma(static_cast<double>(k + 1)) -
         std::lgamma(static_cast<double>(n - k + 1));
}

/// Mean over examples of the per-example input-gradient norm of the loss, with `tap` routing the blocks.
double input_gradient_norm(NetworkBase& net, const Batch& batch, ForwardTap* tap) {
  auto x = batch.inputs.detach().clone().requires_grad_(true);
  torch::Tensor logits;
  if (tap != nullptr) {
    TapGuard installed(net, *tap);
    logits = net.forward(x);
  } else {
    logits = net.forward(x);
  }
  // Summed, not averaged, so that each example's gradient is its own loss's.
  const auto loss = torch::nn::functional::cross_entropy(
      logits, batch.targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  const auto g = torch::autograd::grad({loss}, {x})[0];
  return g.reshape({g.size(0), -1}).to(torch::kFloat64).norm(2, 1).mean().item<double>();
}

}  // namespace

nlohmann::json lesion_study(NetworkBase& net, const BatchSource& test, const ProbeSettings& s) {
  const int64_t n = net.num_blocks();
  std::vector<int64_t> removable;
  nlohmann::json single = nlohmann::json::array();
  std::vector<double> single_errors;
  for (int64_t b = 0; b < n; ++b) {
    const bool ok = net.block_removable(b);
    if (ok) {
      removable.push_back(b);
      single_errors.push_back(error_without(net, test, {b}));
    }
    single.push_back({{"block", b},
                      {"removable", ok},
                      {"error", ok ? nlohmann::json(single_errors.back()) : nlohmann::json(nullptr)}});
  }
  Rng rng(mix_seed(s.seed ^ 0x1e510a5ULL));
  nlohmann::json random = nlohmann::json::array();
  for (int64_t k : s.lesion_k) {
    if (k < 1 || k > static_cast<int64_t>(removable.size())) continue;
    std::vector<double> errors;
    for (int64_t i = 0; i < s.samples; ++i) errors.push_back(error_without(net, test, draw(removable, k, rng)));
    const auto [mean, sd] = mean_std(errors);
    random.push_back({{"k", k}, {"errors", errors}, {"mean", mean}, {"std", sd}});
  }
  return {{"blocks", n},
          {"removable", removable.size()},
          {"examples", test.size()},
          {"baseline_error", error_without(net, test, {})},
          {"single", single},
          {"single_median_error", finite_or_null(median_of(single_errors))},
          {"random", random}};
}

std::vector<double> path_length_distribution(int64_t n) {
  TORCH_CHECK(n >= 0, "path_length_distribution: n must be non-negative");
  std::vector<double> p;
  for (int64_t k = 0; k <= n; ++k) p.push_back(std::exp(log_choose(n, k) - static_cast<double>(n) * std::log(2.0)));
  return p;
}

nlohmann::json path_gradients(NetworkBase& net, const Batch& batch, const ProbeSettings& s) {
  NetworkStateGuard guard(net);
  net.eval();
  const int64_t n = net.num_blocks();
  const double full = input_gradient_norm(net, batch, nullptr);
  if (!net.residual()) {
    return {{"blocks", n},
            {"applicable", false},
            {"reason", "a plain net has a single path, of length " + std::to_string(n) + " blocks"},
            {"input_grad_norm", full}};
  }
  std::vector<int64_t> lengths;
  const int64_t count = std::min(n + 1, std::max<int64_t>(2, s.max_lengths));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t k = std::llround(static_cast<double>(i) * static_cast<double>(n) / static_cast<double>(count - 1));
    if (lengths.empty() || lengths.back() != k) lengths.push_back(k);
  }
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  Rng rng(mix_seed(s.seed ^ 0x9a75ULL));
  nlohmann::json rows = nlohmann::json::array();
  std::vector<double> log_mean;  // log of the mean single-path gradient norm, per sampled length
  for (int64_t k : lengths) {
    RouteTap tap;
    tap.paths = true;
    std::vector<double> norms;
    // Length 0 and n have a single path; draw once.
    const int64_t draws = (k == 0 || k == n) ? 1 : s.samples;
    for (int64_t i = 0; i < draws; ++i) {
      tap.branch = draw(all, k, rng);
      norms.push_back(input_gradient_norm(net, batch, &tap));
    }
    const auto [mean, sd] = mean_std(norms);
    log_mean.push_back(std::log(std::max(mean, 1e-300)));
    rows.push_back({{"length", k},
                    {"paths_log10", log_choose(n, k) / std::log(10.0)},
                    {"grad_norm", mean},
                    {"grad_norm_std", sd},
                    {"samples", draws}});
  }
  // Share of the summed gradient magnitude (number of paths x single-path magnitude) by length, with the
  // log-magnitude interpolated between sampled lengths.
  std::vector<double> log_total(static_cast<size_t>(n + 1));
  size_t j = 0;
  for (int64_t k = 0; k <= n; ++k) {
    while (j + 1 < lengths.size() && lengths[j + 1] <= k) ++j;
    double lm = log_mean[j];
    if (lengths[j] != k) {  // between sampled lengths j and j + 1
      const double f = static_cast<double>(k - lengths[j]) / static_cast<double>(lengths[j + 1] - lengths[j]);
      lm = (1 - f) * log_mean[j] + f * log_mean[j + 1];
    }
    log_total[static_cast<size_t>(k)] = log_choose(n, k) + lm;
  }
  const double top = *std::max_element(log_total.begin(), log_total.end());
  std::vector<double> share;
  for (double lt : log_total) share.push_back(std::exp(lt - top));
  const double sum = std::accumulate(share.begin(), share.end(), 0.0);
  for (double& v : share) v /= sum;
  double mean_length = 0.0;
  for (size_t k = 0; k < share.size(); ++k) mean_length += static_cast<double>(k) * share[k];
  return {{"blocks", n},
          {"applicable", true},
          {"input_grad_norm", full},
          {"distribution", path_length_distribution(n)},
          {"lengths", rows},
          {"gradient_share", share},
          {"gradient_mean_length", mean_length}};
}

}  // namespace reslab
