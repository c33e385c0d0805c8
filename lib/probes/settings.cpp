#include "probes/settings.h"

#include <algorithm>
#include <stdexcept>

namespace reslab {

const std::vector<ProbeInfo>& probe_table() {
  static const std::vector<ProbeInfo> table = {
      {"responses", false, "", "", ""},
      {"grad_norms", true, "", "", ""},
      {"grad_snr", true, "snr_median", "/snr_median", "per-example gradient SNR, median over layers"},
      {"shattered", false, "cosine_lag1", "/cosine/0", "cosine of input gradients at lag 1"},
      {"lesions", false, "single_median_error", "/single_median_error", "median error with one block deleted (%)"},
      {"paths", false, "gradient_mean_length", "/gradient_mean_length", "gradient-weighted mean path length"},
      {"refinement", false, "cosine_median", "/cosine_median", "median over blocks of cos(branch, gradient)"},
  };
  return table;
}

const std::vector<std::string>& probe_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& p : probe_table()) out.push_back(p.name);
    return out;
  }();
  return names;
}

const ProbeInfo& probe_info(const std::string& name) {
  const auto& table = probe_table();
  const auto it = std::find_if(table.begin(), table.end(), [&](const ProbeInfo& p) { return p.name == name; });
  if (it != table.end()) return *it;
  std::string list;
  for (const auto& p : table) list += (list.empty() ? "" : ", ") + p.name;
  throw std::invalid_argument("unknown probe '" + name + "'; expected one of " + list);
}

void check_probe_name(const std::string& name) { probe_info(name); }

bool probe_runs_during_training(const std::string& name) {
  const auto& names = probe_names();
  return std::find(names.begin(), names.end(), name) != names.end() && probe_info(name).during_training;
}

nlohmann::json to_json(const ProbeSettings& s) {
  return {{"batch", s.batch},   {"lesion_k", s.lesion_k}, {"samples", s.samples},
          {"max_lengths", s.max_lengths}, {"points", s.points}, {"lines", s.lines},
          {"max_lag", s.max_lag}, {"calibration_batches", s.calibration_batches}, {"seed", s.seed}};
}

void check_probe_settings(const ProbeSettings& s) {
  auto in = [](const char* key, int64_t value, int64_t lo, int64_t hi) {
    if (value < lo || value > hi) {
      throw ProbeSettingsError(key, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " +
                                        std::to_string(value));
    }
  };
  in("batch", s.batch, 1, 65536);
  in("samples", s.samples, 1, 100000);
  in("max_lengths", s.max_lengths, 2, 10000);
  in("points", s.points, 2, 100000);
  in("lines", s.lines, 1, 100000);
  in("max_lag", s.max_lag, 1, s.points - 1);
  in("calibration_batches", s.calibration_batches, 1, 100000);
  if (s.lesion_k.empty() || s.lesion_k.size() > 1000) {
    throw ProbeSettingsError("lesion_k", "a list of 1 to 1000 sizes, got " + std::to_string(s.lesion_k.size()));
  }
  for (int64_t k : s.lesion_k) in("lesion_k", k, 1, 100000);
}

}  // namespace reslab
