#include "entries.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data/cifar.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "experiment/config.h"
#include "experiment/results.h"
#include "interop/torch_names.h"
#include "models/registry.h"
#include "optim/sgd.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace reslab::fuzz {

int idx_entry(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int64_t dims = (data[0] & 1) ? 3 : 1;
  const std::vector<uint8_t> bytes(data + 1, data + size);
  try {
    auto t = parse_idx_ubyte(bytes, "fuzz-input", dims);
    if (t.numel() > 0) (void)t.flatten()[-1].item<uint8_t>();  // touch the last byte
  } catch (const DataError&) {
  }
  return 0;
}

int cifar_entry(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::vector<uint8_t> bytes(data + 1, data + size);
  try {
    auto d = parse_cifar(bytes, "fuzz-input", (data[0] & 1) != 0);
    (void)d.targets().max().item<int64_t>();
  } catch (const DataError&) {
  }
  return 0;
}

int config_entry(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json doc;
  try {
    doc = parse_json(text, "fuzz.json");  // the strict path every file reslab reads goes through
  } catch (const JsonError&) {
    return 0;
  }
  try {
    auto experiment = parse_experiment(doc, "fuzz.json");
    (void)to_json(experiment);
  } catch (const ConfigError&) {
  }
  return 0;
}

int checkpoint_entry(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/reslab-fuzz-checkpoint-" + std::to_string(::getpid()) + ".pt";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto model = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
  auto optimizer = make_sgd(model->parameters(), SgdConfig{});
  try {
    (void)load_checkpoint(path, *model, *optimizer);
  } catch (const CheckpointError&) {
  }
  return 0;
}

int pth_entry(const uint8_t* data, size_t size) {
  try {
    const StateDict sd = parse_state_dict(std::vector<char>(data, data + size), "fuzz-input.pth");
    static auto net =
        std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A}));
    (void)load_reference_state_dict(*net, sd, "fuzz-input.pth");
  } catch (const PthError&) {
  }
  return 0;
}

int image_entry(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    const DecodedImage img = decode_image_bytes(bytes, "fuzz-input");
    if (img.height * img.width > 4096 * 4096) return 0;  // decodes; the views of a huge image are only slow
  } catch (const DataError&) {
    return 0;
  }
  // It decodes: cut its training and ten-crop views as a run would, from a file.
  static const std::string path = "/tmp/reslab-fuzz-image-" + std::to_string(::getpid()) + ".img";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  FolderTransform t;
  t.crop = 8;
  t.scale_min = 8;
  t.scale_max = 24;
  t.eval_resize = 10;
  t.eval_crops = 10;
  t.workers = 1;
  t.prefetch = 0;
  LoaderOptions o;
  o.batch = 1;
  o.shuffle = false;
  for (bool augment : {true, false}) {
    o.augment = augment;
    ImageFolderLoader loader({{path, 0}}, ChannelStats{}, t, o);
    (void)loader.batch(0).inputs.sum().item<float>();
  }
  return 0;
}

int run_files_entry(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  nlohmann::json doc;
  try {
    doc = parse_json(text, "fuzz.json");
  } catch (const JsonError&) {
    return 0;
  }
  static const nlohmann::json summary = {{"run", "resnet8"},
                                         {"status", "completed"},
                                         {"iterations", 2},
                                         {"seed", 1},
                                         {"final", {{"train_error", 50.0}, {"test_error", 40.0}}}};
  static const nlohmann::json config =
      to_json(expand_grid(parse_experiment(parse_json(R"({"name": "f", "grid": {"depth": [8]},
          "optim": {"epochs": 1}})",
                                                      "f.json"),
                                           "f.json"))[0]);
  std::ostringstream out;
  try {
    switch (data[0] % 3) {
      case 0: {  // a run's summary.json, as --resume and collect read it
        check_summary(doc, "summary.json");
        print_degradation_table(make_results("f", "", {{doc, config}}), out);
        break;
      }
      case 1: {  // a run's config.json, as analyze and --resume read it, and as collect groups it
        static const std::string path = "/tmp/reslab-fuzz-config-" + std::to_string(::getpid()) + ".json";
        {
          std::ofstream f(path, std::ios::binary | std::ios::trunc);
          f << text;
        }
        try {
          (void)checkpoint_identity(load_run_config(path));
        } catch (const ConfigError&) {
        }
        print_degradation_table(make_results("f", "", {{summary, doc}}), out);
        break;
      }
      default: {  // an experiment's config.json, as collect reads it
        const auto names = experiment_run_names(doc, "config.json");
        std::vector<RunResult> runs;
        for (size_t i = 0; i < names.size(); ++i) {
          nlohmann::json s = summary;
          s["run"] = names[i];
          runs.push_back({s, doc["runs"][i]});
        }
        print_degradation_table(make_results(doc["name"], doc.value("description", ""), runs), out);
        break;
      }
    }
  } catch (const std::runtime_error&) {  // ConfigError, JsonError and the checks' errors: each names its file
  }
  return 0;
}

}  // namespace reslab::fuzz
