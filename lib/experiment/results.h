#pragma once
// Summaries of runs and the tables an experiment's results.json holds: per configuration, the mean and spread
// of the final errors over seeds, and paired differences (residual - plain, variant - baseline) with their
// 95% intervals.

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "experiment/config.h"
#include "models/network.h"
#include "train/trainer.h"

namespace reslab {

/// The versions recorded in every summary: reslab's and LibTorch's.
nlohmann::json version_info();

/// What a run's summary.json is made of, as train_run has it when the run stops.
struct RunOutcome {
  RunOutcome(const RunConfig& r, const NetworkBase& m, const TrainState& s) : run(r), model(m), state(s) {}
  const RunConfig& run;
  const NetworkBase& model;
  const TrainState& state;
  int64_t train_examples = 0;  ///< this rank's training examples (its shard in a data-parallel job)
  std::optional<double> train_error, val_error, test_error, best_test_error;
  double seconds = 0.0;  ///< wall clock from the first step to the end (retries included)
  double eval_seconds = 0.0;
  int64_t world_size = 1;
  int64_t threads = 1;
  std::string conv;            ///< the convolutions that ran (convolution_policy)
  nlohmann::json kernels;      ///< each shape's kernel (to_json(KernelPlan)); null on a GPU
  nlohmann::json cuda_graphs;  ///< with train.cuda_graphs: how the steps and evaluation batches ran (GraphCounts)
  nlohmann::json retries = nlohmann::json::array();
};

/// summary.json: the run, its net, the final errors and timings, the status, and what decides its weights
/// (seed, threads, allocator, convolutions, device, versions); diverged runs add where and the last finite loss.
nlohmann::json make_summary(const RunOutcome& outcome);

/// Throws std::runtime_error naming `path` and the key when `summary` is not a run's summary.json as reslab
/// writes it: an object with "run" (a string), "status" (completed, diverged, interrupted or running),
/// "iterations" (a non-negative integer) and "final" (an object whose errors are numbers or null).
void check_summary(const nlohmann::json& summary, const std::string& path);

/// The run names an experiment's config.json (as `reslab run` writes it) lists, checked: an object with "name"
/// and "description" strings and "runs", a list of run configurations each with a "name" that is a safe folder
/// name (name_problem), so that nothing outside the experiment's folder is read. Throws std::runtime_error
/// naming `path` and the entry.
std::vector<std::string> experiment_run_names(const nlohmann::json& config, const std::string& path);

/// A run as results.json sees it: its summary.json and its resolved configuration (its config.json).
struct RunResult {
  nlohmann::json summary;
  nlohmann::json config;
};

/// results.json: the experiment's name, every run's summary and the table by configuration ("degradation":
/// plain beside residual where both ran; a residual-only experiment such as Table 6 gets its rows too). Runs are
/// grouped by their resolved configuration minus the seed (and the plain/residual family of the model), so each row
/// holds the repeats of one configuration over seeds: per side the mean, sd and per-seed final errors; per row the
/// paired difference residual - plain over the seeds both sides have; per row of a tagged model (-k1, -noaffine, ...)
/// the paired difference against the untagged model of the same depth and configuration (`vs_baseline`); and
/// where the runs ran (`ran_on`: groups by device, machine, threads and world size, each naming its runs).
nlohmann::json make_results(const std::string& experiment, const std::string& description,
                            const std::vector<RunResult>& runs);

/// Prints the degradation table of `results` (or nothing when it has none): mean +- sd (n) per side, the paired
/// residual - plain training-error difference with its interval, and a variant's difference from its baseline.
void print_degradation_table(const nlohmann::json& results, std::ostream& out);

/// Prints results' "ran_on": each group of runs with its CPU, vector widths, logical CPUs, device and threads.
void print_ran_on(const nlohmann::json& results, std::ostream& out);

/// "23.33 ± 0.52 (3)"; one value: "23.33 (1)"; none: "-".
std::string format_mean_sd(const nlohmann::json& mean, const nlohmann::json& sd, int64_t n);
/// "+3.90 [1.20, 6.60]" from a paired difference (stats.h); "+3.90" below two pairs; "" with none.
std::string format_difference(const nlohmann::json& difference);

}  // namespace reslab
