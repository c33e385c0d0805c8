#pragma once
// Cuts float batches from an in-memory dataset: epoch shuffling, the paper's augmentation, mean subtraction.

#include <vector>

#include "data/batch_source.h"
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
  /// Evaluation with one view per example even where the source offers more (an image folder's 10-crop).
  bool single_view = false;
};

/// Batches of an in-memory dataset: inputs are pixel/255 minus the per-pixel mean; padding is 0.
class BatchLoader : public BatchSource {
 public:
  /// `mean` is the per-pixel training mean (float, C x H x W, in [0, 1]); it is subtracted from every image.
  BatchLoader(const ImageDataset& data, torch::Tensor mean, LoaderOptions options);

  void set_epoch(int64_t epoch) override;
  int64_t batches_per_epoch() const override;
  /// Batch `index` (0-based) of the current epoch.
  Batch batch(int64_t index) const override;
  /// Only the examples [begin, end) of batch `index`, with the augmentation they have in the whole batch.
  Batch rows(int64_t index, int64_t begin, int64_t end) const override;
  int64_t size() const override { return data_.size(); }
  int64_t batch_size() const override { return options_.batch; }
  const LoaderOptions& options() const { return options_; }

 private:
  ImageDataset data_;
  torch::Tensor mean_;
  LoaderOptions options_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace reslab
