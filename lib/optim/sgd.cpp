#include "optim/sgd.h"

namespace reslab {

std::unique_ptr<torch::optim::SGD> make_sgd(const std::vector<torch::Tensor>& parameters, const SgdConfig& config) {
  return std::make_unique<torch::optim::SGD>(parameters, torch::optim::SGDOptions(config.lr)
                                                             .momentum(config.momentum)
                                                             .weight_decay(config.weight_decay)
                                                             .nesterov(config.nesterov));
}

void set_learning_rate(torch::optim::SGD& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
}

}  // namespace reslab
