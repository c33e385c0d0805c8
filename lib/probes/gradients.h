#pragma once
// Gradient probes: per-layer gradient norms (is there a vanishing gradient?), per-example gradient
// signal-to-noise, and the correlation of input gradients at nearby inputs (Balduzzi et al. 2017, "The
// Shattered Gradients Problem").

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

#include "data/loader.h"
#include "models/network.h"
#include "probes/settings.h"

namespace reslab {

/// Saves a network's BN running statistics and train/eval mode and restores both when it goes out of scope, so
/// that a probe leaves the network as it found it. (The probes never touch the parameters' .grad: they take
/// gradients with torch::autograd::grad, so one can run in the middle of a training step.)
class NetworkStateGuard {
 public:
  explicit NetworkStateGuard(NetworkBase& net);
  ~NetworkStateGuard();
  NetworkStateGuard(const NetworkStateGuard&) = delete;
  NetworkStateGuard& operator=(const NetworkStateGuard&) = delete;

 private:
  NetworkBase& net_;
  bool training_;
  std::vector<torch::Tensor> saved_;
};

/// Sets the BN running statistics of `net` to the cumulative average over the first `batches` batches of
/// `train`, as a freshly initialised net needs before anything evaluates it in eval mode (at initialisation the
/// running statistics are 0 and 1 and describe no data). Leaves the net in eval mode.
void calibrate_batchnorm(NetworkBase& net, const BatchSource& train, int64_t batches);

/// Captures the input of every weighted layer with its gradient retained (the first layer's input is made a
/// leaf that requires a gradient).
class InputGradientTap : public ForwardTap {
 public:
  torch::Tensor layer_input(int64_t layer, torch::Tensor input) override;
  /// The captured input of `layer` (undefined when the forward pass did not reach it).
  const torch::Tensor& input(int64_t layer) const;
  void clear() { inputs_.clear(); }

 private:
  std::vector<torch::Tensor> inputs_;
};

/// Per weighted layer: the norm of the weight's gradient and of the gradient with respect to the layer's input,
/// for the mean cross-entropy over `batch`, with the net in train mode as in training (batch statistics in BN).
/// BN running statistics, mode and gradients are restored afterwards.
nlohmann::json gradient_norms(NetworkBase& net, const Batch& batch);
/// The same from gradients already computed with `tap` installed during the forward pass (a training step).
nlohmann::json gradient_norms_from(const NetworkBase& net, const InputGradientTap& tap);

/// Mean and spread of a set of vectors (one gradient per example), accumulated one vector at a time.
class GradientMoments {
 public:
  void add(const torch::Tensor& g);
  int64_t count() const { return count_; }
  /// Norm of the mean vector.
  double mean_norm() const;
  /// Root of the mean squared distance of the vectors to their mean.
  double rms_deviation() const;
  /// mean_norm / rms_deviation, the plug-in ratio. It is biased upwards: with n vectors of pure noise it is
  /// about 1/sqrt(n - 1) (noise_floor()), because the mean of n noisy vectors keeps 1/n of their variance.
  double snr_plugin() const;
  /// The ratio with both parts debiased: sqrt(max(0, |mean|^2 - dev^2 / (n - 1))) / (dev * sqrt(n / (n - 1))),
  /// an estimate of |E g| / sqrt(E|g - E g|^2). 0 when the mean is indistinguishable from noise.
  double snr() const;
  double noise_floor() const;

 private:
  torch::Tensor sum_;
  double sum_sq_ = 0.0;
  int64_t count_ = 0;
};

/// Calls `visit(i, grads)` with the gradient of example i's loss with respect to every weighted layer's weight
/// (in layers() order): one forward pass of the batch, then one backward pass per example. In train mode the
/// examples interact through BN's batch statistics, exactly as in a training step (the mean of these gradients
/// is the step's gradient); in eval mode each is the gradient of the example alone.
void for_each_example_gradient(NetworkBase& net, const Batch& batch, bool train_mode,
                               const std::function<void(int64_t, const std::vector<torch::Tensor>&)>& visit);

/// Per weighted layer, across the examples of `batch`: the norm of the mean per-example gradient, the
/// root-mean-square of the deviations from it, the debiased ratio "snr", the plug-in ratio "snr_plugin" and its
/// value for pure noise "noise_floor" (train mode; the net is restored afterwards); "snr_median" is the median of
/// the debiased ratio over the layers where it is finite.
nlohmann::json gradient_snr(NetworkBase& net, const Batch& batch);

/// Balduzzi's measure: along `settings.lines` straight lines between pairs of test images, `settings.points`
/// evenly spaced inputs each, the gradient of the true class's logit with respect to the input; returns the mean
/// cosine similarity of gradients `lag` points apart for lag 1..max_lag. Shattered gradients decorrelate at
/// small lags. Eval mode: calibrate BN first for a fresh net.
nlohmann::json gradient_correlation(NetworkBase& net, const BatchSource& test, const ProbeSettings& settings);

}  // namespace reslab
