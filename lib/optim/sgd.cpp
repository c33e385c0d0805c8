#include "optim/sgd.h"

#include <torch/version.h>

#include <algorithm>
#include <stdexcept>

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

/// torch::optim::SGD with a learning-rate multiplier per parameter group, whose step (with `foreach`) runs on
/// whole lists of tensors (PyTorch's foreach SGD). The momentum buffers live where LibTorch's SGD keeps them, so
/// checkpoints are the same files either way.
class GroupedSGD : public torch::optim::SGD {
 public:
  GroupedSGD(std::vector<torch::optim::OptimizerParamGroup> groups, const torch::optim::SGDOptions& defaults,
             std::vector<double> lr_mult, bool foreach)
      : torch::optim::SGD(std::move(groups), defaults), lr_mult_(std::move(lr_mult)), foreach_(foreach) {}

  const std::vector<double>& lr_mult() const { return lr_mult_; }

  torch::Tensor step(LossClosure closure = nullptr) override {
    if (!foreach_) return torch::optim::SGD::step(std::move(closure));
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

#if TORCH_VERSION_MAJOR >= 2
  /// LibTorch 1.x filed each parameter's state under its address printed in hex ("0x5581..."); 2.x reads the keys
  /// of a file as decimal numbers, so every 1.x key became 0 and one momentum buffer landed on every parameter.
  /// A 1.x file's state is read here by its own keys, so a run begun by Debian's LibTorch 1.13 resumes in a build
  /// against PyPI's 2.x (scripts/build-cuda). 2.x's own files (decimal keys) need nothing more than its loader.
  void load(torch::serialize::InputArchive& archive) override {
    torch::optim::SGD::load(archive);  // the options, and the state of a 2.x file
    torch::serialize::InputArchive groups_archive, state_archive;
    archive.read("param_groups", groups_archive);
    archive.read("state", state_archive);
    const auto saved = state_archive.keys();
    if (std::none_of(saved.begin(), saved.end(), [](const std::string& k) { return k.rfind("0x", 0) == 0; })) return;
    state_.clear();
    for (size_t i = 0; i < param_groups_.size(); ++i) {
      torch::serialize::InputArchive group_archive;
      groups_archive.read("param_groups/" + std::to_string(i), group_archive);
      const auto& params = param_groups_[i].params();
      for (size_t j = 0; j < params.size(); ++j) {
        c10::IValue old_key;
        group_archive.read("params/" + std::to_string(j), old_key);
        torch::serialize::InputArchive param_archive;
        if (!state_archive.try_read(old_key.toStringRef(), param_archive)) continue;  // no step taken yet
        auto state = std::make_unique<torch::optim::SGDParamState>();
        state->serialize(param_archive);
        state_[key(params[j])] = std::move(state);
      }
    }
  }
#endif

 private:
  std::vector<double> lr_mult_;
  bool foreach_;
};

torch::optim::SGDOptions group_options(const SgdConfig& config, double lr_mult, bool weight_decay) {
  return torch::optim::SGDOptions(config.lr * lr_mult)
      .momentum(config.momentum)
      .weight_decay(weight_decay ? config.weight_decay : 0.0)
      .nesterov(config.nesterov);
}

}  // namespace

std::unique_ptr<torch::optim::SGD> make_sgd(const std::vector<torch::Tensor>& parameters, const SgdConfig& config) {
  if (!config.groups.empty()) {
    throw std::invalid_argument("make_sgd: parameter groups need the module (make_sgd(module, config))");
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(parameters, std::make_unique<torch::optim::SGDOptions>(group_options(config, 1.0, true)));
  return std::make_unique<GroupedSGD>(std::move(groups), group_options(config, 1.0, true), std::vector<double>{1.0},
                                      config.foreach);
}

std::unique_ptr<torch::optim::SGD> make_sgd(const torch::nn::Module& module, const SgdConfig& config) {
  check_rules(config.groups);
  const auto parameters = module.parameters();
  if (config.groups.empty()) return make_sgd(parameters, config);
  const auto kinds = classify_parameters(module);
  // Parameters by group: 0 the base group, r + 1 rule r's.
  std::vector<std::vector<torch::Tensor>> members(config.groups.size() + 1);
  for (size_t i = 0; i < parameters.size(); ++i) {
    size_t group = 0;
    for (size_t r = 0; r < config.groups.size() && group == 0; ++r) {
      const auto& named = config.groups[r].kinds;
      if (std::find(named.begin(), named.end(), kinds[i]) != named.end()) group = r + 1;
    }
    members[group].push_back(parameters[i]);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<double> lr_mult;
  for (size_t g = 0; g < members.size(); ++g) {
    if (members[g].empty()) continue;
    const double mult = g == 0 ? 1.0 : config.groups[g - 1].lr_mult;
    const bool decay = g == 0 || config.groups[g - 1].weight_decay;
    groups.emplace_back(members[g], std::make_unique<torch::optim::SGDOptions>(group_options(config, mult, decay)));
    lr_mult.push_back(mult);
  }
  return std::make_unique<GroupedSGD>(std::move(groups), group_options(config, 1.0, true), std::move(lr_mult),
                                      config.foreach);
}

torch::Tensor momentum_buffer(const torch::optim::Optimizer& optimizer, const torch::Tensor& param) {
  const auto it = optimizer.state().find(key(param));
  if (it == optimizer.state().end() || it->second == nullptr) return {};
  const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(it->second.get());
  return sgd == nullptr ? torch::Tensor() : sgd->momentum_buffer();
}

std::vector<double> learning_rate_multipliers(const torch::optim::SGD& optimizer) {
  if (const auto* grouped = dynamic_cast<const GroupedSGD*>(&optimizer)) return grouped->lr_mult();
  return std::vector<double>(optimizer.param_groups().size(), 1.0);
}

void set_learning_rate(torch::optim::SGD& optimizer, double lr) {
  const auto mult = learning_rate_multipliers(optimizer);
  auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    static_cast<torch::optim::SGDOptions&>(groups[g].options()).lr(lr * mult[g]);
  }
}

}  // namespace reslab
