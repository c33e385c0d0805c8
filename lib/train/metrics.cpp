#include "train/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace reslab {

JsonlWriter::JsonlWriter(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) throw std::runtime_error(path + ": cannot open for appending: " + std::strerror(errno));
  std::fseek(file_, 0, SEEK_END);  // so that offset() is right before the first write
}

JsonlWriter::~JsonlWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void JsonlWriter::write(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
  }
  if (mirror) mirror(record);
}

int64_t JsonlWriter::offset() const { return static_cast<int64_t>(std::ftell(file_)); }

void write_json_file(const std::string& path, const nlohmann::json& value) {
  // A name of this process's own: Slurm array tasks (on several machines) write their experiment's config.json
  // at the same time.
  char host[256] = "";
  ::gethostname(host, sizeof host - 1);
  const std::string tmp = path + ".tmp." + host + "." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw std::runtime_error(tmp + ": cannot open for writing: " + std::strerror(errno));
    out << value.dump(2) << "\n";
    out.flush();
    if (!out) throw std::runtime_error(tmp + ": write failed: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(path + ": cannot replace: " + std::strerror(errno));
  }
}

namespace {

/// Builds the document from nlohmann's SAX events (its parser is iterative), checking the limits as it goes.
class StrictBuilder : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit StrictBuilder(const std::string& source) : source_(source) {}

  bool null() override { return put(nullptr) != nullptr; }
  bool boolean(bool v) override { return put(v) != nullptr; }
  bool number_integer(number_integer_t v) override { return put(v) != nullptr; }
  bool number_unsigned(number_unsigned_t v) override { return put(v) != nullptr; }
  bool number_float(number_float_t v, const string_t& text) override {
    if (!std::isfinite(v)) fail("has value " + text + "; expected a finite number");
    return put(v) != nullptr;
  }
  bool string(string_t& v) override { return put(std::move(v)) != nullptr; }
  bool binary(binary_t& /*v*/) override { fail("holds binary data; expected JSON text"); }
  bool start_object(std::size_t /*elements*/) override { return open(nlohmann::json::object()); }
  bool key(string_t& k) override {
    Frame& f = frames_.back();
    if (!f.keys.insert(k).second) {
      f.key = k;
      fail("appears twice in one object; expected each key once (JSON would keep the last one unseen)");
    }
    f.key = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t /*elements*/) override { return open(nlohmann::json::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t position, const std::string& token, const nlohmann::detail::exception& e) override {
    // nlohmann reports a number past a double (1e999) here, before it would reach number_float.
    if (e.id == 406) fail("has value " + token + "; expected a finite number");
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." reads better without its id.
    if (const auto bracket = what.find("] "); what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos) {
      what = what.substr(bracket + 2);
    }
    const std::string where = path();
    throw JsonError(source_ + ": not valid JSON" + (where.empty() ? "" : " (at key '" + where + "')") + ": " + what +
                    " (byte " + std::to_string(position) + ")");
  }

  nlohmann::json take() { return std::move(root_); }

 private:
  struct Frame {
    nlohmann::json* value;
    std::set<std::string> keys;  ///< an object's keys so far
    std::string key;             ///< the key being read
  };

  /// Places `v` where the parse stands (the root, the end of an array, or the current key of an object).
  nlohmann::json* put(nlohmann::json v) {
    if (frames_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    nlohmann::json& parent = *frames_.back().value;
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    nlohmann::json& slot = parent[frames_.back().key];
    slot = std::move(v);
    return &slot;
  }
  bool open(nlohmann::json container) {
    if (frames_.size() >= kMaxJsonDepth) {
      fail("is nested more than " + std::to_string(kMaxJsonDepth) + " objects and lists deep; expected at most " +
           std::to_string(kMaxJsonDepth));
    }
    frames_.push_back({put(std::move(container)), {}, {}});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return true;
  }
  /// "optim.schedule.milestones[2]": where the parse stands (shortened past 200 characters).
  std::string path() const {
    std::string out;
    for (size_t i = 0; i < frames_.size(); ++i) {
      const nlohmann::json& v = *frames_[i].value;
      if (v.is_object()) {
        if (!frames_[i].key.empty() || !frames_[i].keys.empty()) out += (out.empty() ? "" : ".") + frames_[i].key;
      } else {
        // An outer list holds the element being read as its last; the innermost one has not added it yet.
        out += "[" + std::to_string(i + 1 < frames_.size() ? v.size() - 1 : v.size()) + "]";
      }
      if (out.size() > 200) return out.substr(0, 197) + "...";
    }
    return out;
  }
  [[noreturn]] void fail(const std::string& what) const {
    const std::string where = path();
    throw JsonError(source_ + ": " + (where.empty() ? std::string("the document") : "key '" + where + "'") + " " +
                    what);
  }

  const std::string& source_;
  nlohmann::json root_;
  std::vector<Frame> frames_;
};

/// The bytes of `path`, refused past `limit` before anything is read.
std::string read_text_file(const std::string& path, uintmax_t limit, const char* what) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw JsonError(path + ": cannot open: " + std::strerror(errno));
  if (!ec && size > limit) {
    throw JsonError(path + ": " + std::to_string(size) + " bytes; expected " + what + " of at most " +
                    std::to_string(limit >> 20) + " MiB");
  }
  std::string text;
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (text.size() > limit) {  // a file that grows, or one whose size the system does not report
      throw JsonError(path + ": more than " + std::to_string(limit >> 20) + " MiB; expected " + what +
                      " of at most that");
    }
  }
  if (in.bad()) throw JsonError(path + ": read failed: " + std::strerror(errno));
  return text;
}

}  // namespace

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  StrictBuilder builder(source);
  nlohmann::json::sax_parse(text, &builder, nlohmann::json::input_format_t::json, /*strict=*/true);
  return builder.take();
}

nlohmann::json read_json_file(const std::string& path) {
  return parse_json(read_text_file(path, kMaxJsonFileBytes, "a JSON file"), path);
}

std::vector<nlohmann::json> read_jsonl_file(const std::string& path) {
  const std::string text = read_text_file(path, kMaxJsonlFileBytes, "a metrics file");
  std::vector<nlohmann::json> records;
  size_t start = 0;
  for (int64_t line_no = 1; start < text.size(); ++line_no) {
    const size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const std::string source = path + " line " + std::to_string(line_no);
    if (end == std::string::npos) {
      // The last line without its newline: torn if a crash came while it was written, then skipped.
      try {
        records.push_back(parse_json(line, source));
      } catch (const JsonError&) {
      }
      break;
    }
    start = end + 1;
    if (line.empty()) continue;
    records.push_back(parse_json(line, source));
  }
  return records;
}

}  // namespace reslab
