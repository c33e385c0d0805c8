#include "train/device.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <thread>

namespace reslab {

namespace {
/// N of "cuda:N" (at most 3 digits), or -1 for any other spelling.
int64_t cuda_index(const std::string& name) {
  if (name.rfind("cuda:", 0) != 0 || name.size() <= 5 || name.size() > 8 ||
      name.find_first_not_of("0123456789", 5) != std::string::npos) {
    return -1;
  }
  return std::stoll(name.substr(5));
}

/// MemAvailable from /proc/meminfo, in bytes; nullopt where it cannot be read.
std::optional<int64_t> mem_available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

}  // namespace

void check_training_memory(const NetworkBase& model, const std::string& model_name, torch::Device device, int64_t batch,
                           int64_t ranks_here, const std::string& what) {
  if (!device.is_cpu()) return;
  const char* skip = std::getenv("RESLAB_SKIP_MEMORY_CHECK");
  if (skip != nullptr && std::string(skip) == "1") return;
  const auto available = mem_available_bytes();
  if (!available) return;
  const int64_t needed = estimate_training_bytes(model, batch) * ranks_here;
  if (needed <= *available) return;
  const auto mib = [](int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; };
  throw std::runtime_error(
      what + ": training " + model_name + " at batch " + std::to_string(batch) + " needs about " + mib(needed) +
      (ranks_here > 1 ? " for its " + std::to_string(ranks_here) + " ranks on this machine" : "") +
      " (activations kept for the backward pass: " + mib(activation_bytes(model, batch)) + ") but this machine has " +
      mib(*available) +
      " available (MemAvailable in /proc/meminfo); use a smaller batch, or set RESLAB_SKIP_MEMORY_CHECK=1 if the "
      "estimate is wrong");
}

int64_t usable_cores() {
  int64_t cores = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int64_t>(std::thread::hardware_concurrency());
  return std::max<int64_t>(cores, 1);
}

int64_t resolve_threads(int64_t requested, int64_t local_ranks) {
  if (requested > 0) return requested;
  int64_t cores = usable_cores();
  // Ranks bound to their own cores (Slurm) see only those; ranks that share the machine's cores split them.
  const auto machine = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (local_ranks > 1 && cores >= machine) cores /= local_ranks;
  return std::max<int64_t>(cores, 1);
}

bool valid_device_name(const std::string& name) { return name == "cpu" || name == "cuda" || cuda_index(name) >= 0; }

torch::Device parse_device(const std::string& name, const std::string& what) {
  if (!valid_device_name(name)) {
    throw std::invalid_argument(what + ": unknown device '" + name + "' (expected cpu, cuda or cuda:N)");
  }
  if (name == "cpu") return torch::kCPU;
  const int64_t index = cuda_index(name);
  if (!torch::cuda::is_available()) {
    throw std::runtime_error(what + ": '" + name +
                             "' asked for, but this LibTorch build or machine has no CUDA device (build reslab "
                             "against a CUDA LibTorch; see README, GPU)");
  }
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= count) {
    throw std::runtime_error(what + ": '" + name + "' asked for, but this machine has " + std::to_string(count) +
                             " CUDA device(s)");
  }
  return index < 0 ? torch::Device(torch::kCUDA) : torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

torch::Device parse_rank_device(const std::string& name, int64_t local_rank, const std::string& what) {
  const torch::Device device = parse_device(name, what);
  if (local_rank < 0 || !device.is_cuda() || device.has_index()) return device;
  const auto visible = static_cast<int64_t>(torch::cuda::device_count());
  return parse_device("cuda:" + std::to_string(visible > local_rank ? local_rank : 0), what + " (LOCAL_RANK)");
}

torch::Device device_of(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  for (const auto& b : module.buffers()) return b.device();
  return torch::kCPU;
}

Batch to_device(Batch batch, torch::Device device) {
  if (batch.inputs.device() != device) batch.inputs = batch.inputs.to(device, /*non_blocking=*/true);
  if (batch.targets.device() != device) batch.targets = batch.targets.to(device, /*non_blocking=*/true);
  return batch;
}

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace reslab
