#pragma once
// Cuts float batches from an in-memory dataset: epoch shuffling, the paper's augmentation, mean subtraction.

#include <vector>

#include "data/dataset.h"

namespace reslab {

struct LoaderOptions {
  int64_t batch = 128;
  /// New order every epoch, drawn from (seed, epoch).
  bool shuffle = true;
  /// The paper's CIFAR augmentation: `pad` zero pixels on each side, a random crop of the original size,
  /// a horizontal flip with probability 1/2; drawn per image from (seed, epoch, batch).
  bool augment = false;
  int64_t pad = 4;
  /// Drop the last incomplete batch (training); evaluation keeps it.
  bool drop_last = true;
  uint64_t seed = 0;
  /// Write batches in channels-last layout (NHWC in memory), the layout the networks run fastest in.
  bool channels_last = true;
};

struct Batch {
  torch::Tensor inputs;   ///< float32, N x C x H x W, pixel/255 minus the per-pixel mean; padding is 0
  torch::Tensor targets;  ///< int64, N
};

/// Serves the batches of one epoch at a time. Every batch depends only on (seed, epoch, batch index), so a run
/// can be replayed or resumed from any position.
class BatchLoader {
 public:
  /// `mean` is the per-pixel training mean (float, C x H x W, in [0, 1]); it is subtracted from every image.
  BatchLoader(const ImageDataset& data, torch::Tensor mean, LoaderOptions options);

  /// Fixes the order of `epoch` (a permutation when shuffling, file order otherwise).
  void set_epoch(int64_t epoch);
  int64_t batches_per_epoch() const;
  /// Batch `index` (0-based) of the current epoch.
  Batch batch(int64_t index) const;
  int64_t size() const { return data_.size(); }
  const LoaderOptions& options() const { return options_; }

 private:
  ImageDataset data_;
  torch::Tensor mean_;
  LoaderOptions options_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace reslab
