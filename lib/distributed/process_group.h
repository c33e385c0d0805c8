#pragma once
// One data-parallel job's communication: a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT and one of LibTorch's
// c10d process groups over it: ProcessGroupGloo for ranks on CPUs (and wherever asked), ProcessGroupNCCL for ranks
// on GPUs where LibTorch was built with NCCL (PyPI's CUDA wheel; scripts/build-cuda). Every failure (a rank that
// died, one that hangs past the timeout, a rendezvous nobody joins) becomes a DistError that names this rank, the
// operation and the timeout; under NCCL a collective that hangs is ended by NCCL's watchdog after the timeout,
// which stops the process.

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "distributed/env.h"

namespace reslab {

/// A collective in flight (an all-reduce started during the backward pass).
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  /// Blocks until it is done; throws DistError when it failed.
  virtual void wait() = 0;
};

/// Which c10d process group carries the collectives. kAuto: NCCL for ranks on CUDA devices where this build has
/// it, Gloo otherwise.
enum class DistBackend { kAuto, kGloo, kNccl };
std::string to_string(DistBackend backend);  ///< "auto", "gloo", "nccl"
/// The backend `name` names (to_string's words); throws std::invalid_argument naming it.
DistBackend parse_dist_backend(const std::string& name);
/// Whether this reslab was built with ProcessGroupNCCL (a LibTorch with CUDA and NCCL, and NCCL's header).
bool nccl_available();
/// What `asked` means for ranks that train on `device`: kAuto becomes NCCL on a CUDA device where this build has
/// it, else Gloo. Throws std::invalid_argument, naming `what` and the value, for NCCL asked with a CPU device or
/// in a build without it.
DistBackend resolve_backend(DistBackend asked, const torch::Device& device, const std::string& what);

class Distributed {
 public:
  virtual ~Distributed() = default;
  /// Joins the job described by `env` (world_size > 1) over `backend` (Gloo, or NCCL for ranks on `device`, a
  /// CUDA device; resolve_backend first): waits up to `timeout` for every rank at the rendezvous; every later
  /// collective fails after `timeout` too. Throws DistError.
  static std::shared_ptr<Distributed> connect(const DistEnv& env, std::chrono::milliseconds timeout,
                                              DistBackend backend = DistBackend::kGloo,
                                              const torch::Device& device = torch::kCPU);

  const DistEnv& env() const { return env_; }
  int64_t rank() const { return env_.rank; }
  int64_t world_size() const { return env_.world_size; }
  bool is_root() const { return env_.rank == 0; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  /// The process group's name: "Gloo" or "NCCL".
  virtual std::string backend_name() const = 0;

  /// Sums `tensor` over the ranks, in place, and waits. `what` names the operation in errors.
  virtual void all_reduce_sum(torch::Tensor& tensor, const std::string& what) = 0;
  /// Starts summing `tensor` in place; the result is there after wait().
  virtual std::unique_ptr<PendingCollective> all_reduce_sum_async(torch::Tensor tensor, const std::string& what) = 0;
  /// Replaces `tensors` on every rank with rank 0's.
  virtual void broadcast_from_root(std::vector<torch::Tensor> tensors, const std::string& what) = 0;
  /// Returns once every rank has reached it.
  virtual void barrier(const std::string& what) = 0;
  /// Rank 0's `value` on every rank.
  int64_t broadcast_value(int64_t value, const std::string& what);
  /// Whether any rank passed true.
  bool any(bool value, const std::string& what);

 protected:
  Distributed(DistEnv env, std::chrono::milliseconds timeout) : env_(std::move(env)), timeout_(timeout) {}

 private:
  DistEnv env_;
  std::chrono::milliseconds timeout_;
};

/// Makes every parameter and buffer of `module` rank 0's (at the start, so that all ranks train one net).
void broadcast_module(Distributed& dist, torch::nn::Module& module, const std::string& what);

/// A sum over ranks that autograd differentiates (its gradient is the sum of the ranks' gradients): what
/// synchronised BatchNorm reduces its statistics with.
torch::Tensor differentiable_all_reduce_sum(Distributed& dist, const torch::Tensor& tensor);

}  // namespace reslab
