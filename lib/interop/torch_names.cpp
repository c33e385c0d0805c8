#include "interop/torch_names.h"

#include <map>
#include <set>

namespace reslab {

namespace {

std::string shape_text(at::IntArrayRef sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) out += (i ? ", " : "") + std::to_string(sizes[i]);
  return out + "]";
}

}  // namespace

std::string to_string(NameStyle style) { return style == NameStyle::kTorchvision ? "torchvision" : "cifar"; }

NameStyle name_style(const ResNetOptions& options) {
  return options.stem() == Stem::kImageNet ? NameStyle::kTorchvision : NameStyle::kCifar;
}

std::string reference_name(const std::string& name, NameStyle style) {
  std::vector<std::string> parts;
  for (size_t at = 0;;) {
    const size_t dot = name.find('.', at);
    parts.push_back(name.substr(at, dot == std::string::npos ? std::string::npos : dot - at));
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  if (parts[0].rfind("stage", 0) == 0) {
    parts[0] = "layer" + parts[0].substr(5);
    if (parts.size() > 2 && parts[2] == "projection") {
      parts[2] = style == NameStyle::kTorchvision ? "downsample" : "shortcut";
    }
  } else if (parts[0] == "fc" && style == NameStyle::kCifar) {
    parts[0] = "linear";
  }
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "." : "") + parts[i];
  return out;
}

StateDict reference_state_dict(const ResNetImpl& net) {
  const NameStyle style = name_style(net.options);
  StateDict out;
  for (const auto& p : net.named_parameters(/*recurse=*/true)) {
    if (p.value().defined()) out.emplace_back(reference_name(p.key(), style), p.value().detach());
  }
  for (const auto& b : net.named_buffers(/*recurse=*/true)) {
    if (b.value().defined()) out.emplace_back(reference_name(b.key(), style), b.value().detach());
  }
  return out;
}

int64_t load_reference_state_dict(ResNetImpl& net, const StateDict& file, const std::string& source,
                                  int64_t* defaulted) {
  const NameStyle style = name_style(net.options);
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, t] : file) given.emplace(name, &t);
  std::vector<std::pair<std::string, torch::Tensor>> targets;  // (reference name, the net's tensor)
  for (const auto& p : net.named_parameters(true)) {
    if (p.value().defined()) targets.emplace_back(reference_name(p.key(), style), p.value());
  }
  for (const auto& b : net.named_buffers(true)) {
    if (b.value().defined()) targets.emplace_back(reference_name(b.key(), style), b.value());
  }
  std::set<std::string> wanted;
  int64_t missing = 0, counts = 0;
  std::string first_missing;
  const std::string batch_count = ".num_batches_tracked";
  for (const auto& [name, t] : targets) {
    wanted.insert(name);
    if (given.count(name) != 0) continue;
    const bool is_count = name.size() > batch_count.size() &&
                          name.compare(name.size() - batch_count.size(), batch_count.size(), batch_count) == 0;
    if (is_count) {
      ++counts;
    } else if (missing++ == 0) {
      first_missing = name;
    }
  }
  if (defaulted != nullptr) *defaulted = counts;
  if (missing > 0) {
    throw PthError(source + ": no key '" + first_missing + "' (" + std::to_string(missing) + " of the net's " +
                   std::to_string(targets.size()) + " tensors are missing); expected a state_dict of this model in " +
                   to_string(style) + " names");
  }
  for (const auto& [name, t] : file) {
    if (wanted.count(name) == 0) {
      throw PthError(source + ": key '" + safe_text(name) + "' has no place in this model (" +
                     std::to_string(file.size()) + " tensors in the file, " + std::to_string(targets.size()) +
                     " in the net): a state_dict of " + "another architecture?");
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : targets) {
    if (given.count(name) == 0) {  // a batch count the file lacks
      t.zero_();
      continue;
    }
    const torch::Tensor& src = *given.at(name);
    if (src.sizes() != t.sizes()) {
      throw PthError(source + ": key '" + name + "' has shape " + shape_text(src.sizes()) + "; this model's is " +
                     shape_text(t.sizes()));
    }
    if (!src.is_floating_point() && t.is_floating_point()) {
      throw PthError(source + ": key '" + name + "' holds " + std::string(c10::toString(src.scalar_type())) +
                     " values; expected floating point");
    }
    t.copy_(src.to(t.scalar_type()));
  }
  return static_cast<int64_t>(targets.size()) - counts;
}

nlohmann::json architecture_json(const ResNetImpl& net) {
  const auto& o = net.options;
  std::vector<int64_t> blocks_per_stage = o.stage_blocks();
  if (blocks_per_stage.empty()) {
    blocks_per_stage.assign(o.widths().size(), cifar_blocks_per_stage(o.depth(), o.layers_per_block()));
  }
  const auto& spec = o.spec();
  return {{"depth", o.depth()},
          {"residual", o.block().residual()},
          {"stem", o.stem() == Stem::kImageNet ? "imagenet" : "cifar"},
          {"widths", o.widths()},
          {"stage_blocks", blocks_per_stage},
          {"block", o.block().kind() == BlockKind::kBottleneck ? "bottleneck" : "basic"},
          {"branch_layers", o.layers_per_block()},
          {"preact", o.block().preact()},
          {"stride_on_3x3", o.block().stride_on_3x3()},
          {"norm", to_string(o.block().norm())},
          {"branch_scale", to_string(o.block().branch_scale())},
          {"fixup", o.block().fixup()},
          {"shortcut", to_string(spec.shortcut)},
          {"input", {spec.input.channels, spec.input.height, spec.input.width}},
          {"classes", spec.classes},
          {"names", to_string(name_style(o))}};
}

std::string torchvision_equivalent(const ResNetImpl& net) {
  const auto& o = net.options;
  const bool standard = o.stem() == Stem::kImageNet && o.block().residual() && !o.block().preact() &&
                        o.block().norm() == Norm::kBatchNorm && o.block().branch_scale() == BranchScale::kNone &&
                        !o.block().fixup() && o.spec().shortcut == Shortcut::B && o.spec().input.channels == 3 &&
                        o.widths() == StageWidths{64, 128, 256, 512};
  if (!standard) return "";
  const bool bottleneck = o.block().kind() == BlockKind::kBottleneck;
  if (bottleneck ? !o.block().stride_on_3x3() : o.block().branch_layers() != 2) return "";
  return "resnet" + std::to_string(o.depth());
}

}  // namespace reslab
