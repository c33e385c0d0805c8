#include "optim/sgd.h"

#include <torch/version.h>

namespace reslab {

namespace {

/// The key LibTorch's SGD files a parameter's state under (a string in 1.x, the pointer in 2.x).
auto key(const torch::Tensor& p) {
#if TORCH_VERSION_MAJOR >= 2
  return p.unsafeGetTensorImpl();
#else
  return c10::guts::to_string(p.unsafeGetTensorImpl());
#endif
}

/// torch::optim::SGD whose step runs on whole lists of tensors (PyTorch's foreach SGD). The momentum buffers
/// live where LibTorch's SGD keeps them, so checkpoints are the same files either way.
class ForeachSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;

  torch::Tensor step(LossClosure closure = nullptr) override {
    torch::NoGradGuard no_grad;
    torch::Tensor loss;
    if (closure != nullptr) {
      at::AutoGradMode enable_grad(true);
      loss = closure();
    }
    for (auto& group : param_groups_) {
      const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
      std::vector<torch::Tensor> params, grads;
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        params.push_back(p);
        grads.push_back(p.grad());
      }
      if (params.empty()) continue;
      // d_p = grad + weight_decay * p (new tensors: the gradients themselves are left as they are).
      std::vector<torch::Tensor> d_p =
          o.weight_decay() != 0 ? at::_foreach_add(grads, params, o.weight_decay()) : grads;
      if (o.momentum() != 0) {
        std::vector<torch::Tensor> old_buffers, old_d_p;
        for (size_t i = 0; i < params.size(); ++i) {
          auto& slot = state_[key(params[i])];
          if (!slot) {
            // The first step: the buffer starts as d_p itself (PyTorch's rule), then d_p is the buffer.
            auto state = std::make_unique<torch::optim::SGDParamState>();
            state->momentum_buffer(d_p[i].clone().detach());
            d_p[i] = state->momentum_buffer();
            slot = std::move(state);
          } else {
            old_buffers.push_back(static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer());
            old_d_p.push_back(d_p[i]);
          }
        }
        if (!old_buffers.empty()) {
          at::_foreach_mul_(old_buffers, o.momentum());
          at::_foreach_add_(old_buffers, old_d_p, 1 - o.dampening());
        }
        std::vector<torch::Tensor> buffers;
        buffers.reserve(params.size());
        for (const auto& p : params) {
          buffers.push_back(static_cast<torch::optim::SGDParamState&>(*state_[key(p)]).momentum_buffer());
        }
        if (o.nesterov()) {
          d_p = at::_foreach_add(d_p, buffers, o.momentum());
        } else {
          d_p = std::move(buffers);
        }
      }
      at::_foreach_add_(params, d_p, -o.lr());
    }
    return loss;
  }
};

}  // namespace

std::unique_ptr<torch::optim::SGD> make_sgd(const std::vector<torch::Tensor>& parameters, const SgdConfig& config) {
  const auto options = torch::optim::SGDOptions(config.lr)
                           .momentum(config.momentum)
                           .weight_decay(config.weight_decay)
                           .nesterov(config.nesterov);
  if (config.foreach) return std::make_unique<ForeachSGD>(parameters, options);
  return std::make_unique<torch::optim::SGD>(parameters, options);
}

void set_learning_rate(torch::optim::SGD& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
}

}  // namespace reslab
