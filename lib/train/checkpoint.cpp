#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

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

void save_checkpoint(const std::string& path, const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     const nlohmann::json& meta) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("meta", json_tensor(meta));
  const std::string tmp = path + ".tmp";
  try {
    archive.save_to(tmp);
  } catch (const c10::Error& e) {
    fs::remove(tmp);
    throw std::runtime_error(tmp + ": cannot write checkpoint: " + e.what_without_backtrace());
  }
  fsync_path(tmp, O_RDONLY);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(path + ": cannot replace: " + std::strerror(errno));
  }
  const std::string dir = fs::path(path).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

nlohmann::json load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw CheckpointError(path + ": no such checkpoint");
  torch::serialize::InputArchive archive;
  torch::serialize::InputArchive model_archive, optimizer_archive;
  torch::Tensor meta_bytes;
  nlohmann::json meta;
  try {
    archive.load_from(path);
    if (!archive.try_read("model", model_archive) || !archive.try_read("optimizer", optimizer_archive) ||
        !archive.try_read("meta", meta_bytes)) {
      throw CheckpointError(path + ": not a reslab checkpoint (model, optimizer or meta missing)");
    }
    const auto* p = meta_bytes.data_ptr<uint8_t>();
    meta = nlohmann::json::parse(std::string(p, p + meta_bytes.numel()));
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) what = c10->what_without_backtrace();
    throw CheckpointError(path + ": unreadable checkpoint (truncated or corrupt): " + what.substr(0, 300));
  }
  try {
    model.load(model_archive);
    optimizer.load(optimizer_archive);
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) what = c10->what_without_backtrace();
    throw CheckpointError(path + ": does not fit this model or optimizer: " + what.substr(0, 300));
  }
  return meta;
}

}  // namespace reslab
