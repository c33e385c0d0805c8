#include "models/cifar_resnet.h"

#include <stdexcept>
#include <string>

namespace reslab {

int64_t cifar_blocks_per_stage(int64_t depth) {
  if (depth < 8 || (depth - 2) % 6 != 0 || depth > kMaxCifarDepth) {
    throw std::invalid_argument("depth " + std::to_string(depth) +
                                " is not 6n+2: CIFAR-style nets have depths 8, 14, 20, 26, 32, 38, 44, 50, 56, ..., "
                                "110, ..., 1202 (any 6n+2 from 8 to " + std::to_string(kMaxCifarDepth) + ")");
  }
  return (depth - 2) / 6;
}

CifarResNetImpl::CifarResNetImpl(const CifarResNetOptions& opts) : options(opts) {
  const int64_t n = cifar_blocks_per_stage(options.depth());
  const auto& widths = options.widths();
  const auto& spec = options.spec();
  TORCH_CHECK(spec.input.channels > 0 && spec.input.height >= 4 && spec.input.width >= 4,
              "CifarResNet: input must have channels > 0 and at least 4x4 pixels");
  TORCH_CHECK(spec.classes > 1, "CifarResNet: classes must be at least 2, got ", spec.classes);

  conv1_ = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(spec.input.channels, widths[0], 3)
                                                          .padding(1)
                                                          .bias(false)));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(widths[0]));
  int64_t in_planes = widths[0];
  for (size_t stage = 0; stage < 3; ++stage) {
    torch::nn::Sequential seq;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
      BasicBlock block(BasicBlockOptions(in_planes, widths[stage])
                           .stride(stride)
                           .shortcut(spec.shortcut)
                           .residual(options.residual()));
      seq->push_back(block);
      blocks_.push_back(block);
      in_planes = widths[stage];
    }
    register_module("stage" + std::to_string(stage + 1), seq);
  }
  fc_ = register_module("fc", torch::nn::Linear(in_planes, spec.classes));
  init_he(*this);
}

torch::Tensor CifarResNetImpl::forward(torch::Tensor x) {
  if (tap_ != nullptr) x = tap_->layer_input(0, x);
  x = bn1_->forward(conv1_->forward(x));
  if (tap_ != nullptr) tap_->layer_response(0, x);
  x = torch::relu(x);
  for (auto& block : blocks_) x = block->forward(x);
  x = x.mean({2, 3});  // global average pooling
  if (tap_ != nullptr) x = tap_->layer_input(1 + 2 * num_blocks(), x);
  return fc_->forward(x);
}

void CifarResNetImpl::set_tap(ForwardTap* tap) {
  tap_ = tap;
  for (int64_t b = 0; b < num_blocks(); ++b) blocks_[b]->set_tap(tap, b, 1 + 2 * b);
}

std::vector<LayerInfo> CifarResNetImpl::layers() const {
  std::vector<LayerInfo> out{{"conv1", -1, true, conv1_->weight}};
  const int64_t n = num_blocks() / 3;
  for (int64_t b = 0; b < num_blocks(); ++b) {
    const std::string prefix = "stage" + std::to_string(b / n + 1) + "." + std::to_string(b % n) + ".";
    out.push_back({prefix + "conv1", b, true, blocks_[b]->conv1()->weight});
    out.push_back({prefix + "conv2", b, true, blocks_[b]->conv2()->weight});
  }
  out.push_back({"fc", -1, false, fc_->weight});
  return out;
}

bool CifarResNetImpl::block_removable(int64_t b) const {
  TORCH_CHECK(b >= 0 && b < num_blocks(), "CifarResNet: no block ", b, " (it has ", num_blocks(), ")");
  return options.residual() || blocks_[b]->keeps_shape();
}

int64_t CifarResNetImpl::macs() const {
  const auto& in = options.spec().input;
  int64_t h = in.height, w = in.width;
  int64_t total = conv_macs(*conv1_, h, w);
  for (const auto& block : blocks_) total += block->macs(h, w, &h, &w);
  return total + fc_->options.in_features() * fc_->options.out_features();
}

void CifarResNetImpl::pretty_print(std::ostream& stream) const {
  stream << "reslab::CifarResNet(depth=" << options.depth() << ", " << (options.residual() ? "residual" : "plain")
         << ", input=" << options.spec().input.channels << "x" << options.spec().input.height << "x"
         << options.spec().input.width << ", classes=" << options.spec().classes << ")";
}

}  // namespace reslab
