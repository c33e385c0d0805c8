#pragma once
// One explicit table from model names to networks. No static self-registration.
//
// A name is a family prefix, a depth, and optional "-tag" modifiers: "resnet56", "plain20", "resnet50" (ImageNet,
// Table 1), "preact164", "resnet164-bottleneck", "resnet20-k1" (one 3x3 layer per block), "resnet56-skipinit".

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/resnet.h"

namespace reslab {

/// What the "-tag" modifiers of a name ask for.
struct ModelTags {
  bool bottleneck = false;                 ///< -bottleneck: CIFAR bottleneck blocks (9n+2)
  int64_t branch_layers = 0;               ///< -k1, -k2, -k3: 3x3 layers per basic block (0: the family's default)
  Norm norm = Norm::kBatchNorm;            ///< -noaffine, -nonorm, -fixup
  bool zero_init_last = false;             ///< -zerogamma
  BranchScale scale = BranchScale::kNone;  ///< -skipinit (0), -scalar (1)
  bool fixup = false;                      ///< -fixup
  bool stride_on_3x3 = false;              ///< -torchvision: bottleneck stride on the 3x3 conv
};

/// A family of networks: names are the prefix, a depth and tags.
struct ModelFamily {
  std::string prefix;
  std::string description;
  /// Depths named in the papers; other valid depths are accepted by name too.
  std::vector<int64_t> paper_depths;
  bool imagenet = false;
  /// The net's options at `depth` with `tags`; throws std::invalid_argument when the family has no such net.
  std::function<ResNetOptions(int64_t depth, const ModelTags& tags)> options;
};

/// The table of model families, in the order names are matched (the ImageNet depths 18, 34, 50, 101 and 152 take
/// precedence; "cifar-" before a name picks the CIFAR-style family, e.g. cifar-resnet50).
const std::vector<ModelFamily>& model_families();

/// One "-tag" modifier: its name, what it does in words (`reslab models`), and what it sets. A new tag is one row
/// of model_tag_table() (and, if it asks for something new, a field of ModelTags and its use in with_tags).
struct ModelTag {
  std::string name;  ///< as written, e.g. "-noaffine"
  std::string help;
  /// The normalisation it chooses, if it chooses one: two such tags in a name contradict each other.
  std::optional<Norm> norm;
  std::function<void(ModelTags&)> apply;  ///< what it sets besides the normalisation
};

/// The tags, in the order `reslab models` lists them; parse_model_name reads its tags from it.
const std::vector<ModelTag>& model_tag_table();

/// What a name denotes.
struct ParsedModelName {
  const ModelFamily* family = nullptr;
  int64_t depth = 0;
  ModelTags tags;
  ResNetOptions options{0};  ///< without the spec (input, classes, shortcut), which the caller adds
};

/// Parses a name such as "resnet110" or "resnet56-k1"; throws std::invalid_argument naming the value and the
/// valid forms.
ParsedModelName parse_model_name(const std::string& name);

/// Every name with a paper depth, in table order ("resnet18", ..., "preact1001").
std::vector<std::string> model_names();

/// The largest number of classes and input a net is built for (ImageNet-21k has 21,841 classes).
constexpr int64_t kMaxClasses = 100000;
constexpr int64_t kMaxInputChannels = 4096;
constexpr int64_t kMaxInputSide = 65536;

/// Builds, initialises and returns the named network. Throws std::invalid_argument naming the model when its
/// name, classes or input shape are outside what reslab builds (before allocating anything).
std::shared_ptr<NetworkBase> build_model(const std::string& name, const ModelSpec& spec);

}  // namespace reslab
