#pragma once
// The ZIP archives torch.save writes (PyTorch 1.6 and later): a folder of stored, uncompressed records. Read by
// reslab's own parser, every length checked against the file, because the files come from anywhere and
// LibTorch's reader can crash on corrupt input.

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace reslab {

/// A .pth file reslab cannot read: not a ZIP archive, truncated, corrupt, or holding something other than
/// tensors by name. The message names the file and what was expected.
class PthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A name read from a file, fit for an error message: control characters and anything beyond ASCII escaped,
/// invalid UTF-8 replaced, cut to 80 characters (shown_json without its quotes).
std::string safe_text(const std::string& text);

/// The records of a torch.save archive by name, with the archive's top folder ("archive/", "resnet18/", ...)
/// taken off: "data.pkl", "data/0", "version". Only stored (uncompressed) records, as torch.save writes them,
/// each inside the file and no two overlapping (so the records hold at most the file's bytes between them); each
/// record's CRC-32 is checked when it is read (except where the writer recorded none, as PyTorch 2.5 can).
class ZipArchive {
 public:
  /// Parses the central directory of `bytes` (the whole file); `source` names it in errors.
  ZipArchive(std::vector<char> bytes, std::string source);

  bool has(const std::string& name) const { return records_.count(name) != 0; }
  /// The bytes of record `name`; throws PthError naming the file and the record when it is missing, compressed,
  /// outside the file or fails its checksum.
  std::string_view record(const std::string& name) const;
  const std::string& source() const { return source_; }
  /// The archive's length in bytes.
  uint64_t size() const { return bytes_.size(); }

 private:
  struct Entry {
    uint64_t offset = 0;  ///< of the local header
    uint64_t start = 0;   ///< of the data
    uint64_t size = 0;
    uint32_t crc = 0;
    uint16_t method = 0;
  };
  [[noreturn]] void fail(const std::string& what) const;

  std::vector<char> bytes_;
  std::string source_;
  std::map<std::string, Entry> records_;
};

}  // namespace reslab
