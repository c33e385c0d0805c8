#pragma once
// The paper's CIFAR-10 networks (Section 4.2): 6n+2 weighted layers, three stages of n basic blocks.

#include <array>
#include <vector>

#include "models/basic_block.h"

namespace reslab {

using StageWidths = std::array<int64_t, 3>;

/// Options of a CIFAR-style network. Example (the paper's ResNet-56 on CIFAR-10):
///   CifarResNet net(CifarResNetOptions(56).spec(ModelSpec{{3, 32, 32}, 10, Shortcut::A}));
struct CifarResNetOptions {
  explicit CifarResNetOptions(int64_t depth) : depth_(depth) {}
  /// 6n+2: the first conv, 3 stages of n blocks of two 3x3 convs, and the classifier.
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(ModelSpec, spec) = {};
  TORCH_ARG(bool, residual) = true;
  /// Filters of the first conv and the three stages (the paper's 16, 32, 64); stage s halves the map size.
  TORCH_ARG(StageWidths, widths) = {16, 32, 64};
};

/// The deepest CIFAR-style net reslab builds (1000 blocks a stage, about 100M parameters).
constexpr int64_t kMaxCifarDepth = 6002;

/// Throws std::invalid_argument unless depth = 6n+2 with 8 <= depth <= kMaxCifarDepth; the message lists them.
int64_t cifar_blocks_per_stage(int64_t depth);

class CifarResNetImpl : public NetworkBase {
 public:
  explicit CifarResNetImpl(const CifarResNetOptions& options);

  torch::Tensor forward(torch::Tensor x) override;
  int64_t macs() const override;
  int64_t depth() const override { return options.depth(); }
  bool residual() const override { return options.residual(); }
  /// The blocks in forward order (stage by stage), for probes.
  const std::vector<BasicBlock>& blocks() const { return blocks_; }
  void pretty_print(std::ostream& stream) const override;
  void set_tap(ForwardTap* tap) override;
  std::vector<LayerInfo> layers() const override;
  int64_t num_blocks() const override { return static_cast<int64_t>(blocks_.size()); }
  bool block_removable(int64_t b) const override;

  CifarResNetOptions options;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Linear fc_{nullptr};
  std::vector<BasicBlock> blocks_;
  ForwardTap* tap_ = nullptr;
};
TORCH_MODULE(CifarResNet);

}  // namespace reslab
