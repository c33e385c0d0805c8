#pragma once
// Which process of a data-parallel job this is: torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) or, inside a Slurm job step (srun), Slurm's (SLURM_PROCID,
// SLURM_STEP_NUM_TASKS or SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST, SLURM_JOB_ID) mapped onto them.

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

namespace reslab {

/// A wrong or missing launch variable, or a collective that failed (a rank that died, hung or disagrees).
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DistEnv {
  int64_t rank = 0, world_size = 1;
  int64_t local_rank = 0, local_world_size = 1;  ///< among the ranks on this machine
  std::string master_addr = "127.0.0.1";         ///< where rank 0 listens (the rendezvous store)
  int64_t master_port = 29500;
  std::string source;  ///< "torchrun", "slurm", or "" (a single process)
  bool distributed() const { return world_size > 1; }
  /// "rank 1 of 2" (or "single process").
  std::string describe() const;
};

/// Reads the launch variables through `get` (the environment in production, a map in tests). torchrun's
/// WORLD_SIZE wins over Slurm's; Slurm's are used only inside a job step (SLURM_STEP_ID set), so that a batch
/// script's own process is not mistaken for rank 0 of its job's tasks. Throws DistError naming the variable,
/// its value and what was expected.
DistEnv read_dist_env(const std::function<std::optional<std::string>(const std::string&)>& get);
/// The same from this process's environment.
DistEnv read_dist_env();

/// The first host of a Slurm node list: "node[07-09,12],gpu1" -> "node07"; throws DistError when malformed.
std::string first_slurm_host(const std::string& nodelist);

}  // namespace reslab
