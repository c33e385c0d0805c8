#include "probes/responses.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "probes/gradients.h"

namespace reslab {

void ResponseTap::layer_response(int64_t layer, const torch::Tensor& response) {
  const auto l = static_cast<size_t>(layer);
  if (count_.size() <= l) {
    sum_.resize(l + 1);
    sum_sq_.resize(l + 1);
    count_.resize(l + 1, 0);
  }
  // Summed in float64 as tensors: no host sync per batch.
  const auto r = response.detach().to(torch::kFloat64);
  if (!sum_[l].defined()) {
    sum_[l] = r.sum();
    sum_sq_[l] = r.pow(2).sum();
  } else {
    sum_[l] += r.sum();
    sum_sq_[l] += r.pow(2).sum();
  }
  count_[l] += response.numel();
}

double ResponseTap::mean(int64_t layer) const {
  const auto l = static_cast<size_t>(layer);
  TORCH_CHECK(l < count_.size() && count_[l] > 0, "ResponseTap: layer ", layer, " was not seen");
  return sum_[l].item<double>() / static_cast<double>(count_[l]);
}

double ResponseTap::std(int64_t layer) const {
  const double m = mean(layer);
  const auto l = static_cast<size_t>(layer);
  return std::sqrt(std::max(0.0, sum_sq_[l].item<double>() / static_cast<double>(count_[l]) - m * m));
}

nlohmann::json layer_responses(NetworkBase& net, const BatchSource& loader) {
  NetworkStateGuard guard(net);
  net.eval();
  torch::NoGradGuard no_grad;
  ResponseTap tap;
  {
    TapGuard installed(net, tap);
    for (int64_t i = 0; i < loader.batches_per_epoch(); ++i) net.forward(loader.batch(i).inputs);
  }
  const auto layers = net.layers();
  nlohmann::json rows = nlohmann::json::array();
  std::vector<double> stds;
  for (int64_t l = 0; l < tap.layers(); ++l) {
    stds.push_back(tap.std(l));
    rows.push_back(
        {{"layer", l}, {"name", layers[static_cast<size_t>(l)].name}, {"mean", tap.mean(l)}, {"std", stds.back()}});
  }
  auto sorted = stds;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  return {{"examples", loader.size()}, {"layers", rows}, {"std", stds}, {"std_sorted", sorted}};
}

}  // namespace reslab
