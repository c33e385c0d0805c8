#pragma once
// One explicit table from model names ("resnet56", "plain20", ...) to builders. No static self-registration.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/network.h"

namespace reslab {

/// A family of networks whose names are a prefix followed by a depth, e.g. "resnet" + 56.
struct ModelFamily {
  std::string prefix;
  std::string description;
  /// Depths named in the paper; any other valid depth is accepted by name too.
  std::vector<int64_t> paper_depths;
  std::function<void(int64_t depth)> validate_depth;
  std::function<std::shared_ptr<NetworkBase>(int64_t depth, const ModelSpec& spec)> build;
};

/// The table of model families.
const std::vector<ModelFamily>& model_families();

/// The family and depth a name denotes.
struct ParsedModelName {
  const ModelFamily* family = nullptr;
  int64_t depth = 0;
};

/// Parses a name such as "resnet110"; throws std::invalid_argument naming the value and the valid forms.
ParsedModelName parse_model_name(const std::string& name);

/// Every name with a paper depth, in table order ("resnet20", ..., "plain1202").
std::vector<std::string> model_names();

/// Builds, initialises and returns the named network.
std::shared_ptr<NetworkBase> build_model(const std::string& name, const ModelSpec& spec);

}  // namespace reslab
