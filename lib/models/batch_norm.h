#pragma once
// BatchNorm whose batch statistics can be taken over every data-parallel rank (synchronised BN) instead of
// this process's part of the batch. Without a reducer it is LibTorch's BatchNorm2d, unchanged.

#include <torch/torch.h>

#include <functional>

namespace reslab {

/// Sums a tensor over the data-parallel ranks in a way autograd differentiates (null: one process).
using StatReduce = std::function<torch::Tensor(const torch::Tensor&)>;

class SyncableBatchNorm2dImpl : public torch::nn::BatchNorm2dImpl {
 public:
  using torch::nn::BatchNorm2dImpl::BatchNorm2dImpl;
  /// In training with a reducer: normalises with the mean and variance of the whole global batch and updates
  /// the running statistics with them (the unbiased variance, as BatchNorm2d does). Otherwise BatchNorm2d.
  torch::Tensor forward(const torch::Tensor& input);
  void set_stat_reduce(StatReduce reduce) { reduce_ = std::move(reduce); }
  /// As BatchNorm2d prints itself (LibTorch does not export its own for subclasses).
  void pretty_print(std::ostream& stream) const override;

 private:
  StatReduce reduce_;
};
TORCH_MODULE(SyncableBatchNorm2d);

/// Gives every SyncableBatchNorm2d in `module` the reducer (null: back to per-rank statistics); returns how many.
int64_t set_batch_norm_sync(torch::nn::Module& module, const StatReduce& reduce);

}  // namespace reslab
