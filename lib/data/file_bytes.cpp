#include "data/file_bytes.h"

#include <zlib.h>

#include <filesystem>

#include "data/dataset.h"

namespace reslab {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path + ": no such file");
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw DataError(path + ": cannot open for reading");
  std::vector<uint8_t> bytes;
  constexpr unsigned kChunk = 1u << 20;
  for (;;) {
    const size_t old = bytes.size();
    bytes.resize(old + kChunk);
    const int got = gzread(file, bytes.data() + old, kChunk);
    if (got < 0) {
      int errnum = 0;
      const std::string message = gzerror(file, &errnum);
      gzclose(file);
      throw DataError(path + ": corrupt gzip data (" + message + ")");
    }
    bytes.resize(old + static_cast<size_t>(got));
    if (got == 0) break;
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
