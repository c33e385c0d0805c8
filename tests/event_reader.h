#pragma once
// Reads back reslab's TensorBoard event files in the tests: TFRecord framing with both checksums verified, and
// the Event and Summary fields reslab writes. A format check of its own; test_tensorboard.sh reads the same
// files with TensorBoard's reader.

#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "train/tensorboard.h"

namespace reslab::testing {

struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<Scalar> scalars;
};

class ProtoReader {
 public:
  ProtoReader(const char* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      const auto b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw std::runtime_error("varint too long");
  }
  template <typename T>
  T fixed() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  std::string bytes() {
    const uint64_t n = varint();
    need(n);
    std::string s(p_, n);
    p_ += n;
    return s;
  }

 private:
  void need(uint64_t n) const {
    if (static_cast<uint64_t>(end_ - p_) < n) throw std::runtime_error("truncated protobuf");
  }
  const char* p_;
  const char* end_;
};

inline DecodedEvent decode_event(const std::string& payload) {
  DecodedEvent e;
  ProtoReader r(payload.data(), payload.size());
  while (!r.done()) {
    const uint64_t key = r.varint();
    const int field = static_cast<int>(key >> 3);
    const int wire = static_cast<int>(key & 7);
    if (field == 1 && wire == 1) {
      e.wall_time = r.fixed<double>();
    } else if (field == 2 && wire == 0) {
      e.step = static_cast<int64_t>(r.varint());
    } else if (field == 3 && wire == 2) {
      e.file_version = r.bytes();
    } else if (field == 5 && wire == 2) {
      const std::string summary = r.bytes();
      ProtoReader s(summary.data(), summary.size());
      while (!s.done()) {
        if (s.varint() != (1 << 3 | 2)) throw std::runtime_error("unexpected Summary field");
        const std::string value = s.bytes();
        ProtoReader v(value.data(), value.size());
        Scalar scalar{"", 0};
        while (!v.done()) {
          const uint64_t k = v.varint();
          if (k == (1 << 3 | 2)) {
            scalar.tag = v.bytes();
          } else if (k == (2 << 3 | 5)) {
            scalar.value = v.fixed<float>();
          } else {
            throw std::runtime_error("unexpected Summary.Value field");
          }
        }
        e.scalars.push_back(scalar);
      }
    } else {
      throw std::runtime_error("unexpected Event field " + std::to_string(field));
    }
  }
  return e;
}

/// Every event of an event file, checking each record's two masked CRC-32Cs; throws on a torn or corrupt one.
inline std::vector<DecodedEvent> read_event_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<DecodedEvent> events;
  size_t at = 0;
  auto u8 = [&](size_t i) { return reinterpret_cast<const uint8_t*>(bytes.data() + i); };
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) throw std::runtime_error(path + ": torn record header");
    uint64_t length;
    uint32_t length_crc;
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&length_crc, bytes.data() + at + 8, 4);
    if (masked_crc32c(u8(at), 8) != length_crc) throw std::runtime_error(path + ": bad length checksum");
    if (bytes.size() - at - 12 < length + 4) throw std::runtime_error(path + ": torn record");
    const std::string payload = bytes.substr(at + 12, length);
    uint32_t data_crc;
    std::memcpy(&data_crc, bytes.data() + at + 12 + length, 4);
    if (masked_crc32c(u8(at + 12), length) != data_crc) throw std::runtime_error(path + ": bad data checksum");
    events.push_back(decode_event(payload));
    at += 12 + length + 4;
  }
  return events;
}

}  // namespace reslab::testing
