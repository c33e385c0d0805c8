#include <algorithm>
#include <filesystem>
#include <iostream>

#include "app/commands.h"
#include "experiment/analysis.h"

namespace fs = std::filesystem;

namespace reslab {

bool plot_probe_file(const std::string& json_file) {
  const std::string png = fs::path(json_file).replace_extension(".png").string();
  if (run_python_script("plot_probes.py", {json_file, png}) != 0) {
    std::cout << "(the plot of " << json_file << " failed; the JSON is complete)\n";
    return false;
  }
  std::cout << "Plot: " << png << "\n";
  return true;
}

int run_analyze(const AnalyzeOptions& options) {
  std::vector<std::string> probes;
  if (options.probe == "all") {
    probes = probe_names();
  } else {
    try {
      check_probe_name(options.probe);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string(e.what()) + " or 'all'");
    }
    probes = {options.probe};
  }
  try {
    check_probe_settings(options.settings);
  } catch (const ProbeSettingsError& e) {
    std::string flag = "--" + e.key();
    std::replace(flag.begin(), flag.end(), '_', '-');
    throw ConfigError("analyze: " + flag + ": expected " + e.expected());
  }
  if (options.threads < 0 || options.threads > 4096) {
    throw ConfigError("analyze: --threads " + std::to_string(options.threads) + ": expected 0 (every core) to 4096");
  }
  const int64_t test_size = options.data.split.test_size;
  if (test_size < 0 || test_size > (int64_t{1} << 32)) {
    throw ConfigError("analyze: --test-size " + std::to_string(test_size) + ": expected 0 (all) to 2^32");
  }
  if (options.run_dirs.empty() && options.at_init.empty()) {
    throw ConfigError("analyze: name run folders (RUN_DIR...) and/or models to probe at initialisation (--at-init)");
  }
  std::vector<ProbeSubject> trained, fresh;
  for (const auto& dir : options.run_dirs) {
    trained.push_back(trained_subject(dir));
    ProbeSubject& s = trained.back();
    if (options.dataset_given && options.data.dataset != s.run.data.dataset) {
      throw ConfigError("analyze: --dataset " + options.data.dataset + ", but " + dir +
                        "/config.json says the run's data is '" + s.run.data.dataset +
                        "' (a net is probed on the data it was built for; --data says where it is)");
    }
    s.data_dir = options.data.dir;
    if (options.test_size_given) s.test_size = test_size;
  }

  RunConfig data_run;
  if (!trained.empty()) {
    data_run = trained.front().run;
    if (!options.data.dir.empty()) data_run.data.dir = options.data.dir;
    if (options.test_size_given) data_run.data.split.test_size = test_size;
  } else {
    data_run.data = options.data;
  }
  data_run.threads = options.threads;
  for (auto& s : trained) s.run.threads = options.threads;
  if (options.seeds.empty()) throw ConfigError("analyze: --seeds: expected a list of seeds, e.g. 1,2,3");
  for (size_t i = 0; i < options.seeds.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (options.seeds[i] == options.seeds[j]) {
        throw ConfigError("analyze: --seeds: " + std::to_string(options.seeds[i]) + " is named twice");
      }
    }
  }
  for (const auto& model : options.at_init) {
    for (uint64_t seed : options.seeds) {
      RunConfig run = data_run;
      run.seed = seed;
      run.model.name = run.name = model;
      if (!run.optim.epochs && !run.optim.iterations) run.optim.epochs = 1.0;  // not used: the net is not trained
      validate_run(run, "--at-init");
      data_run.seed = seed;
      fresh.push_back(init_subject(model, data_run, options.seeds.size() > 1));
    }
  }

  std::string out = options.out;
  if (out.empty()) {
    out = options.run_dirs.empty() ? "runs/analysis"
                                   : fs::path(options.run_dirs.front()).lexically_normal().parent_path().string();
    if (out.empty()) out = ".";
  }
  DataCache data;
  for (const auto& probe : probes) {
    std::vector<std::string> files;
    if (!trained.empty()) {
      files.push_back(out + "/" + probe + ".json");
      analyze(probe, trained, options.settings, files.back(), data, &std::cout);
    }
    if (!fresh.empty()) {
      files.push_back(out + "/" + probe + "_init.json");
      analyze(probe, fresh, options.settings, files.back(), data, &std::cout);
    }
    for (const auto& file : files) {
      std::cout << "Probe results: " << file << "\n";
      if (options.plot) plot_probe_file(file);
    }
  }
  return 0;
}

}  // namespace reslab
