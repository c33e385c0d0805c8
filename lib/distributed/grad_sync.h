#pragma once
// Data-parallel gradients: parameters grouped into flat buckets in the order the backward pass produces them;
// each bucket's all-reduce starts as soon as its last gradient arrives (while the backward pass goes on), in
// bucket order on every rank, and the averaged gradients are written back to .grad after the pass.

#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <vector>

#include "distributed/process_group.h"

namespace reslab {

class GradientSync {
 public:
  /// `bucket_bytes`: the most gradient bytes per all-reduce (a bucket holds at least one parameter).
  GradientSync(Distributed& dist, std::vector<torch::Tensor> params, int64_t bucket_bytes);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  /// Arms the hooks for the backward pass that follows (other backward passes, a probe's, are left alone).
  void begin_backward();
  /// Starts what has not started (parameters that got no gradient count as zero), waits for every bucket and
  /// writes the mean over ranks into each parameter's .grad. Throws DistError when a collective failed.
  void finish_backward();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  /// Buckets whose all-reduce began inside the last backward pass, before it ended (overlap).
  int64_t launched_during_backward() const { return launched_early_; }

 private:
  struct Slot {
    int64_t param, offset, numel;
  };
  struct Bucket {
    torch::Tensor flat;
    std::vector<Slot> slots;
    int64_t pending = 0;
    std::vector<bool> filled;
    std::unique_ptr<PendingCollective> work;
  };
  void on_grad(int64_t param, const torch::Tensor& grad);
  void launch_ready();

  Distributed& dist_;
  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<int64_t, int64_t>> where_;  ///< per parameter: bucket, slot
  std::vector<unsigned> hooks_;
  std::mutex mutex_;
  bool armed_ = false;
  size_t next_launch_ = 0;
  int64_t launched_early_ = 0;
};

}  // namespace reslab
