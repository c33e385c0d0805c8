#pragma once
// Writing results: JSON lines appended and flushed as they happen, and whole JSON files replaced atomically.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace reslab {

/// Appends one JSON object per line to a file and flushes each line, so a crash loses at most the line being
/// written. Throws std::runtime_error naming the file when it cannot be opened or written.
class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }
  /// Called with each record once its line is written (the run's TensorBoard events); empty: none.
  std::function<void(const nlohmann::json&)> mirror;
  /// Bytes in the file so far (every written line is flushed).
  int64_t offset() const;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// Writes `value` to `path` through a temporary file and a rename, so readers never see half a file.
void write_json_file(const std::string& path, const nlohmann::json& value);

/// JSON that reslab will not read: a syntax error, or past the limits below. The message names the file and,
/// where there is one, the key path ("optim.schedule.milestones[2]").
class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Limits on every JSON document reslab reads. No file reslab writes comes near them; a document past them is
/// an error, not a crash (nesting drives recursion in copying and printing) nor an allocation of the machine.
constexpr size_t kMaxJsonDepth = 64;
constexpr uintmax_t kMaxJsonFileBytes = uintmax_t{256} << 20;  ///< a JSON file
constexpr uintmax_t kMaxJsonlFileBytes = uintmax_t{2} << 30;   ///< a metrics.jsonl

/// Parses `text` strictly, the one JSON path for everything reslab reads: a syntax error, nesting deeper than
/// kMaxJsonDepth, a key that appears twice in one object (JSON would keep the last one unseen), a number too
/// large for a double (1e999), or binary data are errors naming `source` and the key path.
nlohmann::json parse_json(const std::string& text, const std::string& source);

/// Reads a JSON file with parse_json; throws JsonError naming the file when it is missing, larger than
/// kMaxJsonFileBytes, or not valid.
nlohmann::json read_json_file(const std::string& path);

/// Reads every record of a metrics.jsonl file with parse_json. A torn last line (no newline: a crash while it
/// was written) is skipped; any other line that is not valid is an error naming the file and the line.
std::vector<nlohmann::json> read_jsonl_file(const std::string& path);

}  // namespace reslab
