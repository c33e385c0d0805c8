#pragma once
// The paper's optimiser: SGD with momentum and weight decay.

#include <torch/torch.h>

#include <memory>

#include "optim/param_groups.h"

namespace reslab {

struct SgdConfig {
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  bool nesterov = false;
  /// Update every parameter of a group with a few multi-tensor (_foreach) operations instead of LibTorch's
  /// per-parameter loop: the same arithmetic, bit for bit, in far fewer kernel launches on a GPU.
  bool foreach = true;
  /// Parameter groups by kind (see param_groups.h); parameters no rule names train at lr, with weight decay.
  std::vector<ParamGroupRule> groups = {};
};

/// SGD over `parameters` in one group (weight decay applies to all of them, as in the paper's Caffe setup);
/// config.groups must be empty (they need the module to tell the parameters' kinds).
std::unique_ptr<torch::optim::SGD> make_sgd(const std::vector<torch::Tensor>& parameters, const SgdConfig& config);

/// SGD over `module`'s parameters: first the group of every parameter no rule of config.groups names (lr x 1,
/// weight decay on), then one group per rule that names any parameter (lr x lr_mult, weight decay as the rule
/// says). Without rules, the same as make_sgd(module.parameters(), config).
std::unique_ptr<torch::optim::SGD> make_sgd(const torch::nn::Module& module, const SgdConfig& config);

/// Sets the learning rate of every parameter group: `lr` times the group's multiplier (1 for an optimizer that
/// make_sgd did not build).
void set_learning_rate(torch::optim::SGD& optimizer, double lr);

/// The learning-rate multiplier of each parameter group, in order.
std::vector<double> learning_rate_multipliers(const torch::optim::SGD& optimizer);

/// `param`'s momentum buffer in `optimizer` (LibTorch's SGD state, keyed as this LibTorch version keys it), or an
/// undefined tensor where it has none (before the first step, or another optimizer).
torch::Tensor momentum_buffer(const torch::optim::Optimizer& optimizer, const torch::Tensor& param);

}  // namespace reslab
