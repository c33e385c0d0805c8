#pragma once
// 3x3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms
// for Convolutional Neural Networks", 2016). F(2x2, 3x3), the default, computes each 2x2 output tile with 16
// multiply-adds per input and output channel instead of 36, at the price of transforms (additions only) of the
// input, the weights and the output. F(4x4, 3x3) (RESLAB_CONV=winograd4x4) needs 36 instead of 144 per 4x4 tile
// and was about 9% faster on a resnet56 step, but rounds about twenty times more, enough to flip the odd ReLU
// and move a resnet20's gradient by up to 0.25%; it is not the default.
//
// On this project's CPU (AVX2, no AVX-512) oneDNN has no Winograd convolution and its direct one bounded a
// resnet56 training step (docs/performance.md, "The convolutions' bound"). This one runs the forward pass, the
// input's gradient (the same kernel on the flipped, transposed weights) and the weights' gradient (an
// accumulation in the transformed domain) with hand-written AVX2 loops, a block of tiles at a time so that the
// transformed data stays in the cache.
//
// It takes CPU float32 4-D tensors in channels-last layout with 8 to 64 channels in and out (multiples of 8; wider
// layers' transformed weights would not stay in the cache), no bias, no groups, on a CPU with AVX2 and FMA;
// everything else goes through torch::conv2d (oneDNN). It agrees with torch::conv2d in double precision to a
// relative 1e-5 (F(2x2)) or 1e-4 (F(4x4)) of the output's largest value (tested). RESLAB_CONV=direct in the
// environment, or set_winograd(false), turns it off for the whole process.

#include <torch/torch.h>

#include <string>
#include <utility>

namespace reslab {

/// Whether winograd_conv3x3 takes this input and weight (and options stride 1, padding 1, dilation 1, groups 1,
/// which the caller checks): turned on, a CPU with AVX2 and FMA, float32, a 4-D channels-last input whose
/// channels and the weight's output channels are multiples of 8 up to 64, a 3x3 weight.
bool winograd_applies(const torch::Tensor& input, const torch::Tensor& weight);

/// conv2d(input, weight, stride 1, padding 1) without bias, in channels-last layout; differentiable once with
/// respect to the input and the weight.
torch::Tensor winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight);

/// The gradients of winograd_conv3x3(input, weight) with respect to the input and the weight, given the output's
/// (what its backward pass computes; bench times it alone).
std::pair<torch::Tensor, torch::Tensor> winograd_conv3x3_backward(const torch::Tensor& grad_output,
                                                                  const torch::Tensor& input,
                                                                  const torch::Tensor& weight);

/// conv(x): through winograd_conv3x3 where the module is a 3x3 convolution with stride 1, padding 1 (zeros),
/// dilation 1, one group and no bias and winograd_applies(x, weight); through the module's own forward otherwise.
torch::Tensor conv_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x);
/// Whether conv_forward takes the Winograd path for this module on input x.
bool winograd_takes(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

/// Reads RESLAB_CONV and sets the convolutions up: winograd (the default, F(2x2, 3x3)),
/// winograd2x2 or winograd4x4 (that tile everywhere), or direct (LibTorch's). Returns what runs, in those words,
/// or "direct (no AVX2)" where this CPU or build cannot. Throws std::invalid_argument naming RESLAB_CONV for
/// another value.
std::string choose_convolutions();
/// What runs now on the CPU, in the words of choose_convolutions().
std::string convolution_policy();
/// What runs on `device`: convolution_policy() on the CPU, "direct" elsewhere.
std::string convolution_policy(const torch::Device& device);

/// The output tile's side: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3), or 0 for the default (2). Throws
/// std::invalid_argument for another value.
void set_winograd_tile(int side);

/// Turns the Winograd path on (the default) or off for the whole process.
void set_winograd(bool enabled);
bool winograd_enabled();

}  // namespace reslab
