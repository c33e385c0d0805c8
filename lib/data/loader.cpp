#include "data/loader.h"

#include "data/random.h"

namespace reslab {

BatchLoader::BatchLoader(const ImageDataset& data, torch::Tensor mean, LoaderOptions options)
    : data_(data), mean_(mean.to(torch::kFloat32).contiguous()), options_(options) {
  TORCH_CHECK(options_.batch > 0, "BatchLoader: batch must be positive, got ", options_.batch);
  TORCH_CHECK(data_.size() > 0, "BatchLoader: empty dataset");
  TORCH_CHECK(mean_.sizes() == data_.images().sizes().slice(1), "BatchLoader: mean shape ", mean_.sizes(),
              " does not match the images");
  TORCH_CHECK(options_.pad >= 0 && options_.pad < data_.height() && options_.pad < data_.width(),
              "BatchLoader: pad must be in [0, image size)");
  set_epoch(0);
}

void BatchLoader::set_epoch(int64_t epoch) {
  epoch_ = epoch;
  order_ = epoch_order(data_.size(), options_.shuffle, options_.seed, epoch);
}

int64_t BatchLoader::batches_per_epoch() const {
  return batches_in_epoch(data_.size(), options_.batch, options_.drop_last);
}

Batch BatchLoader::batch(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < batches_per_epoch(), "BatchLoader: batch ", index, " out of range");
  return rows(index, 0, std::min(options_.batch, data_.size() - index * options_.batch));
}

Batch BatchLoader::rows(int64_t index, int64_t first, int64_t last) const {
  TORCH_CHECK(index >= 0 && index < batches_per_epoch(), "BatchLoader: batch ", index, " out of range");
  const int64_t begin = index * options_.batch;
  const int64_t full = std::min(options_.batch, data_.size() - begin);
  TORCH_CHECK(0 <= first && first <= last && last <= full, "BatchLoader: rows [", first, ", ", last, ") of a batch of ",
              full);
  const int64_t count = last - first;
  const int64_t C = data_.channels(), H = data_.height(), W = data_.width();

  auto inputs = torch::empty(
      {count, C, H, W},
      torch::TensorOptions()
          .dtype(torch::kFloat32)
          .memory_format(options_.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  auto targets = torch::empty({count}, torch::kInt64);
  const auto st = inputs.strides();
  const int64_t sn = st[0], sc = st[1], sh = st[2], sw = st[3];
  float* out = inputs.data_ptr<float>();
  int64_t* tgt = targets.data_ptr<int64_t>();
  const uint8_t* images = data_.images().data_ptr<uint8_t>();
  const int64_t* labels = data_.targets().data_ptr<int64_t>();
  const float* mean = mean_.data_ptr<float>();
  const int64_t image_size = C * H * W;
  constexpr float kScale = 1.0f / 255.0f;

  Rng rng(mix_seed(options_.seed ^ mix_seed((static_cast<uint64_t>(epoch_) << 32) ^ static_cast<uint64_t>(index)) ^
                   0x5eed));
  const int64_t pad = options_.pad;
  for (int64_t j = 0; j < last; ++j) {
    int64_t dy = 0, dx = 0;
    bool flip = false;
    if (options_.augment) {
      // Crop offsets into the padded image, relative to the original: -pad..pad. Drawn for the rows before
      // `first` too, so that a row's augmentation does not depend on which rows are asked for.
      dy = static_cast<int64_t>(rng.below(2 * pad + 1)) - pad;
      dx = static_cast<int64_t>(rng.below(2 * pad + 1)) - pad;
      flip = rng.below(2) == 1;
    }
    if (j < first) continue;
    const int64_t i = j - first;
    const int64_t src = order_[begin + j];
    tgt[i] = labels[src];
    const uint8_t* img = images + src * image_size;
    float* dst = out + i * sn;
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t y = 0; y < H; ++y) {
        const int64_t sy = y + dy;
        const bool row_inside = sy >= 0 && sy < H;
        const int64_t row = (c * H + sy) * W;
        for (int64_t x = 0; x < W; ++x) {
          const int64_t sx = (flip ? W - 1 - x : x) + dx;
          float v = 0.0f;  // zero padding, after mean subtraction
          if (row_inside && sx >= 0 && sx < W) v = img[row + sx] * kScale - mean[row + sx];
          dst[c * sc + y * sh + x * sw] = v;
        }
      }
    }
  }
  return {inputs, targets, 1};
}

}  // namespace reslab
