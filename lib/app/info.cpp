#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "app/commands.h"
#include "data/datasets.h"
#include "models/registry.h"

namespace reslab {

int run_models() {
  for (const auto& family : model_families()) {
    std::cout << family.prefix << "<depth>: " << family.description << "\n  ";
    for (int64_t d : family.paper_depths) {
      const bool claimed = !family.imagenet && std::count(imagenet_depths().begin(), imagenet_depths().end(), d);
      std::cout << (claimed ? "cifar-" : "") << family.prefix << d << " ";
    }
    std::cout << "\n";
  }
  std::cout << "Any other valid depth works by name too (e.g. resnet8, plain74); 18, 34, 50, 101 and 152 name the\n"
               "ImageNet nets, and cifar-<name> the CIFAR-style net of any depth (cifar-resnet50).\n"
               "Tags after the depth change the blocks (several may follow each other, e.g. resnet56-k1-noaffine):\n";
  for (const auto& tag : model_tag_table()) std::printf("  %-13s %s\n", tag.name.c_str(), tag.help.c_str());
  std::cout << "`reslab info NAME` counts one.\n";
  return 0;
}

namespace {
/// "3x224x224" -> {3, 224, 224}; throws std::invalid_argument naming the value.
ImageShape parse_input_shape(const std::string& text) {
  ImageShape shape;
  long long c = 0, h = 0, w = 0;
  char tail = 0;
  if (std::sscanf(text.c_str(), "%lldx%lldx%lld%c", &c, &h, &w, &tail) != 3 || c < 1 || h < 1 || w < 1 || c > 4096 ||
      h > 65536 || w > 65536) {
    throw std::invalid_argument("--input '" + text + "' is not CxHxW with positive sizes (e.g. 3x224x224)");
  }
  shape.channels = c;
  shape.height = h;
  shape.width = w;
  return shape;
}
}  // namespace

int run_info(const InfoOptions& options) {
  ModelSpec spec{{}, 0, parse_shortcut(options.shortcut)};
  std::string source = "--input/--classes";
  if (options.input.empty() || options.classes == 0) {
    const DatasetInfo& data = dataset_info(options.dataset);
    spec.input = {data.channels, data.height, data.width};
    spec.classes = data.classes;
    source = options.dataset;
  }
  if (!options.input.empty()) spec.input = parse_input_shape(options.input);
  if (options.classes != 0) {
    if (options.classes < 2)
      throw std::invalid_argument("--classes must be at least 2, got " + std::to_string(options.classes));
    spec.classes = options.classes;
  }
  const auto& data = spec;
  auto model = build_model(options.model, spec);
  const int64_t params = count_parameters(*model);
  const int64_t macs = model->macs();
  if (options.json) {
    nlohmann::json out = {{"model", options.model},
                          {"depth", model->depth()},
                          {"layers", model->depth()},
                          {"residual", model->residual()},
                          {"params", params},
                          {"flops", macs},
                          {"dataset", source},
                          {"shortcut", options.shortcut},
                          {"input", {data.input.channels, data.input.height, data.input.width}},
                          {"classes", data.classes}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("model     %s (%s, shortcut %s)\n", options.model.c_str(), model->residual() ? "residual" : "plain",
              options.shortcut.c_str());
  std::printf("input     %lldx%lldx%lld, %lld classes (%s)\n", static_cast<long long>(data.input.channels),
              static_cast<long long>(data.input.height), static_cast<long long>(data.input.width),
              static_cast<long long>(data.classes), source.c_str());
  std::printf("depth     %lld weighted layers\n", static_cast<long long>(model->depth()));
  std::printf("params    %lld (%.2fM)\n", static_cast<long long>(params), params / 1e6);
  std::printf("flops     %lld multiply-adds per image (%.1fM)\n", static_cast<long long>(macs), macs / 1e6);
  return 0;
}

}  // namespace reslab
