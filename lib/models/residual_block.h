#pragma once
// The residual block in every variant the paper and its follow-ups compare, residual or plain from the same code:
// the basic block (Figure 5 left; one, two or three 3x3 layers in the branch), the bottleneck (Figure 5 right),
// pre-activation (He et al. 2016), and the treatments of the branch's scale (BN with or without learned gamma and
// beta, zero-initialised last gamma, a learnable scalar on the branch, no normalisation with Fixup).

#include "models/batch_norm.h"
#include "models/network.h"

namespace reslab {

enum class BlockKind {
  kBasic,       ///< branch_layers 3x3 convs
  kBottleneck,  ///< 1x1 (reduce), 3x3, 1x1 (expand x4)
};

enum class Norm {
  kBatchNorm,          ///< BN with learned gamma and beta (the paper; Caffe's BatchNorm + Scale)
  kBatchNormNoAffine,  ///< BN that only normalises (Caffe's BatchNorm layer without the Scale layer)
  kNone,               ///< no normalisation (Fixup, or a plain He-initialised net)
};

/// A learnable scalar that multiplies the branch before the addition.
enum class BranchScale {
  kNone,
  kZero,  ///< initialised to 0: every block starts as its shortcut (SkipInit, De & Smith 2020; ReZero)
  kOne,   ///< initialised to 1
};

/// Options of a block. Example (a paper bottleneck reading 256 channels, 64 wide, stride 2, projection):
///   ResidualBlock block(ResidualBlockOptions(256, 64).kind(BlockKind::kBottleneck).stride(2).shortcut(Shortcut::B));
struct ResidualBlockOptions {
  ResidualBlockOptions(int64_t in_planes, int64_t planes) : in_planes_(in_planes), planes_(planes) {}
  TORCH_ARG(int64_t, in_planes);
  /// Width of the branch's 3x3 convs; the block outputs planes (basic) or 4 x planes (bottleneck).
  TORCH_ARG(int64_t, planes);
  TORCH_ARG(int64_t, stride) = 1;
  TORCH_ARG(Shortcut, shortcut) = Shortcut::A;
  /// false gives the plain twin: the same layers and no shortcut.
  TORCH_ARG(bool, residual) = true;
  TORCH_ARG(BlockKind, kind) = BlockKind::kBasic;
  /// 3x3 convs in a basic branch: 1, 2 (the paper) or 3.
  TORCH_ARG(int64_t, branch_layers) = 2;
  /// BN and ReLU before each conv, nothing after the addition (He et al. 2016, "Identity Mappings").
  TORCH_ARG(bool, preact) = false;
  /// Bottleneck: the stride on the 3x3 conv (the common PyTorch reference) instead of the first 1x1 (the paper).
  TORCH_ARG(bool, stride_on_3x3) = false;
  TORCH_ARG(Norm, norm) = Norm::kBatchNorm;
  /// The last BN of the branch starts with gamma 0 (Goyal et al. 2017): the block starts as its shortcut.
  TORCH_ARG(bool, zero_init_last) = false;
  TORCH_ARG(BranchScale, branch_scale) = BranchScale::kNone;
  /// Fixup (Zhang et al. 2019): no normalisation, a scalar bias before each conv and activation, a scalar
  /// multiplier (1) on the branch; init_fixup() rescales the weights. Needs norm kNone.
  TORCH_ARG(bool, fixup) = false;

 public:
  int64_t expansion() const { return kind_ == BlockKind::kBottleneck ? 4 : 1; }
  int64_t out_planes() const { return planes_ * expansion(); }
  /// Weighted layers on the branch (the block's contribution to the net's depth).
  int64_t layers() const { return kind_ == BlockKind::kBottleneck ? 3 : branch_layers_; }
};

/// One block. Post-activation (the paper): conv-BN-ReLU ... conv-BN, plus the shortcut, then ReLU.
/// Pre-activation: BN-ReLU-conv ... BN-ReLU-conv, plus the shortcut.
class ResidualBlockImpl : public torch::nn::Module {
 public:
  explicit ResidualBlockImpl(const ResidualBlockOptions& options);

  torch::Tensor forward(const torch::Tensor& x);
  /// Appends the block's convolutions on an in_h x in_w input map (the branch's in order, then the projection's)
  /// to `out`; returns the output map size.
  std::pair<int64_t, int64_t> convolutions(int64_t in_h, int64_t in_w, std::vector<ConvAt>& out) const;
  /// True when the shortcut has a 1x1 projection (options B and C).
  bool has_projection() const { return !projection_.is_empty(); }
  void pretty_print(std::ostream& stream) const override;
  /// Routes the forward pass through `tap` (null: none); the block is number `block` and its convs are
  /// weighted layers first_layer .. first_layer + layers() - 1.
  void set_tap(ForwardTap* tap, int64_t block, int64_t first_layer);
  /// Whether the output has the input's shape (stride 1, same channels): a plain block can then be removed.
  bool keeps_shape() const { return options.stride() == 1 && options.in_planes() == options.out_planes(); }
  /// The branch's convs in order.
  const std::vector<torch::nn::Conv2d>& convs() const { return convs_; }
  /// Fixup's initialisation for a net of `residual_blocks` blocks: the branch's convs but the last scaled by
  /// residual_blocks^(-1/(2m-2)) (m: the branch's layers), the last zero.
  void init_fixup(int64_t residual_blocks);
  /// Applies the options' initialisation of the branch's scale (zero_init_last); the net calls it after init_he.
  void init_branch();

  ResidualBlockOptions options;

 private:
  torch::Tensor shortcut(const torch::Tensor& x, const torch::Tensor& preactivated);
  torch::Tensor removed(const torch::Tensor& x);
  /// `out`, shown to the tap (if any) as the block's output.
  torch::Tensor tapped_output(torch::Tensor out);
  torch::Tensor normalise(size_t i, torch::Tensor h);
  int64_t stride_of(size_t i) const;

  std::vector<torch::nn::Conv2d> convs_;
  std::vector<SyncableBatchNorm2d> norms_;  ///< empty with Norm::kNone
  std::vector<torch::Tensor> fixup_bias_in_, fixup_bias_out_;
  torch::Tensor scale_;
  torch::nn::Sequential projection_{nullptr};
  ForwardTap* tap_ = nullptr;
  int64_t block_ = 0, first_layer_ = 0;
};
TORCH_MODULE(ResidualBlock);

std::string to_string(Norm n);
std::string to_string(BranchScale s);

}  // namespace reslab
