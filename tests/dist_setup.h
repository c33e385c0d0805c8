#pragma once
// What the data-parallel test and its worker processes share: a small dataset, its loader, the model and the
// optimizer, all in float64 so that a two-rank run and one process agree to rounding, not to float32 noise.

#include <torch/torch.h>

#include <memory>

#include "data/loader.h"
#include "models/registry.h"
#include "optim/sgd.h"

namespace reslab::testing {

/// A source whose batches are float64 (the model is), with rows() cut the same way as the wrapped source's.
class Float64Source : public BatchSource {
 public:
  explicit Float64Source(std::unique_ptr<BatchSource> inner) : inner_(std::move(inner)) {}
  void set_epoch(int64_t epoch) override { inner_->set_epoch(epoch); }
  int64_t batches_per_epoch() const override { return inner_->batches_per_epoch(); }
  Batch batch(int64_t index) const override { return to64(inner_->batch(index)); }
  Batch rows(int64_t index, int64_t begin, int64_t end) const override { return to64(inner_->rows(index, begin, end)); }
  int64_t size() const override { return inner_->size(); }
  int64_t batch_size() const override { return inner_->batch_size(); }

 private:
  static Batch to64(Batch b) {
    b.inputs = b.inputs.to(torch::kFloat64);
    return b;
  }
  std::unique_ptr<BatchSource> inner_;
};

constexpr int64_t kDistBatch = 32;  // the global batch
constexpr int64_t kDistSteps = 10;  // crosses an epoch (8 batches of 32 in 256 examples)

inline std::unique_ptr<BatchSource> dist_test_loader() {
  torch::manual_seed(11);
  auto images = torch::randint(0, 256, {256, 1, 16, 16}, torch::kUInt8);
  auto targets = torch::randint(0, 10, {256}, torch::kInt64);
  ImageDataset data(images, targets, 10);
  LoaderOptions o;
  o.batch = kDistBatch;
  o.augment = true;
  o.pad = 2;
  o.seed = 5;
  auto mean = images.to(torch::kFloat32).mean(0) / 255.0;
  return std::make_unique<Float64Source>(std::make_unique<BatchLoader>(data, mean, o));
}

inline std::shared_ptr<NetworkBase> dist_test_model() {
  torch::manual_seed(3);
  auto model = build_model("resnet8", ModelSpec{{1, 16, 16}, 10, parse_shortcut("A")});
  model->to(torch::kFloat64);
  to_channels_last(*model);
  return model;
}

inline std::unique_ptr<torch::optim::SGD> dist_test_sgd(NetworkBase& model) {
  return make_sgd(model.parameters(), SgdConfig{0.1, 0.9, 1e-4, false});
}

}  // namespace reslab::testing
