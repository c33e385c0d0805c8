#pragma once
// Where a run computes: the CPU, or a CUDA device when LibTorch was built with CUDA.

#include <torch/torch.h>

#include <string>

#include "data/batch_source.h"
#include "models/network.h"

namespace reslab {

/// Whether `name` is "cpu", "cuda" or "cuda:N" (the spelling alone; parse_device checks the machine).
bool valid_device_name(const std::string& name);

/// "cpu", "cuda" or "cuda:N". Throws std::invalid_argument naming `what` and the value when it is none of
/// these, and std::runtime_error when this LibTorch build or machine has no such CUDA device.
torch::Device parse_device(const std::string& name, const std::string& what);

/// parse_device for local rank `local_rank` of a data-parallel job (negative: not in one): there "cuda" means this
/// rank's GPU on its machine, cuda:LOCAL_RANK, or cuda:0 where the job lets each rank see one GPU (Slurm's
/// per-task binding). Explicit indices and "cpu" are taken as given.
torch::Device parse_rank_device(const std::string& name, int64_t local_rank, const std::string& what);

/// The device of a module's first parameter (or buffer); the CPU for a module that has neither.
torch::Device device_of(const torch::nn::Module& module);

/// The batch with its tensors on `device` (the same batch when they already are).
Batch to_device(Batch batch, torch::Device device);

/// Threads for LibTorch's intra-op pool: `requested`, or when 0 the cores this process may run on (its CPU
/// affinity: a Slurm task's, a taskset's) shared among the `local_ranks` processes of a data-parallel job on
/// this machine.
int64_t resolve_threads(int64_t requested, int64_t local_ranks = 1);

/// The cores this process may run on: its CPU affinity (a Slurm task's, a taskset's), else every core of the
/// machine; at least 1.
int64_t usable_cores();

/// Stops a CPU run that cannot fit before it starts, rather than hours later or through the kernel's OOM
/// killer: throws std::runtime_error naming `what` (the run), `model_name` and the sizes when training `model`
/// at `batch` on each of `ranks_here` processes needs more than MemAvailable. The data and the model are
/// already in memory when it is called, so MemAvailable is what training has left. Nothing on a GPU, nor with
/// RESLAB_SKIP_MEMORY_CHECK=1.
void check_training_memory(const NetworkBase& model, const std::string& model_name, torch::Device device, int64_t batch,
                           int64_t ranks_here, const std::string& what);

/// Waits for the work queued on `device` (CUDA launches are asynchronous); nothing on the CPU.
void synchronize(torch::Device device);

}  // namespace reslab
