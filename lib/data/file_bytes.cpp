#include "data/file_bytes.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "data/dataset.h"

namespace reslab {

uint64_t data_file_limit() {
  constexpr uint64_t kCeiling = uint64_t{64} << 30;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return std::min(kCeiling, kib * 1024 / 2);
  }
  return uint64_t{8} << 30;  // no /proc/meminfo: a figure most machines hold
}

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t limit, size_t head,
                                     const DeclaredSize& declared) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path + ": no such file");
  if (limit == 0) limit = data_file_limit();
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw DataError(path + ": cannot open for reading");
  auto fail = [&](const std::string& what) {
    gzclose(file);
    throw DataError(path + ": " + what);
  };
  std::vector<uint8_t> bytes;
  uint64_t bound = limit;  // the most this file may hold
  bool declares = false;
  bool checked = !declared || head == 0;
  constexpr unsigned kChunk = 1u << 20;
  for (;;) {
    const size_t old = bytes.size();
    // Only ever one byte past the bound: enough to tell that the file goes on.
    const uint64_t room = bound + 1 - std::min<uint64_t>(bound + 1, old);
    const unsigned want = checked ? static_cast<unsigned>(std::min<uint64_t>(kChunk, room))
                                  : static_cast<unsigned>(head - std::min(head, old));
    if (want == 0 && checked) break;
    bytes.resize(old + want);
    const int got = gzread(file, bytes.data() + old, want);
    if (got < 0) {
      int errnum = 0;
      fail(std::string("corrupt gzip data (") + gzerror(file, &errnum) + ")");
    }
    bytes.resize(old + static_cast<size_t>(got));
    if (!checked && (bytes.size() >= head || got == 0)) {
      checked = true;
      uint64_t total = 0;
      try {
        total = declared(bytes);
      } catch (...) {
        gzclose(file);
        throw;
      }
      if (total > limit) {
        fail("its header declares " + std::to_string(total) + " bytes, more than the " + std::to_string(limit) +
             " this machine can hold now (half its available memory)");
      }
      if (total > 0) {
        bound = total;
        declares = true;
      }
    }
    if (got == 0) break;
  }
  if (bytes.size() > bound) {
    fail(declares ? "expands past the " + std::to_string(bound) +
                        " bytes its header declares (corrupt, or a compressed file made to exhaust memory)"
                  : "expands past " + std::to_string(bound) +
                        " bytes, the most reslab reads from a file of its kind here (and at most half the memory "
                        "available)");
  }
  int errnum = 0;
  const char* message = gzerror(file, &errnum);
  const std::string text = message ? message : "";
  gzclose(file);
  // zlib reports a gzip stream that ends early as Z_BUF_ERROR only once the reading stops.
  if (errnum != Z_OK && errnum != Z_STREAM_END) {
    throw DataError(path + ": truncated or corrupt gzip data (" + text + ")");
  }
  return bytes;
}

std::string first_existing(const std::vector<std::string>& candidates) {
  std::error_code ec;
  for (const auto& c : candidates) {
    if (std::filesystem::is_regular_file(c, ec)) return c;
  }
  return "";
}

}  // namespace reslab
