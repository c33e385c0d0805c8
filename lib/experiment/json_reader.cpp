#include "experiment/json_reader.h"

#include <cmath>
#include <cstdint>

namespace reslab {

namespace {

/// An integer that int64_t holds (nlohmann reads one past its range as unsigned).
bool fits_int64(const nlohmann::json& j) {
  return j.is_number_integer() && (!j.is_number_unsigned() || j.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX));
}

}  // namespace

JsonSection::JsonSection(const nlohmann::json& value, std::string file, std::string where)
    : value_(value), file_(std::move(file)), where_(std::move(where)) {
  if (!value_.is_object()) {
    throw ConfigError(file_ + ": " + (where_.empty() ? std::string("the file") : "key '" + where_ + "'") +
                      " must be a JSON object, got " + value_.dump());
  }
}

std::string shown_json(const nlohmann::json& value, size_t max_chars) {
  std::string shown = value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (shown.size() > max_chars && max_chars >= 3) shown = shown.substr(0, max_chars - 3) + "...";
  return shown;
}

int first_control_char(const std::string& text) {
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return u;
  }
  return -1;
}

std::string JsonSection::at(const std::string& key) const {
  return file_ + ": key '" + (where_.empty() ? key : where_ + "." + key) + "'";
}

void JsonSection::fail(const std::string& key, const std::string& expected) const {
  const std::string shown = value_.contains(key) ? shown_json(value_.at(key)) : "(missing)";
  throw ConfigError(at(key) + " has value " + shown + "; expected " + expected);
}

std::vector<std::string> JsonSection::keys() const {
  std::vector<std::string> out;
  for (auto it = value_.begin(); it != value_.end(); ++it) out.push_back(it.key());
  return out;
}

const nlohmann::json* JsonSection::get(const std::string& key) {
  asked_.insert(key);
  auto it = value_.find(key);
  if (it == value_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<int64_t> JsonSection::integer(const std::string& key) {
  const auto* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (fits_int64(*v)) return v->get<int64_t>();
  if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() && std::abs(v->get<double>()) < 1e15) {
    return static_cast<int64_t>(v->get<double>());
  }
  fail(key, v->is_number_unsigned() ? "an integer of at most 9223372036854775807" : "an integer");
}

std::optional<double> JsonSection::number(const std::string& key) {
  const auto* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) fail(key, "a number");
  return v->get<double>();
}

std::optional<bool> JsonSection::boolean(const std::string& key) {
  const auto* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) fail(key, "true or false");
  return v->get<bool>();
}

std::optional<std::string> JsonSection::string(const std::string& key) {
  const auto* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) fail(key, "a string");
  return v->get<std::string>();
}

template <typename T, typename Check>
std::optional<std::vector<T>> JsonSection::list(const std::string& key, const char* what, Check check,
                                                bool allow_empty) {
  const auto* v = get(key);
  if (v == nullptr) return std::nullopt;
  // A single value stands for a list of one.
  const nlohmann::json items = v->is_array() ? *v : nlohmann::json::array({*v});
  if (items.empty() && !allow_empty) fail(key, std::string("a non-empty list of ") + what);
  std::vector<T> out;
  for (const auto& item : items) {
    if (!check(item)) fail(key, std::string("a list of ") + what);
    out.push_back(item.template get<T>());
  }
  return out;
}

std::optional<std::vector<int64_t>> JsonSection::integers(const std::string& key, bool allow_empty) {
  return list<int64_t>(key, "integers", fits_int64, allow_empty);
}
std::optional<std::vector<double>> JsonSection::numbers(const std::string& key, bool allow_empty) {
  return list<double>(
      key, "numbers", [](const nlohmann::json& j) { return j.is_number(); }, allow_empty);
}
std::optional<std::vector<bool>> JsonSection::booleans(const std::string& key) {
  return list<bool>(key, "true/false values", [](const nlohmann::json& j) { return j.is_boolean(); });
}
std::optional<std::vector<std::string>> JsonSection::strings(const std::string& key, bool allow_empty) {
  return list<std::string>(
      key, "strings", [](const nlohmann::json& j) { return j.is_string(); }, allow_empty);
}

std::optional<JsonSection> JsonSection::section(const std::string& key) {
  const auto* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) fail(key, "an object");
  return JsonSection(*v, file_, where_.empty() ? key : where_ + "." + key);
}

std::optional<std::vector<JsonSection>> JsonSection::sections(const std::string& key, bool allow_empty) {
  const auto* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_array()) fail(key, "a list of objects");
  if (v->empty() && !allow_empty) fail(key, "a non-empty list of objects");
  std::vector<JsonSection> out;
  const std::string path = where_.empty() ? key : where_ + "." + key;
  for (size_t i = 0; i < v->size(); ++i) out.emplace_back((*v)[i], file_, path + "[" + std::to_string(i) + "]");
  return out;
}

void JsonSection::finish() const {
  for (auto it = value_.begin(); it != value_.end(); ++it) {
    if (asked_.count(it.key()) != 0) continue;
    std::string expected;
    for (const auto& k : asked_) expected += (expected.empty() ? "" : ", ") + k;
    throw ConfigError(at(it.key()) + " is not a known key; expected one of: " + expected);
  }
}

}  // namespace reslab
