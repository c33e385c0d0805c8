// Batches: epoch shuffling, the paper's augmentation (pad, crop, flip), mean subtraction, determinism.
#include <set>

#include "data/loader.h"
#include "data/random.h"
#include "test_util.h"

namespace reslab {
namespace {

/// n distinct 1 x 6 x 5 images with random pixels; label i % 10.
ImageDataset random_images(int64_t n, int64_t channels = 1) {
  torch::manual_seed(3);
  auto images = torch::randint(0, 256, {n, channels, 6, 5}, torch::kInt64).to(torch::kUInt8);
  return ImageDataset(images, torch::arange(n, torch::kInt64).remainder(10), 10);
}

torch::Tensor normalised(const ImageDataset& d, int64_t i, const torch::Tensor& mean) {
  return d.images()[i].to(torch::kFloat32) / 255.0 - mean;
}

TEST(Loader, WithoutAugmentationServesTheMeanSubtractedImages) {
  auto data = random_images(10, 3);
  auto mean = data.images().to(torch::kFloat32).mean(0) / 255.0;
  LoaderOptions o;
  o.batch = 4;
  o.shuffle = false;
  o.drop_last = false;
  BatchLoader loader(data, mean, o);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  Batch b = loader.batch(2);  // the last, short batch
  ASSERT_EQ(b.inputs.size(0), 2);
  EXPECT_TRUE(b.inputs.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(b.inputs[1], normalised(data, 9, mean), 1e-6, 1e-6));
  EXPECT_EQ(b.targets[1].item<int64_t>(), 9);
  o.drop_last = true;
  EXPECT_EQ(BatchLoader(data, mean, o).batches_per_epoch(), 2);
}

TEST(Loader, EachEpochIsAPermutationAndEpochsDiffer) {
  auto data = random_images(64);
  auto mean = torch::zeros({1, 6, 5});
  LoaderOptions o;
  o.batch = 16;
  o.seed = 11;
  BatchLoader loader(data, mean, o);
  std::vector<std::vector<int64_t>> orders;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    loader.set_epoch(epoch);
    std::vector<int64_t> order;
    for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
      auto t = loader.batch(b).inputs;
      for (int64_t i = 0; i < t.size(0); ++i) {
        // Recover the source image by matching pixels.
        for (int64_t j = 0; j < data.size(); ++j) {
          if (torch::allclose(t[i], normalised(data, j, mean))) {
            order.push_back(j);
            break;
          }
        }
      }
    }
    ASSERT_EQ(order.size(), 64u);
    EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 64u);
    orders.push_back(order);
  }
  EXPECT_NE(orders[0], orders[1]);
}

TEST(Loader, AugmentationIsAShiftedPossiblyFlippedCropWithZeroPadding) {
  auto data = random_images(32);
  auto mean = data.images().to(torch::kFloat32).mean(0) / 255.0;
  LoaderOptions o;
  o.batch = 32;
  o.shuffle = false;
  o.augment = true;
  o.pad = 2;
  BatchLoader loader(data, mean, o);
  Batch b = loader.batch(0);
  int flips = 0, shifted = 0;
  for (int64_t i = 0; i < 32; ++i) {
    auto padded = torch::constant_pad_nd(normalised(data, i, mean), {2, 2, 2, 2}, 0.0);
    bool found = false;
    for (int64_t dy = 0; dy <= 4 && !found; ++dy) {
      for (int64_t dx = 0; dx <= 4 && !found; ++dx) {
        auto crop = padded.slice(1, dy, dy + 6).slice(2, dx, dx + 5);
        for (bool flip : {false, true}) {
          auto candidate = flip ? crop.flip({2}) : crop;
          if (torch::allclose(b.inputs[i], candidate, 1e-6, 1e-6)) {
            found = true;
            flips += flip;
            shifted += (dy != 2 || dx != 2);
            break;
          }
        }
      }
    }
    EXPECT_TRUE(found) << "image " << i << " is no crop of its padded source";
  }
  // Drawn per image: with 32 images, some flip and some do not, and most are shifted.
  EXPECT_GT(flips, 4);
  EXPECT_LT(flips, 28);
  EXPECT_GT(shifted, 16);
}

TEST(Loader, BatchesDependOnlyOnSeedEpochAndIndex) {
  auto data = random_images(48);
  auto mean = torch::zeros({1, 6, 5});
  LoaderOptions o;
  o.batch = 16;
  o.augment = true;
  o.seed = 5;
  BatchLoader a(data, mean, o), b(data, mean, o);
  a.set_epoch(3);
  b.set_epoch(0);
  (void)b.batch(0);
  b.set_epoch(3);
  EXPECT_TRUE(torch::equal(a.batch(2).inputs, b.batch(2).inputs));
  o.seed = 6;
  BatchLoader c(data, mean, o);
  c.set_epoch(3);
  EXPECT_FALSE(torch::equal(a.batch(2).inputs, c.batch(2).inputs));
}

TEST(Random, PermutationIsUniformEnough) {
  // Position of element 0 over many seeds: roughly uniform over 4 slots.
  std::vector<int> counts(4, 0);
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    auto p = permutation(4, seed);
    counts[std::find(p.begin(), p.end(), 0) - p.begin()]++;
  }
  for (int c : counts) EXPECT_NEAR(c, 1000, 120);
  Rng rng(1);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(rng.below(9), 9u);
}

}  // namespace
}  // namespace reslab
