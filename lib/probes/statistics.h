#pragma once
// Small summaries that the probes and their aggregation over seeds share.

#include <nlohmann/json.hpp>

#include <vector>

namespace reslab {

/// The median of `values` (the mean of the two middle ones for an even count); NaN when empty.
double median_of(std::vector<double> values);
/// The arithmetic mean; NaN when empty.
double average_of(const std::vector<double>& values);
/// The sample standard deviation (n - 1 in the denominator); NaN with fewer than two values.
double sample_sd(const std::vector<double>& values);
/// `v` as a JSON number, or null when it is not finite (JSON has no NaN).
nlohmann::json finite_or_null(double v);

}  // namespace reslab
