#pragma once
// What the trainer, the evaluator and the probes read batches from: an in-memory dataset (BatchLoader) or
// images decoded from files (ImageFolderLoader).

#include <torch/torch.h>

#include <cstdint>

namespace reslab {

struct Batch {
  torch::Tensor inputs;   ///< float32, (N x crops) x C x H x W, normalised as the source says
  torch::Tensor targets;  ///< int64, N
  /// Views of each example, consecutive in `inputs` (10-crop evaluation has 10); evaluation averages the
  /// softmax over them.
  int64_t crops = 1;
};

/// Batches in an epoch of `examples` at `batch` a batch: the last incomplete one is dropped or kept.
inline int64_t batches_in_epoch(int64_t examples, int64_t batch, bool drop_last) {
  return drop_last ? examples / batch : (examples + batch - 1) / batch;
}

/// Serves the batches of one epoch at a time. Every batch depends only on (seed, epoch, batch index), so a run
/// can be replayed or resumed from any position, and batches may be asked for in any order.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// Fixes the order of `epoch` (a permutation when shuffling, file order otherwise).
  virtual void set_epoch(int64_t epoch) = 0;
  virtual int64_t batches_per_epoch() const = 0;
  /// Batch `index` (0-based) of the current epoch.
  virtual Batch batch(int64_t index) const = 0;
  /// Examples [begin, end) of batch `index`, exactly as batch(index) has them (a data-parallel rank's share).
  /// This default cuts them from the whole batch; a source that can make only those overrides it.
  virtual Batch rows(int64_t index, int64_t begin, int64_t end) const {
    Batch b = batch(index);
    return {b.inputs.narrow(0, begin * b.crops, (end - begin) * b.crops), b.targets.narrow(0, begin, end - begin),
            b.crops};
  }
  /// Examples in the source.
  virtual int64_t size() const = 0;
  /// Examples per full batch.
  virtual int64_t batch_size() const = 0;
};

}  // namespace reslab
