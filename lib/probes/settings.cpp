#include "probes/settings.h"

#include <algorithm>
#include <stdexcept>

#include "probes/gradients.h"
#include "probes/lesions.h"
#include "probes/refinement.h"
#include "probes/responses.h"

namespace reslab {

const std::vector<ProbeInfo>& probe_table() {
  using In = const ProbeInputs&;
  using Set = const ProbeSettings&;
  static const std::vector<ProbeInfo> table = {
      {"responses", "layer responses: std of each conv/BN output (the paper's Figure 7)", false, "", "", "",
       [](NetworkBase& net, In in, Set) { return layer_responses(net, in.test); }},
      {"grad_norms", "weight and input gradient norms per layer", true, "", "", "",
       [](NetworkBase& net, In in, Set) { return gradient_norms(net, in.train.batch(0)); }},
      {"grad_snr", "per-example gradient signal-to-noise per layer", true, "snr_median", "/snr_median",
       "per-example gradient SNR, median over layers",
       [](NetworkBase& net, In in, Set) { return gradient_snr(net, in.train.batch(0)); }},
      {"shattered", "correlation of input gradients along lines between test images (Balduzzi et al.)", false,
       "cosine_lag1", "/cosine/0", "cosine of input gradients at lag 1",
       [](NetworkBase& net, In in, Set s) { return gradient_correlation(net, in.test, s); }},
      {"lesions", "test error with blocks deleted, one and k at a time (Veit et al.)", false, "single_median_error",
       "/single_median_error", "median error with one block deleted (%)",
       [](NetworkBase& net, In in, Set s) { return lesion_study(net, in.test, s); }},
      {"paths", "gradient carried by paths of each length (Veit et al.)", false, "gradient_mean_length",
       "/gradient_mean_length", "gradient-weighted mean path length",
       [](NetworkBase& net, In in, Set s) { return path_gradients(net, in.train.batch(0), s); }},
      {"refinement", "branch against the loss gradient, branch size, the head read from each block", false,
       "cosine_median", "/cosine_median", "median over blocks of cos(branch, gradient)",
       [](NetworkBase& net, In in, Set s) { return refinement_study(net, in.test, s); }},
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

std::string probes_during_training() {
  std::string out;
  for (const auto& p : probe_table()) {
    if (p.during_training) out += (out.empty() ? "" : ", ") + p.name;
  }
  return out;
}

nlohmann::json to_json(const ProbeSettings& s) {
  return {{"batch", s.batch},     {"lesion_k", s.lesion_k},
          {"samples", s.samples}, {"max_lengths", s.max_lengths},
          {"points", s.points},   {"lines", s.lines},
          {"max_lag", s.max_lag}, {"calibration_batches", s.calibration_batches},
          {"seed", s.seed}};
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
