#pragma once
// The interface every reslab network implements, and the shapes it is built for.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace reslab {

/// How a residual block carries its input past the branch (paper, Section 3.3 and Table 3).
enum class Shortcut {
  A,  ///< identity; zero-padded extra channels and stride-2 subsampling where the shape changes
  B,  ///< 1x1 projection (with BN) where the shape changes, identity elsewhere
  C,  ///< 1x1 projection (with BN) on every block
};

std::string to_string(Shortcut s);
/// Parses "A", "B" or "C" (case-insensitive); throws std::invalid_argument naming the value otherwise.
Shortcut parse_shortcut(const std::string& text);

/// Channels, height and width of one input image.
struct ImageShape {
  int64_t channels = 3;
  int64_t height = 32;
  int64_t width = 32;
};

/// What a network is built for: input shape, classes and shortcut option.
struct ModelSpec {
  ImageShape input;
  int64_t classes = 10;
  Shortcut shortcut = Shortcut::A;
};

/// How a block forms its output while a probe looks at it (Veit et al. 2016 lesions and path lengths).
enum class BranchRoute {
  kNormal,            ///< shortcut + branch (a plain block: the branch)
  kRemoved,           ///< the branch deleted: the shortcut alone; a plain block whose shapes allow becomes the identity
  kBranchGradient,    ///< forward unchanged; the backward pass goes through the branch only
  kShortcutGradient,  ///< forward unchanged; the backward pass goes through the shortcut only (residual blocks)
};

/// A probe's view into a forward pass. Weighted layers are numbered in forward order (0: the first conv, then
/// each block's convs, last: the classifier); blocks from 0. Every method does nothing by default.
class ForwardTap {
 public:
  virtual ~ForwardTap() = default;
  /// The input of weighted layer `layer`; what it returns is used instead (e.g. with gradients retained).
  virtual torch::Tensor layer_input(int64_t /*layer*/, torch::Tensor input) { return input; }
  /// The response of a conv layer after its BN, before the ReLU and the addition (the paper's Figure 7).
  virtual void layer_response(int64_t /*layer*/, const torch::Tensor& /*response*/) {}
  virtual BranchRoute route(int64_t /*block*/) { return BranchRoute::kNormal; }
  /// The input h of block `block`; what it returns is used instead (e.g. with its gradient retained).
  virtual torch::Tensor block_input(int64_t /*block*/, torch::Tensor input) { return input; }
  /// The two terms a residual block adds: its branch's output F(h) (after any branch scale) and its shortcut's
  /// output s(h); `identity` is true where the shortcut is the identity (s(h) is h itself), false where it
  /// subsamples, zero-pads or projects. Not called for plain blocks.
  virtual void block_branch(int64_t /*block*/, const torch::Tensor& /*branch*/, const torch::Tensor& /*shortcut*/,
                            bool /*identity*/) {}
  /// The output of block `block` (after the addition and, post-activation, the ReLU).
  virtual void block_output(int64_t /*block*/, const torch::Tensor& /*output*/) {}
};

/// One weighted layer on the network's main path, for probes.
struct LayerInfo {
  std::string name;    ///< "conv1", "stage2.0.conv1", ..., "fc"
  int64_t block = -1;  ///< the block it belongs to; -1 for the first conv and the classifier
  bool conv = true;    ///< false for the classifier
  torch::Tensor weight;
};

/// One convolution of a forward pass and the maps it reads and writes, for one image.
struct ConvAt {
  const torch::nn::Conv2dImpl* conv = nullptr;
  int64_t in_h = 0, in_w = 0;
  int64_t out_h = 0, out_w = 0;
};

/// Base of every network in the registry: a module with a forward pass and an exact multiply-add count.
class NetworkBase : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  /// Multiply-adds of one forward pass for one image of the shape the network was built for
  /// (convolutions and the classifier; BN, ReLU, pooling and additions are not counted, as in the paper).
  virtual int64_t macs() const = 0;
  /// Values the convolutions output in one forward pass of one image: what training keeps per image for the
  /// backward pass is a small multiple of it (see estimate_training_bytes).
  virtual int64_t conv_outputs() const = 0;
  /// Every convolution of one forward pass on an image of the shape the network was built for, in forward order,
  /// projection shortcuts included: what macs() and conv_outputs() count, and what `reslab bench --conv-bound` times.
  virtual std::vector<ConvAt> convolutions() const = 0;
  /// Weighted layers on the longest path (convolutions and the classifier), the paper's "depth".
  virtual int64_t depth() const = 0;
  virtual bool residual() const = 0;

  /// Installs `tap` for the forward passes that follow; null removes it. Use TapGuard.
  virtual void set_tap(ForwardTap* tap) = 0;
  /// The weighted layers on the main path, in forward order (projection shortcuts are not listed).
  virtual std::vector<LayerInfo> layers() const = 0;
  virtual int64_t num_blocks() const = 0;
  /// Whether BranchRoute::kRemoved applies to block `b`: always in a residual net; in a plain net only where
  /// the block's input and output shapes match.
  virtual bool block_removable(int64_t b) const = 0;
  /// The network's head on a feature map shaped like the last block's output: what follows the blocks in
  /// forward() (pre-activation: the final BN-ReLU; then global average pooling and the classifier). Returns logits.
  virtual torch::Tensor head(const torch::Tensor& features) = 0;
  /// The blocks whose output head() can read (the same channels and map size as the last block's), in order.
  virtual std::vector<int64_t> readable_blocks() const = 0;
};

/// Installs a tap for its lifetime.
class TapGuard {
 public:
  TapGuard(NetworkBase& net, ForwardTap& tap) : net_(net) { net_.set_tap(&tap); }
  ~TapGuard() { net_.set_tap(nullptr); }
  TapGuard(const TapGuard&) = delete;
  TapGuard& operator=(const TapGuard&) = delete;

 private:
  NetworkBase& net_;
};

/// Multiply-adds of a 2-D convolution producing an out_h x out_w map.
int64_t conv_macs(const torch::nn::Conv2dImpl& conv, int64_t out_h, int64_t out_w);
/// Multiply-adds of these convolutions together, for one image.
int64_t conv_macs(const std::vector<ConvAt>& convs);
/// Output map size (height, width) of `conv` on an in_h x in_w input (explicit padding only).
std::pair<int64_t, int64_t> conv_output_hw(const torch::nn::Conv2dImpl& conv, int64_t in_h, int64_t in_w);
/// Output size of a convolution along one axis.
int64_t conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding);
/// Number of trainable scalars.
int64_t count_parameters(const torch::nn::Module& module);

/// Memory (bytes) that training `net` at `batch` needs beyond the model and the data already loaded: the
/// activations autograd keeps for the backward pass (kSavedPerOutput float32 values per convolution output: at
/// batch 128 that gives 271, 533, 925 and 8,863 MiB for resnet20/56/110/1202, against measured peaks of 374, 608,
/// 1,041 and 9,830 MiB that include the process itself; docs/performance.md), the gradients and momentum buffers
/// (two copies of the parameters), and kScratchBytes for oneDNN's scratch and transient gradients.
int64_t estimate_training_bytes(const NetworkBase& net, int64_t batch);
/// The activations part of that estimate.
int64_t activation_bytes(const NetworkBase& net, int64_t batch);
constexpr int64_t kSavedPerOutput = 2;
constexpr int64_t kScratchBytes = int64_t{128} << 20;

/// He (Kaiming) normal initialisation of every convolution and linear layer in `module`, fan-in mode for ReLU
/// (He et al. 2015, used by the paper); BN weights 1, biases 0.
void init_he(torch::nn::Module& module);

/// Moves every 4-D parameter and buffer of `module` to channels-last memory layout (NHWC), which oneDNN's
/// convolutions run several times faster in on CPUs. Values and shapes are unchanged.
void to_channels_last(torch::nn::Module& module);

}  // namespace reslab
