#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <torch/version.h>

#include "optim/sgd.h"
#include "train/device.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace reslab {

namespace {
void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) throw std::runtime_error(path + ": cannot open to sync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error(path + ": fsync failed: " + std::strerror(errno));
}

// A checkpoint file is LibTorch's archive followed by a footer: the magic, the archive's length and its CRC-32.
// LibTorch's archive reader can crash on corrupt input (found by fuzz_checkpoint), so no byte reaches it
// before the length and checksum match.
constexpr char kMagic[8] = {'R', 'E', 'S', 'L', 'A', 'B', 'C', '1'};
constexpr size_t kFooter = sizeof(kMagic) + 8 + 4;

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return value;
}

uint32_t crc_of(const char* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

std::string describe(const std::exception& e) {
  std::string what = e.what();
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) what = c10->what_without_backtrace();
  return what.substr(0, 300);
}

torch::Tensor json_tensor(const nlohmann::json& meta) {
  const std::string text = meta.dump();
  auto t = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), text.data(), text.size());
  return t;
}
}  // namespace

std::string checkpoint_path(const std::string& dir, int64_t iter) {
  char name[64];
  std::snprintf(name, sizeof name, "checkpoint-%09lld.pt", static_cast<long long>(iter));
  return (fs::path(dir) / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && entry.path().extension() == ".pt") found.push_back(entry.path().string());
  }
  std::sort(found.rbegin(), found.rend());  // zero-padded iterations: newest first
  return found;
}

namespace {

/// Appends the footer (magic, length, CRC-32) to `bytes` and writes them to `path` atomically and durably.
void write_verified(const std::string& path, std::string bytes, const char* what) {
  const uint32_t crc = crc_of(bytes.data(), bytes.size());
  const uint64_t length = bytes.size();
  bytes.append(kMagic, sizeof(kMagic));
  put_le(bytes, length, 8);
  put_le(bytes, crc, 4);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp);
      throw std::runtime_error(tmp + ": cannot write " + what + ": " + std::strerror(errno));
    }
  }
  fsync_path(tmp, O_RDONLY);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(path + ": cannot replace: " + std::strerror(errno));
  }
  const std::string dir = fs::path(path).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

/// Reads `path`, checks its footer and loads the archive it protects (LibTorch's parser never sees a file
/// whose length or checksum is wrong: it can crash on one).
/// Tensors are placed on `device` (a checkpoint written on a GPU loads on the CPU and the other way round).
void read_verified(const std::string& path, torch::serialize::InputArchive& archive, const char* what,
                   torch::Device device) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw CheckpointError(path + ": no such " + what);
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw CheckpointError(path + ": cannot read");
  }
  if (bytes.size() < kFooter || std::memcmp(bytes.data() + bytes.size() - kFooter, kMagic, sizeof(kMagic)) != 0) {
    throw CheckpointError(path + ": unreadable " + what + " (truncated, or not written by reslab: no footer)");
  }
  const char* footer = bytes.data() + bytes.size() - kFooter;
  const uint64_t length = get_le(footer + sizeof(kMagic), 8);
  const uint32_t crc = static_cast<uint32_t>(get_le(footer + sizeof(kMagic) + 8, 4));
  if (length != bytes.size() - kFooter || crc_of(bytes.data(), length) != crc) {
    throw CheckpointError(path + ": unreadable " + what + " (corrupt: length or checksum does not match)");
  }
  try {
    archive.load_from(bytes.data(), static_cast<size_t>(length), device);
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": unreadable " + what + " (truncated or corrupt): " + describe(e));
  }
}

/// Reads the sub-archive `key` of a verified file; throws CheckpointError naming the path when it is missing or
/// unreadable.
void read_part(const std::string& path, torch::serialize::InputArchive& archive, const char* key,
               torch::serialize::InputArchive& part, const char* what) {
  bool found = false;
  try {
    found = archive.try_read(key, part);
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": unreadable " + what + " (truncated or corrupt): " + describe(e));
  }
  if (!found) throw CheckpointError(path + ": not a reslab " + what + " (no " + key + ")");
}

nlohmann::json read_meta(const std::string& path, torch::serialize::InputArchive& archive, const char* what) {
  torch::Tensor meta_bytes;
  try {
    if (!archive.try_read("meta", meta_bytes)) throw CheckpointError(path + ": not a reslab " + what + " (no meta)");
    if (meta_bytes.scalar_type() != torch::kUInt8 || meta_bytes.dim() != 1) {
      throw CheckpointError(path + ": not a reslab " + what + " (its meta is not a byte string)");
    }
    meta_bytes = meta_bytes.contiguous();
    const auto* p = meta_bytes.data_ptr<uint8_t>();
    return parse_json(std::string(p, p + meta_bytes.numel()), path + " (meta)");
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": unreadable " + what + " meta: " + describe(e));
  }
}

std::string archive_bytes(torch::serialize::OutputArchive& archive) {
  std::ostringstream buffer;
  archive.save_to(buffer);
  return buffer.str();
}

}  // namespace

void save_checkpoint(const std::string& path, const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     const nlohmann::json& meta) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("meta", json_tensor(meta));
  write_verified(path, archive_bytes(archive), "checkpoint");
}

nlohmann::json load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive;
  read_verified(path, archive, "checkpoint", device_of(model));
  torch::serialize::InputArchive model_archive, optimizer_archive;
  read_part(path, archive, "model", model_archive, "checkpoint");
  read_part(path, archive, "optimizer", optimizer_archive, "checkpoint");
  const auto meta = read_meta(path, archive, "checkpoint");
  try {
    model.load(model_archive);
    // A checkpoint replaces the optimizer's state: buffers it does not hold (none, before the first step)
    // must not survive from what the optimizer did since (a retry after a divergence goes back there).
    optimizer.state().clear();
    optimizer.load(optimizer_archive);
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": does not fit this model or optimizer: " + describe(e));
  }
  // Each momentum buffer must have its parameter's shape: a file whose state the loader paired with the wrong
  // parameters (LibTorch 2.x read 1.x's keys so, before optim/sgd.cpp read them itself) stops here, not at the
  // next step with a tensor-size error that names nothing.
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) {
      const torch::Tensor buffer = momentum_buffer(optimizer, p);
      if (!buffer.defined() || buffer.sizes() == p.sizes()) continue;
      throw CheckpointError(path + ": does not fit this model or optimizer: a momentum buffer of shape " +
                            c10::str(buffer.sizes()) + " for a parameter of shape " + c10::str(p.sizes()) +
                            " (written by another LibTorch version? this is " + TORCH_VERSION + ")");
    }
  }
  return meta;
}

void save_model_file(const std::string& path, const torch::nn::Module& model, const nlohmann::json& meta) {
  torch::serialize::OutputArchive archive, model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  archive.write("meta", json_tensor(meta));
  write_verified(path, archive_bytes(archive), "model file");
}

nlohmann::json load_model_file(const std::string& path, torch::nn::Module& model) {
  torch::serialize::InputArchive archive, model_archive;
  read_verified(path, archive, "model file", device_of(model));
  read_part(path, archive, "model", model_archive, "model file");
  const auto meta = read_meta(path, archive, "model file");
  try {
    model.load(model_archive);
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": does not fit this model: " + describe(e));
  }
  return meta;
}

nlohmann::json read_model_meta(const std::string& path) {
  torch::serialize::InputArchive archive;
  read_verified(path, archive, "model file", torch::kCPU);
  return read_meta(path, archive, "model file");
}

}  // namespace reslab
