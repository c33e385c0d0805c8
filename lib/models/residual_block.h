#pragma once
// The paper's two-layer building block (Figure 2 / Figure 5 left), residual or plain from the same code.

#include "models/network.h"

namespace reslab {

/// Options of a basic block. Example:
///   BasicBlock block(BasicBlockOptions(16, 32).stride(2).shortcut(Shortcut::A).residual(false));
struct BasicBlockOptions {
  BasicBlockOptions(int64_t in_planes, int64_t planes) : in_planes_(in_planes), planes_(planes) {}
  TORCH_ARG(int64_t, in_planes);
  TORCH_ARG(int64_t, planes);
  TORCH_ARG(int64_t, stride) = 1;
  TORCH_ARG(Shortcut, shortcut) = Shortcut::A;
  /// false gives the plain twin: the same two conv-BN layers and no shortcut.
  TORCH_ARG(bool, residual) = true;
};

/// conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut when residual, then ReLU.
class BasicBlockImpl : public torch::nn::Module {
 public:
  explicit BasicBlockImpl(const BasicBlockOptions& options);

  torch::Tensor forward(const torch::Tensor& x);
  /// Multiply-adds for one image whose input map is in_h x in_w; sets out_h/out_w to the output map size.
  int64_t macs(int64_t in_h, int64_t in_w, int64_t* out_h, int64_t* out_w) const;
  /// True when the shortcut has a 1x1 projection (options B and C).
  bool has_projection() const { return !projection_.is_empty(); }
  void pretty_print(std::ostream& stream) const override;
  /// Routes the forward pass through `tap` (null: none); the block is number `block` and its convs are
  /// weighted layers `first_layer` and `first_layer + 1`.
  void set_tap(ForwardTap* tap, int64_t block, int64_t first_layer);
  /// Whether the output has the input's shape (stride 1, same channels): a plain block can then be removed.
  bool keeps_shape() const { return options.stride() == 1 && options.in_planes() == options.planes(); }
  const torch::nn::Conv2d& conv1() const { return conv1_; }
  const torch::nn::Conv2d& conv2() const { return conv2_; }

  BasicBlockOptions options;

 private:
  torch::Tensor shortcut(const torch::Tensor& x);
  torch::Tensor removed(const torch::Tensor& x);

  ForwardTap* tap_ = nullptr;
  int64_t block_ = 0, first_layer_ = 0;

  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential projection_{nullptr};
};
TORCH_MODULE(BasicBlock);

}  // namespace reslab
