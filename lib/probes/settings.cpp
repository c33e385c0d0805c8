#include "probes/settings.h"

#include <algorithm>
#include <stdexcept>

namespace reslab {

const std::vector<std::string>& probe_names() {
  static const std::vector<std::string> names = {"responses", "grad_norms", "grad_snr",
                                                 "shattered", "lesions",    "paths"};
  return names;
}

void check_probe_name(const std::string& name) {
  const auto& names = probe_names();
  if (std::find(names.begin(), names.end(), name) != names.end()) return;
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown probe '" + name + "'; expected one of " + list);
}

bool probe_runs_during_training(const std::string& name) { return name == "grad_norms" || name == "grad_snr"; }

nlohmann::json to_json(const ProbeSettings& s) {
  return {{"batch", s.batch},   {"lesion_k", s.lesion_k}, {"samples", s.samples},
          {"max_lengths", s.max_lengths}, {"points", s.points}, {"lines", s.lines},
          {"max_lag", s.max_lag}, {"calibration_batches", s.calibration_batches}, {"seed", s.seed}};
}

}  // namespace reslab
