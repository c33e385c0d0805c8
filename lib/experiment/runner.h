#pragma once
// Runs: one training run from a resolved config into its folder, and an experiment's whole grid.

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "data/datasets.h"
#include "distributed/process_group.h"
#include "experiment/config.h"
#include "models/network.h"
#include "train/device.h"
#include "train/trainer.h"

namespace reslab {

/// Datasets shared by the runs of one process (decoded, or an image folder's file lists and statistics), keyed
/// by dataset, folder, split and transform.
class DataCache {
 public:
  /// The splits of `data`, opened once for every run that reads the same data the same way.
  std::shared_ptr<const SplitSource> get(const DataConfig& data);

 private:
  std::map<std::string, std::shared_ptr<const SplitSource>> cache_;
};

/// What a run reads: the spec its network is built for and loaders over its parts (val is null when the run
/// holds out no validation examples).
struct RunData {
  std::shared_ptr<const SplitSource> splits;
  ModelSpec spec;
  std::unique_ptr<BatchSource> train, val, test;
};

/// The spec and loaders of `run`: training batches of `train_batch` drawn from `loader_seed` (augmented as the
/// run says), evaluation batches of run.eval_batch in file order (one view each when `single_view`).
RunData open_run_data(const RunConfig& run, DataCache& cache, int64_t train_batch, uint64_t loader_seed,
                      bool single_view = false);

struct RunOptions {
  std::ostream* progress = nullptr;  ///< where the progress line goes; null prints none
  bool terminal = false;             ///< progress rewrites one line (a terminal) or prints plain lines
  bool save_model = true;            ///< write model.pt with the final weights
  /// Continue from the newest usable checkpoint in the run's folder (a completed run is returned as it is).
  bool resume = false;
  /// Epochs between checkpoints (0: only when the run stops).
  int64_t checkpoint_every = 1;
  /// More callbacks for the run (probes, tests), added after the standard ones (on rank 0 only).
  std::vector<std::shared_ptr<Callback>> callbacks;
  /// Data-parallel training across the job's ranks (null: this process alone). Only rank 0 writes.
  std::shared_ptr<Distributed> dist;
  /// Output folders of other experiments: a run not yet begun takes the first completed run found there with
  /// the same training identity, threads and device, and is not trained again (see reuse_completed_run).
  std::vector<std::string> reuse_from;
};

/// The data-parallel job this process was launched into (torchrun's or Slurm's variables), joined with
/// `run`'s timeout; null when it was launched alone. Rank 0 reports the rendezvous on `log`. Throws DistError.
std::shared_ptr<Distributed> join_job(const RunConfig& run, std::ostream* log);

/// Where a file's recorded configuration first differs from the run's: a JSON pointer ("/optim/lr", "?" when
/// the documents are equal) and the value at it on each side (nullopt where that side has none). Checkpoints and
/// model files of another configuration are reported with it.
struct ConfigDifference {
  std::string at;
  std::optional<std::string> recorded, expected;
};
ConfigDifference first_difference(const nlohmann::json& recorded, const nlohmann::json& expected);

/// Throws ConfigError naming the first of `from` that is not a folder (--reuse's check, made before anything
/// is written and again by find_reusable_run).
void check_reuse_folders(const std::vector<std::string>& from);

/// The run folder under one of `from` (each an experiment's output folder) whose config.json has `run`'s training
/// identity (training_identity: the names aside, the same configuration and seed), whose summary.json is
/// completed on `threads` threads on `device` by one process; "" when there is none. Folders that are not
/// readable runs are passed over with a note on `log` (null: none).
std::string find_reusable_run(const RunConfig& run, const std::vector<std::string>& from, int64_t threads,
                              const std::string& device, std::ostream* log);

/// Trains one run into `run_dir` (config.json, metrics.jsonl, summary.json, model.pt) and returns the summary.
/// A non-finite loss is a result (status "diverged"), not an error. With options.dist every rank calls it: the
/// ranks train one net on their shares of each global batch, and rank 0 alone writes the folder.
nlohmann::json train_run(const RunConfig& run, const std::string& run_dir, DataCache& data, const RunOptions& options);

/// Throws std::runtime_error when `dir` already holds results (summary.json, metrics.jsonl or results.json),
/// unless `overwrite`, in which case those files and the named run folders are removed.
void prepare_output_dir(const std::string& dir, const std::vector<std::string>& run_names, bool overwrite);

/// Runs every grid point into `out_dir`/<run name>, rewriting `out_dir`/results.json after each run, and
/// returns the final results. An interrupted run (a signal) ends the experiment after its summary is written.
nlohmann::json run_experiment(const ExperimentConfig& experiment, const std::string& out_dir,
                              const RunOptions& options);

}  // namespace reslab
