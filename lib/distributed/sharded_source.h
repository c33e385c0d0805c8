#pragma once
// A data-parallel rank's view of the training batches: batch b of an epoch is the global batch b (the configured
// batch, in the same order and with the same augmentation as in one process), of which rank r gets the r-th of
// world_size equal parts.

#include <stdexcept>
#include <string>

#include "data/batch_source.h"

namespace reslab {

class ShardedSource : public BatchSource {
 public:
  /// Throws std::invalid_argument when the global batch does not split evenly into `world_size` parts.
  ShardedSource(BatchSource& global, int64_t rank, int64_t world_size)
      : global_(global), rank_(rank), world_(world_size) {
    if (global.batch_size() % world_size != 0) {
      throw std::invalid_argument("the batch of " + std::to_string(global.batch_size()) + " does not split evenly " +
                                  "across " + std::to_string(world_size) +
                                  " ranks: use a batch that is a multiple "
                                  "of the number of processes");
    }
  }
  void set_epoch(int64_t epoch) override { global_.set_epoch(epoch); }
  int64_t batches_per_epoch() const override { return global_.batches_per_epoch(); }
  /// This rank's part of global batch `index`.
  Batch batch(int64_t index) const override {
    const int64_t share = global_.batch_size() / world_;
    return global_.rows(index, rank_ * share, (rank_ + 1) * share);
  }
  int64_t size() const override { return global_.size(); }
  /// The global batch: an iteration still covers batch_size() examples of the epoch, across the ranks.
  int64_t batch_size() const override { return global_.batch_size(); }
  int64_t local_batch() const { return global_.batch_size() / world_; }

 private:
  BatchSource& global_;
  int64_t rank_, world_;
};

}  // namespace reslab
