#pragma once
// 3x3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms
// for Convolutional Neural Networks", 2016), and the choice, shape by shape, of the kernel that computes each one.
//
// F(2x2, 3x3) computes each 2x2 output tile with 16 multiply-adds per input and output channel instead of 36, at
// the price of transforms (additions only) of the input, the weights and the output. F(4x4, 3x3) needs 36 instead
// of 144 per 4x4 tile, but rounds about ten times more, enough to flip the odd ReLU and move a resnet20's gradient
// by up to 0.7% (docs/performance.md); it runs throughout only where asked (RESLAB_CONV=winograd4x4). The mixed
// scheme computes the forward pass by F(2x2) and both gradients by F(4x4): the same ReLUs as F(2x2), two thirds of
// F(4x4)'s saving.
//
// The forward pass, the input's gradient (the same kernel on the flipped, transposed weights) and the weights'
// gradient (an accumulation in the transformed domain) are hand-written vector loops, a block of tiles at a time so
// that the transformed data stays in the cache, in two widths: AVX2 (8 floats) and AVX-512 (16 floats). The two
// widths compute the same floats to the bit (each lane is one channel; every sum runs in the same order), so the
// width is a matter of speed only; the algorithm (direct, F(2x2) or F(4x4)) is what changes the numbers.
//
// They take CPU float32 4-D tensors in channels-last layout with 8 to 64 channels in and out (multiples of 8 for
// AVX2, of 16 for AVX-512; wider layers' transformed weights would not stay in the cache), no bias, no groups;
// everything else goes through torch::conv2d (oneDNN). They agree with torch::conv2d in double precision to a
// relative 1e-5 (F(2x2)) or 1e-4 (F(4x4)) of the output's largest value (tested).
//
// Which kernel runs: RESLAB_CONV=auto (the default) times, on the machine at hand, oneDNN's direct convolution,
// F(2x2) and the mixed scheme at each width for every shape a model uses (train/kernels.h) and runs the fastest;
// a run records its plan and keeps it across resume. RESLAB_CONV=direct, winograd2x2, winograd4x4 or
// winograd-mixed fixes the algorithm everywhere (at the widest width the CPU has; RESLAB_CONV_ISA=avx2 or avx512
// fixes the width too).

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

namespace reslab {

/// How a stride-1 3x3 convolution is computed: LibTorch's own (oneDNN's direct convolution) or reslab's Winograd
/// with 2x2 or 4x4 output tiles, or mixed: the forward pass with 2x2 tiles, both gradients with 4x4. The forward
/// pass decides the ReLUs (which inputs pass, in both directions), so the mixed scheme keeps F(2x2)'s rounding
/// where a rounding error can flip one, and takes F(4x4)'s fewer multiplications in the two gradients, two thirds
/// of the work, where its larger rounding stays a small continuous error (docs/performance.md).
enum class ConvAlgorithm { kDirect, kWinograd2x2, kWinograd4x4, kWinogradMixed };
/// The vector width a Winograd kernel runs at.
enum class ConvIsa { kAvx2, kAvx512 };

struct ConvKernel {
  ConvAlgorithm algorithm = ConvAlgorithm::kDirect;
  ConvIsa isa = ConvIsa::kAvx2;  ///< meaningless for kDirect
  bool operator==(const ConvKernel& o) const {
    return algorithm == o.algorithm && (algorithm == ConvAlgorithm::kDirect || isa == o.isa);
  }
};

std::string to_string(ConvAlgorithm algorithm);   ///< "direct", "winograd2x2", "winograd4x4", "winograd-mixed"
std::string to_string(ConvIsa isa);               ///< "avx2", "avx512"
std::string to_string(const ConvKernel& kernel);  ///< "direct", "winograd2x2-avx512", ...
/// The algorithm, ISA or kernel named as to_string writes it; throws std::invalid_argument naming the value.
ConvAlgorithm parse_conv_algorithm(const std::string& name);
ConvIsa parse_conv_isa(const std::string& name);
ConvKernel parse_conv_kernel(const std::string& name);

/// Whether this CPU (and build) runs the Winograd kernels at `isa`.
bool isa_available(ConvIsa isa);

/// The shape of one convolution as the plan keys it: channels in and out and the map's size (the batch is the
/// plan's, and stride 1, padding 1 and a 3x3 kernel are implied).
struct ConvShape {
  int64_t in_channels = 0, out_channels = 0, height = 0, width = 0;
  bool operator<(const ConvShape& o) const {
    return std::tie(in_channels, out_channels, height, width) <
           std::tie(o.in_channels, o.out_channels, o.height, o.width);
  }
  bool operator==(const ConvShape& o) const { return !(*this < o) && !(o < *this); }
  /// "16-16-32x32": channels in, out, then height x width.
  std::string key() const;
};
/// The shape `key` names; throws std::invalid_argument naming it.
ConvShape parse_conv_shape(const std::string& key);

/// The kernel for each shape a model uses; shapes it does not name run the policy's algorithm.
using ConvPlan = std::map<ConvShape, ConvKernel>;

/// What RESLAB_CONV asks for: kAuto (the default) runs each shape as the plan says (measured: conv_plan.h); the
/// others run one algorithm everywhere.
enum class ConvPolicy { kAuto, kDirect, kWinograd2x2, kWinograd4x4, kWinogradMixed };
std::string to_string(ConvPolicy policy);  ///< "auto", "direct", "winograd2x2", "winograd4x4", "winograd-mixed"
/// The algorithm `policy` runs everywhere; for kAuto, what runs for a shape no plan names: F(2x2, 3x3), what reslab
/// ran before plans.
ConvAlgorithm policy_algorithm(ConvPolicy policy);

/// Whether a Winograd kernel at `isa` takes this input and weight (and options stride 1, padding 1, dilation 1,
/// groups 1, which the caller checks): a CPU with that ISA, float32, a 4-D channels-last input whose channels and
/// the weight's output channels are multiples of the ISA's floats per register (8 or 16) up to 64, a 3x3 weight.
bool winograd_applies(const torch::Tensor& input, const torch::Tensor& weight, ConvIsa isa);
/// Whether the kernels at `isa` take convolutions of `shape`, on whatever CPU: channels in and out multiples of the
/// ISA's floats per register (8 or 16) up to 64.
bool winograd_shape(const ConvShape& shape, ConvIsa isa);
/// The same at AVX2, the narrower width (which takes every shape AVX-512 takes).
bool winograd_applies(const torch::Tensor& input, const torch::Tensor& weight);

/// conv2d(input, weight, stride 1, padding 1) without bias by `algorithm` (a Winograd one) at `isa`, in
/// channels-last layout; differentiable once with respect to the input and the weight (its backward pass runs the
/// same kernel). Throws c10::Error where winograd_applies(input, weight, isa) is false.
torch::Tensor winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight,
                               ConvAlgorithm algorithm = ConvAlgorithm::kWinograd2x2, ConvIsa isa = ConvIsa::kAvx2);

/// The gradients of winograd_conv3x3(input, weight, algorithm, isa) with respect to the input and the weight,
/// given the output's (what its backward pass computes; bench times it alone).
std::pair<torch::Tensor, torch::Tensor> winograd_conv3x3_backward(const torch::Tensor& grad_output,
                                                                  const torch::Tensor& input,
                                                                  const torch::Tensor& weight,
                                                                  ConvAlgorithm algorithm = ConvAlgorithm::kWinograd2x2,
                                                                  ConvIsa isa = ConvIsa::kAvx2);

/// Whether `conv` is a convolution the Winograd kernels compute: 3x3, stride 1, padding 1 (zeros), dilation 1,
/// one group, no bias (what the plan times; the input decides the rest).
bool winograd_candidate(const torch::nn::Conv2dImpl& conv);

/// The kernel conv_forward runs for `conv` on input x: the plan's for its shape, else the policy's algorithm at
/// the widest ISA that takes it (RESLAB_CONV_ISA's if set), or direct where no Winograd kernel takes it or CPU
/// autocast is on (bf16: LibTorch's convolution computes in bfloat16; the Winograd kernels in float32 only).
ConvKernel conv_kernel(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x);
/// conv(x) by conv_kernel(conv, x).
torch::Tensor conv_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x);
/// Whether conv_forward takes a Winograd path for this module on input x.
bool winograd_takes(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

/// Reads RESLAB_CONV (auto, the default; direct; winograd2x2, or winograd, its older name; winograd4x4;
/// winograd-mixed) and
/// RESLAB_CONV_ISA (avx2, avx512, or unset: the widest this CPU has, or as the plan measured) and sets the
/// convolutions up; the plan is cleared. Returns convolution_policy(). Throws std::invalid_argument naming the
/// variable for another value, or an ISA this CPU lacks.
std::string choose_convolutions();
/// The policy in force, in to_string's words, or "direct (no AVX2)" where this CPU or build has no Winograd kernel.
std::string convolution_policy();
/// What runs on `device`: convolution_policy() on the CPU, "direct" elsewhere.
std::string convolution_policy(const torch::Device& device);

void set_conv_policy(ConvPolicy policy);  ///< clears the plan
ConvPolicy conv_policy();
/// Fixes the Winograd kernels' width (nullopt: the plan's, else the widest available). Throws
/// std::invalid_argument for an ISA this CPU lacks.
void set_conv_isa(std::optional<ConvIsa> isa);
std::optional<ConvIsa> conv_isa();
/// The widest ISA this CPU runs the kernels at (RESLAB_CONV_ISA's if set); nullopt when none.
std::optional<ConvIsa> widest_isa();

/// Replaces the plan (for every thread; set it before the forward passes that use it).
void set_conv_plan(const ConvPlan& plan);
ConvPlan conv_plan();

}  // namespace reslab
