#include "train/tensorboard.h"

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "train/metrics.h"

namespace reslab {

namespace {

std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;  // reflected Castagnoli
    table[i] = c;
  }
  return table;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

template <typename T>
void put_fixed(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64), as LibTorch's CPU builds
  out.append(bytes, sizeof(T));
}

/// Field number and wire type: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
void put_key(std::string& out, int field, int wire) { put_varint(out, static_cast<uint64_t>(field) << 3 | wire); }

void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// A number of a record as a float scalar, when it is one.
void add(std::vector<Scalar>& out, const std::string& tag, const nlohmann::json& value) {
  if (value.is_number()) out.push_back({tag, static_cast<float>(value.get<double>())});
}

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t size) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const uint8_t* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::vector<Scalar>& scalars) {
  std::string summary;
  for (const auto& s : scalars) {
    std::string value;
    put_bytes(value, 1, s.tag);  // Summary.Value.tag
    put_key(value, 2, 5);        // Summary.Value.simple_value (float)
    put_fixed(value, s.value);
    put_bytes(summary, 1, value);  // Summary.value (repeated)
  }
  std::string event;
  put_key(event, 1, 1);  // Event.wall_time (double)
  put_fixed(event, wall_time);
  put_key(event, 2, 0);  // Event.step (int64)
  put_varint(event, static_cast<uint64_t>(step));
  put_bytes(event, 5, summary);  // Event.summary
  return event;
}

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_key(event, 1, 1);
  put_fixed(event, wall_time);
  put_bytes(event, 3, "brain.Event:2");  // Event.file_version
  return event;
}

std::string frame_record(const std::string& payload) {
  std::string out;
  const auto length = static_cast<uint64_t>(payload.size());
  std::string length_bytes;
  put_fixed(length_bytes, length);
  out += length_bytes;
  put_fixed(out, masked_crc32c(reinterpret_cast<const uint8_t*>(length_bytes.data()), length_bytes.size()));
  out += payload;
  put_fixed(out, masked_crc32c(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
  return out;
}

std::vector<Scalar> scalars_of_record(const nlohmann::json& record) {
  std::vector<Scalar> out;
  if (!record.is_object() || !record.value("iter", nlohmann::json()).is_number_integer()) return out;
  auto text = [&record](const char* key) {
    const auto it = record.find(key);
    return it != record.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string kind = text("kind");
  if (kind == "train") {
    for (const char* key : {"loss", "error", "lr", "img_per_s"}) {
      if (record.contains(key)) add(out, std::string("train/") + key, record[key]);
    }
  } else if (kind == "eval" && record.value("split", nlohmann::json()).is_string()) {
    const std::string split = record["split"];
    for (const char* key : {"loss", "error"}) {
      if (record.contains(key)) add(out, split + "/" + key, record[key]);
    }
  } else if (kind == "probe" && record.value("layers", nlohmann::json()).is_array()) {
    const std::string name = text("name");
    for (const auto& layer : record["layers"]) {
      if (!layer.is_object() || !layer.value("name", nlohmann::json()).is_string()) continue;
      const std::string at = layer["name"];
      if (name == "grad_norms") {
        if (layer.contains("weight_grad_norm")) add(out, "grad_norms/weight/" + at, layer["weight_grad_norm"]);
        if (layer.contains("input_grad_norm")) add(out, "grad_norms/input/" + at, layer["input_grad_norm"]);
      } else if (name == "grad_snr" && layer.contains("snr")) {
        add(out, "grad_snr/" + at, layer["snr"]);
      }
    }
  }
  return out;
}

EventWriter::EventWriter(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "ab");
  if (file_ == nullptr) throw std::runtime_error(path + ": cannot open for appending: " + std::strerror(errno));
  std::fseek(file_, 0, SEEK_END);
  try {
    if (std::ftell(file_) == 0) append(encode_file_version_event(now_seconds()));
  } catch (...) {
    std::fclose(file_);  // the destructor does not run for a constructor that throws
    throw;
  }
}

EventWriter::~EventWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void EventWriter::append(const std::string& payload) {
  const std::string bytes = frame_record(payload);
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size() || std::fflush(file_) != 0) {
    throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
  }
}

void EventWriter::write_record(const nlohmann::json& record) {
  const auto scalars = scalars_of_record(record);
  if (scalars.empty()) return;
  append(encode_scalar_event(now_seconds(), record["iter"].get<int64_t>(), scalars));
}

void rebuild_event_file(const std::string& run_dir) {
  const std::string path = run_dir + "/" + kEventFileName;
  const std::string tmp = run_dir + "/.events.rebuild.tmp";  // not "tfevents": TensorBoard would read it too
  std::filesystem::remove(tmp);
  {
    EventWriter writer(tmp);
    const std::string metrics = run_dir + "/metrics.jsonl";
    if (std::filesystem::exists(metrics)) {
      for (const auto& record : read_jsonl_file(metrics)) writer.write_record(record);
    }
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace reslab
