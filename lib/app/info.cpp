#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "app/commands.h"
#include "data/datasets.h"
#include "models/registry.h"

namespace reslab {

int run_models() {
  for (const auto& family : model_families()) {
    std::cout << family.prefix << "<depth>: " << family.description << "\n  ";
    for (int64_t d : family.paper_depths) std::cout << family.prefix << d << " ";
    std::cout << "\n";
  }
  std::cout << "Any other valid depth works by name too (e.g. resnet8, plain74). `reslab info NAME` counts one.\n";
  return 0;
}

int run_info(const InfoOptions& options) {
  const DatasetInfo& data = dataset_info(options.dataset);
  ModelSpec spec{{data.channels, data.height, data.width}, data.classes, parse_shortcut(options.shortcut)};
  auto model = build_model(options.model, spec);
  const int64_t params = count_parameters(*model);
  const int64_t macs = model->macs();
  if (options.json) {
    nlohmann::json out = {{"model", options.model},       {"depth", model->depth()},
                          {"layers", model->depth()},     {"residual", model->residual()},
                          {"params", params},             {"flops", macs},
                          {"dataset", options.dataset},   {"shortcut", options.shortcut},
                          {"input", {data.channels, data.height, data.width}}, {"classes", data.classes}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("model     %s (%s, shortcut %s)\n", options.model.c_str(), model->residual() ? "residual" : "plain",
              options.shortcut.c_str());
  std::printf("input     %lldx%lldx%lld, %lld classes (%s)\n", static_cast<long long>(data.channels),
              static_cast<long long>(data.height), static_cast<long long>(data.width),
              static_cast<long long>(data.classes), options.dataset.c_str());
  std::printf("depth     %lld weighted layers\n", static_cast<long long>(model->depth()));
  std::printf("params    %lld (%.2fM)\n", static_cast<long long>(params), params / 1e6);
  std::printf("flops     %lld multiply-adds per image (%.1fM)\n", static_cast<long long>(macs), macs / 1e6);
  return 0;
}

}  // namespace reslab
