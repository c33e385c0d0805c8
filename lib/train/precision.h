#pragma once
// The arithmetic a run trains in: float32 throughout (the default), or bf16 autocast, where LibTorch computes
// the convolutions and the classifier in bfloat16 and keeps the weights, their gradients, the optimiser's state,
// BatchNorm's statistics and the loss in float32.

#include <torch/torch.h>

#include <string>

namespace reslab {

enum class Precision { kFloat32, kBf16 };

/// "float32" or "bf16".
std::string to_string(Precision precision);

/// Throws std::invalid_argument naming the value and what is expected when `name` is neither.
Precision parse_precision(const std::string& name);

/// Logits in bfloat16 or half (an autocast forward pass) as float32, for the loss; float32 and float64 as they are.
torch::Tensor at_least_float(const torch::Tensor& logits);

/// What computes the convolutions at `precision` on `device`, as summary.json's and bench's "conv" record it:
/// convolution_policy(device) (ops/winograd.h), and on the CPU under autocast LibTorch's ("direct (bf16 autocast)").
std::string convolutions_at(Precision precision, const torch::Device& device);

/// Autocast on `device`'s type for this thread while it lives, at `precision` (nothing for kFloat32); the state
/// before it (on or off, and its dtype) comes back when it ends, and autocast's cache of cast weights is cleared
/// as the outermost scope ends. On the CPU reslab's Winograd convolutions compute float32 only, so every
/// convolution under it is LibTorch's (ops/winograd.h: conv_kernel), in bfloat16; a CPU without native bfloat16
/// (AVX-512 BF16 or AMX) runs them many times slower than float32: bf16 is for GPUs.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  at::DeviceType type_ = at::kCPU;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace reslab
