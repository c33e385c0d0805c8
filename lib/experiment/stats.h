#pragma once
// Statistics over seeds: means, sample standard deviations, and paired differences with their Student t
// interval, as results.json reports them.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace reslab {

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom (12.706 at 1, 2.776 at 4, 1.960 as df
/// grows); throws std::invalid_argument for df < 1.
double student_t_975(int64_t df);

/// {"mean", "sd", "n"} of `values` (the sample sd, probes/statistics.h): null mean when empty, null sd below two
/// values.
nlohmann::json describe(const std::vector<double>& values);

/// A paired difference: `differences` are one per seed (a - b at the same seed). {"mean", "sd", "n", "ci95": [lo,
/// hi]}: mean +- t(0.975, n-1) sd / sqrt(n); "ci95" and "sd" are null below two pairs, "mean" when there are none.
nlohmann::json paired_difference(const std::vector<double>& differences);

}  // namespace reslab
