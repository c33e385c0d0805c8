#include "interop/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "experiment/json_reader.h"

namespace reslab {

namespace {

uint64_t le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

constexpr uint32_t kEndOfDirectory = 0x06054b50, kZip64End = 0x06064b50, kZip64Locator = 0x07064b50;
constexpr uint32_t kDirectoryEntry = 0x02014b50, kLocalHeader = 0x04034b50;
/// More records than any state_dict has (ResNet-152's holds about 1,500).
constexpr uint64_t kMaxRecords = 1u << 20;

}  // namespace

std::string safe_text(const std::string& text) {
  std::string shown = shown_json(nlohmann::json(text), 82);
  if (shown.size() >= 2 && shown.front() == '"') shown = shown.substr(1, shown.size() - (shown.back() == '"' ? 2 : 1));
  return shown;
}

void ZipArchive::fail(const std::string& what) const { throw PthError(source_ + ": " + what); }

ZipArchive::ZipArchive(std::vector<char> bytes, std::string source)
    : bytes_(std::move(bytes)), source_(std::move(source)) {
  const uint64_t n = bytes_.size();
  const char* b = bytes_.data();
  if (n >= 2 && static_cast<uint8_t>(b[0]) == 0x80 && static_cast<uint8_t>(b[1]) <= 5) {
    fail(
        "written by torch.save's legacy format (before PyTorch 1.6, or _use_new_zipfile_serialization=False), "
        "which reslab does not read; save it again in PyTorch: torch.save(torch.load(f), 'new.pth')");
  }
  if (n < 22 || le(b, 4) != kLocalHeader)
    fail("not a ZIP archive (torch.save's format): no local file header at its start");
  // The end-of-directory record is in the last 65,557 bytes (22 and a comment of at most 65,535).
  int64_t eocd = -1;
  for (int64_t at = static_cast<int64_t>(n) - 22; at >= 0 && at >= static_cast<int64_t>(n) - 65557; --at) {
    if (le(b + at, 4) == kEndOfDirectory && static_cast<uint64_t>(at) + 22 + le(b + at + 20, 2) == n) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) fail("truncated or not a ZIP archive: no end-of-directory record at its end");
  uint64_t count = le(b + eocd + 10, 2), dir_size = le(b + eocd + 12, 4), dir_offset = le(b + eocd + 16, 4);
  if (count == 0xffff || dir_size == 0xffffffff || dir_offset == 0xffffffff) {
    // ZIP64 (an archive past 4 GiB or 65,535 records): the locator sits just before the end record.
    if (eocd < 20 || le(b + eocd - 20, 4) != kZip64Locator) fail("corrupt ZIP64 archive: no ZIP64 locator");
    const uint64_t at = le(b + eocd - 20 + 8, 8);
    if (at > n || n - at < 56 || le(b + at, 4) != kZip64End) fail("corrupt ZIP64 archive: no ZIP64 end record");
    count = le(b + at + 32, 8);
    dir_size = le(b + at + 40, 8);
    dir_offset = le(b + at + 48, 8);
  }
  if (dir_offset > n || dir_size > n - dir_offset) fail("corrupt ZIP archive: its directory lies outside the file");
  if (count > kMaxRecords || count > dir_size / 46) fail("corrupt ZIP archive: " + std::to_string(count) + " records");
  std::string prefix;
  uint64_t at = dir_offset;
  const uint64_t end = dir_offset + dir_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (end - at < 46 || le(b + at, 4) != kDirectoryEntry)
      fail("corrupt ZIP archive: directory entry " + std::to_string(i));
    const char* e = b + at;
    Entry entry;
    entry.method = static_cast<uint16_t>(le(e + 10, 2));
    entry.crc = static_cast<uint32_t>(le(e + 16, 4));
    uint64_t compressed = le(e + 20, 4);
    entry.size = le(e + 24, 4);
    const uint64_t name_len = le(e + 28, 2), extra_len = le(e + 30, 2), comment_len = le(e + 32, 2);
    entry.offset = le(e + 42, 4);
    if (end - at - 46 < name_len + extra_len + comment_len)
      fail("corrupt ZIP archive: directory entry " + std::to_string(i));
    std::string name(e + 46, name_len);
    const std::string shown = safe_text(name);
    // ZIP64 sizes and offset, in that order, for the fields that read 0xffffffff.
    const char* x = e + 46 + name_len;
    for (uint64_t k = 0; k + 4 <= extra_len;) {
      const uint64_t id = le(x + k, 2), len = le(x + k + 2, 2);
      if (k + 4 + len > extra_len) fail("corrupt ZIP archive: the extra field of '" + shown + "'");
      if (id == 1) {
        uint64_t p = k + 4;
        auto take = [&](uint64_t& field) {
          if (field != 0xffffffff) return;
          if (p + 8 > k + 4 + len) fail("corrupt ZIP archive: the ZIP64 field of '" + shown + "'");
          field = le(x + p, 8);
          p += 8;
        };
        take(entry.size);
        take(compressed);
        take(entry.offset);
      }
      k += 4 + len;
    }
    if (entry.method == 0 && compressed != entry.size) fail("corrupt ZIP archive: record '" + shown + "' sizes differ");
    if (entry.offset > n || n - entry.offset < 30 || le(b + entry.offset, 4) != kLocalHeader) {
      fail("corrupt ZIP archive: record '" + shown + "' has no local header");
    }
    entry.start = entry.offset + 30 + le(b + entry.offset + 26, 2) + le(b + entry.offset + 28, 2);
    if (entry.start > n || compressed > n - entry.start)
      fail("truncated: record '" + shown + "' runs past the end of the file");
    const auto slash = name.find('/');
    if (slash == std::string::npos) fail("not torch.save's layout: record '" + shown + "' is not inside a folder");
    if (i == 0) prefix = name.substr(0, slash + 1);
    if (name.compare(0, prefix.size(), prefix) != 0) {
      fail("not torch.save's layout: records in two folders ('" + safe_text(prefix) + "', '" +
           safe_text(name.substr(0, slash + 1)) + "')");
    }
    if (!records_.emplace(name.substr(prefix.size()), entry).second) fail("corrupt ZIP archive: '" + shown + "' twice");
    at += 46 + name_len + extra_len + comment_len;
  }
  // No two records may share bytes: otherwise one stored block, named many times, would be read as many
  // storages and a small file could ask for any amount of memory.
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& [name, e] : records_) spans.emplace_back(e.offset, e.start + (e.method == 0 ? e.size : 0));
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first < spans[i - 1].second) fail("corrupt ZIP archive: two records overlap");
  }
}

std::string_view ZipArchive::record(const std::string& name) const {
  const auto it = records_.find(name);
  const std::string shown = safe_text(name);
  if (it == records_.end()) fail("no record '" + shown + "' (truncated, or not written by torch.save)");
  const Entry& e = it->second;
  if (e.method != 0)
    fail("record '" + shown + "' is compressed (method " + std::to_string(e.method) +
         "); torch.save stores records uncompressed");
  const char* b = bytes_.data();
  const uint64_t start = e.start;
  if (e.crc == 0) return std::string_view(b + start, e.size);  // no checksum recorded (set_crc32_options(False))
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t done = 0; done < e.size;) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(e.size - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(b + start + done), chunk);
    done += chunk;
  }
  if (static_cast<uint32_t>(crc) != e.crc) fail("corrupt: record '" + shown + "' fails its CRC-32 check");
  return std::string_view(b + start, e.size);
}

}  // namespace reslab
