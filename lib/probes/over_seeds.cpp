#include "probes/over_seeds.h"

#include <cstdio>
#include <map>
#include <ostream>

#include "probes/settings.h"
#include "probes/statistics.h"

namespace reslab {

nlohmann::json summarise_values(const std::vector<double>& values) {
  return {{"mean", finite_or_null(average_of(values))},
          {"sd", finite_or_null(sample_sd(values))},
          {"n", values.size()},
          {"values", values}};
}

namespace {

/// What a subject is apart from its seed and its label; subjects written without "config" group by the rest.
nlohmann::json group_key(const nlohmann::json& s) {
  return {s.value("source", ""), s.value("model", ""), s.value("depth", 0), s.value("residual", false),
          s.value("config", nlohmann::json(nullptr))};
}

struct Group {
  nlohmann::json first;  ///< the group's first subject
  nlohmann::json seeds = nlohmann::json::array(), labels = nlohmann::json::array();
  std::vector<double> values;
};

}  // namespace

nlohmann::json over_seeds(const std::string& probe, const nlohmann::json& subjects) {
  const ProbeInfo& info = probe_info(probe);
  nlohmann::json out = nlohmann::json::array();
  if (info.figure.empty()) return out;
  const nlohmann::json::json_pointer pointer(info.pointer);
  std::map<std::string, size_t> index;
  std::vector<Group> groups;
  for (const auto& s : subjects) {
    if (!s.contains(pointer) || !s.at(pointer).is_number()) continue;
    const auto [it, added] = index.emplace(group_key(s).dump(), groups.size());
    if (added) groups.emplace_back().first = s;
    Group& g = groups[it->second];
    g.seeds.push_back(s.value("seed", nlohmann::json(nullptr)));
    g.labels.push_back(s.value("label", ""));
    g.values.push_back(s.at(pointer).get<double>());
  }
  for (const auto& g : groups) {
    out.push_back({{"model", g.first.value("model", "")},
                   {"depth", g.first.value("depth", 0)},
                   {"residual", g.first.value("residual", false)},
                   {"source", g.first.value("source", "")},
                   {"seeds", g.seeds},
                   {"labels", g.labels},
                   {info.figure, summarise_values(g.values)}});
  }
  return out;
}

void print_over_seeds(const std::string& probe, const nlohmann::json& entries, std::ostream& out) {
  const ProbeInfo& info = probe_info(probe);
  bool several = false;
  for (const auto& e : entries) several = several || e["seeds"].size() > 1;
  if (!several) return;
  for (const auto& e : entries) {
    std::string labels;
    for (const auto& l : e["labels"]) labels += (labels.empty() ? "" : ", ") + l.get<std::string>();
    const auto& f = e[info.figure];
    char text[96];
    if (f["sd"].is_number()) {
      std::snprintf(text, sizeof text, "%.4g ± %.2g (%lld)", f["mean"].get<double>(), f["sd"].get<double>(),
                    static_cast<long long>(f["n"].get<int64_t>()));
    } else {
      std::snprintf(text, sizeof text, "%.4g (%lld)", f["mean"].get<double>(),
                    static_cast<long long>(f["n"].get<int64_t>()));
    }
    out << "  over seeds, " << e["model"].get<std::string>() << " (" << e["source"].get<std::string>() << "; " << labels
        << "): " << info.description << " " << text << "\n";
  }
}

}  // namespace reslab
