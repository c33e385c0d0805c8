#include "models/batch_norm.h"

#include <ostream>

namespace {
void print_batch_norm(std::ostream& stream, const torch::nn::BatchNormOptions& options) {
  stream << std::boolalpha << "torch::nn::BatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
         << ", momentum=";
  if (options.momentum()) {
    stream << *options.momentum();
  } else {
    stream << "None";
  }
  stream << ", affine=" << options.affine() << ", track_running_stats=" << options.track_running_stats() << ")";
}
}  // namespace

// LibTorch 1.13 defines BatchNormImplBase<2>::pretty_print in its library without exporting it, and the
// construction vtables of a subclass refer to it. This definition (BatchNorm2d's own format) fills the gap.
#if TORCH_VERSION_MAJOR < 2
namespace torch::nn {
template <>
void BatchNormImplBase<2, BatchNorm2dImpl>::pretty_print(std::ostream& stream) const {
  print_batch_norm(stream, options);
}
}  // namespace torch::nn
#endif

namespace reslab {

torch::Tensor SyncableBatchNorm2dImpl::forward(const torch::Tensor& input) {
  if (!reduce_ || !is_training()) return torch::nn::BatchNorm2dImpl::forward(input);
  TORCH_CHECK(input.dim() == 4, "SyncableBatchNorm2d: expected a 4-D input, got ", input.dim(), "-D");
  const int64_t channels = input.size(1);
  const double local_count = static_cast<double>(input.numel() / channels);
  // Each rank's mean and sum of squared deviations (two-pass, in the input's precision), combined across ranks in
  // float64 as count x mean and M2 + count x mean^2: no cancellation of large means against small spreads.
  auto [local_var, local_mean] = torch::var_mean(input, {0, 2, 3}, /*unbiased=*/false);
  local_mean = local_mean.to(torch::kFloat64);
  auto local_m2 = local_var.to(torch::kFloat64) * local_count;
  auto local = torch::cat({local_mean * local_count, local_m2 + local_mean * local_mean * local_count,
                           torch::full({1}, local_count, local_mean.options())});
  auto global = reduce_(local);
  const auto count = global.narrow(0, 2 * channels, 1).detach();
  auto mean64 = global.narrow(0, 0, channels) / count;
  auto var64 = (global.narrow(0, channels, channels) / count - mean64 * mean64).clamp_min(0.0);
  auto mean = mean64.to(input.scalar_type());
  auto var = var64.to(input.scalar_type());
  const double eps = options.eps();
  auto scale = torch::rsqrt(var + eps);
  auto shift = -mean * scale;
  if (options.affine()) {
    scale = scale * weight;
    shift = shift * weight + bias;
  }
  if (options.track_running_stats()) {
    torch::NoGradGuard no_grad;
    num_batches_tracked += 1;
    const double n = count.item<double>();
    const double factor = options.momentum() ? *options.momentum() : 1.0 / num_batches_tracked.item<double>();
    running_mean.mul_(1.0 - factor).add_(mean.detach(), factor);
    running_var.mul_(1.0 - factor).add_(var.detach() * (n / std::max(n - 1.0, 1.0)), factor);
  }
  return input * scale.view({1, channels, 1, 1}) + shift.view({1, channels, 1, 1});
}

void SyncableBatchNorm2dImpl::pretty_print(std::ostream& stream) const { print_batch_norm(stream, options); }

int64_t set_batch_norm_sync(torch::nn::Module& module, const StatReduce& reduce) {
  int64_t n = 0;
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* bn = dynamic_cast<SyncableBatchNorm2dImpl*>(m.get())) {
      bn->set_stat_reduce(reduce);
      ++n;
    }
  }
  return n;
}

}  // namespace reslab
