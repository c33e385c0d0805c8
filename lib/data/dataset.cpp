#include "data/dataset.h"

namespace reslab {

ImageDataset::ImageDataset(torch::Tensor images, torch::Tensor targets, int64_t classes)
    : images_(std::move(images)), targets_(std::move(targets)), classes_(classes) {
  TORCH_CHECK(images_.dim() == 4 && images_.scalar_type() == torch::kUInt8, "ImageDataset: images must be uint8 NCHW");
  TORCH_CHECK(targets_.dim() == 1 && targets_.scalar_type() == torch::kInt64, "ImageDataset: targets must be int64");
  TORCH_CHECK(images_.size(0) == targets_.size(0), "ImageDataset: ", images_.size(0), " images but ", targets_.size(0),
              " targets");
  images_ = images_.contiguous();
  targets_ = targets_.contiguous();
}

ImageDataset ImageDataset::subset(const torch::Tensor& indices) const {
  return ImageDataset(images_.index_select(0, indices), targets_.index_select(0, indices), classes_);
}

}  // namespace reslab
