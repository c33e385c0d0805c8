#include "models/residual_block.h"

#include <cmath>
#include <tuple>

#include "ops/winograd.h"

namespace reslab {

namespace {
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}
}  // namespace

std::string to_string(Norm n) {
  switch (n) {
    case Norm::kBatchNorm:
      return "bn";
    case Norm::kBatchNormNoAffine:
      return "bn-noaffine";
    case Norm::kNone:
      return "none";
  }
  return "?";
}

std::string to_string(BranchScale s) {
  switch (s) {
    case BranchScale::kNone:
      return "none";
    case BranchScale::kZero:
      return "zero";
    case BranchScale::kOne:
      return "one";
  }
  return "?";
}

ResidualBlockImpl::ResidualBlockImpl(const ResidualBlockOptions& opts) : options(opts) {
  const auto& o = options;
  TORCH_CHECK(o.in_planes() > 0 && o.planes() > 0, "ResidualBlock: planes must be positive");
  TORCH_CHECK(o.stride() == 1 || o.stride() == 2, "ResidualBlock: stride must be 1 or 2, got ", o.stride());
  TORCH_CHECK(o.kind() == BlockKind::kBottleneck || (o.branch_layers() >= 1 && o.branch_layers() <= 3),
              "ResidualBlock: a basic branch has 1, 2 or 3 layers, got ", o.branch_layers());
  TORCH_CHECK(!o.fixup() || o.norm() == Norm::kNone, "ResidualBlock: Fixup replaces normalisation (norm must be none)");
  TORCH_CHECK(!o.residual() || o.shortcut() != Shortcut::A || o.out_planes() >= o.in_planes(),
              "ResidualBlock: an option A (identity) shortcut cannot shrink channels (", o.in_planes(), " -> ",
              o.out_planes(), "); use option B or C");

  if (o.kind() == BlockKind::kBottleneck) {
    convs_.push_back(conv(o.in_planes(), o.planes(), 1, o.stride_on_3x3() ? 1 : o.stride()));
    convs_.push_back(conv(o.planes(), o.planes(), 3, o.stride_on_3x3() ? o.stride() : 1));
    convs_.push_back(conv(o.planes(), o.out_planes(), 1, 1));
  } else {
    for (int64_t i = 0; i < o.branch_layers(); ++i) {
      convs_.push_back(conv(i == 0 ? o.in_planes() : o.planes(), o.planes(), 3, i == 0 ? o.stride() : 1));
    }
  }
  for (size_t i = 0; i < convs_.size(); ++i) {
    const std::string n = std::to_string(i + 1);
    register_module("conv" + n, convs_[i]);
    if (o.norm() != Norm::kNone) {
      const auto& c = convs_[i]->options;
      const int64_t channels = o.preact() ? c.in_channels() : c.out_channels();
      norms_.push_back(register_module(
          "bn" + n, SyncableBatchNorm2d(torch::nn::BatchNorm2dOptions(channels).affine(o.norm() == Norm::kBatchNorm))));
    }
    if (o.fixup()) {
      fixup_bias_in_.push_back(register_parameter("bias" + n + "a", torch::zeros({1})));
      fixup_bias_out_.push_back(register_parameter("bias" + n + "b", torch::zeros({1})));
    }
  }
  if (o.branch_scale() != BranchScale::kNone || o.fixup()) {
    scale_ = register_parameter("scale", torch::full({1}, o.branch_scale() == BranchScale::kZero ? 0.0 : 1.0));
  }
  const bool shape_changes = o.stride() != 1 || o.in_planes() != o.out_planes();
  const bool project = o.residual() && (o.shortcut() == Shortcut::C || (o.shortcut() == Shortcut::B && shape_changes));
  if (project) {
    torch::nn::Sequential seq(conv(o.in_planes(), o.out_planes(), 1, o.stride()));
    // A pre-activation projection reads the already normalised input; Fixup has no normalisation.
    if (o.norm() != Norm::kNone && !o.preact()) {
      seq->push_back(
          SyncableBatchNorm2d(torch::nn::BatchNorm2dOptions(o.out_planes()).affine(o.norm() == Norm::kBatchNorm)));
    }
    projection_ = register_module("projection", seq);
  }
}

void ResidualBlockImpl::set_tap(ForwardTap* tap, int64_t block, int64_t first_layer) {
  tap_ = tap;
  block_ = block;
  first_layer_ = first_layer;
}

torch::Tensor ResidualBlockImpl::normalise(size_t i, torch::Tensor h) {
  return norms_.empty() ? h : norms_[i]->forward(h);
}

torch::Tensor ResidualBlockImpl::shortcut(const torch::Tensor& x, const torch::Tensor& preactivated) {
  if (!projection_.is_empty()) {
    if (options.preact()) return projection_->forward(preactivated);
    return projection_->forward(options.fixup() ? x + fixup_bias_in_[0] : x);
  }
  const int64_t extra = options.out_planes() - options.in_planes();
  // Fixup's reference downsamples the biased input (x + bias1a) where the shape changes, the identity elsewhere.
  torch::Tensor y = options.fixup() && (options.stride() != 1 || extra > 0) ? x + fixup_bias_in_[0] : x;
  if (options.stride() != 1) {
    y = y.slice(/*dim=*/2, 0, c10::nullopt, options.stride()).slice(/*dim=*/3, 0, c10::nullopt, options.stride());
  }
  if (extra > 0) {
    // Option A: the new channels of the identity are zeros (parameter-free).
    y = torch::constant_pad_nd(y, {0, 0, 0, 0, 0, extra}, 0.0);
  }
  return y;
}

torch::Tensor ResidualBlockImpl::removed(const torch::Tensor& x) {
  if (!options.residual()) {
    TORCH_CHECK(keeps_shape(), "ResidualBlock ", block_, ": a plain block that changes the shape (",
                options.in_planes(), " -> ", options.out_planes(), ", stride ", options.stride(),
                ") cannot be removed");
    return x;
  }
  if (options.preact()) {
    const auto pre = has_projection() ? torch::relu(normalise(0, x)) : torch::Tensor();
    return shortcut(x, pre);
  }
  return torch::relu(shortcut(x, torch::Tensor()));
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& given) {
  const BranchRoute route = tap_ != nullptr ? tap_->route(block_) : BranchRoute::kNormal;
  const torch::Tensor input = tap_ != nullptr ? tap_->block_input(block_, given) : given;
  if (route == BranchRoute::kRemoved) return tapped_output(removed(input));
  const bool preact = options.preact();
  // Where nothing watches, the ReLUs after BN and the residual addition work in place: each writes over this
  // block's own fresh output (BatchNorm's, the scale's, the bias's or the convolution's), none of which autograd
  // keeps. The same floats, one or two activations less to allocate and write (a tap sees every value it saw;
  // without one the route is the normal one).
  const bool in_place = !preact && tap_ == nullptr;
  torch::Tensor x = input, h = input, pre;
  for (size_t i = 0; i < convs_.size(); ++i) {
    const auto layer = first_layer_ + static_cast<int64_t>(i);
    if (preact) {
      h = torch::relu(normalise(i, h));
      if (i == 0) pre = h;
    }
    if (!fixup_bias_in_.empty()) h = h + fixup_bias_in_[i];
    if (tap_ != nullptr) {
      h = tap_->layer_input(layer, h);
      if (i == 0 && !preact && fixup_bias_in_.empty()) x = h;  // the same tensor, as the tap returned it
    }
    h = conv_forward(*convs_[i], h);
    if (!preact) h = normalise(i, h);
    const bool last = i + 1 == convs_.size();
    if (last && scale_.defined()) h = h * scale_;
    if (!fixup_bias_out_.empty()) h = h + fixup_bias_out_[i];
    if (tap_ != nullptr) tap_->layer_response(layer, h);
    if (!preact && !last) h = in_place ? torch::relu_(h) : torch::relu(h);
  }
  if (!options.residual()) return in_place ? torch::relu_(h) : tapped_output(preact ? h : torch::relu(h));
  auto identity = shortcut(x, pre);
  if (tap_ != nullptr) tap_->block_branch(block_, h, identity, !has_projection() && keeps_shape());
  if (route == BranchRoute::kBranchGradient) identity = identity.detach();
  if (route == BranchRoute::kShortcutGradient) h = h.detach();
  if (in_place) return torch::relu_(h.add_(identity));
  const auto out = h + identity;
  return tapped_output(preact ? out : torch::relu(out));
}

torch::Tensor ResidualBlockImpl::tapped_output(torch::Tensor out) {
  if (tap_ != nullptr) tap_->block_output(block_, out);
  return out;
}

std::pair<int64_t, int64_t> ResidualBlockImpl::convolutions(int64_t in_h, int64_t in_w,
                                                            std::vector<ConvAt>& out) const {
  int64_t h = in_h, w = in_w;
  for (const auto& c : convs_) {
    const auto [oh, ow] = conv_output_hw(*c, h, w);
    out.push_back({c.get(), h, w, oh, ow});
    h = oh;
    w = ow;
  }
  if (!projection_.is_empty()) {
    const auto* projection = projection_->ptr(0)->as<torch::nn::Conv2dImpl>();
    const auto [oh, ow] = conv_output_hw(*projection, in_h, in_w);
    out.push_back({projection, in_h, in_w, oh, ow});
  }
  return {h, w};
}

void ResidualBlockImpl::init_branch() {
  torch::NoGradGuard no_grad;
  if (options.zero_init_last() && !norms_.empty() && norms_.back()->options.affine()) norms_.back()->weight.zero_();
}

void ResidualBlockImpl::init_fixup(int64_t residual_blocks) {
  TORCH_CHECK(residual_blocks > 0, "init_fixup: the net needs at least one block");
  torch::NoGradGuard no_grad;
  const auto m = static_cast<double>(convs_.size());
  if (convs_.size() > 1) {
    const double factor = std::pow(static_cast<double>(residual_blocks), -1.0 / (2.0 * m - 2.0));
    for (size_t i = 0; i + 1 < convs_.size(); ++i) convs_[i]->weight.mul_(factor);
  }
  convs_.back()->weight.zero_();
}

void ResidualBlockImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "reslab::ResidualBlock(" << o.in_planes() << " -> " << o.out_planes() << ", stride=" << o.stride() << ", "
         << (o.kind() == BlockKind::kBottleneck ? "bottleneck" : std::to_string(o.branch_layers()) + "x3x3");
  if (o.preact()) stream << ", preact";
  if (o.norm() != Norm::kBatchNorm) stream << ", norm=" << to_string(o.norm());
  if (o.branch_scale() != BranchScale::kNone) stream << ", scale=" << to_string(o.branch_scale());
  if (o.zero_init_last()) stream << ", zero-init last gamma";
  if (o.fixup()) stream << ", fixup";
  if (o.residual()) {
    stream << ", shortcut=" << to_string(o.shortcut()) << (has_projection() ? " (projection)" : "");
  } else {
    stream << ", plain";
  }
  stream << ")";
}

}  // namespace reslab
