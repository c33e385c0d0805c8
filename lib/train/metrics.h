#pragma once
// Writing results: JSON lines appended and flushed as they happen, and whole JSON files replaced atomically.

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

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
  /// Bytes in the file so far (every written line is flushed).
  int64_t offset() const;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// Writes `value` to `path` through a temporary file and a rename, so readers never see half a file.
void write_json_file(const std::string& path, const nlohmann::json& value);

/// Reads a JSON file; throws std::runtime_error naming the file on a missing file or a syntax error.
nlohmann::json read_json_file(const std::string& path);

/// Reads every record of a metrics.jsonl file (a torn last line, from a crash, is skipped).
std::vector<nlohmann::json> read_jsonl_file(const std::string& path);

}  // namespace reslab
