#include "train/device.h"

#include <stdexcept>

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
}  // namespace

bool valid_device_name(const std::string& name) {
  return name == "cpu" || name == "cuda" || cuda_index(name) >= 0;
}

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
