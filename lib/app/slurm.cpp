// reslab slurm: an experiment's grid as a Slurm job array and a dependent collect job.

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "app/commands.h"
#include "experiment/config.h"

namespace fs = std::filesystem;

namespace reslab {

namespace {

std::string quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+%@") ==
                        std::string::npos) {
    return s;
  }
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Throws when `value` would put a line (or a control character) of its own into a script: every value a script
/// is written from goes through here, quoted or not.
void check_one_line(const std::string& value, const std::string& what) {
  if (const int code = first_control_char(value); code >= 0) {
    throw std::invalid_argument(what + " " + shown_json(value, 200) + " holds a control character (code " +
                                std::to_string(code) + "); a Slurm script cannot carry it");
  }
}

/// A value for an #SBATCH line: Slurm reads the rest of the line unquoted, so only a plain word passes.
void check_sbatch_value(const std::string& value, const std::string& flag) {
  check_one_line(value, flag);
  if (value.size() > 200 || value.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                    "_-.:,+@%") != std::string::npos) {
    throw std::invalid_argument(flag + " '" + value +
                                "': expected at most 200 letters, digits and _ - . : , + @ % "
                                "(it goes into an #SBATCH line as it is)");
  }
}

std::string self_path() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot find the reslab program's own path (/proc/self/exe): " + ec.message());
  return p.string();
}

/// `command`'s standard output (its errors go to ours); throws when it exits non-zero.
std::string output_of(const std::string& command) {
  std::cout.flush();
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + command);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  if (status != 0) {
    throw std::runtime_error("the grid could not be listed (" + command + "; its error is above)");
  }
  return out;
}

void write_script(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    f.close();
    if (!f) throw std::runtime_error(tmp + ": could not be written");
  }
  fs::permissions(tmp, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                           fs::perms::others_exec);
  fs::rename(tmp, path);
}

}  // namespace

int run_slurm(const SlurmOptions& o) {
  if (o.nodes_per_run < 1)
    throw std::invalid_argument("--nodes-per-run " + std::to_string(o.nodes_per_run) + ": expected at least 1");
  if (o.tasks_per_node < 1)
    throw std::invalid_argument("--tasks-per-node " + std::to_string(o.tasks_per_node) + ": expected at least 1");
  if (o.cpus < 0)
    throw std::invalid_argument("--cpus " + std::to_string(o.cpus) + ": expected 0 (the cluster's default) or more");
  if (o.concurrency < 0)
    throw std::invalid_argument("--concurrency " + std::to_string(o.concurrency) + ": expected 0 (no limit) or more");
  if (o.gpus_per_task < 0 || o.gpus_per_task > 64) {
    throw std::invalid_argument("--gpus-per-task " + std::to_string(o.gpus_per_task) +
                                ": expected 0 (train on the CPU) to 64 GPUs per rank");
  }
  for (const auto& a : o.run_args) {
    for (const char* own : {"--out", "--index", "--list", "--overwrite", "--resume"}) {
      if (a == own || a.rfind(std::string(own) + "=", 0) == 0) {
        throw std::invalid_argument(std::string("'") + a + "' after --: reslab slurm sets " + own + " itself");
      }
    }
  }
  check_one_line(o.experiment, "the experiment file");
  check_one_line(o.out, "--out");
  for (const auto& a : o.run_args) check_one_line(a, "the argument after --");
  if (!o.partition.empty()) check_sbatch_value(o.partition, "--partition");
  if (!o.time.empty()) check_sbatch_value(o.time, "--time");
  const ExperimentConfig experiment = load_experiment(o.experiment);  // errors name the file and key now
  check_name(experiment.name, o.experiment + ": key 'name'");         // it names the jobs
  check_one_line(self_path(), "reslab's own path");
  const std::string reslab = self_path();
  const std::string exp_path = fs::absolute(o.experiment).lexically_normal().string();
  const std::string out = fs::absolute(o.out.empty() ? "runs/" + experiment.name : o.out).lexically_normal().string();
  check_one_line(exp_path, "the experiment file's path");
  for (const std::string& path : {out, fs::current_path().string()}) {
    check_one_line(path, "the path");
    if (path.find_first_of(" \t\n'\"") != std::string::npos) {
      throw std::invalid_argument("'" + path +
                                  "': #SBATCH lines cannot carry a path with spaces or quotes; use --out "
                                  "(and a working folder) without them");
    }
  }
  std::vector<std::string> run_args = o.run_args;
  if (o.gpus_per_task > 0) {
    // GPUs asked for: the runs train on them. A device after -- is kept unless it is the CPU, which would leave
    // them idle; without one, each rank takes its GPU (--device cuda: Slurm binds each task to its own GPUs, and
    // reslab picks cuda:LOCAL_RANK among several visible).
    std::optional<std::string> device;
    for (size_t i = 0; i < run_args.size(); ++i) {
      if (run_args[i] == "--device" && i + 1 < run_args.size()) device = run_args[i + 1];
      if (run_args[i].rfind("--device=", 0) == 0) device = run_args[i].substr(9);
    }
    if (device && (*device == "cpu" || device->rfind("cpu:", 0) == 0)) {
      throw std::invalid_argument("--gpus-per-task " + std::to_string(o.gpus_per_task) + " with '--device " + *device +
                                  "' after --: the runs would train on the CPU and leave the GPUs idle (drop "
                                  "--device, or give cuda)");
    }
    if (!device) {
      run_args.push_back("--device");
      run_args.push_back("cuda");
    }
  }
  std::string args;
  for (const auto& a : run_args) args += " " + quote(a);

  // The grid as `reslab run --list` sees it with these arguments (overrides such as --depths change it).
  const std::string listing = output_of(quote(reslab) + " run " + quote(exp_path) + " --list" + args);
  int64_t points = 0;
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) {
    // "<index>\t<name>\t<model>\t<dataset>": anything else (a warning) is not a grid point.
    const auto tab = line.find('\t');
    if (tab != std::string::npos && tab > 0 && line.find_first_not_of("0123456789") == tab) ++points;
  }
  if (points == 0) throw std::runtime_error(o.experiment + ": the grid has no points");

  const std::string dir = out + "/slurm";
  fs::create_directories(dir + "/logs");
  const std::string name = "reslab-" + experiment.name;
  const int64_t ranks = o.nodes_per_run * o.tasks_per_node;
  std::ostringstream common;
  if (!o.partition.empty()) common << "#SBATCH --partition=" << o.partition << "\n";
  if (!o.time.empty()) common << "#SBATCH --time=" << o.time << "\n";

  std::ostringstream array;
  array << "#!/bin/bash\n"
        << "# Written by reslab slurm: one array task per grid point of " << exp_path << ".\n"
        << "# Each task runs `reslab run --index $SLURM_ARRAY_TASK_ID --resume`: a task that is requeued or submitted\n"
        << "# again continues from its checkpoints, and a finished point is skipped.\n"
        << "#SBATCH --job-name=" << name << "\n"
        << "#SBATCH --array=0-" << points - 1 << (o.concurrency > 0 ? "%" + std::to_string(o.concurrency) : "") << "\n"
        << "#SBATCH --output=" << dir << "/logs/%A_%a.out\n"
        << "#SBATCH --nodes=" << o.nodes_per_run << "\n"
        << "#SBATCH --ntasks-per-node=" << o.tasks_per_node << "\n";
  if (o.cpus > 0) array << "#SBATCH --cpus-per-task=" << o.cpus << "\n";
  if (o.gpus_per_task > 0) array << "#SBATCH --gpus-per-task=" << o.gpus_per_task << "\n";
  array << common.str() << "set -euo pipefail\n"
        << "cd " << quote(fs::current_path().string()) << "\n";
  if (ranks > 1) {
    array << "# " << ranks << " data-parallel ranks per point: srun starts them, reslab reads SLURM_PROCID, "
          << "SLURM_STEP_NUM_TASKS and SLURM_JOB_NODELIST.\n";
  }
  if (o.cpus > 0) {
    // srun does not inherit --cpus-per-task from sbatch (Slurm 22.05 on): without this each rank gets one CPU.
    array << "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK\n";
  }
  array << "srun " << quote(reslab) << " run " << quote(exp_path) << " --out " << quote(out) << " --resume" << args
        << "\n";

  std::ostringstream collect;
  collect
      << "#!/bin/bash\n"
      << "# Written by reslab slurm: gathers whichever grid points finished (submit.sh makes it wait for the array).\n"
      << "#SBATCH --job-name=" << name << "-collect\n"
      << "#SBATCH --output=" << dir << "/logs/collect_%j.out\n"
      << "#SBATCH --ntasks=1\n"
      << common.str() << "set -euo pipefail\n"
      << "cd " << quote(fs::current_path().string()) << "\n"
      << quote(reslab) << " collect " << quote(out) << "\n";

  std::ostringstream submit;
  submit << "#!/bin/bash\n"
         << "# Submits the array, then the collect job to run after it (whatever its tasks' exit codes).\n"
         << "set -euo pipefail\n"
         << "array=$(sbatch --parsable " << quote(dir + "/array.sbatch") << ")\n"
         << "array=${array%%;*}\n"
         << "collect=$(sbatch --parsable --dependency=afterany:$array " << quote(dir + "/collect.sbatch") << ")\n"
         << "collect=${collect%%;*}\n"
         << "echo \"array job $array (" << points << " tasks), collect job $collect\"\n"
         << "echo \"$array $collect\" > " << quote(dir + "/jobs") << "\n";

  write_script(dir + "/array.sbatch", array.str());
  write_script(dir + "/collect.sbatch", collect.str());
  write_script(dir + "/submit.sh", submit.str());
  std::cout << "Slurm scripts for " << points << " grid points (" << ranks << " rank" << (ranks > 1 ? "s" : "")
            << " each"
            << (o.gpus_per_task > 0
                    ? ", " + std::to_string(o.gpus_per_task) + " GPU" + (o.gpus_per_task > 1 ? "s" : "") + " per rank"
                    : "")
            << ") in " << dir << "/:\n"
            << "  array.sbatch    one array task per point, logs in " << dir << "/logs/\n"
            << "  collect.sbatch  reslab collect " << out << "\n"
            << "  submit.sh       sbatch both, the collect job after the array\n";
  if (!o.submit) {
    std::cout << "Submit with: " << dir << "/submit.sh\n";
    return 0;
  }
  std::cout.flush();
  const int status = std::system(quote(dir + "/submit.sh").c_str());
  if (status != 0) {
    std::cerr << "error: " << dir << "/submit.sh failed (is sbatch on PATH and the cluster reachable?)\n";
    return 1;
  }
  return 0;
}

}  // namespace reslab
