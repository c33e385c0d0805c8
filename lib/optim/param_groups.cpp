#include "optim/param_groups.h"

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>

namespace reslab {

const std::vector<std::string>& parameter_kinds() {
  static const std::vector<std::string> kinds = {"weight", "bias", "norm", "scalar_bias", "multiplier"};
  return kinds;
}

std::vector<std::string> classify_parameters(const torch::nn::Module& module) {
  std::map<const c10::TensorImpl*, std::string> kind;
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/true)) {
    const torch::nn::Module& m = *item.value();
    const bool layer = dynamic_cast<const torch::nn::Conv2dImpl*>(&m) != nullptr ||
                       dynamic_cast<const torch::nn::LinearImpl*>(&m) != nullptr;
    const bool norm = dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) != nullptr;
    for (const auto& p : m.named_parameters(/*recurse=*/false)) {
      std::string k;
      if (norm) {
        k = "norm";
      } else if (layer) {
        k = p.key() == "bias" ? "bias" : "weight";
      } else {
        // Registered on a block or the net itself: the scalars of Fixup and SkipInit.
        k = p.key().rfind("scale", 0) == 0 ? "multiplier" : "scalar_bias";
      }
      kind[p.value().unsafeGetTensorImpl()] = k;
    }
  }
  std::vector<std::string> out;
  for (const auto& p : module.parameters()) out.push_back(kind.at(p.unsafeGetTensorImpl()));
  return out;
}

nlohmann::json to_json(const ParamGroupRule& rule) {
  return {{"kinds", rule.kinds}, {"lr_mult", rule.lr_mult}, {"weight_decay", rule.weight_decay}};
}

void check_rules(const std::vector<ParamGroupRule>& rules) {
  const auto& kinds = parameter_kinds();
  std::set<std::string> named;
  for (const auto& rule : rules) {
    if (rule.kinds.empty()) throw std::invalid_argument("a parameter group names no kinds");
    for (const auto& k : rule.kinds) {
      if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) {
        std::string list;
        for (const auto& name : kinds) list += (list.empty() ? "" : ", ") + name;
        throw std::invalid_argument("unknown parameter kind '" + k + "'; expected one of " + list);
      }
      if (!named.insert(k).second) throw std::invalid_argument("parameter kind '" + k + "' is in two groups");
    }
    if (!(rule.lr_mult >= 0 && rule.lr_mult <= 1000)) {
      throw std::invalid_argument("lr_mult " + std::to_string(rule.lr_mult) + " is out of range; expected 0 to 1000");
    }
  }
}

}  // namespace reslab
