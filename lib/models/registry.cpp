#include "models/registry.h"

#include <cctype>
#include <stdexcept>

#include "models/cifar_resnet.h"

namespace reslab {

namespace {
ModelFamily cifar_family(const std::string& prefix, bool residual) {
  ModelFamily f;
  f.prefix = prefix;
  f.description = residual ? "CIFAR-style ResNet (paper Sec. 4.2): 6n+2 layers, basic blocks with shortcuts"
                           : "CIFAR-style plain net: the ResNet of the same depth without shortcuts";
  f.paper_depths = {20, 32, 44, 56, 110, 1202};
  f.validate_depth = [](int64_t depth) { cifar_blocks_per_stage(depth); };
  f.build = [residual](int64_t depth, const ModelSpec& spec) -> std::shared_ptr<NetworkBase> {
    return std::make_shared<CifarResNetImpl>(CifarResNetOptions(depth).spec(spec).residual(residual));
  };
  return f;
}
}  // namespace

const std::vector<ModelFamily>& model_families() {
  static const std::vector<ModelFamily> families = {cifar_family("resnet", true), cifar_family("plain", false)};
  return families;
}

ParsedModelName parse_model_name(const std::string& name) {
  for (const auto& family : model_families()) {
    if (name.size() <= family.prefix.size() || name.compare(0, family.prefix.size(), family.prefix) != 0) continue;
    const std::string digits = name.substr(family.prefix.size());
    bool all_digits = digits.size() <= 6;
    for (char c : digits) all_digits = all_digits && std::isdigit(static_cast<unsigned char>(c));
    if (!all_digits) continue;
    const int64_t depth = std::stoll(digits);
    try {
      family.validate_depth(depth);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("model '" + name + "': " + e.what());
    }
    return {&family, depth};
  }
  std::string forms;
  for (const auto& family : model_families()) forms += (forms.empty() ? "" : ", ") + family.prefix + "<depth>";
  throw std::invalid_argument("unknown model '" + name + "': expected one of " + forms +
                              " (e.g. resnet56, plain20); `reslab models` lists them");
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& family : model_families()) {
    for (int64_t d : family.paper_depths) names.push_back(family.prefix + std::to_string(d));
  }
  return names;
}

std::shared_ptr<NetworkBase> build_model(const std::string& name, const ModelSpec& spec) {
  const auto parsed = parse_model_name(name);
  return parsed.family->build(parsed.depth, spec);
}

}  // namespace reslab
