#pragma once
// Probes on the nets an experiment trained (read back from their run folders) and on fresh nets at
// initialisation: what `reslab analyze` and an experiment's "probes" section run.

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "experiment/config.h"
#include "experiment/runner.h"
#include "probes/settings.h"

namespace reslab {

/// A net a probe looks at: a trained run (its folder holds config.json and model.pt) or a fresh net.
struct ProbeSubject {
  std::string label;     ///< the run's name, or the model's name at initialisation
  std::string source;    ///< "trained" or "init"
  std::string run_dir;   ///< empty at initialisation
  RunConfig run;         ///< the run's config; at initialisation, the data and seed settings to use
  std::string data_dir;  ///< where the run's dataset is read from instead of its config's folder ("": that one)
  std::optional<int64_t> test_size;  ///< test examples to probe on instead of the config's (0: all)
};

/// The subject for a run folder; throws ConfigError naming the file when config.json or model.pt is missing.
ProbeSubject trained_subject(const std::string& run_dir);
/// The subject for a fresh `model` (a registry name) on the data of `data_run`, initialised from `data_run.seed`;
/// `seed_in_label` adds "-s<seed>" to its label (several seeds of one model side by side).
ProbeSubject init_subject(const std::string& model, const RunConfig& data_run, bool seed_in_label = false);

/// Throws ConfigError naming `path` when the final model's recorded meta (model name, shortcut, dataset, classes,
/// input, and the configuration it was trained with) is not `run`'s as `config_path` describes it: a model.pt
/// copied from another run is never probed as this one.
void check_model_meta(const nlohmann::json& meta, const RunConfig& run, const ModelSpec& spec, const std::string& path,
                      const std::string& config_path);

/// Runs `probe` on one subject and returns its result, with the subject's label, source, model, depth,
/// residual flag, seed, "config" (its run's configuration minus the seed, the names and where it ran) and the
/// seconds it took. A fresh net's BN statistics are first set from training batches.
nlohmann::json probe_subject(const std::string& probe, const ProbeSubject& subject, const ProbeSettings& settings,
                             DataCache& data);

/// Runs `probe` on every subject, writes each trained run's result to RUN_DIR/probes/PROBE.json and all of them
/// to `out_file` ({"probe", "settings", "subjects": [...]}, and for a probe with a headline figure
/// "over_seeds": [...], see over_seeds.h, which `log` also gets when some configuration ran at several seeds);
/// returns that document.
/// `data` keeps the decoded datasets between calls (several probes on the same runs read them once).
nlohmann::json analyze(const std::string& probe, const std::vector<ProbeSubject>& subjects,
                       const ProbeSettings& settings, const std::string& out_file, DataCache& data, std::ostream* log);

/// The after-training and at-initialisation probes of an experiment that has just run into `out_dir`
/// (files OUT/PROBE.json and OUT/PROBE_init.json). The fresh nets are built at each of the experiment's seeds
/// (grid.seed or --seeds; else its one seed), so at-initialisation figures have a spread over seeds too.
/// Returns the files written.
std::vector<std::string> run_experiment_analysis(const ExperimentConfig& experiment, const std::string& out_dir,
                                                 std::ostream* log);

}  // namespace reslab
