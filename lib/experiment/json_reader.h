#pragma once
// Strict reading of JSON configuration: wrong types and unknown keys are errors naming the file and the key.

#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace reslab {

/// A configuration error; the message names the file, the key, the value and what was expected.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// VALUE as JSON text for an error message: control characters escaped, anything beyond ASCII escaped and invalid
/// UTF-8 replaced, and cut to `max_chars` with "..." so that a hostile value can neither flood nor garble it.
std::string shown_json(const nlohmann::json& value, size_t max_chars = 80);

/// The code of the first control character (below 0x20, or 0x7f) in TEXT, or -1 when it has none.
int first_control_char(const std::string& text);

/// One JSON object of a configuration file. Reads record the keys used; finish() rejects the rest.
class JsonSection {
 public:
  /// `where` is the dotted path of this object in the file ("" for the top level).
  JsonSection(const nlohmann::json& value, std::string file, std::string where);

  /// Whether `key` is present (and counts as a key this section knows, as every read does).
  bool has(const std::string& key) const {
    asked_.insert(key);
    return value_.contains(key);
  }
  /// The object's keys, in the file's order (for objects whose keys are data, such as a class index).
  std::vector<std::string> keys() const;
  std::optional<int64_t> integer(const std::string& key);
  std::optional<double> number(const std::string& key);
  std::optional<bool> boolean(const std::string& key);
  std::optional<std::string> string(const std::string& key);
  /// Lists; a single value stands for a list of one. Empty lists are errors unless `allow_empty`.
  std::optional<std::vector<int64_t>> integers(const std::string& key, bool allow_empty = false);
  std::optional<std::vector<double>> numbers(const std::string& key, bool allow_empty = false);
  std::optional<std::vector<bool>> booleans(const std::string& key);
  std::optional<std::vector<std::string>> strings(const std::string& key, bool allow_empty = false);
  /// The nested object at `key`, if present (an error if it is not an object).
  std::optional<JsonSection> section(const std::string& key);
  /// The list of objects at `key`, if present, each named "key[i]" in errors; empty unless `allow_empty`.
  std::optional<std::vector<JsonSection>> sections(const std::string& key, bool allow_empty = false);

  /// Throws ConfigError for the first key of the object that no read (nor has()) asked for, listing the keys
  /// that were asked for: the reads are the list of known keys, so none is kept by hand.
  void finish() const;

  /// "FILE: key 'optim.lr'": the start of an error message about `key`.
  std::string at(const std::string& key) const;
  /// Throws ConfigError "FILE: key 'K' has value V; expected WHAT".
  [[noreturn]] void fail(const std::string& key, const std::string& expected) const;

 private:
  const nlohmann::json* get(const std::string& key);
  template <typename T, typename Check>
  std::optional<std::vector<T>> list(const std::string& key, const char* what, Check check, bool allow_empty = false);

  const nlohmann::json& value_;
  std::string file_;
  std::string where_;
  mutable std::set<std::string> asked_;  ///< every key a read or has() asked for, present or not
};

}  // namespace reslab
