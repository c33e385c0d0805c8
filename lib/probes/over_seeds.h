#pragma once
// A probe's headline figure over seeds: the subjects of a PROBE.json that are one model and configuration at
// different seeds, summarised as mean ± sd (n).

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>
#include <vector>

namespace reslab {

/// {"mean", "sd", "n", "values"}: "sd" is the sample sd (n - 1), null below two values; "mean" is null when empty.
nlohmann::json summarise_values(const std::vector<double>& values);

/// For a probe with a headline figure (probe_table), one entry per group of `subjects` (a PROBE.json's
/// "subjects") that differ only in their "seed" (the same "source", "model", "depth", "residual" and "config"),
/// in the order of each group's first subject: {"model", "depth", "residual", "source", "seeds", "labels",
/// FIGURE: summarise_values(...)}. Subjects without the figure (a probe that does not apply to them) are left out.
/// An empty array for a probe without a headline figure.
nlohmann::json over_seeds(const std::string& probe, const nlohmann::json& subjects);

/// One line per entry of over_seeds(probe, ...), e.g. "  over seeds, resnet56 (trained; resnet56-s1, resnet56-s2):
/// cosine of input gradients at lag 1 0.912 ± 0.013 (2)"; nothing unless some entry has two seeds or more.
void print_over_seeds(const std::string& probe, const nlohmann::json& entries, std::ostream& out);

}  // namespace reslab
