#pragma once
// The one network class: a stem, stages of residual blocks, global average pooling and a classifier. The paper's
// CIFAR-10 nets (Section 4.2: 6n+2 layers, three stages) and its ImageNet nets (Table 1: 18 to 152 layers, four
// stages) are option sets of it, and so are their plain twins, bottleneck and pre-activation variants.

#include <functional>
#include <vector>

#include "models/residual_block.h"

namespace reslab {

using StageWidths = std::vector<int64_t>;

enum class Stem {
  kCifar,     ///< a 3x3 conv, stride 1
  kImageNet,  ///< a 7x7 conv, stride 2, then 3x3 max-pooling, stride 2
};

/// Options of a network. Example (the paper's ResNet-56 on CIFAR-10):
///   ResNet net(ResNetOptions(56).spec(ModelSpec{{3, 32, 32}, 10, Shortcut::A}));
/// and ResNet-50 on ImageNet: ResNet net(imagenet_options(50).spec(ModelSpec{{3, 224, 224}, 1000, Shortcut::B}));
struct ResNetOptions {
  explicit ResNetOptions(int64_t depth) : depth_(depth) {}
  /// Weighted layers: the first conv, every block's branch, the classifier.
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(ModelSpec, spec) = {};
  TORCH_ARG(Stem, stem) = Stem::kCifar;
  /// Width of the branches in each stage; the first conv has widths[0] filters.
  TORCH_ARG(StageWidths, widths) = {16, 32, 64};
  /// Blocks per stage; empty: equal stages from the depth (CIFAR style). Stage s > 0 halves the map size.
  TORCH_ARG(std::vector<int64_t>, stage_blocks) = {};
  /// What every block is: residual or plain, its kind and branch layers, pre-activation, normalisation, branch
  /// scale, Fixup (the stem and head follow its normalisation and pre-activation). The net sets each block's
  /// widths, stride and shortcut stage by stage; in_planes and planes here are unused.
  ///   ResNetOptions(56).block(ResidualBlockOptions(0, 0).norm(Norm::kBatchNormNoAffine))
  ///   options.block().residual(false)
  TORCH_ARG(ResidualBlockOptions, block) = ResidualBlockOptions(0, 0);

 public:
  /// Edits what every block is, within a chain:
  ///   ResNet net(ResNetOptions(56).blocks([](ResidualBlockOptions& b) { b.norm(Norm::kNone).fixup(true); }));
  ResNetOptions& blocks(const std::function<void(ResidualBlockOptions&)>& edit) {
    edit(block_);
    return *this;
  }
  /// Weighted layers in one block's branch.
  int64_t layers_per_block() const { return block_.layers(); }
};

/// The deepest CIFAR-style net reslab builds (1000 basic blocks a stage, about 100M parameters).
constexpr int64_t kMaxCifarDepth = 6002;

/// Blocks per stage of a CIFAR-style net of `depth` layers with `layers_per_block` layers in each branch:
/// depth = 3 x layers_per_block x n + 2 (6n+2 for the paper's basic blocks, 9n+2 for bottlenecks). Throws
/// std::invalid_argument, listing valid depths, otherwise.
int64_t cifar_blocks_per_stage(int64_t depth, int64_t layers_per_block = 2);

/// The ImageNet depths of Table 1.
const std::vector<int64_t>& imagenet_depths();
/// Table 1's net of `depth` (18, 34, 50, 101, 152): the 7x7 stem, four stages of 64 to 512 wide blocks, basic
/// blocks up to 34 layers and bottlenecks from 50. Throws std::invalid_argument for other depths.
ResNetOptions imagenet_options(int64_t depth);

class ResNetImpl : public NetworkBase {
 public:
  explicit ResNetImpl(const ResNetOptions& options);

  torch::Tensor forward(torch::Tensor x) override;
  int64_t macs() const override;
  std::vector<ConvAt> convolutions() const override;
  int64_t conv_outputs() const override;
  int64_t depth() const override { return options.depth(); }
  bool residual() const override { return options.block().residual(); }
  /// The blocks in forward order (stage by stage), for probes.
  const std::vector<ResidualBlock>& blocks() const { return blocks_; }
  void pretty_print(std::ostream& stream) const override;
  void set_tap(ForwardTap* tap) override;
  std::vector<LayerInfo> layers() const override;
  int64_t num_blocks() const override { return static_cast<int64_t>(blocks_.size()); }
  bool block_removable(int64_t b) const override;
  torch::Tensor head(const torch::Tensor& features) override;
  std::vector<int64_t> readable_blocks() const override;

  ResNetOptions options;

 private:
  void initialise();
  /// What follows the blocks; `tapped`: show the classifier's input to the tap, as forward() does.
  torch::Tensor classify(torch::Tensor x, bool tapped);

  torch::nn::Conv2d conv1_{nullptr};
  SyncableBatchNorm2d bn1_{nullptr}, final_bn_{nullptr};
  torch::nn::Linear fc_{nullptr};
  torch::Tensor stem_bias_, fc_bias_;  ///< Fixup's scalar biases
  std::vector<ResidualBlock> blocks_;
  std::vector<std::pair<int64_t, int64_t>> block_place_;  ///< (stage, index in stage) of each block
  std::vector<int64_t> first_layer_;                      ///< the first weighted layer of each block
  ForwardTap* tap_ = nullptr;
};
TORCH_MODULE(ResNet);

}  // namespace reslab
