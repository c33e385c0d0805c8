#include "probes/gradients.h"

#include <cmath>

#include "data/random.h"
#include "probes/statistics.h"

namespace reslab {

NetworkStateGuard::NetworkStateGuard(NetworkBase& net) : net_(net), training_(net.is_training()) {
  torch::NoGradGuard no_grad;
  for (const auto& b : net_.buffers()) saved_.push_back(b.clone());
}

NetworkStateGuard::~NetworkStateGuard() {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& b : net_.buffers()) b.copy_(saved_[i++]);
  net_.train(training_);
}

void calibrate_batchnorm(NetworkBase& net, const BatchSource& train, int64_t batches) {
  TORCH_CHECK(batches > 0, "calibrate_batchnorm: batches must be positive, got ", batches);
  TORCH_CHECK(train.batches_per_epoch() > 0, "calibrate_batchnorm: no training batch");
  std::vector<std::pair<torch::nn::BatchNorm2dImpl*, c10::optional<double>>> bns;
  for (auto& m : net.modules(/*include_self=*/false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      bns.emplace_back(bn, bn->options.momentum());
      bn->reset_running_stats();
      bn->options.momentum(c10::nullopt);  // a cumulative average over the calibration batches
    }
  }
  torch::NoGradGuard no_grad;
  net.train();
  const int64_t n = std::min(batches, train.batches_per_epoch());
  for (int64_t i = 0; i < n; ++i) net.forward(train.batch(i).inputs);
  for (auto& [bn, momentum] : bns) bn->options.momentum(momentum);
  net.eval();
}

torch::Tensor InputGradientTap::layer_input(int64_t layer, torch::Tensor input) {
  if (!input.requires_grad()) {
    input = input.detach().requires_grad_(true);
  } else {
    input.retain_grad();
  }
  if (static_cast<int64_t>(inputs_.size()) <= layer) inputs_.resize(static_cast<size_t>(layer + 1));
  inputs_[static_cast<size_t>(layer)] = input;
  return input;
}

const torch::Tensor& InputGradientTap::input(int64_t layer) const {
  static const torch::Tensor kNone;
  return layer < static_cast<int64_t>(inputs_.size()) ? inputs_[static_cast<size_t>(layer)] : kNone;
}

namespace {

double norm_of(const torch::Tensor& t) {
  return t.defined() ? t.to(torch::kFloat64).norm().item<double>() : std::nan("");
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json norms_json(const std::vector<LayerInfo>& layers, const std::vector<torch::Tensor>& weight_grads,
                          const std::vector<torch::Tensor>& input_grads) {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    rows.push_back({{"layer", i},
                    {"name", layers[i].name},
                    {"block", layers[i].block},
                    {"weight_norm", norm_of(layers[i].weight.detach())},
                    {"weight_grad_norm", number_or_null(norm_of(weight_grads[i]))},
                    {"input_grad_norm", number_or_null(norm_of(input_grads[i]))}});
  }
  return {{"layers", rows}};
}

std::vector<torch::Tensor> layer_weights(const NetworkBase& net) {
  std::vector<torch::Tensor> out;
  for (const auto& l : net.layers()) out.push_back(l.weight);
  return out;
}

}  // namespace

nlohmann::json gradient_norms_from(const NetworkBase& net, const InputGradientTap& tap) {
  const auto layers = net.layers();
  std::vector<torch::Tensor> weight_grads, input_grads;
  for (size_t i = 0; i < layers.size(); ++i) {
    weight_grads.push_back(layers[i].weight.grad());
    const auto& in = tap.input(static_cast<int64_t>(i));
    input_grads.push_back(in.defined() ? in.grad() : torch::Tensor());
  }
  return norms_json(layers, weight_grads, input_grads);
}

nlohmann::json gradient_norms(NetworkBase& net, const Batch& batch) {
  NetworkStateGuard guard(net);
  net.train();
  InputGradientTap tap;
  torch::Tensor loss;
  {
    TapGuard installed(net, tap);
    loss = torch::nn::functional::cross_entropy(net.forward(batch.inputs), batch.targets);
  }
  const auto layers = net.layers();
  std::vector<torch::Tensor> wrt = layer_weights(net);
  for (size_t i = 0; i < layers.size(); ++i) wrt.push_back(tap.input(static_cast<int64_t>(i)));
  // torch::autograd::grad leaves the parameters' .grad alone: a probe inside a training step changes nothing.
  auto grads = torch::autograd::grad({loss}, wrt, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  const auto n = static_cast<std::ptrdiff_t>(layers.size());
  return norms_json(layers, {grads.begin(), grads.begin() + n}, {grads.begin() + n, grads.end()});
}

void GradientMoments::add(const torch::Tensor& g) {
  const auto flat = g.detach().to(torch::kFloat64).reshape({-1});
  if (!sum_.defined()) {
    sum_ = flat.clone();
  } else {
    TORCH_CHECK(sum_.numel() == flat.numel(), "GradientMoments: vectors of different sizes (", sum_.numel(), ", ",
                flat.numel(), ")");
    sum_ += flat;
  }
  sum_sq_ += flat.dot(flat).item<double>();
  ++count_;
}

double GradientMoments::mean_norm() const {
  TORCH_CHECK(count_ > 0, "GradientMoments: no vectors");
  return (sum_ / static_cast<double>(count_)).norm().item<double>();
}

double GradientMoments::rms_deviation() const {
  const double m = mean_norm();
  // E||g - mean||^2 = E||g||^2 - ||mean||^2
  return std::sqrt(std::max(0.0, sum_sq_ / static_cast<double>(count_) - m * m));
}

double GradientMoments::snr_plugin() const {
  const double dev = rms_deviation();
  return dev > 0 ? mean_norm() / dev : std::numeric_limits<double>::infinity();
}

double GradientMoments::snr() const {
  TORCH_CHECK(count_ > 1, "GradientMoments: the debiased ratio needs at least 2 vectors");
  const double n = static_cast<double>(count_);
  const double m = mean_norm(), dev = rms_deviation();
  if (dev <= 0) return std::numeric_limits<double>::infinity();
  return std::sqrt(std::max(0.0, m * m - dev * dev / (n - 1))) / (dev * std::sqrt(n / (n - 1)));
}

double GradientMoments::noise_floor() const {
  TORCH_CHECK(count_ > 1, "GradientMoments: the noise floor needs at least 2 vectors");
  return 1.0 / std::sqrt(static_cast<double>(count_) - 1.0);
}

void for_each_example_gradient(NetworkBase& net, const Batch& batch, bool train_mode,
                               const std::function<void(int64_t, const std::vector<torch::Tensor>&)>& visit) {
  NetworkStateGuard guard(net);
  net.train(train_mode);
  const auto logits = net.forward(batch.inputs);
  const auto losses = torch::nn::functional::cross_entropy(
      logits, batch.targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  const auto weights = layer_weights(net);
  const int64_t n = losses.size(0);
  for (int64_t i = 0; i < n; ++i) {
    visit(i, torch::autograd::grad({losses[i]}, weights, {}, /*retain_graph=*/i + 1 < n));
  }
}

nlohmann::json gradient_snr(NetworkBase& net, const Batch& batch) {
  const auto layers = net.layers();
  std::vector<GradientMoments> moments(layers.size());
  for_each_example_gradient(net, batch, /*train_mode=*/true, [&](int64_t, const std::vector<torch::Tensor>& g) {
    for (size_t l = 0; l < g.size(); ++l) moments[l].add(g[l]);
  });
  nlohmann::json rows = nlohmann::json::array();
  for (size_t l = 0; l < layers.size(); ++l) {
    rows.push_back({{"layer", l},
                    {"name", layers[l].name},
                    {"block", layers[l].block},
                    {"mean_norm", moments[l].mean_norm()},
                    {"rms_deviation", moments[l].rms_deviation()},
                    {"snr", number_or_null(moments[l].snr())},
                    {"snr_plugin", number_or_null(moments[l].snr_plugin())}});
  }
  std::vector<double> snrs;
  for (const auto& r : rows) {
    if (!r["snr"].is_null()) snrs.push_back(r["snr"].get<double>());
  }
  return {{"examples", batch.targets.size(0)},
          {"noise_floor", moments.empty() ? 0.0 : moments[0].noise_floor()},
          {"snr_median", finite_or_null(median_of(snrs))},
          {"layers", rows}};
}

nlohmann::json gradient_correlation(NetworkBase& net, const BatchSource& test, const ProbeSettings& s) {
  TORCH_CHECK(s.points >= 2 && s.lines >= 1 && s.max_lag >= 1 && s.max_lag < s.points,
              "gradient_correlation: need points >= 2, lines >= 1 and 1 <= max_lag < points");
  NetworkStateGuard guard(net);
  net.eval();
  const Batch images = test.batch(0);
  const int64_t available = images.targets.size(0);
  TORCH_CHECK(available >= 2, "gradient_correlation: the test set needs at least 2 images");
  Rng rng(mix_seed(s.seed));
  std::vector<double> cosine(static_cast<size_t>(s.max_lag), 0.0);
  double grad_norm = 0.0, step = 0.0;
  const auto t = torch::linspace(0.0, 1.0, s.points).view({-1, 1, 1, 1});
  for (int64_t line = 0; line < s.lines; ++line) {
    const auto a = static_cast<int64_t>(rng.below(static_cast<uint64_t>(available)));
    auto b = static_cast<int64_t>(rng.below(static_cast<uint64_t>(available - 1)));
    if (b >= a) ++b;
    const auto xa = images.inputs[a].unsqueeze(0), xb = images.inputs[b].unsqueeze(0);
    step += (xb - xa).norm().item<double>() / static_cast<double>((s.points - 1) * s.lines);
    auto x = (xa + t * (xb - xa)).contiguous().requires_grad_(true);
    const auto logit = net.forward(x).select(1, images.targets[a].item<int64_t>()).sum();
    const auto g = torch::autograd::grad({logit}, {x})[0].reshape({s.points, -1}).to(torch::kFloat64);
    const auto norms = g.norm(2, 1);
    grad_norm += norms.mean().item<double>() / static_cast<double>(s.lines);
    const auto unit = g / norms.clamp_min(1e-300).unsqueeze(1);
    for (int64_t lag = 1; lag <= s.max_lag; ++lag) {
      const auto dots = (unit.slice(0, 0, s.points - lag) * unit.slice(0, lag)).sum(1);
      cosine[static_cast<size_t>(lag - 1)] += dots.mean().item<double>() / static_cast<double>(s.lines);
    }
  }
  std::vector<int64_t> lags;
  for (int64_t lag = 1; lag <= s.max_lag; ++lag) lags.push_back(lag);
  return {{"points", s.points}, {"lines", s.lines}, {"step", step},
          {"lags", lags},       {"cosine", cosine}, {"input_grad_norm", grad_norm}};
}

}  // namespace reslab
