#pragma once
// The subcommands of the `reslab` program: an options struct and a run_* function each. apps/ binds them to
// CLI11; everything they do lives here so that tests can call them.

#include <optional>
#include <string>
#include <vector>

#include "experiment/config.h"
#include "interop/convert.h"

namespace reslab {

/// `reslab models`: the registry's names.
int run_models();

struct InfoOptions {
  std::string model;
  std::string dataset = "cifar10";
  std::string shortcut = "A";
  std::string input;    ///< "CxHxW"; replaces the dataset's shape
  int64_t classes = 0;  ///< replaces the dataset's classes when positive
  bool json = false;
};
/// `reslab info`: depth, layers, parameters and multiply-adds of a model on a dataset's input shape.
int run_info(const InfoOptions& options);

struct TrainOptions {
  RunConfig run;  ///< defaults, then flags
  Overrides overrides;
  std::string out;
  bool overwrite = false;
  bool resume = false;
};
/// `reslab train`: one run into --out.
int run_train(const TrainOptions& options);

struct RunExperimentOptions {
  std::string experiment;
  std::string out;  ///< default runs/<experiment name>
  Overrides overrides;
  bool overwrite = false;
  bool resume = false;  ///< continue interrupted runs from their checkpoints, skip completed ones
  bool plot = true;
  bool list = false;               ///< print the grid points with their indices instead of running
  std::optional<int64_t> index;    ///< run only this grid point (0-based; else $SLURM_ARRAY_TASK_ID if set)
  std::vector<std::string> reuse;  ///< other experiments' output folders to take identical completed runs from
};
/// `reslab run`: every grid point of an experiment, results.json, the degradation table and the plot; or,
/// with `list`, the grid points; or, with an index, one of them (results.json is then left to `reslab collect`).
int run_experiment_command(const RunExperimentOptions& options);

struct CollectOptions {
  std::string dir;
  bool plot = true;
};
/// `reslab collect`: results.json, the degradation table and the plot from the runs of DIR that have a summary
/// (an experiment run one grid point at a time, e.g. as a Slurm array).
int run_collect(const CollectOptions& options);

struct SlurmOptions {
  std::string experiment;
  std::string out;  ///< default runs/<experiment name>, as reslab run
  std::string partition, time;
  int64_t cpus = 0;                   ///< CPUs per task (0: the cluster's default)
  int64_t nodes_per_run = 1;          ///< machines per grid point
  int64_t tasks_per_node = 1;         ///< data-parallel ranks per machine (nodes x tasks ranks per run)
  int64_t concurrency = 0;            ///< array tasks at once (%K; 0: no limit)
  int64_t gpus_per_task = 0;          ///< GPUs per rank (#SBATCH --gpus-per-task; 0: none, train on the CPU)
  bool submit = false;                ///< run submit.sh (sbatch) after writing the scripts
  std::vector<std::string> run_args;  ///< passed to every `reslab run` (after --)
};

/// Writes OUT/slurm/{array.sbatch, collect.sbatch, submit.sh}: a job array with one task per grid point (each
/// `srun reslab run EXPERIMENT --index $SLURM_ARRAY_TASK_ID --resume`) and a collect job that waits for it.
int run_slurm(const SlurmOptions& options);

struct PlotOptions {
  std::string results_dir;
  std::string output;  ///< default RESULTS_DIR/curves.png
};
/// `reslab plot`: curves.png in the style of the paper's Figure 6 (scripts/plot_curves.py, matplotlib).
int run_plot(const PlotOptions& options);

struct BenchOptions {
  std::vector<std::string> models = {"resnet20"};
  /// The dataset whose shape the step is timed at; with `epoch` and `loader`, the data read (its folder, its
  /// first split.train_size training examples, 0: all, and an image folder's transform), checked as a run's.
  DataConfig data;
  int64_t batch = 128;
  int64_t iterations = 20;
  int64_t warmup = 3;
  int64_t threads = 0;
  std::string device = "cpu";
  bool channels_last = true;
  bool sgd_foreach = true;  ///< false: LibTorch's per-parameter SGD loop
  /// Also time the model's convolutions alone (bench_convs.h): the bound the step cannot beat with these kernels.
  bool conv_bound = false;
  bool json = false;
  /// Instead of timing: write the model's weights, a batch and its losses to this file (see bench.cpp).
  std::string export_check;
  /// Time the data pipeline alone (decoding, augmentation, batching) instead of the training step.
  bool loader = false;
  /// Time single 3x3 convolutions instead (the machine's ceiling for the networks' main operation).
  bool ceiling = false;
  /// Launched as several ranks (launch-local, torchrun, srun): time Gloo all-reduces of these sizes (MiB)
  /// between the ranks instead of training.
  std::vector<double> allreduce_mb;
  /// Also time a whole epoch of the dataset (its first train_size examples; 0: all), data pipeline included.
  bool epoch = false;
  /// Also time each convolution shape's candidate kernels inside the model's own step, this many rounds (0: not),
  /// beside what the per-shape timings of RESLAB_CONV=auto chose (train/kernels.h, time_kernels_in_step).
  int64_t in_step = 0;
  /// The forward passes' arithmetic, as a run's train.precision: "float32" or "bf16" (autocast).
  std::string precision = "float32";
  /// The step and the evaluation batches replayed as CUDA graphs, as a run's train.cuda_graphs (train/graphs.h).
  bool cuda_graphs = false;
};
/// `reslab bench`: per model, training images per second of the full step on synthetic data of the dataset's
/// shape, of a whole epoch on the dataset (with `epoch`), of evaluation, the multiply-add rate and the peak
/// resident memory; or, with `loader`, the data pipeline alone.
int run_bench(const BenchOptions& options);

/// The data `reslab analyze --at-init` probes on without run folders: the first 2000 test images of
/// Fashion-MNIST unless told otherwise.
inline DataConfig probe_data() {
  DataConfig data;
  data.split.test_size = 2000;
  return data;
}

struct AnalyzeOptions {
  std::string probe;  ///< a probe name, or "all"
  std::vector<std::string> run_dirs;
  std::vector<std::string> at_init;  ///< model names probed freshly initialised
  /// Data for --at-init when no run folder is given (with run folders, the first run's data is used; the
  /// dataset, when given, must be theirs, and data.dir says where it is now).
  DataConfig data = probe_data();
  bool dataset_given = false;
  bool test_size_given = false;  ///< with run folders: probe on data.split.test_size test examples, not the runs' own
  int64_t threads = 0;
  std::vector<uint64_t> seeds = {1};  ///< model initialisation of the fresh nets, one set of them per seed
  ProbeSettings settings;
  std::string out;  ///< default: the first run folder's parent, else runs/analysis
  bool plot = true;
};
/// `reslab analyze`: probes on trained runs and fresh nets; OUT/PROBE.json (and _init.json) and PNG plots.
int run_analyze(const AnalyzeOptions& options);

struct ExportOptions {
  std::string run_dir;
  std::string to;  ///< FILE.pth; FILE.json and FILE.check.pth are written beside it
};
/// `reslab export`: a run's final model as a PyTorch state_dict (export_run), and how to load it.
int run_export(const ExportOptions& options);
/// `reslab import`: a PyTorch state_dict as a run folder the probes read (import_state_dict).
int run_import(const ImportOptions& options);

/// Runs scripts/NAME with the Python that has matplotlib; returns its exit status (0 on success).
int run_python_script(const std::string& name, const std::vector<std::string>& args);
/// Draws OUT/PROBE.png from a probe's JSON (scripts/plot_probes.py); false when plotting failed.
bool plot_probe_file(const std::string& json_file);

/// Where reslab's helper scripts are: $RESLAB_SCRIPTS, else the source tree's scripts/ folder.
std::string scripts_dir();

}  // namespace reslab
