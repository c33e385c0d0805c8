#include "models/resnet.h"

#include <numeric>
#include <stdexcept>
#include <string>

namespace reslab {

int64_t cifar_blocks_per_stage(int64_t depth, int64_t layers_per_block) {
  const int64_t step = 3 * layers_per_block;
  const int64_t max_depth = (kMaxCifarDepth - 2) / 6 * step + 2;
  if (depth < step + 2 || (depth - 2) % step != 0 || depth > max_depth) {
    std::string examples;
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9}) examples += std::to_string(step * n + 2) + ", ";
    std::string paper = layers_per_block == 2 ? "110, ..., 1202 " : layers_per_block == 3 ? "164, ..., 1001 " : "";
    throw std::invalid_argument(
        "depth " + std::to_string(depth) + " is not " + std::to_string(step) + "n+2: CIFAR-style nets with " +
        std::to_string(layers_per_block) + " layers a block have depths " + examples + "..., " + paper + "(any " +
        std::to_string(step) + "n+2 from " + std::to_string(step + 2) + " to " + std::to_string(max_depth) + ")");
  }
  return (depth - 2) / step;
}

const std::vector<int64_t>& imagenet_depths() {
  static const std::vector<int64_t> depths = {18, 34, 50, 101, 152};
  return depths;
}

ResNetOptions imagenet_options(int64_t depth) {
  std::vector<int64_t> blocks;
  if (depth == 18) blocks = {2, 2, 2, 2};
  if (depth == 34 || depth == 50) blocks = {3, 4, 6, 3};
  if (depth == 101) blocks = {3, 4, 23, 3};
  if (depth == 152) blocks = {3, 8, 36, 3};
  if (blocks.empty()) {
    throw std::invalid_argument("depth " + std::to_string(depth) +
                                " is not an ImageNet depth of the paper's Table 1: 18, 34, 50, 101, 152");
  }
  ResNetOptions o(depth);
  o.stem(Stem::kImageNet)
      .widths({64, 128, 256, 512})
      .stage_blocks(blocks)
      .spec(ModelSpec{{3, 224, 224}, 1000, Shortcut::B});
  o.block().kind(depth >= 50 ? BlockKind::kBottleneck : BlockKind::kBasic);
  return o;
}

ResNetImpl::ResNetImpl(const ResNetOptions& opts) : options(opts) {
  const auto& o = options;
  const auto& spec = o.spec();
  const int64_t per_block = o.layers_per_block();
  std::vector<int64_t> stages = o.stage_blocks();
  if (stages.empty()) stages.assign(o.widths().size(), cifar_blocks_per_stage(o.depth(), per_block));
  TORCH_CHECK(!stages.empty() && stages.size() == o.widths().size(), "ResNet: ", stages.size(), " stages but ",
              o.widths().size(), " widths");
  const int64_t total = std::accumulate(stages.begin(), stages.end(), int64_t{0});
  TORCH_CHECK(o.depth() == 2 + per_block * total, "ResNet: depth ", o.depth(), " does not match ", total, " blocks of ",
              per_block, " layers (", 2 + per_block * total, ")");
  const int64_t min_size = o.stem() == Stem::kImageNet ? 32 : 4;
  TORCH_CHECK(spec.input.channels > 0 && spec.input.height >= min_size && spec.input.width >= min_size,
              "ResNet: input must have channels > 0 and at least ", min_size, "x", min_size, " pixels");
  TORCH_CHECK(spec.classes > 1, "ResNet: classes must be at least 2, got ", spec.classes);
  TORCH_CHECK(!o.block().fixup() || o.block().norm() == Norm::kNone,
              "ResNet: Fixup replaces normalisation (norm must be none)");

  const bool imagenet = o.stem() == Stem::kImageNet;
  conv1_ = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(spec.input.channels, o.widths()[0], imagenet ? 7 : 3)
                                     .stride(imagenet ? 2 : 1)
                                     .padding(imagenet ? 3 : 1)
                                     .bias(false)));
  // A pre-activation net's first BN-ReLU is inside its first block.
  if (o.block().norm() != Norm::kNone && !o.block().preact()) {
    bn1_ = register_module(
        "bn1",
        SyncableBatchNorm2d(torch::nn::BatchNorm2dOptions(o.widths()[0]).affine(o.block().norm() == Norm::kBatchNorm)));
  }
  if (o.block().fixup()) stem_bias_ = register_parameter("bias1", torch::zeros({1}));
  int64_t in_planes = o.widths()[0];
  int64_t layer = 1;
  for (size_t s = 0; s < stages.size(); ++s) {
    torch::nn::Sequential seq;
    for (int64_t i = 0; i < stages[s]; ++i) {
      ResidualBlockOptions block_options = o.block();
      block_options.in_planes(in_planes).planes(o.widths()[s]).stride(s > 0 && i == 0 ? 2 : 1).shortcut(spec.shortcut);
      ResidualBlock block(block_options);
      seq->push_back(block);
      blocks_.push_back(block);
      block_place_.emplace_back(static_cast<int64_t>(s), i);
      first_layer_.push_back(layer);
      layer += per_block;
      in_planes = block->options.out_planes();
    }
    register_module("stage" + std::to_string(s + 1), seq);
  }
  if (o.block().preact() && o.block().norm() != Norm::kNone) {
    final_bn_ = register_module(
        "final_bn",
        SyncableBatchNorm2d(torch::nn::BatchNorm2dOptions(in_planes).affine(o.block().norm() == Norm::kBatchNorm)));
  }
  if (o.block().fixup()) fc_bias_ = register_parameter("bias2", torch::zeros({1}));
  fc_ = register_module("fc", torch::nn::Linear(in_planes, spec.classes));
  initialise();
}

void ResNetImpl::initialise() {
  init_he(*this);
  for (auto& block : blocks_) block->init_branch();
  if (options.block().fixup()) {
    for (auto& block : blocks_) block->init_fixup(num_blocks());
    torch::NoGradGuard no_grad;
    fc_->weight.zero_();
    fc_->bias.zero_();
  }
}

torch::Tensor ResNetImpl::forward(torch::Tensor x) {
  if (tap_ != nullptr) x = tap_->layer_input(0, x);
  x = conv1_->forward(x);
  if (!bn1_.is_empty()) x = bn1_->forward(x);
  if (stem_bias_.defined()) x = x + stem_bias_;
  if (tap_ != nullptr) tap_->layer_response(0, x);
  // In place where nothing watches (x is a fresh output here, and BatchNorm's backward keeps its input, not its
  // output): the same floats, one activation less to allocate and write.
  if (!options.block().preact()) x = tap_ == nullptr ? torch::relu_(x) : torch::relu(x);
  if (options.stem() == Stem::kImageNet) x = torch::max_pool2d(x, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);
  for (auto& block : blocks_) x = block->forward(x);
  return classify(x, /*tapped=*/true);
}

torch::Tensor ResNetImpl::classify(torch::Tensor x, bool tapped) {
  if (options.block().preact()) x = torch::relu(final_bn_.is_empty() ? x : final_bn_->forward(x));
  x = x.mean({2, 3});  // global average pooling
  if (fc_bias_.defined()) x = x + fc_bias_;
  if (tapped && tap_ != nullptr) x = tap_->layer_input(depth() - 1, x);
  return fc_->forward(x);
}

torch::Tensor ResNetImpl::head(const torch::Tensor& features) {
  const auto& last = blocks_.back()->options;
  TORCH_CHECK(features.dim() == 4 && features.size(1) == last.out_planes(), "ResNet::head: expected features of ",
              last.out_planes(), " channels (N x C x H x W), got ", features.sizes());
  return classify(features, /*tapped=*/false);
}

std::vector<int64_t> ResNetImpl::readable_blocks() const {
  // Walking back from the last block: a block's output keeps the final shape while every later block keeps its
  // input's shape.
  std::vector<int64_t> out{num_blocks() - 1};
  for (int64_t b = num_blocks() - 1; b > 0 && blocks_[b]->keeps_shape(); --b) out.insert(out.begin(), b - 1);
  return out;
}

void ResNetImpl::set_tap(ForwardTap* tap) {
  tap_ = tap;
  for (int64_t b = 0; b < num_blocks(); ++b) blocks_[b]->set_tap(tap, b, first_layer_[b]);
}

std::vector<LayerInfo> ResNetImpl::layers() const {
  std::vector<LayerInfo> out{{"conv1", -1, true, conv1_->weight}};
  for (int64_t b = 0; b < num_blocks(); ++b) {
    const auto [stage, index] = block_place_[b];
    const std::string prefix = "stage" + std::to_string(stage + 1) + "." + std::to_string(index) + ".";
    const auto& convs = blocks_[b]->convs();
    for (size_t i = 0; i < convs.size(); ++i) {
      out.push_back({prefix + "conv" + std::to_string(i + 1), b, true, convs[i]->weight});
    }
  }
  out.push_back({"fc", -1, false, fc_->weight});
  return out;
}

bool ResNetImpl::block_removable(int64_t b) const {
  TORCH_CHECK(b >= 0 && b < num_blocks(), "ResNet: no block ", b, " (it has ", num_blocks(), ")");
  return options.block().residual() || blocks_[b]->keeps_shape();
}

std::vector<ConvAt> ResNetImpl::convolutions() const {
  const auto& in = options.spec().input;
  auto [h, w] = conv_output_hw(*conv1_, in.height, in.width);
  std::vector<ConvAt> out{{conv1_.get(), in.height, in.width, h, w}};
  if (options.stem() == Stem::kImageNet) {
    h = conv_out_size(h, 3, 2, 1);
    w = conv_out_size(w, 3, 2, 1);
  }
  for (const auto& block : blocks_) std::tie(h, w) = block->convolutions(h, w, out);
  return out;
}

int64_t ResNetImpl::macs() const {
  return conv_macs(convolutions()) + fc_->options.in_features() * fc_->options.out_features();
}

int64_t ResNetImpl::conv_outputs() const {
  int64_t total = 0;
  for (const auto& c : convolutions()) total += c.conv->options.out_channels() * c.out_h * c.out_w;
  return total;
}

void ResNetImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "reslab::ResNet(depth=" << o.depth() << ", " << (o.block().residual() ? "residual" : "plain") << ", "
         << (o.stem() == Stem::kImageNet ? "imagenet" : "cifar") << " stem, "
         << (o.block().kind() == BlockKind::kBottleneck ? "bottleneck"
                                                        : std::to_string(o.block().branch_layers()) + "x3x3")
         << " blocks" << (o.block().preact() ? ", preact" : "") << ", input=" << o.spec().input.channels << "x"
         << o.spec().input.height << "x" << o.spec().input.width << ", classes=" << o.spec().classes << ")";
}

}  // namespace reslab
