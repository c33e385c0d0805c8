#include "cli.h"

#include <memory>

#include "app/commands.h"
#include "probes/settings.h"

namespace reslab {

namespace {

/// A path or word given on the command line must say something: `--out ""` is an error naming the flag, not the
/// default folder nor the current one.
const CLI::Validator kNonEmpty(
    [](std::string& value) {
      return value.empty() ? std::string("expected a value, got an empty string") : std::string();
    },
    "", "NONEMPTY");

/// Binds a value whose presence on the command line matters: it lands in `target` only when given.
template <typename T>
CLI::Option* optional_flag(CLI::App* cmd, const std::string& name, std::optional<T>& target, const std::string& help) {
  return cmd->add_option_function<T>(
      name, [&target](const T& v) { target = v; }, help);
}

void bind_overrides(CLI::App* cmd, Overrides& o) {
  cmd->add_option("--set", o.sets,
                  "KEY=VALUE: set any key of the experiment file's layout before it is read, e.g. --set optim.lr=0.05 "
                  "--set data.train_size=8000 (VALUE as JSON, else a string; null removes the key; repeat for "
                  "more; the flags below apply after it)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->type_name("KEY=VALUE");
  auto* epochs = optional_flag(cmd, "--epochs", o.epochs, "Epochs to train (replaces the file's value; train: 1)");
  optional_flag(cmd, "--iterations", o.iterations, "Iterations to train (instead of epochs)")->excludes(epochs);
  optional_flag(cmd, "--train-size", o.train_size, "Training examples to keep (0: all)");
  optional_flag(cmd, "--test-size", o.test_size, "Test examples to evaluate on (0: all)");
  optional_flag(cmd, "--batch", o.batch, "Mini-batch size");
  optional_flag(cmd, "--lr", o.lr, "Base learning rate");
  optional_flag(cmd, "--seed", o.seed, "Random seed (model init, data order, augmentation)");
  optional_flag(cmd, "--threads", o.threads, "LibTorch intra-op threads (default: every core)");
  optional_flag(cmd, "--log-every", o.log_every, "Iterations between training records");
  optional_flag(cmd, "--data", o.data_dir, "Folder the dataset is read from")->check(kNonEmpty);
  optional_flag(cmd, "--retry-diverged", o.retry_diverged,
                "After a non-finite loss, go back to the last checkpoint up to N times with the lr scaled by 0.1");
  optional_flag(cmd, "--device", o.device, "cpu, cuda or cuda:N (cuda needs reslab built against a CUDA LibTorch)");
  cmd->add_flag_function(
      "--sync-bn", [&o](int64_t) { o.sync_bn = true; },
      "Data-parallel: BatchNorm statistics over the whole global batch, not each rank's part");
  optional_flag(cmd, "--dist-timeout", o.dist_timeout_s,
                "Data-parallel: seconds to wait for the other ranks before stopping with an error (default 300)");
  optional_flag(cmd, "--dist-backend", o.dist_backend,
                "Data-parallel: auto (NCCL for ranks on GPUs where this build has it, else Gloo), gloo or nccl");
}

void setup_info(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Depth, parameters and multiply-adds of a model");
  cmd->add_option("model", opts->model, "Model name, e.g. resnet56")->required();
  cmd->add_option("--dataset", opts->dataset, "Dataset whose input shape and classes to use")->capture_default_str();
  cmd->add_option("--shortcut", opts->shortcut, "Shortcut option A, B or C")->capture_default_str();
  cmd->add_option("--input", opts->input, "Input shape CxHxW instead of the dataset's, e.g. 3x224x224");
  cmd->add_option("--classes", opts->classes, "Classes instead of the dataset's, e.g. 1000");
  cmd->add_flag("--json", opts->json, "Print JSON");
  cmd->callback([opts, &action] { action = [opts] { return run_info(*opts); }; });
}

void setup_train(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<TrainOptions>();
  auto* cmd = app.add_subcommand("train", "Train one network");
  cmd->add_option("--model", opts->run.model.name, "Model name, e.g. resnet20, plain56")->required();
  cmd->add_option("--dataset", opts->run.data.dataset, "fashion-mnist, mnist, cifar10, cifar100 or image-folder")
      ->capture_default_str();
  cmd->add_option("--out", opts->out, "Folder for config.json, metrics.jsonl, summary.json")
      ->required()
      ->check(kNonEmpty);
  auto& folder = opts->run.data.folder;
  cmd->add_option("--crop", folder.crop, "image-folder: side of the square crop the network sees")
      ->capture_default_str();
  cmd->add_option_function<std::vector<int64_t>>(
         "--scale",
         [opts](const std::vector<int64_t>& v) {
           if (v.size() != 2) throw CLI::ValidationError("--scale", "expected MIN,MAX, e.g. 256,480");
           opts->run.data.folder.scale_min = v[0];
           opts->run.data.folder.scale_max = v[1];
         },
         "image-folder: training resizes the shorter side to a random size in MIN,MAX (default 256,480)")
      ->delimiter(',');
  cmd->add_option("--eval-resize", folder.eval_resize, "image-folder: shorter side before the evaluation crops")
      ->capture_default_str();
  cmd->add_option("--eval-crops", folder.eval_crops, "image-folder: 1 (centre crop) or 10 (ten-crop) views to test")
      ->capture_default_str();
  cmd->add_option("--workers", folder.workers, "image-folder: decoding threads (0: every core)")->capture_default_str();
  cmd->add_option("--shortcut", opts->run.model.shortcut, "Shortcut option A, B or C")->capture_default_str();
  cmd->add_option("--val-size", opts->run.data.split.val_size, "Training examples held out for validation");
  cmd->add_option("--milestones", opts->run.optim.schedule.milestones, "Epochs at which the lr drops by 10x")
      ->delimiter(',');
  cmd->add_option("--eval-at", opts->run.train.eval_at, "Extra iterations at which to evaluate")->delimiter(',');
  // Flags without a variable take their description apart: add_flag(name, description) is ambiguous in Debian's
  // CLI11 2.1 under C++20, which the LibTorch 2.x build (scripts/build-cuda) compiles with.
  auto* no_augment = cmd->add_flag("--no-augment")->description("Train without padding, cropping and flipping");
  auto* overwrite = cmd->add_flag("--overwrite", opts->overwrite, "Replace results already in --out");
  cmd->add_flag("--resume", opts->resume, "Continue from the newest checkpoint in --out")->excludes(overwrite);
  bind_overrides(cmd, opts->overrides);
  cmd->callback([opts, no_augment, &action] {
    opts->run.optim.schedule.milestones_in_epochs = true;
    if (no_augment->count() > 0) opts->run.data.augment = false;
    action = [opts] { return run_train(*opts); };
  });
}

void setup_run(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<RunExperimentOptions>();
  auto* cmd = app.add_subcommand("run", "Run every point of an experiment's grid");
  cmd->add_option("experiment", opts->experiment, "Experiment file, e.g. experiments/fashion_degradation.json")
      ->required()
      ->check(kNonEmpty);
  cmd->add_option("--out", opts->out, "Results folder (default runs/<experiment name>)")->check(kNonEmpty);
  cmd->add_option_function<std::vector<int64_t>>(
         "--depths", [opts](const std::vector<int64_t>& d) { opts->overrides.depths = d; },
         "Depths to run, e.g. 20,56 (plain and residual as the file says)")
      ->delimiter(',');
  cmd->add_option_function<std::vector<int64_t>>(
         "--seeds", [opts](const std::vector<int64_t>& s) { opts->overrides.seeds = s; },
         "Run every grid point at each of these seeds, e.g. 1,2,3 (replaces the file's grid.seed)")
      ->delimiter(',');
  auto* overwrite = cmd->add_flag("--overwrite", opts->overwrite, "Replace results already in the output folder");
  cmd->add_flag("--resume", opts->resume, "Continue interrupted runs from their checkpoints; skip completed ones")
      ->excludes(overwrite);
  cmd->add_option("--reuse", opts->reuse,
                  "Output folders of other experiments: a run with the same training configuration, seed, threads "
                  "and device completed there is copied (its summary says from where) instead of trained again; "
                  "runs from this machine only")
      ->delimiter(',')
      ->check(kNonEmpty);
  auto* no_plot = cmd->add_flag("--no-plot")->description("Skip curves.png");
  auto* list = cmd->add_flag("--list", opts->list, "Print the grid points, one per line with its index, and exit");
  optional_flag(cmd, "--index", opts->index,
                "Run only grid point I (0-based, see --list; default $SLURM_ARRAY_TASK_ID when set)")
      ->excludes(list);
  bind_overrides(cmd, opts->overrides);
  cmd->callback([opts, no_plot, &action] {
    opts->plot = no_plot->count() == 0;
    action = [opts] { return run_experiment_command(*opts); };
  });
}

void setup_collect(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<CollectOptions>();
  auto* cmd = app.add_subcommand("collect", "results.json and the plot from an experiment's finished runs");
  cmd->add_option("dir", opts->dir, "The experiment's output folder (reslab run --out)")->required()->check(kNonEmpty);
  auto* no_plot = cmd->add_flag("--no-plot")->description("Skip curves.png");
  cmd->callback([opts, no_plot, &action] {
    opts->plot = no_plot->count() == 0;
    action = [opts] { return run_collect(*opts); };
  });
}

void setup_slurm(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<SlurmOptions>();
  auto* cmd =
      app.add_subcommand("slurm", "Write (and submit) a Slurm job array of an experiment's grid and a collect job");
  cmd->add_option("experiment", opts->experiment, "Experiment file")->required()->check(kNonEmpty);
  cmd->add_option("run_args", opts->run_args, "After --: arguments for every `reslab run`, e.g. -- --epochs 2");
  cmd->add_option("--out", opts->out, "Results folder (default runs/<experiment name>); scripts go to OUT/slurm/")
      ->check(kNonEmpty);
  cmd->add_option("--partition", opts->partition, "Slurm partition")->check(kNonEmpty);
  cmd->add_option("--time", opts->time, "Time limit per array task, e.g. 04:00:00")->check(kNonEmpty);
  cmd->add_option("--cpus", opts->cpus, "CPUs per task (default: the cluster's)");
  cmd->add_option("--nodes-per-run", opts->nodes_per_run, "Machines per grid point (data-parallel)")
      ->capture_default_str();
  cmd->add_option("--tasks-per-node", opts->tasks_per_node, "Data-parallel ranks per machine")->capture_default_str();
  cmd->add_option("--concurrency", opts->concurrency, "Array tasks running at once (%K; default no limit)");
  cmd->add_option("--gpus-per-task", opts->gpus_per_task,
                  "GPUs per rank (#SBATCH --gpus-per-task); the runs train with --device cuda unless -- gives a "
                  "device (default 0: the CPU)");
  cmd->add_flag("--submit", opts->submit, "Run submit.sh after writing the scripts");
  cmd->callback([opts, &action] { action = [opts] { return run_slurm(*opts); }; });
}

void setup_plot(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<PlotOptions>();
  auto* cmd = app.add_subcommand("plot", "Draw curves.png (paper Figure 6 style) from an experiment's results");
  cmd->add_option("results_dir", opts->results_dir, "Folder holding results.json")->required();
  cmd->add_option("--output", opts->output, "PNG file (default RESULTS_DIR/curves.png)")->check(kNonEmpty);
  cmd->callback([opts, &action] { action = [opts] { return run_plot(*opts); }; });
}

void setup_bench(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<BenchOptions>();
  auto* cmd =
      app.add_subcommand("bench", "Throughput: training step, whole epoch, evaluation; multiply-adds/s; peak memory");
  cmd->add_option("--model", opts->models, "Model names, e.g. resnet20,resnet56")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--dataset", opts->data.dataset, "Dataset whose input shape to use")->capture_default_str();
  cmd->add_option("--batch", opts->batch, "Mini-batch size")->capture_default_str();
  cmd->add_option("--iterations", opts->iterations, "Timed steps")->capture_default_str();
  cmd->add_option("--warmup", opts->warmup, "Untimed steps first")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "Intra-op threads (0: every core)")->capture_default_str();
  cmd->add_option("--device", opts->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--export-check", opts->export_check,
                  "Write one model's weights, a batch and its losses before and after two SGD steps to this file "
                  "(torch.load reads it; scripts/bench_pytorch.py --check compares)");
  auto* nchw = cmd->add_flag("--nchw")->description("Use the NCHW layout instead of channels-last");
  auto* sgd_loop = cmd->add_flag("--sgd-loop")
                       ->description("Update with LibTorch's per-parameter SGD loop, not reslab's foreach step");
  cmd->add_flag("--conv-bound", opts->conv_bound,
                "Also time the model's convolutions alone, forward and backward at its shapes: the step's bound");
  cmd->add_option("--in-step", opts->in_step,
                  "Also time each convolution shape's candidate kernels inside the model's own step, this many "
                  "rounds, beside what the per-shape timings choose (CPU, one process)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000}));
  cmd->add_option("--precision", opts->precision,
                  "float32, or bf16: the forward passes under autocast (a GPU's; the CPU's is slow without AVX-512 "
                  "BF16 or AMX)")
      ->capture_default_str();
  cmd->add_flag("--cuda-graphs", opts->cuda_graphs,
                "Replay the step and the evaluation batches as CUDA graphs, as train.cuda_graphs does (--device cuda)");
  cmd->add_flag("--json", opts->json, "Print JSON");
  cmd->add_flag("--loader", opts->loader, "Time the data pipeline alone (reads the dataset: --data)");
  cmd->add_flag("--epoch", opts->epoch, "Also time a whole epoch on the dataset, data pipeline included");
  cmd->add_option("--allreduce-mb", opts->allreduce_mb,
                  "Launched as several ranks: time all-reduces of these sizes in MiB, e.g. 0.001,1,4,100")
      ->delimiter(',');
  cmd->add_flag("--ceiling", opts->ceiling,
                "Time single 3x3 convolutions (16, 32, 64 channels; forward, backward) at --batch: the "
                "machine's ceiling");
  cmd->add_option("--train-size", opts->data.split.train_size,
                  "Training examples read by --epoch and --loader (0: the whole training set)")
      ->capture_default_str();
  cmd->add_option("--data", opts->data.dir, "Folder the dataset is read from (--loader)")->check(kNonEmpty);
  cmd->add_option("--workers", opts->data.folder.workers, "image-folder: decoding threads (0: every core)")
      ->capture_default_str();
  cmd->add_option("--crop", opts->data.folder.crop, "image-folder: crop side")->capture_default_str();
  cmd->add_option("--eval-crops", opts->data.folder.eval_crops, "image-folder: 1 or 10 views when evaluating")
      ->capture_default_str();
  cmd->callback([opts, nchw, sgd_loop, &action] {
    opts->channels_last = nchw->count() == 0;
    opts->sgd_foreach = sgd_loop->count() == 0;
    action = [opts] { return run_bench(*opts); };
  });
}

void setup_analyze(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<AnalyzeOptions>();
  auto* cmd = app.add_subcommand("analyze",
                                 "Probes: layer responses, gradient norms and signal-to-noise, shattered "
                                 "gradients, lesions, path lengths, iterative refinement");
  std::string probes = "The probe, or all:";
  for (const auto& p : probe_table()) probes += "\n    " + p.name + ": " + p.help;
  cmd->add_option("probe", opts->probe, probes)->required();
  cmd->add_option("run_dirs", opts->run_dirs, "Run folders (holding config.json and model.pt)");
  cmd->add_option("--at-init", opts->at_init, "Models to probe freshly initialised, e.g. plain20,resnet20")
      ->delimiter(',');
  cmd->add_option("--out", opts->out, "Folder for PROBE.json and PROBE.png (default: the runs' parent folder)")
      ->check(kNonEmpty);
  auto* dataset = cmd->add_option("--dataset", opts->data.dataset,
                                  "Data for --at-init without run folders (with them: must be theirs)")
                      ->capture_default_str();
  cmd->add_option("--data", opts->data.dir, "Folder the dataset is read from (replaces the runs' own)")
      ->check(kNonEmpty);
  auto* test_size = cmd->add_option("--test-size", opts->data.split.test_size,
                                    "Test images to probe on (0: all; default: the runs' own, else 2000)")
                        ->capture_default_str();
  cmd->add_option("--seed,--seeds", opts->seeds,
                  "Initialisation seeds of the --at-init nets, e.g. 1,2,3 (each model at each seed)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--threads", opts->threads, "Intra-op threads (0: every core)")->capture_default_str();
  auto& s = opts->settings;
  cmd->add_option("--batch", s.batch, "Examples for the gradient and path probes")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--samples", s.samples, "Random draws per lesion size and per path length")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lesion-k", s.lesion_k, "Blocks deleted together, e.g. 1,2,4,8")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  cmd->add_option("--points", s.points, "Shattered: points along each line")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  cmd->add_option("--lines", s.lines, "Shattered: lines between test images")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-lag", s.max_lag, "Shattered: largest lag")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--probe-seed", s.seed, "Seed of the probes' random draws")->capture_default_str();
  auto* no_plot = cmd->add_flag("--no-plot")->description("Skip the PNG plots");
  cmd->callback([opts, no_plot, dataset, test_size, &action] {
    opts->plot = no_plot->count() == 0;
    opts->dataset_given = dataset->count() > 0;
    opts->test_size_given = test_size->count() > 0;
    if (opts->settings.max_lag >= opts->settings.points) {
      throw CLI::ValidationError("--max-lag", "must be below --points (" + std::to_string(opts->settings.points) + ")");
    }
    action = [opts] { return run_analyze(*opts); };
  });
}

void setup_export(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<ExportOptions>();
  auto* cmd = app.add_subcommand("export",
                                 "A run's final model as a PyTorch state_dict (torchvision's or the CIFAR "
                                 "reference's names), its architecture and a check batch");
  cmd->add_option("run_dir", opts->run_dir, "Run folder (holding config.json and model.pt)")
      ->required()
      ->check(kNonEmpty);
  cmd->add_option("--to", opts->to, "The state_dict file, e.g. resnet56.pth (FILE.json and FILE.check.pth beside it)")
      ->required()
      ->check(kNonEmpty);
  cmd->callback([opts, &action] { action = [opts] { return run_export(*opts); }; });
}

void setup_import(CLI::App& app, std::function<int()>& action) {
  auto opts = std::make_shared<ImportOptions>();
  auto* cmd = app.add_subcommand("import",
                                 "A PyTorch state_dict (torchvision's ResNets, or a reslab export) as a run "
                                 "folder the probes read");
  cmd->add_option("file", opts->file, "The state_dict, written by torch.save(model.state_dict(), FILE)")
      ->required()
      ->check(kNonEmpty);
  cmd->add_option("--model", opts->model, "The model it holds, e.g. resnet50 (see reslab models)")
      ->required()
      ->check(kNonEmpty);
  cmd->add_option("--out", opts->out, "The run folder to write")->required()->check(kNonEmpty);
  cmd->add_option("--dataset", opts->dataset, "The data it is probed on (default image-folder for ImageNet nets)")
      ->check(kNonEmpty);
  cmd->add_option("--data", opts->data_dir, "Folder the dataset is read from (else give it to analyze)")
      ->check(kNonEmpty);
  cmd->add_option("--class-index", opts->class_index,
                  "JSON {class folder: output} for a folder of some of the net's classes, e.g. "
                  "scripts/imagenette_classes.json")
      ->check(kNonEmpty);
  cmd->add_flag("--overwrite", opts->overwrite, "Replace a run already in --out");
  cmd->callback([opts, &action] { action = [opts] { return run_import(*opts); }; });
}

}  // namespace

void setup_commands(CLI::App& app, std::function<int()>& action) {
  app.add_subcommand("models", "List the model names")->callback([&action] { action = [] { return run_models(); }; });
  setup_info(app, action);
  setup_train(app, action);
  setup_run(app, action);
  setup_plot(app, action);
  setup_bench(app, action);
  setup_collect(app, action);
  setup_slurm(app, action);
  setup_analyze(app, action);
  setup_export(app, action);
  setup_import(app, action);
  app.require_subcommand(1);
}

}  // namespace reslab
