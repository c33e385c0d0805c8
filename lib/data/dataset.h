#pragma once
// An image-classification dataset decoded once into memory: one uint8 tensor of images and one of labels.

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace reslab {

/// Which part of a dataset to read, as in torch::data::datasets::MNIST.
enum class Mode { kTrain, kTest };

/// Thrown for unusable data: names the file (or folder) and what is wrong with it.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Images (uint8, N x C x H x W, contiguous) and targets (int64, N) held in memory.
class ImageDataset {
 public:
  ImageDataset() = default;
  ImageDataset(torch::Tensor images, torch::Tensor targets, int64_t classes);

  const torch::Tensor& images() const { return images_; }
  const torch::Tensor& targets() const { return targets_; }
  int64_t size() const { return targets_.defined() ? targets_.size(0) : 0; }
  int64_t classes() const { return classes_; }
  int64_t channels() const { return images_.size(1); }
  int64_t height() const { return images_.size(2); }
  int64_t width() const { return images_.size(3); }

  /// The examples at `indices` (int64), copied into a new contiguous dataset.
  ImageDataset subset(const torch::Tensor& indices) const;

 private:
  torch::Tensor images_;
  torch::Tensor targets_;
  int64_t classes_ = 0;
};

}  // namespace reslab
