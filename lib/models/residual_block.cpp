#include "models/basic_block.h"

namespace reslab {

namespace {
torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, /*kernel_size=*/3).stride(stride).padding(1).bias(false));
}
}  // namespace

BasicBlockImpl::BasicBlockImpl(const BasicBlockOptions& opts) : options(opts) {
  TORCH_CHECK(options.in_planes() > 0 && options.planes() > 0, "BasicBlock: planes must be positive");
  TORCH_CHECK(options.stride() == 1 || options.stride() == 2, "BasicBlock: stride must be 1 or 2, got ",
              options.stride());
  conv1_ = register_module("conv1", conv3x3(options.in_planes(), options.planes(), options.stride()));
  bn1_ = register_module("bn1", torch::nn::BatchNorm2d(options.planes()));
  conv2_ = register_module("conv2", conv3x3(options.planes(), options.planes(), /*stride=*/1));
  bn2_ = register_module("bn2", torch::nn::BatchNorm2d(options.planes()));

  const bool shape_changes = options.stride() != 1 || options.in_planes() != options.planes();
  const bool project = options.residual() && (options.shortcut() == Shortcut::C ||
                                              (options.shortcut() == Shortcut::B && shape_changes));
  if (project) {
    projection_ = register_module(
        "projection",
        torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_planes(), options.planes(), 1)
                                                    .stride(options.stride())
                                                    .bias(false)),
                              torch::nn::BatchNorm2d(options.planes())));
  }
  TORCH_CHECK(!options.residual() || options.shortcut() != Shortcut::A || options.planes() >= options.in_planes(),
              "BasicBlock: an option A (identity) shortcut cannot shrink channels (", options.in_planes(), " -> ",
              options.planes(), "); use option B or C");
}

torch::Tensor BasicBlockImpl::shortcut(const torch::Tensor& x) {
  if (!projection_.is_empty()) return projection_->forward(x);
  torch::Tensor y = x;
  if (options.stride() != 1) {
    y = y.slice(/*dim=*/2, 0, c10::nullopt, options.stride()).slice(/*dim=*/3, 0, c10::nullopt, options.stride());
  }
  const int64_t extra = options.planes() - options.in_planes();
  if (extra > 0) {
    // Option A: the new channels of the identity are zeros (parameter-free).
    y = torch::constant_pad_nd(y, {0, 0, 0, 0, 0, extra}, 0.0);
  }
  return y;
}

void BasicBlockImpl::set_tap(ForwardTap* tap, int64_t block, int64_t first_layer) {
  tap_ = tap;
  block_ = block;
  first_layer_ = first_layer;
}

torch::Tensor BasicBlockImpl::removed(const torch::Tensor& x) {
  if (options.residual()) return torch::relu(shortcut(x));
  TORCH_CHECK(keeps_shape(), "BasicBlock ", block_, ": a plain block that changes the shape (", options.in_planes(),
              " -> ", options.planes(), ", stride ", options.stride(), ") cannot be removed");
  return x;
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& input) {
  if (tap_ == nullptr) {
    auto out = torch::relu(bn1_->forward(conv1_->forward(input)));
    out = bn2_->forward(conv2_->forward(out));
    if (options.residual()) out = out + shortcut(input);
    return torch::relu(out);
  }
  const BranchRoute route = tap_->route(block_);
  if (route == BranchRoute::kRemoved) return removed(input);
  // The same computation, shown to the tap layer by layer.
  const torch::Tensor x = tap_->layer_input(first_layer_, input);
  auto out = bn1_->forward(conv1_->forward(x));
  tap_->layer_response(first_layer_, out);
  out = tap_->layer_input(first_layer_ + 1, torch::relu(out));
  out = bn2_->forward(conv2_->forward(out));
  tap_->layer_response(first_layer_ + 1, out);
  if (options.residual()) {
    auto identity = shortcut(x);
    if (route == BranchRoute::kBranchGradient) identity = identity.detach();
    if (route == BranchRoute::kShortcutGradient) out = out.detach();
    out = out + identity;
  }
  return torch::relu(out);
}

int64_t BasicBlockImpl::macs(int64_t in_h, int64_t in_w, int64_t* out_h, int64_t* out_w) const {
  const int64_t h = conv_out_size(in_h, 3, options.stride(), 1);
  const int64_t w = conv_out_size(in_w, 3, options.stride(), 1);
  int64_t total = conv_macs(*conv1_, h, w) + conv_macs(*conv2_, h, w);
  if (!projection_.is_empty()) total += conv_macs(*projection_->ptr(0)->as<torch::nn::Conv2dImpl>(), h, w);
  *out_h = h;
  *out_w = w;
  return total;
}

void BasicBlockImpl::pretty_print(std::ostream& stream) const {
  stream << "reslab::BasicBlock(" << options.in_planes() << " -> " << options.planes()
         << ", stride=" << options.stride();
  if (options.residual()) {
    stream << ", shortcut=" << to_string(options.shortcut()) << (has_projection() ? " (projection)" : "");
  } else {
    stream << ", plain";
  }
  stream << ")";
}

}  // namespace reslab
