#include "distributed/env.h"

#include <cstdlib>

namespace reslab {

namespace {

int64_t parse_int(const std::string& var, const std::string& text, int64_t lo, int64_t hi, const std::string& want) {
  const bool digits = !text.empty() && text.size() <= 12 && text.find_first_not_of("0123456789") == std::string::npos;
  const int64_t v = digits ? std::stoll(text) : -1;
  if (!digits || v < lo || v > hi) throw DistError(var + " is '" + text + "': expected " + want);
  return v;
}

/// The leading count of a Slurm tasks-per-node value: "2(x3),1" -> 2.
int64_t leading_count(const std::string& var, const std::string& text) {
  const auto end = text.find_first_not_of("0123456789");
  return parse_int(var, text.substr(0, end), 1, 1 << 20, "a task count such as 2 or 2(x3)");
}

}  // namespace

std::string DistEnv::describe() const {
  if (!distributed()) return "single process";
  return "rank " + std::to_string(rank) + " of " + std::to_string(world_size);
}

std::string first_slurm_host(const std::string& nodelist) {
  const auto bad = [&] {
    return DistError("SLURM_JOB_NODELIST is '" + nodelist + "': expected host names such as node[01-04],gpu7");
  };
  if (nodelist.empty() || nodelist[0] == ',' || nodelist[0] == '[') throw bad();
  const auto stop = nodelist.find_first_of(",[");
  if (stop == std::string::npos || nodelist[stop] == ',') return nodelist.substr(0, stop);
  // prefix[range,...]suffix: the first number of the first range, zero padding kept.
  const auto close = nodelist.find(']', stop);
  if (close == std::string::npos) throw bad();
  const std::string inside = nodelist.substr(stop + 1, close - stop - 1);
  const std::string first = inside.substr(0, inside.find_first_of("-,"));
  if (first.empty() || first.find_first_not_of("0123456789") != std::string::npos) throw bad();
  const auto suffix_end = nodelist.find(',', close);
  return nodelist.substr(0, stop) + first +
         nodelist.substr(close + 1, suffix_end == std::string::npos ? std::string::npos : suffix_end - close - 1);
}

DistEnv read_dist_env(const std::function<std::optional<std::string>(const std::string&)>& get) {
  DistEnv env;
  const auto value = [&](const std::string& var) -> std::optional<std::string> {
    auto v = get(var);
    if (v && v->empty()) return std::nullopt;
    return v;
  };
  constexpr int64_t kMaxRanks = 1 << 20;
  if (auto world = value("WORLD_SIZE")) {
    env.source = "torchrun";
    env.world_size = parse_int("WORLD_SIZE", *world, 1, kMaxRanks, "a positive number of processes");
    const auto rank = value("RANK");
    if (!rank) {
      if (env.world_size > 1) throw DistError("WORLD_SIZE is " + *world + " but RANK is not set");
    } else {
      env.rank =
          parse_int("RANK", *rank, 0, env.world_size - 1,
                    "a rank from 0 to " + std::to_string(env.world_size - 1) + " (WORLD_SIZE is " + *world + ")");
    }
    env.local_rank = env.rank;
    env.local_world_size = env.world_size;
    if (auto v = value("LOCAL_WORLD_SIZE")) {
      env.local_world_size = parse_int("LOCAL_WORLD_SIZE", *v, 1, env.world_size,
                                       "1 to WORLD_SIZE (" + std::to_string(env.world_size) + ")");
    }
    if (auto v = value("LOCAL_RANK")) {
      env.local_rank = parse_int("LOCAL_RANK", *v, 0, env.local_world_size - 1,
                                 "0 to LOCAL_WORLD_SIZE - 1 (" + std::to_string(env.local_world_size - 1) + ")");
    }
    if (env.world_size > 1) {
      const auto addr = value("MASTER_ADDR");
      if (!addr) throw DistError("WORLD_SIZE is " + *world + " but MASTER_ADDR (rank 0's host) is not set");
      env.master_addr = *addr;
      const auto port = value("MASTER_PORT");
      if (!port) throw DistError("WORLD_SIZE is " + *world + " but MASTER_PORT (rank 0's port) is not set");
      env.master_port = parse_int("MASTER_PORT", *port, 1, 65535, "a TCP port, 1 to 65535");
    }
    return env;
  }
  if (!value("SLURM_STEP_ID") || !value("SLURM_PROCID")) return env;  // not inside srun: a single process
  auto tasks = value("SLURM_STEP_NUM_TASKS");
  std::string tasks_var = "SLURM_STEP_NUM_TASKS";
  if (!tasks) {
    tasks = value("SLURM_NTASKS");
    tasks_var = "SLURM_NTASKS";
  }
  if (!tasks) return env;
  env.world_size = parse_int(tasks_var, *tasks, 1, kMaxRanks, "a positive number of tasks");
  if (env.world_size == 1) return env;
  env.source = "slurm";
  env.rank = parse_int("SLURM_PROCID", *value("SLURM_PROCID"), 0, env.world_size - 1,
                       "0 to " + std::to_string(env.world_size - 1) + " (" + tasks_var + " is " + *tasks + ")");
  if (auto v = value("SLURM_STEP_TASKS_PER_NODE")) {
    env.local_world_size = std::min(leading_count("SLURM_STEP_TASKS_PER_NODE", *v), env.world_size);
  } else if (auto v2 = value("SLURM_NTASKS_PER_NODE")) {
    env.local_world_size = std::min(leading_count("SLURM_NTASKS_PER_NODE", *v2), env.world_size);
  }
  if (auto v = value("SLURM_LOCALID")) {
    env.local_rank = parse_int("SLURM_LOCALID", *v, 0, kMaxRanks, "a task index on this node");
  }
  if (auto addr = value("MASTER_ADDR")) {
    env.master_addr = *addr;
  } else {
    auto nodes = value("SLURM_STEP_NODELIST");
    if (!nodes) nodes = value("SLURM_JOB_NODELIST");
    if (!nodes) throw DistError("inside a Slurm step of " + *tasks + " tasks but SLURM_JOB_NODELIST is not set");
    env.master_addr = first_slurm_host(*nodes);
  }
  if (auto port = value("MASTER_PORT")) {
    env.master_port = parse_int("MASTER_PORT", *port, 1, 65535, "a TCP port, 1 to 65535");
  } else {
    // One port per job, so that two jobs' steps on one node do not meet: 20000 to 39999.
    const auto job = value("SLURM_JOB_ID");
    const int64_t id = job ? parse_int("SLURM_JOB_ID", *job, 0, int64_t{1} << 40, "a job number") : 0;
    env.master_port = 20000 + id % 20000;
  }
  return env;
}

DistEnv read_dist_env() {
  return read_dist_env([](const std::string& var) -> std::optional<std::string> {
    const char* v = std::getenv(var.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace reslab
