#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>

#include "app/commands.h"
#include "experiment/analysis.h"
#include "experiment/results.h"
#include "experiment/runner.h"
#include "train/interrupt.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace reslab {

namespace {
constexpr int kExitInterrupted = 130;  // the shell's code for a run ended by SIGINT

RunOptions console_options() {
  RunOptions options;
  options.progress = &std::cout;
  options.terminal = isatty(STDOUT_FILENO) == 1;
  return options;
}

/// The exit code of a single run: 0 completed, 130 interrupted (SIGINT's), 3 otherwise (diverged).
int run_exit_code(const nlohmann::json& summary) {
  if (summary["status"] == "interrupted") return kExitInterrupted;
  return summary["status"] == "completed" ? 0 : 3;
}

/// Runs `step` on rank 0 only (all of it in one process); the other ranks wait for it and stop with an error
/// when it failed there, instead of waiting in the next collective until the timeout.
void on_root(Distributed* dist, const std::string& what, const std::function<void()>& step) {
  if (dist == nullptr) return step();
  std::string error;
  if (dist->is_root()) {
    try {
      step();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (dist->any(!error.empty(), what)) {
    if (dist->is_root()) throw std::runtime_error(error);
    throw DistError(dist->env().describe() + ": rank 0 failed " + what + " (its error says why)");
  }
}

void print_final(const nlohmann::json& s) {
  auto show = [](const nlohmann::json& v) {
    if (!v.is_number()) return std::string("-");
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", v.get<double>());  // as the table prints errors
    return std::string(text);
  };
  std::cout << s["run"].get<std::string>() << ": " << s["status"].get<std::string>() << " after " << s["iterations"]
            << " iterations; train error " << show(s["final"]["train_error"]) << "%, test error "
            << show(s["final"]["test_error"]) << "%\n";
}
}  // namespace

int run_train(const TrainOptions& options) {
  RunConfig run = apply_sets(options.run, options.overrides.sets);
  apply_overrides(run, options.overrides);
  if (!run.optim.epochs && !run.optim.iterations) run.optim.epochs = 1.0;
  if (run.name.empty()) run.name = run.model.name;
  validate_run(run, "command line");
  install_interrupt_handlers();
  RunOptions run_options = console_options();
  run_options.dist = join_job(run, &std::cout);
  const bool root = run_options.dist == nullptr || run_options.dist->is_root();
  on_root(run_options.dist.get(), "preparing " + options.out, [&] {
    if (!options.resume) prepare_output_dir(options.out, {}, options.overwrite);
  });
  if (!root) run_options.progress = nullptr;
  DataCache data;
  run_options.resume = options.resume;
  const auto summary = train_run(run, options.out, data, run_options);
  if (!root) return run_exit_code(summary);
  print_final(summary);
  std::cout << "Results: " << options.out << "/{config.json, metrics.jsonl, summary.json}\n";
  if (summary["status"] == "interrupted") {
    std::cout << "Interrupted: continue with the same command and --resume.\n";
  }
  return run_exit_code(summary);
}

namespace {

/// The grid point a `reslab run` is limited to: --index, else $SLURM_ARRAY_TASK_ID (a Slurm array task), else
/// none (every point). Throws std::invalid_argument naming the value and the range.
std::optional<size_t> chosen_index(const RunExperimentOptions& options, size_t points) {
  std::optional<int64_t> index = options.index;
  std::string source = "--index";
  if (!index) {
    const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
    if (task == nullptr || *task == '\0') return std::nullopt;
    source = "SLURM_ARRAY_TASK_ID";
    const std::string text = task;
    if (text.find_first_not_of("0123456789") != std::string::npos || text.size() > 9) {
      throw std::invalid_argument(source + " '" + text + "' is not a grid index");
    }
    index = std::stoll(text);
  }
  if (*index < 0 || *index >= static_cast<int64_t>(points)) {
    throw std::invalid_argument(source + " " + std::to_string(*index) + " is out of range: the experiment has " +
                                std::to_string(points) + " grid points (0 to " + std::to_string(points - 1) +
                                "; see --list)");
  }
  return static_cast<size_t>(*index);
}

}  // namespace

int run_experiment_command(const RunExperimentOptions& options) {
  ExperimentConfig experiment = load_experiment(options.experiment, options.overrides.sets);
  apply_overrides(experiment, options.overrides);
  const std::string out = options.out.empty() ? "runs/" + experiment.name : options.out;
  const std::vector<RunConfig> runs = expand_grid(experiment);
  if (options.list) {
    for (size_t i = 0; i < runs.size(); ++i) {
      std::cout << i << "\t" << runs[i].name << "\t" << runs[i].model.name << "\t" << runs[i].data.dataset << "\n";
    }
    return 0;
  }
  check_reuse_folders(options.reuse);
  if (const auto index = chosen_index(options, runs.size())) {
    // One grid point, into the experiment's layout; results.json is collect's, which sees every finished run.
    const RunConfig& run = runs[*index];
    const std::string run_dir = out + "/" + run.name;
    install_interrupt_handlers();
    RunOptions run_options = console_options();
    run_options.dist = join_job(run, &std::cout);
    const bool root = run_options.dist == nullptr || run_options.dist->is_root();
    on_root(run_options.dist.get(), "preparing " + run_dir, [&] {
      if (!options.resume) prepare_output_dir(run_dir, {}, options.overwrite);
      fs::create_directories(out);
      write_json_file(out + "/config.json", to_json(experiment));
      std::cout << "[" << *index << " of 0.." << runs.size() - 1 << "] " << run.name << " on " << run.data.dataset
                << "\n";
      if (run.train.tensorboard) std::cout << "Watch it: tensorboard --logdir " << out << "\n";
    });
    if (!root) run_options.progress = nullptr;
    DataCache data;
    run_options.resume = options.resume;
    run_options.reuse_from = options.reuse;
    const auto summary = train_run(run, run_dir, data, run_options);
    if (!root) return run_exit_code(summary);
    print_final(summary);
    std::cout << "Results: " << run_dir << "/ (reslab collect " << out << " gathers every finished run)\n";
    return run_exit_code(summary);
  }
  std::vector<std::string> names;
  for (const auto& run : runs) names.push_back(run.name);
  install_interrupt_handlers();
  RunOptions run_options = console_options();
  run_options.dist = join_job(experiment.base, &std::cout);
  const bool root = run_options.dist == nullptr || run_options.dist->is_root();
  on_root(run_options.dist.get(), "preparing " + out, [&] {
    if (!options.resume) prepare_output_dir(out, names, options.overwrite);
    if (experiment.base.train.tensorboard) std::cout << "Watch it: tensorboard --logdir " << out << "\n";
  });
  if (!root) run_options.progress = nullptr;
  run_options.resume = options.resume;
  run_options.reuse_from = options.reuse;
  const auto results = run_experiment(experiment, out, run_options);
  if (!root) {  // rank 0 reports, plots and analyses; the others' exit code says how the grid ended
    const bool interrupted = !results["runs"].empty() && results["runs"].back()["status"] == "interrupted";
    return interrupted ? kExitInterrupted : 0;
  }
  std::cout << "\n";
  for (const auto& s : results["runs"]) print_final(s);
  std::cout << "\n";
  print_degradation_table(results, std::cout);
  print_ran_on(results, std::cout);
  std::cout << "\nResults: " << out << "/results.json (runs in " << out << "/<run>/)\n";
  if (interrupt_requested()) {
    std::cout << "Interrupted: the runs above are summarised as they stood. Continue with the same command and "
                 "--resume.\n";
    return kExitInterrupted;
  }
  if (options.plot) {
    PlotOptions plot;
    plot.results_dir = out;
    if (run_plot(plot) != 0) std::cout << "(the plot failed; the results above are complete)\n";
  }
  const auto analysis_files = run_experiment_analysis(experiment, out, &std::cout);
  for (const auto& file : analysis_files) {
    std::cout << "Probe results: " << file << "\n";
    if (options.plot) plot_probe_file(file);
  }
  return 0;
}

int run_collect(const CollectOptions& options) {
  const std::string config_path = options.dir + "/config.json";
  nlohmann::json config;
  try {
    config = read_json_file(config_path);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) + " (reslab collect reads the experiment that reslab run wrote)");
  }
  const std::vector<std::string> names = experiment_run_names(config, config_path);
  std::vector<RunResult> finished;
  std::vector<std::string> missing;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string path = options.dir + "/" + names[i] + "/summary.json";
    if (!fs::exists(path)) {
      missing.push_back(names[i]);
      continue;
    }
    auto summary = read_json_file(path);
    check_summary(summary, path);
    finished.push_back({std::move(summary), config["runs"][i]});
  }
  if (finished.empty()) {
    throw std::runtime_error(options.dir + ": none of the experiment's " + std::to_string(config["runs"].size()) +
                             " runs has a summary.json yet");
  }
  const auto results = make_results(config["name"], config.value("description", ""), finished);
  write_json_file(options.dir + "/results.json", results);
  for (const auto& r : finished) print_final(r.summary);
  std::cout << "\n";
  print_degradation_table(results, std::cout);
  print_ran_on(results, std::cout);
  std::cout << "\nResults: " << options.dir << "/results.json (" << finished.size() << " of " << config["runs"].size()
            << " runs)\n";
  if (!missing.empty()) {
    std::cout << "Not finished (no summary.json):";
    for (const auto& m : missing) std::cout << " " << m;
    std::cout << "\n";
  }
  if (options.plot) {
    PlotOptions plot;
    plot.results_dir = options.dir;
    if (run_plot(plot) != 0) std::cout << "(the plot failed; the results above are complete)\n";
  }
  return 0;
}

std::string scripts_dir() {
  if (const char* env = std::getenv("RESLAB_SCRIPTS")) return env;
  return RESLAB_SOURCE_DIR "/scripts";
}

int run_python_script(const std::string& name, const std::vector<std::string>& args) {
  std::string python = "python3";
  if (const char* env = std::getenv("RESLAB_PYTHON")) {
    python = env;
  } else if (fs::exists("/usr/bin/python3")) {
    python = "/usr/bin/python3";  // Debian's python3-matplotlib lives here, whatever else is first on PATH
  }
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string command = quote(python) + " " + quote(scripts_dir() + "/" + name);
  for (const auto& a : args) command += " " + quote(a);
  const int status = std::system(command.c_str());
  if (status != 0) std::cerr << "error: plotting failed (" << command << ")\n";
  return status;
}

int run_plot(const PlotOptions& options) {
  const std::string results = options.results_dir + "/results.json";
  if (!fs::exists(results)) {
    std::cerr << "error: " << results << ": no such file (run an experiment into " << options.results_dir
              << " first)\n";
    return 2;
  }
  const std::string output = options.output.empty() ? options.results_dir + "/curves.png" : options.output;
  if (run_python_script("plot_curves.py", {options.results_dir, output}) != 0) return 4;
  std::cout << "Plot: " << output << "\n";
  return 0;
}

}  // namespace reslab
