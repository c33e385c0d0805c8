#include "experiment/stats.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "probes/over_seeds.h"
#include "probes/statistics.h"

namespace reslab {

namespace {

/// The continued fraction of the regularised incomplete beta function (modified Lentz), for x < (a+1)/(a+b+2).
double beta_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-15;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  d = 1.0 / (std::fabs(d) < kTiny ? kTiny : d);
  double h = d;
  for (int m = 1; m <= 300; ++m) {
    for (int odd = 0; odd < 2; ++odd) {
      const double num = odd == 0 ? m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
                                  : -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
      d = 1.0 + num * d;
      d = 1.0 / (std::fabs(d) < kTiny ? kTiny : d);
      c = 1.0 + num / c;
      c = std::fabs(c) < kTiny ? kTiny : c;
      h *= d * c;
      if (odd == 1 && std::fabs(d * c - 1.0) < kEps) return h;
    }
  }
  return h;
}

/// I_x(a, b), the regularised incomplete beta function.
double incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_fraction(a, b, x) / a;
  return 1.0 - front * beta_fraction(b, a, 1.0 - x) / b;
}

/// P(T <= t) for t >= 0 under Student's t with `df` degrees of freedom.
double student_t_cdf(double t, double df) { return 1.0 - 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t)); }

}  // namespace

double student_t_975(int64_t df) {
  if (df < 1) throw std::invalid_argument("student_t_975: degrees of freedom " + std::to_string(df) + " < 1");
  // Bisection on the CDF: it is increasing, and the quantile lies between the normal's and 13 (df 1: 12.706).
  double lo = 1.9, hi = 13.0;
  const auto d = static_cast<double>(df);
  for (int i = 0; i < 200 && hi - lo > 1e-12; ++i) {
    const double mid = 0.5 * (lo + hi);
    (student_t_cdf(mid, d) < 0.975 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

nlohmann::json describe(const std::vector<double>& values) {
  nlohmann::json out = summarise_values(values);  // the probes' summary over seeds, less the values themselves
  out.erase("values");
  return out;
}

nlohmann::json paired_difference(const std::vector<double>& differences) {
  nlohmann::json out = describe(differences);
  out["ci95"] = nullptr;
  if (differences.size() >= 2) {
    const auto n = static_cast<int64_t>(differences.size());
    const double half = student_t_975(n - 1) * sample_sd(differences) / std::sqrt(static_cast<double>(n));
    const double m = average_of(differences);
    out["ci95"] = {m - half, m + half};
  }
  return out;
}

}  // namespace reslab
