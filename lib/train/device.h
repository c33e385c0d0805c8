#pragma once
// Where a run computes: the CPU, or a CUDA device when LibTorch was built with CUDA.

#include <torch/torch.h>

#include <string>

#include "data/batch_source.h"

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

/// Waits for the work queued on `device` (CUDA launches are asynchronous); nothing on the CPU.
void synchronize(torch::Device device);

}  // namespace reslab
