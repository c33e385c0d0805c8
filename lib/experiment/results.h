#pragma once
// Summaries of runs and the tables an experiment's results.json holds.

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>
#include <vector>

namespace reslab {

/// The versions recorded in every summary: reslab's and LibTorch's.
nlohmann::json version_info();

/// results.json: the experiment's name, every run's summary and, where both plain and residual nets of a depth
/// ran, the degradation table (final training and test error by depth, averaged over runs of the same model).
nlohmann::json make_results(const std::string& experiment, const std::string& description,
                            const std::vector<nlohmann::json>& summaries);

/// Prints the degradation table of `results` (or nothing when it has none).
void print_degradation_table(const nlohmann::json& results, std::ostream& out);

}  // namespace reslab
