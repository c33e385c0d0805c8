#include "data/idx.h"

#include <cstdio>
#include <cstring>

#include "data/file_bytes.h"

namespace reslab {

namespace {
uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string find_idx_file(const std::string& dir, const std::string& stem) {
  const std::string base = dir + "/" + stem;
  const std::string found = first_existing({base + ".gz", base});
  if (found.empty()) throw DataError(base + "[.gz]: no such file (expected an IDX file in " + dir + ")");
  return found;
}
}  // namespace

torch::Tensor read_idx_ubyte(const std::string& path, int64_t expected_dims) {
  // The header declares the length: a gzip file that expands past it is refused as it is read.
  const size_t head = 4 + 4 * static_cast<size_t>(expected_dims);
  auto declared = [&path, head, expected_dims](const std::vector<uint8_t>& h) -> uint64_t {
    if (h.size() < head || h[0] != 0 || h[1] != 0 || h[2] != 0x08 || h[3] != expected_dims) return 0;
    uint64_t count = 1;
    for (int64_t d = 0; d < expected_dims; ++d) {
      const uint32_t n = big_endian_u32(h.data() + 4 + 4 * d);
      if (n == 0) return 0;  // the parser names it
      if (n > (uint64_t{1} << 40) / count) throw DataError(path + ": IDX header claims an impossible size");
      count *= n;
    }
    return head + count;
  };
  return parse_idx_ubyte(read_file_bytes(path, 0, head, declared), path, expected_dims);
}

torch::Tensor parse_idx_ubyte(const std::vector<uint8_t>& bytes, const std::string& path, int64_t expected_dims) {
  if (bytes.size() < 4)
    throw DataError(path + ": truncated: " + std::to_string(bytes.size()) + " bytes, no IDX header");
  if (bytes[0] != 0 || bytes[1] != 0) throw DataError(path + ": not an IDX file (bad magic number)");
  if (bytes[2] != 0x08) {
    char type[8];
    std::snprintf(type, sizeof type, "0x%02x", bytes[2]);
    throw DataError(path + ": IDX element type " + type + " is not unsigned byte (0x08)");
  }
  const int64_t dims = bytes[3];
  if (dims != expected_dims) {
    throw DataError(path + ": IDX file has " + std::to_string(dims) + " dimensions, expected " +
                    std::to_string(expected_dims));
  }
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (bytes.size() < header) throw DataError(path + ": truncated inside the IDX header");
  std::vector<int64_t> shape;
  uint64_t count = 1;
  for (int64_t d = 0; d < dims; ++d) {
    const uint32_t n = big_endian_u32(bytes.data() + 4 + 4 * d);
    if (n == 0) throw DataError(path + ": IDX dimension " + std::to_string(d) + " is zero");
    shape.push_back(n);
    if (n > (uint64_t{1} << 40) / count) throw DataError(path + ": IDX header claims an impossible size");
    count *= n;
  }
  const uint64_t have = bytes.size() - header;
  if (have < count) {
    throw DataError(path + ": truncated: header says " + std::to_string(count) + " bytes of data, file has " +
                    std::to_string(have));
  }
  if (have > count) {
    throw DataError(path + ": " + std::to_string(have - count) + " bytes beyond the " + std::to_string(count) +
                    " the header describes");
  }
  auto tensor = torch::empty(shape, torch::kUInt8);
  std::memcpy(tensor.data_ptr<uint8_t>(), bytes.data() + header, count);
  return tensor;
}

ImageDataset read_idx_dataset(const std::string& dir, Mode mode, int64_t classes) {
  const std::string prefix = mode == Mode::kTrain ? "train" : "t10k";
  const std::string images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  auto images = read_idx_ubyte(images_path, 3);
  auto labels = read_idx_ubyte(labels_path, 1);
  if (images.size(0) != labels.size(0)) {
    throw DataError(labels_path + ": " + std::to_string(labels.size(0)) + " labels for " +
                    std::to_string(images.size(0)) + " images in " + images_path);
  }
  const int64_t max_label = labels.max().item<int64_t>();
  if (max_label >= classes) {
    throw DataError(labels_path + ": label " + std::to_string(max_label) + " is out of range (expected 0.." +
                    std::to_string(classes - 1) + ")");
  }
  return ImageDataset(images.unsqueeze(1), labels.to(torch::kInt64), classes);
}

}  // namespace reslab
