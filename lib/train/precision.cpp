#include "train/precision.h"

#include <stdexcept>

#include "ops/torch_compat.h"
#include "ops/winograd.h"

namespace reslab {

std::string to_string(Precision precision) { return precision == Precision::kBf16 ? "bf16" : "float32"; }

Precision parse_precision(const std::string& name) {
  if (name == "float32") return Precision::kFloat32;
  if (name == "bf16") return Precision::kBf16;
  throw std::invalid_argument("precision '" + name + "': expected float32 or bf16");
}

torch::Tensor at_least_float(const torch::Tensor& logits) {
  const auto type = logits.scalar_type();
  return type == torch::kBFloat16 || type == torch::kHalf ? logits.to(torch::kFloat) : logits;
}

std::string convolutions_at(Precision precision, const torch::Device& device) {
  if (device.is_cpu() && precision != Precision::kFloat32) return "direct (" + to_string(precision) + " autocast)";
  return convolution_policy(device);
}

AutocastScope::AutocastScope(Precision precision, const torch::Device& device) {
  if (precision == Precision::kFloat32) return;
  if (!device.is_cpu() && !device.is_cuda()) {
    throw std::invalid_argument("bf16 autocast runs on the CPU or a CUDA device, not on " + device.str());
  }
  type_ = device.type();
  was_enabled_ = compat::autocast_enabled(type_);
  was_dtype_ = compat::autocast_dtype(type_);
  compat::set_autocast_dtype(type_, at::kBFloat16);
  compat::set_autocast_enabled(type_, true);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  compat::set_autocast_enabled(type_, was_enabled_);
  compat::set_autocast_dtype(type_, was_dtype_);
}

}  // namespace reslab
