#include "data/cifar.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "data/file_bytes.h"

namespace reslab {

namespace {
constexpr int64_t kPixels = 3 * 32 * 32;

struct CifarLayout {
  std::string subdir;
  int64_t label_bytes;  // label bytes before the pixels of each record
  int64_t label_index;  // which of them is the target
  int64_t classes;
  int64_t other_classes;  // range of the other label byte (CIFAR-100's coarse label), 0 if none
};

std::string resolve_dir(const std::string& dir, const std::string& subdir, const std::string& probe_file) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(dir + "/" + probe_file, ec)) return dir;
  if (std::filesystem::is_regular_file(dir + "/" + subdir + "/" + probe_file, ec)) return dir + "/" + subdir;
  throw DataError(dir + "/" + probe_file + ": no such file (looked in " + dir + " and " + dir + "/" + subdir +
                  "; point --data at your copy of the binary version)");
}

const CifarLayout kCifar10{"cifar-10-batches-bin", 1, 0, 10, 0};
const CifarLayout kCifar100{"cifar-100-binary", 2, 1, 100, 20};

ImageDataset decode_records(const std::vector<std::string>& paths, const std::vector<std::vector<uint8_t>>& contents,
                            const CifarLayout& layout) {
  const int64_t record = layout.label_bytes + kPixels;
  int64_t total = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    const auto& path = paths[f];
    const auto size = static_cast<int64_t>(contents[f].size());
    if (size == 0 || size % record != 0) {
      throw DataError(path + ": " + std::to_string(size) + " bytes is not a whole number of " + std::to_string(record) +
                      "-byte CIFAR records (truncated or not a CIFAR binary file)");
    }
    total += size / record;
  }
  auto images = torch::empty({total, 3, 32, 32}, torch::kUInt8);
  auto targets = torch::empty({total}, torch::kInt64);
  uint8_t* img = images.data_ptr<uint8_t>();
  int64_t* tgt = targets.data_ptr<int64_t>();
  int64_t row = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    const auto& bytes = contents[f];
    const int64_t n = static_cast<int64_t>(bytes.size()) / record;
    for (int64_t i = 0; i < n; ++i, ++row) {
      const uint8_t* rec = bytes.data() + i * record;
      const int64_t label = rec[layout.label_index];
      if (label >= layout.classes) {
        throw DataError(paths[f] + ": record " + std::to_string(i) + " has label " + std::to_string(label) +
                        ", expected 0.." + std::to_string(layout.classes - 1));
      }
      if (layout.other_classes > 0 && rec[1 - layout.label_index] >= layout.other_classes) {
        throw DataError(paths[f] + ": record " + std::to_string(i) + " has coarse label " +
                        std::to_string(rec[1 - layout.label_index]) + ", expected 0.." +
                        std::to_string(layout.other_classes - 1));
      }
      tgt[row] = label;
      std::memcpy(img + row * kPixels, rec + layout.label_bytes, kPixels);
    }
  }
  return ImageDataset(images, targets, layout.classes);
}

ImageDataset read_records(const std::vector<std::string>& paths, const CifarLayout& layout) {
  std::vector<std::vector<uint8_t>> contents;
  // No header: each file holds at most the records of the largest one (CIFAR-100's 50,000 training images).
  const uint64_t record = static_cast<uint64_t>(layout.label_bytes) + kPixels;
  for (const auto& path : paths) contents.push_back(read_file_bytes(path, std::min(data_file_limit(), 50000 * record)));
  return decode_records(paths, contents, layout);
}
}  // namespace

ImageDataset parse_cifar(const std::vector<uint8_t>& bytes, const std::string& name, bool cifar100) {
  return decode_records({name}, {bytes}, cifar100 ? kCifar100 : kCifar10);
}

ImageDataset read_cifar10(const std::string& dir, Mode mode) {
  const CifarLayout& layout = kCifar10;
  const std::string root =
      resolve_dir(dir, layout.subdir, mode == Mode::kTrain ? "data_batch_1.bin" : "test_batch.bin");
  std::vector<std::string> paths;
  if (mode == Mode::kTrain) {
    for (int i = 1; i <= 5; ++i) paths.push_back(root + "/data_batch_" + std::to_string(i) + ".bin");
  } else {
    paths.push_back(root + "/test_batch.bin");
  }
  return read_records(paths, layout);
}

ImageDataset read_cifar100(const std::string& dir, Mode mode) {
  const CifarLayout& layout = kCifar100;
  const std::string file = mode == Mode::kTrain ? "train.bin" : "test.bin";
  const std::string root = resolve_dir(dir, layout.subdir, file);
  return read_records({root + "/" + file}, layout);
}

}  // namespace reslab
