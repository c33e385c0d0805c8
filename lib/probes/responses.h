#pragma once
// Layer responses (the paper's Figure 7): how strongly each 3x3 layer responds, plain vs residual.

#include <nlohmann/json.hpp>

#include "data/loader.h"
#include "models/network.h"

namespace reslab {

/// Accumulates, per conv layer, the mean and standard deviation of its response (after BN, before the ReLU and
/// the addition) over every element (images, channels, positions) of the forward passes it sees.
class ResponseTap : public ForwardTap {
 public:
  void layer_response(int64_t layer, const torch::Tensor& response) override;
  /// Layers seen, in layer order; std and mean of each (population statistics, over all elements).
  int64_t layers() const { return static_cast<int64_t>(count_.size()); }
  double mean(int64_t layer) const;
  double std(int64_t layer) const;

 private:
  std::vector<torch::Tensor> sum_, sum_sq_;
  std::vector<int64_t> count_;
};

/// The response statistics of every conv layer of `net` over all of `loader`'s batches, in eval mode.
/// Returns {"layers": [{layer, name, mean, std}], "std": [in layer order], "std_sorted": [descending]}.
nlohmann::json layer_responses(NetworkBase& net, const BatchSource& loader);

}  // namespace reslab
