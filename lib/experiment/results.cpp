#include "experiment/results.h"

#include <torch/version.h>

#include <cstdio>
#include <map>
#include <ostream>

#include "models/registry.h"

#ifndef RESLAB_VERSION
#define RESLAB_VERSION "unknown"
#endif

namespace reslab {

nlohmann::json version_info() { return {{"reslab", RESLAB_VERSION}, {"libtorch", TORCH_VERSION}}; }

namespace {
struct Mean {
  double sum = 0.0;
  int64_t n = 0;
  void add(const nlohmann::json& v) {
    if (v.is_number()) {
      sum += v.get<double>();
      ++n;
    }
  }
  nlohmann::json value() const { return n > 0 ? nlohmann::json(sum / n) : nlohmann::json(nullptr); }
};
struct Cell {
  Mean train, test;
  int64_t runs = 0;
  std::vector<std::string> statuses;
};
}  // namespace

nlohmann::json make_results(const std::string& experiment, const std::string& description,
                            const std::vector<nlohmann::json>& summaries) {
  // Rows by (variant, depth); the variant is what the run's name adds to the model's besides the seed, e.g. "-B"
  // for a shortcut axis, so that only repeats of one configuration are averaged.
  std::map<std::pair<std::string, int64_t>, std::map<bool, Cell>> by_depth;
  for (const auto& s : summaries) {
    if (!s.contains("depth") || !s.contains("residual")) continue;
    const std::string model = s.value("model", "");
    std::string variant = s.value("run", model);
    variant = variant.compare(0, model.size(), model) == 0 ? variant.substr(model.size()) : variant;
    const auto seed_suffix = variant.rfind("-s");
    if (seed_suffix != std::string::npos && seed_suffix + 2 < variant.size() &&
        variant.find_first_not_of("0123456789", seed_suffix + 2) == std::string::npos) {
      variant.erase(seed_suffix);
    }
    // The model's own tags (resnet20-k1 -> "-k1") keep variants of one depth apart, plain beside residual.
    const size_t digits = model.find_first_of("0123456789");
    const size_t tags = digits == std::string::npos ? std::string::npos : model.find('-', digits);
    if (tags != std::string::npos) variant = model.substr(tags) + variant;
    Cell& cell = by_depth[{variant, s["depth"].get<int64_t>()}][s["residual"].get<bool>()];
    cell.train.add(s["final"]["train_error"]);
    cell.test.add(s["final"]["test_error"]);
    cell.statuses.push_back(s.value("status", "unknown"));
    ++cell.runs;
  }
  // A table when at least one row compares plain with residual; then a variant with one side only (e.g.
  // -skipinit, residual only) gets its row too.
  nlohmann::json table = nlohmann::json::array();
  bool compares = false;
  for (const auto& [key, cells] : by_depth) {
    compares = compares || cells.size() == 2;
    nlohmann::json row = {{"depth", key.second}};
    if (!key.first.empty()) row["variant"] = key.first;
    for (const auto& [residual, cell] : cells) {
      row[residual ? "residual" : "plain"] = {{"train_error", cell.train.value()},
                                              {"test_error", cell.test.value()},
                                              {"runs", cell.runs},
                                              {"status", cell.statuses}};
    }
    table.push_back(row);
  }
  nlohmann::json results = {{"experiment", experiment},
                            {"description", description},
                            {"versions", version_info()},
                            {"runs", summaries}};
  if (compares) results["degradation"] = table;
  return results;
}

void print_degradation_table(const nlohmann::json& results, std::ostream& out) {
  if (!results.contains("degradation")) return;
  auto cell = [](const nlohmann::json& v) {
    char text[16];
    if (v.is_number()) {
      std::snprintf(text, sizeof text, "%7.2f", v.get<double>());
    } else {
      std::snprintf(text, sizeof text, "%7s", "-");
    }
    return std::string(text);
  };
  out << "Final error (%), training error over the last epoch, test error on the test set:\n";
  out << "  depth |   plain train    test | residual train    test\n";
  out << "  ------+-----------------------+-----------------------\n";
  for (const auto& row : results["degradation"]) {
    char depth[16];
    std::snprintf(depth, sizeof depth, "%7lld", static_cast<long long>(row["depth"].get<int64_t>()));
    // A variant may have only residual nets (e.g. -skipinit): the missing side prints as "-".
    auto error = [&row](const char* side, const char* key) {
      return row.value(side, nlohmann::json::object()).value(key, nlohmann::json());
    };
    out << depth << " |       " << cell(error("plain", "train_error")) << " " << cell(error("plain", "test_error"))
        << " |        " << cell(error("residual", "train_error")) << " " << cell(error("residual", "test_error"))
        << (row.contains("variant") ? "   " + row["variant"].get<std::string>() : "") << "\n";
  }
}

}  // namespace reslab
