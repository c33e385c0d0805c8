// IDX and CIFAR readers on files the tests write, their errors, and the train/validation/test splits.
#include <zlib.h>

#include "data/cifar.h"
#include "data/datasets.h"
#include "data/idx.h"
#include "test_util.h"

namespace reslab {
namespace {

using testing::TempDir;
using testing::write_bytes;

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

std::vector<uint8_t> ramp(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 % 256);
  return v;
}

/// Writes an MNIST-layout folder with `n` 4x3 images per split; labels are i % 10.
void write_idx_folder(const std::string& dir, uint32_t n, bool gz) {
  std::vector<uint8_t> labels(n);
  for (uint32_t i = 0; i < n; ++i) labels[i] = static_cast<uint8_t>(i % 10);
  for (const char* prefix : {"train", "t10k"}) {
    const auto images = idx_bytes({n, 4, 3}, ramp(n * 12));
    const auto lab = idx_bytes({n}, labels);
    const std::string ext = gz ? ".gz" : "";
    if (gz) {
      write_gz(dir + "/" + prefix + "-images-idx3-ubyte" + ext, images);
      write_gz(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, lab);
    } else {
      write_bytes(dir + "/" + prefix + "-images-idx3-ubyte", images);
      write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte", lab);
    }
  }
}

TEST(Idx, ReadsPlainAndGzippedFolders) {
  for (bool gz : {false, true}) {
    TempDir dir;
    write_idx_folder(dir.path(), 5, gz);
    ImageDataset d = read_idx_dataset(dir.path(), Mode::kTrain, 10);
    ASSERT_EQ(d.size(), 5);
    EXPECT_EQ(d.images().sizes(), (std::vector<int64_t>{5, 1, 4, 3}));
    EXPECT_EQ(d.targets()[3].item<int64_t>(), 3);
    EXPECT_EQ(d.images()[1][0][0][0].item<uint8_t>(), static_cast<uint8_t>(12 * 7 % 256));
    EXPECT_EQ(read_idx_dataset(dir.path(), Mode::kTest, 10).size(), 5);
  }
}

TEST(Idx, RejectsBadFilesNamingThem) {
  TempDir dir;
  const std::string path = dir.file("x-idx3-ubyte");
  write_bytes(path, idx_bytes({3, 2, 2}, ramp(11)));
  testing::expect_error<DataError>([&] { read_idx_ubyte(path, 3); }, {path, "truncated", "12", "11"});
  write_bytes(path, idx_bytes({3, 2, 2}, ramp(13)));
  // Reading stops one byte past what the header declares (so a gzip bomb never expands in memory).
  testing::expect_error<DataError>([&] { read_idx_ubyte(path, 3); },
                                   {path, "expands past the 28 bytes its header declares"});
  auto bad_magic = idx_bytes({3, 2, 2}, ramp(12));
  bad_magic[0] = 0x1f;
  write_bytes(path, bad_magic);
  testing::expect_error<DataError>([&] { read_idx_ubyte(path, 3); }, {path, "magic"});
  auto bad_type = idx_bytes({3, 2, 2}, ramp(12));
  bad_type[2] = 0x0d;
  write_bytes(path, bad_type);
  testing::expect_error<DataError>([&] { read_idx_ubyte(path, 3); }, {path, "0x0d", "unsigned byte"});
  write_bytes(path, idx_bytes({1u << 16, 1u << 24, 1u << 24}, ramp(4)));  // would wrap a 64-bit count
  testing::expect_error<DataError>([&] { read_idx_ubyte(path, 3); }, {path, "impossible size"});
  write_bytes(path, idx_bytes({12}, ramp(12)));
  testing::expect_error<DataError>([&] { read_idx_ubyte(path, 3); }, {path, "1 dimensions, expected 3"});
  write_bytes(path, {0, 0});
  testing::expect_error<DataError>([&] { read_idx_ubyte(path, 3); }, {path, "truncated"});
  testing::expect_error<DataError>([&] { read_idx_ubyte(dir.file("missing"), 3); }, {"missing", "no such file"});
}

TEST(Idx, RejectsTruncatedGzipStream) {
  TempDir dir;
  const std::string full = dir.file("full.gz");
  write_gz(full, idx_bytes({50, 10, 10}, ramp(5000)));
  std::ifstream in(full, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(bytes.size() / 2);
  const std::string cut = dir.file("cut.gz");
  write_bytes(cut, bytes);
  testing::expect_error<DataError>([&] { read_idx_ubyte(cut, 3); }, {cut, "gzip"});
}

TEST(Idx, RejectsLabelsOutOfRangeAndCountMismatch) {
  TempDir dir;
  write_idx_folder(dir.path(), 12, false);
  testing::expect_error<DataError>([&] { read_idx_dataset(dir.path(), Mode::kTrain, 5); },
                                   {"train-labels-idx1-ubyte", "label 9", "0..4"});
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_bytes({11}, std::vector<uint8_t>(11, 1)));
  testing::expect_error<DataError>([&] { read_idx_dataset(dir.path(), Mode::kTrain, 10); },
                                   {"11 labels for 12 images"});
  testing::expect_error<DataError>([&] { read_idx_dataset(dir.file("nowhere"), Mode::kTrain, 10); },
                                   {"nowhere", "train-images-idx3-ubyte"});
}

std::vector<uint8_t> cifar_records(int n, int label_bytes, int bad_label_at = -1) {
  std::vector<uint8_t> out;
  for (int i = 0; i < n; ++i) {
    if (label_bytes == 2) out.push_back(static_cast<uint8_t>(i % 20));  // coarse
    out.push_back(static_cast<uint8_t>(i == bad_label_at ? 200 : i % 10));
    for (int p = 0; p < 3072; ++p) out.push_back(static_cast<uint8_t>((i + p) % 251));
  }
  return out;
}

TEST(Cifar, ReadsCifar10FromTheBatchesFolder) {
  TempDir dir;
  const std::string root = dir.file("cifar-10-batches-bin");
  std::filesystem::create_directories(root);
  for (int b = 1; b <= 5; ++b) write_bytes(root + "/data_batch_" + std::to_string(b) + ".bin", cifar_records(3, 1));
  write_bytes(root + "/test_batch.bin", cifar_records(4, 1));
  ImageDataset train = read_cifar10(dir.path(), Mode::kTrain);  // finds the subfolder
  EXPECT_EQ(train.size(), 15);
  EXPECT_EQ(train.images().sizes(), (std::vector<int64_t>{15, 3, 32, 32}));
  EXPECT_EQ(train.targets()[4].item<int64_t>(), 1);  // second record of the second batch
  // The pixels of record 1 (channel-major, as stored) come through unchanged.
  EXPECT_EQ(train.images()[1][1][0][5].item<uint8_t>(), static_cast<uint8_t>((1 + 1024 + 5) % 251));
  EXPECT_EQ(read_cifar10(root, Mode::kTest).size(), 4);
}

TEST(Cifar, RejectsTruncatedFilesAndBadLabels) {
  TempDir dir;
  for (int b = 1; b <= 5; ++b) write_bytes(dir.file("data_batch_" + std::to_string(b) + ".bin"), cifar_records(2, 1));
  auto cut = cifar_records(2, 1);
  cut.pop_back();
  write_bytes(dir.file("data_batch_3.bin"), cut);
  testing::expect_error<DataError>([&] { read_cifar10(dir.path(), Mode::kTrain); },
                                   {"data_batch_3.bin", "not a whole number of 3073-byte"});
  write_bytes(dir.file("data_batch_3.bin"), cifar_records(2, 1, /*bad_label_at=*/1));
  testing::expect_error<DataError>([&] { read_cifar10(dir.path(), Mode::kTrain); },
                                   {"data_batch_3.bin", "record 1", "label 200"});
  write_bytes(dir.file("data_batch_3.bin"), cifar_records(2, 1));
  testing::expect_error<DataError>([&] { read_cifar10(dir.path(), Mode::kTest); }, {"test_batch.bin", "no such file"});
}

TEST(Cifar, ReadsCifar100FineLabels) {
  TempDir dir;
  write_bytes(dir.file("train.bin"), cifar_records(6, 2));
  write_bytes(dir.file("test.bin"), cifar_records(2, 2));
  ImageDataset d = read_cifar100(dir.path(), Mode::kTrain);
  EXPECT_EQ(d.size(), 6);
  EXPECT_EQ(d.classes(), 100);
  EXPECT_EQ(d.targets()[5].item<int64_t>(), 5);
  write_bytes(dir.file("train.bin"), cifar_records(3, 1));  // 3 x 3073 bytes is no whole number of 3074
  testing::expect_error<DataError>([&] { read_cifar100(dir.path(), Mode::kTrain); }, {"train.bin", "3074"});
}

TEST(Splits, HoldOutValidationAndLimitTrainingDeterministically) {
  TempDir dir;
  write_idx_folder(dir.path(), 50, true);
  SplitOptions o;
  o.val_size = 10;
  o.train_size = 25;
  o.test_size = 7;
  DataSplits a = prepare_splits("mnist", dir.path(), o);
  EXPECT_EQ(a.val.size(), 10);
  EXPECT_EQ(a.train.size(), 25);
  EXPECT_EQ(a.test.size(), 7);
  EXPECT_EQ(a.mean.sizes(), (std::vector<int64_t>{1, 4, 3}));
  EXPECT_TRUE(torch::allclose(a.mean, a.train.images().to(torch::kFloat32).mean(0) / 255.0));
  DataSplits b = prepare_splits("mnist", dir.path(), o);
  EXPECT_TRUE(torch::equal(a.val.images(), b.val.images()));
  EXPECT_TRUE(torch::equal(a.train.targets(), b.train.targets()));
  o.val_size = 45;
  testing::expect_error<std::invalid_argument>([&] { prepare_splits("mnist", dir.path(), o); },
                                               {"train_size 25", "0..5"});
  testing::expect_error<std::invalid_argument>([&] { load_dataset("cifar10", "", Mode::kTrain); }, {"--data"});
  testing::expect_error<std::invalid_argument>([&] { dataset_info("imagenette"); }, {"imagenette", "fashion-mnist"});
}

TEST(Splits, ValidationAndTrainingDoNotOverlap) {
  TempDir dir;
  // Every image distinct: image i is filled with the value i.
  const uint32_t n = 40;
  std::vector<uint8_t> pixels;
  for (uint32_t i = 0; i < n; ++i) pixels.insert(pixels.end(), 12, static_cast<uint8_t>(i));
  write_bytes(dir.file("train-images-idx3-ubyte"), idx_bytes({n, 4, 3}, pixels));
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_bytes({n}, std::vector<uint8_t>(n, 0)));
  write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_bytes({n, 4, 3}, pixels));
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_bytes({n}, std::vector<uint8_t>(n, 0)));
  SplitOptions o;
  o.val_size = 15;
  DataSplits s = prepare_splits("mnist", dir.path(), o);
  std::set<int> seen;
  for (const auto* part : {&s.val, &s.train}) {
    for (int64_t i = 0; i < part->size(); ++i) seen.insert(part->images()[i][0][0][0].item<uint8_t>());
  }
  EXPECT_EQ(seen.size(), n);
  EXPECT_EQ(s.train.size() + s.val.size(), n);
}

}  // namespace
}  // namespace reslab
