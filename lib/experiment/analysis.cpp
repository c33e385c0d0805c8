#include "experiment/analysis.h"

#include <chrono>
#include <filesystem>
#include <ostream>

#include "data/random.h"
#include "models/registry.h"
#include "ops/winograd.h"
#include "probes/gradients.h"
#include "probes/over_seeds.h"
#include "train/checkpoint.h"
#include "train/kernels.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace reslab {

ProbeSubject trained_subject(const std::string& run_dir) {
  const std::string config = run_dir + "/config.json";
  if (!fs::exists(config))
    throw ConfigError(config + ": missing; expected a run folder written by reslab train or run");
  ProbeSubject s;
  s.run = load_run_config(config);
  s.label = s.run.name;
  s.source = "trained";
  s.run_dir = run_dir;
  if (!fs::exists(run_dir + "/model.pt")) {
    throw ConfigError(run_dir +
                      "/model.pt: missing; the run's final model is written when it completes (resume it "
                      "with --resume)");
  }
  return s;
}

ProbeSubject init_subject(const std::string& model, const RunConfig& data_run, bool seed_in_label) {
  try {
    parse_model_name(model);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("--at-init: ") + e.what());
  }
  ProbeSubject s;
  s.run = data_run;
  s.run.model.name = model;
  s.run.name = model;
  s.label = seed_in_label ? model + "-s" + std::to_string(data_run.seed) : model;
  s.source = "init";
  return s;
}

namespace {

std::vector<nlohmann::json> training_records(const std::string& run_dir, const std::string& probe) {
  std::vector<nlohmann::json> out;
  const std::string path = run_dir + "/metrics.jsonl";
  if (!fs::exists(path)) return out;
  for (auto& r : read_jsonl_file(path)) {
    if (r.value("kind", "") == "probe" && r.value("name", "") == probe) out.push_back(std::move(r));
  }
  return out;
}

/// What a subject shares with the same model at other seeds: its run's configuration minus the seed, the names
/// and where it ran (as results.json groups runs).
nlohmann::json config_without_seed(const RunConfig& run) {
  nlohmann::json c = to_json(run);
  for (const char* key : {"experiment", "name", "seed", "threads", "device"}) c.erase(key);
  return c;
}

}  // namespace

void check_model_meta(const nlohmann::json& meta, const RunConfig& run, const ModelSpec& spec, const std::string& path,
                      const std::string& config_path) {
  auto differs = [&](const std::string& what, const std::string& recorded, const std::string& expected) {
    throw ConfigError(path + ": records " + what + " " + recorded + ", but " + config_path + " says " + expected +
                      ": the file belongs to another run (train this one, or put its own model.pt back)");
  };
  if (!meta.is_object() || !meta.value("model", nlohmann::json()).is_string()) {
    throw ConfigError(path + ": records no model name; expected a run's final model written by reslab");
  }
  const std::pair<const char*, const std::string*> fields[] = {
      {"model", &run.model.name}, {"shortcut", &run.model.shortcut}, {"dataset", &run.data.dataset}};
  for (const auto& [key, expected] : fields) {
    if (!meta.contains(key)) continue;  // files from before a field was recorded
    if (meta[key] != *expected) differs(std::string(key), meta[key].dump(), "\"" + *expected + "\"");
  }
  if (meta.contains("classes") && meta["classes"] != spec.classes) {
    differs("classes", meta["classes"].dump(), std::to_string(spec.classes) + " (its dataset's)");
  }
  const nlohmann::json input = {spec.input.channels, spec.input.height, spec.input.width};
  if (meta.contains("input") && meta["input"] != input) differs("input", meta["input"].dump(), input.dump());
  if (meta.contains("config")) {
    // The names aside: a model reused from a run of the same training configuration is this run's model.
    nlohmann::json recorded = meta["config"];
    if (recorded.is_object()) {
      recorded.erase("name");
      recorded.erase("experiment");
    }
    const nlohmann::json identity = training_identity(run);
    if (recorded != identity) {
      const auto d = first_difference(recorded, identity);
      differs("the configuration value " + d.at, d.recorded.value_or("(missing)"), d.expected.value_or("(missing)"));
    }
  }
}

namespace {

/// Puts back the convolution plan that was in force when it was made.
class RestoreConvPlan {
 public:
  RestoreConvPlan() : plan_(conv_plan()) {}
  ~RestoreConvPlan() { set_conv_plan(plan_); }
  RestoreConvPlan(const RestoreConvPlan&) = delete;
  RestoreConvPlan& operator=(const RestoreConvPlan&) = delete;

 private:
  ConvPlan plan_;
};

/// Sets the convolution kernels `subject` is probed with, and says which (the result's "kernels"). A trained run
/// is probed with the kernels it trained with, as its kernels.json records them, so that its probes compute its
/// convolutions as its training did; a run begun before plans were kept, with F(2x2, 3x3) everywhere, as it ran
/// then (the policy's default for a shape no plan names). A fixed RESLAB_CONV wins over the run's record, and a
/// fresh net takes the policy's kernels.
nlohmann::json use_subject_kernels(const ProbeSubject& subject) {
  const std::string file = subject.run_dir + "/kernels.json";
  nlohmann::json said = {{"policy", convolution_policy()}};
  if (subject.source != "trained" || conv_policy() != ConvPolicy::kAuto) {
    set_conv_plan({});  // not a plan a run left in force in this process
    said["source"] = "policy";
  } else if (!fs::exists(file)) {
    set_conv_plan({});
    said["source"] = "earlier";  // no plan recorded: the F(2x2, 3x3) everywhere such a run computed with
  } else {
    KernelPlan recorded;
    try {
      recorded = plan_from_json(read_json_file(file), file);
    } catch (const std::exception& e) {
      throw ConfigError(e.what());
    }
    set_conv_plan(recorded.plan());
    said["source"] = "run";
    said["shapes"] = to_json(recorded)["shapes"];
  }
  return said;
}

}  // namespace

nlohmann::json probe_subject(const std::string& probe, const ProbeSubject& subject, const ProbeSettings& settings,
                             DataCache& data) {
  check_probe_name(probe);
  const auto start = std::chrono::steady_clock::now();
  const RunConfig& run = subject.run;
  const int64_t threads = resolve_threads(run.threads);
  if (torch::get_num_threads() != threads) torch::set_num_threads(static_cast<int>(threads));
  // Probes compare a net's outputs example by example: one view per example, whatever the run evaluated on.
  RunConfig data_view = run;  // the model is checked against `run`, the data read from where it is now
  if (!subject.data_dir.empty()) data_view.data.dir = subject.data_dir;
  if (subject.test_size) data_view.data.split.test_size = *subject.test_size;
  RunData run_data =
      open_run_data(data_view, data, settings.batch, mix_seed(run.seed ^ settings.seed), /*single_view=*/true);
  torch::manual_seed(run.seed);
  auto net = build_model(run.model.name, run_data.spec);
  if (run.train.channels_last) to_channels_last(*net);
  const BatchSource& train_loader = *run_data.train;
  const BatchSource& test_loader = *run_data.test;
  if (train_loader.batches_per_epoch() == 0) {
    throw ConfigError(subject.label + ": the probe batch (" + std::to_string(settings.batch) +
                      ") is larger than the training set (" + std::to_string(train_loader.size()) + ")");
  }

  // The kernels the subject is probed with, BN's calibration at initialisation included.
  const RestoreConvPlan restore_plan;
  const nlohmann::json kernels = use_subject_kernels(subject);
  if (subject.source == "trained") {
    const std::string path = subject.run_dir + "/model.pt";
    nlohmann::json meta;
    try {
      meta = load_model_file(path, *net);
    } catch (const CheckpointError& e) {
      throw ConfigError(e.what());
    }
    check_model_meta(meta, run, run_data.spec, path, subject.run_dir + "/config.json");
    if (run.train.channels_last) to_channels_last(*net);
  } else {
    // At initialisation BN's running statistics (0 and 1) describe no data: set them as training would.
    calibrate_batchnorm(*net, train_loader, settings.calibration_batches);
  }

  nlohmann::json result = probe_info(probe).run(*net, ProbeInputs{train_loader, test_loader}, settings);
  result["kernels"] = kernels;
  if (!subject.run_dir.empty() && probe_runs_during_training(probe)) {
    result["during_training"] = training_records(subject.run_dir, probe);
  }
  result["label"] = subject.label;
  result["source"] = subject.source;
  result["model"] = run.model.name;
  result["depth"] = net->depth();
  result["residual"] = net->residual();
  result["seed"] = run.seed;
  result["config"] = config_without_seed(run);
  result["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

nlohmann::json analyze(const std::string& probe, const std::vector<ProbeSubject>& subjects,
                       const ProbeSettings& settings, const std::string& out_file, DataCache& data, std::ostream* log) {
  check_probe_name(probe);
  nlohmann::json all = nlohmann::json::array();
  for (const auto& subject : subjects) {
    if (log != nullptr) *log << probe << ": " << subject.label << " (" << subject.source << ")" << std::flush;
    auto result = probe_subject(probe, subject, settings, data);
    if (log != nullptr) *log << " " << result["seconds"].get<double>() << " s\n";
    if (!subject.run_dir.empty()) {
      fs::create_directories(subject.run_dir + "/probes");
      write_json_file(subject.run_dir + "/probes/" + probe + ".json", result);
    }
    all.push_back(std::move(result));
  }
  nlohmann::json doc = {{"probe", probe}, {"settings", to_json(settings)}, {"subjects", all}};
  if (!probe_info(probe).figure.empty()) {
    doc["over_seeds"] = over_seeds(probe, all);
    if (log != nullptr) print_over_seeds(probe, doc["over_seeds"], *log);
  }
  const auto parent = fs::path(out_file).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  write_json_file(out_file, doc);
  return doc;
}

std::vector<std::string> run_experiment_analysis(const ExperimentConfig& ex, const std::string& out_dir,
                                                 std::ostream* log) {
  std::vector<std::string> written;
  const auto& a = ex.analysis;
  DataCache data;
  if (!a.after_training.empty()) {
    std::vector<ProbeSubject> trained;
    for (const auto& run : expand_grid(ex)) {
      const std::string dir = out_dir + "/" + run.name;
      if (fs::exists(dir + "/model.pt")) trained.push_back(trained_subject(dir));
    }
    for (const auto& probe : a.after_training) {
      const std::string file = out_dir + "/" + probe + ".json";
      analyze(probe, trained, a.settings, file, data, log);
      written.push_back(file);
    }
  }
  if (!a.at_init.empty()) {
    std::vector<ProbeSubject> fresh;
    const auto& depths = a.init_depths.empty() ? ex.depths : a.init_depths;
    const std::vector<uint64_t> seeds = ex.seeds.empty() ? std::vector<uint64_t>{ex.base.seed} : ex.seeds;
    for (int64_t d : depths) {
      for (const char* family : {"plain", "resnet"}) {
        for (uint64_t seed : seeds) {
          RunConfig at_seed = ex.base;
          at_seed.seed = seed;
          fresh.push_back(init_subject(family + std::to_string(d), at_seed, seeds.size() > 1));
        }
      }
    }
    for (const auto& probe : a.at_init) {
      const std::string file = out_dir + "/" + probe + "_init.json";
      analyze(probe, fresh, a.settings, file, data, log);
      written.push_back(file);
    }
  }
  return written;
}

}  // namespace reslab
