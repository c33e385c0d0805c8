#pragma once
// Experiments and runs as plain structs: parsed from experiments/*.json, overridden from the command line,
// validated before anything trains, and written back resolved as config.json.

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "data/datasets.h"
#include "data/image_folder.h"
#include "experiment/json_reader.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "probes/settings.h"

namespace reslab {

// A run's configuration is made of one struct per section of the experiment file (model, data, optim, train,
// dist, probes), named as the file names them: `run.optim.sgd.lr` is the file's optim.lr and `--set optim.lr`.
// Each section has one reader, one to_json and one validation, side by side in config.cpp; the reader's
// JsonSection records the keys it asks for, so the list of known keys is never kept by hand.

/// The net: a registry name with its tags, and the shortcut of its dimension-changing blocks.
struct ModelConfig {
  std::string name = "resnet20";  ///< e.g. "plain56", "resnet110-noaffine"
  std::string shortcut = "A";
};

/// The dataset, the part of it a run uses, and how its images become inputs.
struct DataConfig {
  std::string dataset = "fashion-mnist";
  std::string dir;  ///< empty: the dataset's default folder
  SplitOptions split;
  bool augment = true;
  /// How an image folder's files become inputs (dataset "image-folder" only).
  FolderTransform folder;
};

/// The optimiser, the learning-rate schedule and the length of the run.
struct OptimConfig {
  int64_t batch = 128;
  std::optional<double> epochs;
  std::optional<int64_t> iterations;
  /// lr, momentum, weight_decay and nesterov; its groups are resolved_param_groups(run), set when the optimiser
  /// is built.
  SgdConfig sgd;
  /// Learning-rate multipliers and weight decay by parameter kind (optim.param_groups); unset: the model's
  /// default (Fixup's reference: scalar biases, multipliers and the classifier's bias at lr / 10; none else).
  std::optional<std::vector<ParamGroupRule>> param_groups;
  /// The largest L2 norm of the whole gradient before each step (torch.nn.utils.clip_grad_norm_); 0: no clipping.
  double clip_grad_norm = 0.0;
  ScheduleConfig schedule;
};

/// The training loop: logging, evaluation, layout, retries and the TensorBoard copy of the metrics.
struct LoopConfig {
  int64_t log_every = 50;
  bool eval_every_epoch = true;
  std::vector<int64_t> eval_at;
  int64_t eval_batch = 500;
  bool channels_last = true;
  /// After a non-finite loss, go back to the newest checkpoint this many times, each time with the learning
  /// rate multiplied by retry_lr_scale (0: the run ends as "diverged", the default).
  int64_t retry_diverged = 0;
  double retry_lr_scale = 0.1;
  /// TensorBoard event file in the run's folder (events.out.tfevents.reslab), from the metrics.jsonl records.
  bool tensorboard = true;
  /// The arithmetic of the forward passes: "float32", or "bf16" (autocast; train/precision.h).
  std::string precision = "float32";
  /// CUDA graphs for the training step and evaluation (train/graphs.h): a CUDA device, one process, a learning
  /// rate that changes at a few iterations (not cosine). How the same kernels are launched: not part of a
  /// checkpoint's identity.
  bool cuda_graphs = false;
};

/// Data-parallel training (launched as several processes; see docs/scale.md).
struct DistConfig {
  /// BatchNorm statistics over the whole global batch (every rank's part) instead of each rank's own part.
  bool sync_bn = false;
  /// The most gradient bytes per all-reduce, in MiB.
  double bucket_mb = 1.0;
  /// Seconds a rank waits at the rendezvous or in a collective before it stops with an error.
  double timeout_s = 300.0;
  /// The c10d process group: "auto" (NCCL for ranks on CUDA devices where this build has it, else Gloo), "gloo"
  /// or "nccl" (distributed/process_group.h).
  std::string backend = "auto";
};

/// Probes that write "probe" records during training ("grad_norms", "grad_snr"), on the steps that follow
/// these numbers of iterations done (0: the first step).
struct ProbeSchedule {
  std::vector<std::string> during_training;
  std::vector<int64_t> at;
};

/// Everything one training run depends on.
struct RunConfig {
  std::string experiment = "train";
  std::string name;  ///< the run's folder name, e.g. "plain56"
  uint64_t seed = 1;
  int64_t threads = 0;         ///< 0: every core
  std::string device = "cpu";  ///< "cpu", "cuda" or "cuda:N" (a LibTorch built with CUDA)
  ModelConfig model;
  DataConfig data;
  OptimConfig optim;
  LoopConfig train;
  DistConfig dist;
  ProbeSchedule probes;
};

/// Probes an experiment runs after its grid: on every run's final model, and on fresh nets at initialisation.
struct AnalysisConfig {
  std::vector<std::string> after_training;
  std::vector<std::string> at_init;
  /// Depths of the fresh nets, each plain and residual (the grid's depths when empty).
  std::vector<int64_t> init_depths;
  ProbeSettings settings;
};

/// An experiment: a base run and the grid of values that vary across its runs.
struct ExperimentConfig {
  std::string name;
  std::string description;
  std::string source;  ///< the file it was read from
  RunConfig base;
  std::vector<int64_t> depths;  ///< with residual, names the models (resnet<d> / plain<d>)
  std::vector<bool> residual = {true};
  std::vector<std::string> models;  ///< explicit model names instead of depths x residual
  std::vector<std::string> shortcuts;
  std::vector<uint64_t> seeds;
  std::vector<double> lrs;
  std::vector<int64_t> batches;
  std::vector<std::string> precisions;  ///< train.precision per point ("float32", "bf16"): collect pairs them
  AnalysisConfig analysis;
};

/// Reads and validates an experiment file, with `sets` applied to it first (see apply_sets). Throws
/// ConfigError naming the file (and the assignments), the key and the value.
ExperimentConfig load_experiment(const std::string& path, const std::vector<std::string>& sets = {});

/// Applies `--set KEY=VALUE` assignments, in order, to a configuration document before it is parsed, so that
/// they are checked by the same rules as the file: KEY is a dotted path of keys in the experiment file's
/// layout (optim.lr, data.train_size, optim.schedule.milestones), made where absent; VALUE is read as JSON
/// (0.05, true, [20, 56], null to remove a key) and otherwise taken as a string (resnet56, /data/cifar).
/// Throws ConfigError naming the assignment for one that is not KEY=VALUE or whose path runs through a value
/// that is not an object.
void apply_sets(nlohmann::json& doc, const std::vector<std::string>& sets);
/// How a document with assignments is named in errors and in config.json: "FILE --set K=V ...".
std::string with_sets(const std::string& source, const std::vector<std::string>& sets);
/// The run `run` with `sets` applied to its config.json form and read back (reslab train --set); the run's
/// name is kept, and a run that sets neither optim.epochs nor optim.iterations trains 1 epoch.
RunConfig apply_sets(const RunConfig& run, const std::vector<std::string>& sets);
/// The same from an already-parsed document (`source` names it in errors).
ExperimentConfig parse_experiment(const nlohmann::json& doc, const std::string& source);

/// The object at `key` of `parent` as an image folder's class index ({class folder: output index}); empty when
/// absent. Throws ConfigError naming the key for a folder name that is not one path component, or a value that is
/// not an integer (the ranges are check_transform's).
std::map<std::string, int64_t> read_class_index(JsonSection& parent, const std::string& key);

/// Reads a run's resolved config.json (as train_run writes it) back into a RunConfig; throws ConfigError.
RunConfig load_run_config(const std::string& path);

/// Command-line values that replace those of the file. The flags are short aliases applied to the parsed
/// configuration, after the generic `--set` assignments, which are applied to the document (apply_sets).
struct Overrides {
  std::vector<std::string> sets;
  std::optional<std::vector<int64_t>> depths;
  std::optional<double> epochs;
  std::optional<int64_t> iterations;
  std::optional<int64_t> train_size, test_size, batch, threads, log_every, retry_diverged;
  std::optional<uint64_t> seed;
  /// Seeds for every grid point (reslab run --seeds); excludes `seed`.
  std::optional<std::vector<int64_t>> seeds;
  std::optional<double> lr;
  std::optional<std::string> data_dir;
  std::optional<std::string> device;
  std::optional<bool> sync_bn;
  std::optional<double> dist_timeout_s;
  std::optional<std::string> dist_backend;
};
void apply_overrides(ExperimentConfig& experiment, const Overrides& overrides);
/// The same for a single run (train subcommand).
void apply_overrides(RunConfig& run, const Overrides& overrides);

/// What a checkpoint or final model of `run` records and must match to be continued or probed as this run's:
/// its configuration (to_json) less what does not change what the file holds (threads, device, data-loading
/// workers, retry settings, how gradients travel between ranks).
nlohmann::json checkpoint_identity(const RunConfig& run);

/// What decides the weights a run trains to: checkpoint_identity less the run's and its experiment's names. Two
/// runs with the same training identity, threads and device train the same net to the bit (on one kind of CPU),
/// so a final model is probed as any of them, and `reslab run --reuse` takes one for the other.
nlohmann::json training_identity(const RunConfig& run);

/// Why `name` cannot be a folder name reslab creates or a word in a script it writes ("" when it can): names of
/// experiments and runs (models with their tags, grid suffixes) are one path component of 1 to kMaxNameLength
/// letters, digits and . _ - + =, not starting with . or -, so they cannot leave the output folder, hide, read
/// as a flag or carry a line break into a script.
std::string name_problem(const std::string& name);
constexpr size_t kMaxNameLength = 128;
/// Throws ConfigError "WHERE: 'NAME' ...; expected ..." when name_problem(name) is not empty.
void check_name(const std::string& name, const std::string& where);

/// The most runs one experiment may have.
constexpr size_t kMaxGridPoints = 10000;
/// The largest values a run accepts (far beyond any real run; past them a count could overflow).
constexpr double kMaxEpochs = 1e6;
constexpr int64_t kMaxIterations = int64_t{1} << 40;
constexpr int64_t kMaxBatch = 1 << 20;
constexpr int64_t kMaxExamples = int64_t{1} << 32;

/// Every grid point as a resolved run, validated (model names, values, ranges); throws ConfigError.
std::vector<RunConfig> expand_grid(const ExperimentConfig& experiment);

/// The parameter groups `model` trains with unless a run names its own: Fixup's reference trains its scalar
/// biases and multipliers (and, by name, the classifier's bias) at a tenth of the learning rate; none else.
std::vector<ParamGroupRule> default_param_groups(const std::string& model);
/// The run's groups: its own, else the model's default.
std::vector<ParamGroupRule> resolved_param_groups(const RunConfig& run);

/// Throws ConfigError (naming `source`) for any value out of range in a resolved run.
void validate_run(const RunConfig& run, const std::string& source);

/// Each section as config.json writes it (to_json(RunConfig) is made of them). The optimiser's parameter groups
/// are the run's resolved ones (resolved_param_groups), written where any apply or the run names its own.
nlohmann::json to_json(const ModelConfig& model);
nlohmann::json to_json(const DataConfig& data);
nlohmann::json to_json(const OptimConfig& optim, const std::vector<ParamGroupRule>& groups);
nlohmann::json to_json(const LoopConfig& loop);
nlohmann::json to_json(const DistConfig& dist);
nlohmann::json to_json(const ProbeSchedule& probes);
nlohmann::json to_json(const RunConfig& run);
nlohmann::json to_json(const ExperimentConfig& experiment);

}  // namespace reslab
