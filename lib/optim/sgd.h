#pragma once
// The paper's optimiser: SGD with momentum and weight decay.

#include <torch/torch.h>

#include <memory>

namespace reslab {

struct SgdConfig {
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  bool nesterov = false;
  /// Update every parameter of a group with a few multi-tensor (_foreach) operations instead of LibTorch's
  /// per-parameter loop: the same arithmetic, bit for bit, in far fewer kernel launches on a GPU.
  bool foreach = true;
};

/// SGD over `parameters` (weight decay applies to all of them, as in the paper's Caffe setup).
std::unique_ptr<torch::optim::SGD> make_sgd(const std::vector<torch::Tensor>& parameters, const SgdConfig& config);

/// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::SGD& optimizer, double lr);

}  // namespace reslab
