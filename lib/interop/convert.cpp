#include "interop/convert.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "data/datasets.h"
#include "experiment/analysis.h"
#include "experiment/results.h"
#include "models/registry.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace reslab {

const std::vector<double> kTorchvisionMean = {0.485, 0.456, 0.406};
const std::vector<double> kTorchvisionStd = {0.229, 0.224, 0.225};

namespace {

/// Images in the check batch (few: ResNet-152 at 224 x 224 takes a while on a CPU).
constexpr int64_t kCheckBatch = 2;

ModelSpec spec_of_meta(const nlohmann::json& meta, const RunConfig& run, const std::string& path) {
  const auto input = meta.value("input", nlohmann::json());
  const auto classes = meta.value("classes", nlohmann::json());
  if (!input.is_array() || input.size() != 3 || !classes.is_number_integer()) {
    throw ConfigError(path +
                      ": records no input shape and classes (a model file from an older reslab): train "
                      "the run again to export it");
  }
  for (const auto& v : input) {
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxInputSide) {
      throw ConfigError(path + ": records input " + shown_json(input) + "; expected three positive sizes");
    }
  }
  ModelSpec spec;
  spec.input = {input[0].get<int64_t>(), input[1].get<int64_t>(), input[2].get<int64_t>()};
  spec.classes = classes.get<int64_t>();
  spec.shortcut = parse_shortcut(run.model.shortcut);
  return spec;
}

ResNetImpl& as_resnet(NetworkBase& net, const std::string& model) {
  auto* resnet = dynamic_cast<ResNetImpl*>(&net);
  if (resnet == nullptr) throw ConfigError(model + ": not a ResNet; only reslab's ResNet class is exported");
  return *resnet;
}

std::string companion(const std::string& path, const std::string& suffix) {
  fs::path p(path);
  return (p.parent_path() / (p.stem().string() + suffix)).string();
}

const torch::Tensor* find(const StateDict& sd, const std::string& name) {
  for (const auto& [k, t] : sd) {
    if (k == name) return &t;
  }
  return nullptr;
}

}  // namespace

ExportResult export_run(const std::string& run_dir, const std::string& to) {
  const std::string ext = fs::path(to).extension().string();
  if (to.empty() || (ext != ".pth" && ext != ".pt")) {
    throw ConfigError("export: --to " + shown_json(to) + ": expected a file name ending in .pth (or .pt)");
  }
  // Never over a run's own files (--to RUN/model.pt, or RUN/config.pth whose .json is the run's config).
  std::error_code ec;
  const auto target_dir = fs::weakly_canonical(fs::absolute(to).parent_path(), ec);
  if (!ec && target_dir == fs::weakly_canonical(fs::absolute(run_dir), ec)) {
    throw ConfigError("export: --to " + shown_json(to) + ": inside the run folder; write the export outside it");
  }
  const std::string config_path = run_dir + "/config.json";
  const std::string model_path = run_dir + "/model.pt";
  if (!fs::exists(config_path)) throw ConfigError(config_path + ": missing; expected a run folder written by reslab");
  const RunConfig run = load_run_config(config_path);
  if (!fs::exists(model_path)) {
    throw ConfigError(model_path + ": missing; a run's final model is written when it completes");
  }
  const nlohmann::json meta = read_model_meta(model_path);
  const ModelSpec spec = spec_of_meta(meta, run, model_path);
  check_model_meta(meta, run, spec, model_path, config_path);
  torch::manual_seed(run.seed);
  auto net = build_model(run.model.name, spec);
  load_model_file(model_path, *net);
  if (run.train.channels_last) to_channels_last(*net);  // as the probes run it: the check batch's logits are theirs
  ResNetImpl& resnet = as_resnet(*net, run.model.name);
  resnet.eval();

  ExportResult r;
  r.state_dict = to;
  r.architecture = companion(to, ".json");
  r.check = companion(to, ".check.pth");
  r.style = name_style(resnet.options);
  r.torchvision = torchvision_equivalent(resnet);
  r.model = run.model.name;
  const auto parent = fs::path(to).parent_path();
  if (!parent.empty()) fs::create_directories(parent);

  const StateDict sd = reference_state_dict(resnet);
  r.tensors = static_cast<int64_t>(sd.size());
  write_state_dict(r.state_dict, sd);

  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const auto input = torch::randn({kCheckBatch, spec.input.channels, spec.input.height, spec.input.width});
  const auto logits = resnet.forward(input).contiguous();
  write_state_dict(r.check, {{"input", input}, {"logits", logits}});

  nlohmann::json doc = {{"format", "reslab-export"},
                        {"version", 1},
                        {"model", run.model.name},
                        {"dataset", run.data.dataset},
                        {"run", run_dir},
                        {"architecture", architecture_json(resnet)},
                        {"torchvision", r.torchvision.empty() ? nlohmann::json() : nlohmann::json(r.torchvision)},
                        {"state_dict", fs::path(r.state_dict).filename().string()},
                        {"check", fs::path(r.check).filename().string()},
                        {"reslab", version_info()}};
  // The run's data, as its config.json has it: an image folder's normalisation ("mean" and "std"; absent where
  // they were estimated from the training images, split_seed saying which), crop and labels.
  doc["data"] = to_json(run)["data"];
  write_json_file(r.architecture, doc);
  return r;
}

namespace {

/// The run a reslab export's FILE.json describes the data of (its "data" object, read as a config's), or none.
std::optional<RunConfig> exported_data(const nlohmann::json& arch, const std::string& arch_path) {
  if (!arch.is_object() || !arch.value("data", nlohmann::json()).is_object()) return std::nullopt;
  const nlohmann::json doc = {
      {"name", "import"}, {"model", {{"name", "resnet20"}}}, {"data", arch["data"]}, {"optim", {{"epochs", 1}}}};
  try {
    return parse_experiment(doc, arch_path).base;
  } catch (const ConfigError& e) {
    throw ConfigError(std::string("import: ") + e.what());
  }
}

bool ends_with(const std::string& k, const std::string& tail) {
  return k.size() > tail.size() && k.compare(k.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

ImportResult import_state_dict(const ImportOptions& o) {
  ImportResult r;
  ParsedModelName parsed;
  try {
    parsed = parse_model_name(o.model);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("import: --model: ") + e.what());
  }
  r.model = o.model;
  RunConfig run;
  run.experiment = "import";
  run.name = fs::path(o.out).lexically_normal().filename().string();
  if (run.name.empty()) run.name = fs::path(o.out).lexically_normal().parent_path().filename().string();
  if (const auto problem = name_problem(run.name); !problem.empty()) {
    throw ConfigError("import: --out " + shown_json(o.out) + ": the folder's name " + problem);
  }
  // The folder: empty, or an earlier import that --overwrite replaces; never a trained run.
  std::error_code ec;
  for (const char* file : {"summary.json", "metrics.jsonl"}) {
    if (fs::exists(o.out + "/" + file, ec)) {
      throw ConfigError(o.out + ": holds a trained run (" + file + "); import into a folder of its own");
    }
  }
  if (!list_checkpoints(o.out).empty()) {
    throw ConfigError(o.out + ": holds a run's checkpoints; import into a folder of its own");
  }
  if ((fs::exists(o.out + "/model.pt", ec) || fs::exists(o.out + "/config.json", ec)) && !o.overwrite) {
    throw ConfigError(o.out +
                      ": holds an imported run already (config.json or model.pt); pass --overwrite to replace it");
  }

  // A reslab export names its model and data beside the weights.
  const std::string arch_path = companion(o.file, ".json");
  nlohmann::json arch;
  if (fs::exists(arch_path, ec)) {
    try {
      arch = read_json_file(arch_path);
    } catch (const std::runtime_error& e) {
      throw ConfigError(e.what());
    }
    if (!arch.is_object() || arch.value("format", "") != "reslab-export") arch = nlohmann::json();
  }
  if (arch.is_object()) {
    const auto named = arch.value("model", nlohmann::json());
    if (!named.is_string() || named.get<std::string>() != o.model) {
      throw ConfigError("import: --model " + o.model + ", but " + arch_path + " says the file holds " +
                        shown_json(named) + ": name that model");
    }
  } else if (parsed.family->imagenet && parsed.options.block().kind() == BlockKind::kBottleneck &&
             !parsed.tags.stride_on_3x3) {
    // torchvision's Bottleneck strides on its 3x3 conv (ResNet v1.5); the paper's on the first 1x1. The weights
    // have the same shapes either way, so only the name can say which net they belong to.
    r.model = o.model + "-torchvision";
    r.note = "torchvision's bottlenecks stride on the 3x3 conv (ResNet v1.5), so the run's model is " + r.model;
    parsed = parse_model_name(r.model);
  }
  const NameStyle style = parsed.family->imagenet ? NameStyle::kTorchvision : NameStyle::kCifar;

  // The data: the export's where it has one (normalisation, labels, crop and sizes as the run had them), else
  // image folders for torchvision's nets with torchvision's normalisation.
  const auto exported = exported_data(arch, arch_path);
  run.data.dataset = !o.dataset.empty() ? o.dataset : exported ? exported->data.dataset : "";
  if (run.data.dataset.empty()) {
    if (style != NameStyle::kTorchvision) {
      throw ConfigError("import: --dataset: name the data " + r.model + " is probed on (e.g. cifar10)");
    }
    run.data.dataset = "image-folder";
  }
  try {
    (void)dataset_info(run.data.dataset);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("import: --dataset: ") + e.what());
  }
  if (exported && exported->data.dataset == run.data.dataset) {
    run.data = exported->data;  // its folder, split and transform (augmentation is set off below)
  } else if (run.data.dataset == "image-folder" && style == NameStyle::kTorchvision) {
    run.data.folder.mean = kTorchvisionMean;
    run.data.folder.std = kTorchvisionStd;
  }
  if (!o.data_dir.empty()) run.data.dir = o.data_dir;
  run.data.augment = false;
  run.model.name = r.model;
  run.optim.epochs =
      1.0;  // not trained here: a config needs a budget, and this is the one a fine-tune would start from

  const StateDict sd = read_state_dict(o.file);
  const std::string fc = style == NameStyle::kTorchvision ? "fc.weight" : "linear.weight";
  const torch::Tensor* fc_weight = find(sd, fc);
  const torch::Tensor* conv1 = find(sd, "conv1.weight");
  if (fc_weight == nullptr || fc_weight->dim() != 2) {
    throw PthError(o.file + ": no 2-D key '" + fc + "' (the classifier); expected a state_dict of " + r.model + " in " +
                   to_string(style) + " names");
  }
  if (conv1 == nullptr || conv1->dim() != 4) {
    throw PthError(o.file + ": no 4-D key 'conv1.weight' (the first convolution); expected a state_dict of " + r.model);
  }
  ModelSpec spec;
  spec.classes = fc_weight->size(0);
  // The input is the data's: what the net is probed on, and what the model file records for analyze to check.
  const auto& info = dataset_info(run.data.dataset);
  spec.input = run.data.dataset == "image-folder" ? ImageShape{3, run.data.folder.crop, run.data.folder.crop}
                                                  : ImageShape{info.channels, info.height, info.width};
  if (conv1->size(1) != spec.input.channels) {
    throw PthError(o.file + ": key 'conv1.weight' reads " + std::to_string(conv1->size(1)) + " input channels, but " +
                   run.data.dataset + " has " + std::to_string(spec.input.channels) +
                   ": give the --dataset it was trained on");
  }
  if (run.data.dataset == "image-folder") {
    run.data.folder.classes = spec.classes;
    if (!o.class_index.empty()) {
      nlohmann::json doc;
      try {
        doc = {{"class_index", read_json_file(o.class_index)}};
      } catch (const std::runtime_error& e) {
        throw ConfigError(e.what());
      }
      JsonSection top(doc, o.class_index, "");
      run.data.folder.class_index = read_class_index(top, "class_index");
    }
  } else if (!o.class_index.empty()) {
    throw ConfigError("import: --class-index applies to image folders, not dataset '" + run.data.dataset + "'");
  } else if (spec.classes != info.classes) {
    throw PthError(o.file + ": key '" + fc + "' has " + std::to_string(spec.classes) + " outputs, but " +
                   run.data.dataset + " has " + std::to_string(info.classes) + " classes");
  }

  // Shortcuts from the keys: none (A); projections where the shape changes (B) or on every block (C), told apart
  // by the count option B gives this net (where every block changes shape, the two are the same net).
  const std::string projection = style == NameStyle::kTorchvision ? ".downsample.0.weight" : ".shortcut.0.weight";
  int64_t projected = 0;
  for (const auto& [k, t] : sd) projected += k.rfind("layer", 0) == 0 && ends_with(k, projection) ? 1 : 0;
  spec.shortcut = Shortcut::A;
  if (arch.is_object() && arch.value("architecture", nlohmann::json()).is_object() &&
      arch["architecture"].value("shortcut", nlohmann::json()).is_string()) {
    try {
      spec.shortcut = parse_shortcut(arch["architecture"]["shortcut"].get<std::string>());
    } catch (const std::invalid_argument& e) {
      throw ConfigError(arch_path + ": key 'architecture.shortcut': " + e.what());
    }
  } else if (projected > 0) {
    ModelSpec b = spec;
    b.shortcut = Shortcut::B;
    int64_t with_b = 0;
    try {
      auto probe = build_model(r.model, b);
      for (const auto& [k, t] : reference_state_dict(as_resnet(*probe, r.model))) {
        with_b += k.rfind("layer", 0) == 0 && ends_with(k, projection) ? 1 : 0;
      }
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("import: ") + e.what());
    }
    spec.shortcut = projected > with_b ? Shortcut::C : Shortcut::B;
  }
  run.model.shortcut = to_string(spec.shortcut);
  validate_run(run, "import");

  torch::manual_seed(run.seed);
  std::shared_ptr<NetworkBase> net;
  try {
    net = build_model(run.model.name, spec);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("import: ") + e.what());
  }
  ResNetImpl& resnet = as_resnet(*net, run.model.name);
  int64_t defaulted = 0;
  r.tensors = load_reference_state_dict(resnet, sd, o.file, &defaulted);
  if (defaulted > 0) {
    r.note += std::string(r.note.empty() ? "" : "; ") + std::to_string(defaulted) +
              " BN batch counts (num_batches_tracked) missing from the file were set to 0, as PyTorch does";
  }
  r.classes = spec.classes;

  fs::create_directories(o.out);
  fs::remove_all(o.out + "/probes", ec);  // an earlier import's probe results describe another net
  r.run_dir = o.out;
  write_json_file(o.out + "/config.json", to_json(run));
  save_model_file(o.out + "/model.pt", resnet,
                  {{"model", run.model.name},
                   {"shortcut", run.model.shortcut},
                   {"dataset", run.data.dataset},
                   {"input", {spec.input.channels, spec.input.height, spec.input.width}},
                   {"classes", spec.classes},
                   {"iterations", 0},
                   {"config", checkpoint_identity(run)},
                   {"imported_from", o.file}});
  write_json_file(o.out + "/import.json",
                  {{"source", o.file},
                   {"bytes", static_cast<int64_t>(fs::file_size(o.file))},
                   {"model", run.model.name},
                   {"names", to_string(style)},
                   {"tensors", r.tensors},
                   {"note", r.note.empty() ? nlohmann::json() : nlohmann::json(r.note)},
                   {"trained", "not by reslab: config.json's optim section is a placeholder, not this net's recipe"},
                   {"reslab", version_info()}});
  return r;
}

}  // namespace reslab
