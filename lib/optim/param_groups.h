#pragma once
// Parameter groups: each a learning-rate multiplier and a weight-decay switch, chosen by the kind of parameter
// (Fixup's reference trains its scalar biases and multipliers at a tenth of the learning rate).

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace reslab {

/// The kinds a group chooses parameters by, in the order `parameter_kinds()` lists them:
/// "weight" (a convolution's or linear layer's weight), "bias" (a convolution's or linear layer's bias),
/// "norm" (BatchNorm's gamma and beta), "scalar_bias" (a scalar bias of a block or net, Fixup's) and
/// "multiplier" (a scalar that multiplies a branch: Fixup's scale, SkipInit's alpha).
const std::vector<std::string>& parameter_kinds();

/// The kind of every parameter of `module`, in `module.parameters()` order.
std::vector<std::string> classify_parameters(const torch::nn::Module& module);

/// Parameters of these kinds train at lr x lr_mult, with weight decay or without. Example (Fixup's reference):
///   ParamGroupRule{{"scalar_bias", "multiplier", "bias"}, /*lr_mult=*/0.1, /*weight_decay=*/true}
struct ParamGroupRule {
  std::vector<std::string> kinds;
  double lr_mult = 1.0;
  bool weight_decay = true;
};

/// {"kinds": [...], "lr_mult": x, "weight_decay": b}
nlohmann::json to_json(const ParamGroupRule& rule);

/// Throws std::invalid_argument naming the value for a rule without kinds, a kind that is not one of
/// parameter_kinds(), a kind named by two rules, or lr_mult outside [0, 1000].
void check_rules(const std::vector<ParamGroupRule>& rules);

}  // namespace reslab
