#include "models/network.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "ops/torch_compat.h"

namespace reslab {

std::string to_string(Shortcut s) {
  switch (s) {
    case Shortcut::A:
      return "A";
    case Shortcut::B:
      return "B";
    case Shortcut::C:
      return "C";
  }
  return "?";
}

Shortcut parse_shortcut(const std::string& text) {
  std::string upper = text;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  if (upper == "A") return Shortcut::A;
  if (upper == "B") return Shortcut::B;
  if (upper == "C") return Shortcut::C;
  throw std::invalid_argument("shortcut '" + text + "' is not one of A, B, C");
}

std::pair<int64_t, int64_t> conv_output_hw(const torch::nn::Conv2dImpl& conv, int64_t in_h, int64_t in_w) {
  const auto& o = conv.options;
  const auto* padding = compat::get_if<torch::ExpandingArray<2>>(&o.padding());
  TORCH_CHECK(padding != nullptr, "conv_output_hw: only explicit padding is supported");
  return {conv_out_size(in_h, (*o.kernel_size())[0], (*o.stride())[0], (**padding)[0]),
          conv_out_size(in_w, (*o.kernel_size())[1], (*o.stride())[1], (**padding)[1])};
}

int64_t conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding) {
  return (in + 2 * padding - kernel) / stride + 1;
}

int64_t conv_macs(const torch::nn::Conv2dImpl& conv, int64_t out_h, int64_t out_w) {
  const auto& o = conv.options;
  const int64_t k = (*o.kernel_size())[0] * (*o.kernel_size())[1];
  return o.out_channels() * out_h * out_w * (o.in_channels() / o.groups()) * k;
}

int64_t conv_macs(const std::vector<ConvAt>& convs) {
  int64_t total = 0;
  for (const auto& c : convs) total += conv_macs(*c.conv, c.out_h, c.out_w);
  return total;
}

int64_t activation_bytes(const NetworkBase& net, int64_t batch) {
  return batch * net.conv_outputs() * kSavedPerOutput * static_cast<int64_t>(sizeof(float));
}

int64_t estimate_training_bytes(const NetworkBase& net, int64_t batch) {
  return activation_bytes(net, batch) + 2 * count_parameters(net) * static_cast<int64_t>(sizeof(float)) + kScratchBytes;
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

void init_he(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2dImpl>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
      if (conv->bias.defined()) conv->bias.zero_();
    } else if (auto* fc = m->as<torch::nn::LinearImpl>()) {
      torch::nn::init::kaiming_normal_(fc->weight, 0.0, torch::kFanIn, torch::kReLU);
      if (fc->bias.defined()) fc->bias.zero_();
    } else if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      if (bn->weight.defined()) bn->weight.fill_(1.0);
      if (bn->bias.defined()) bn->bias.zero_();
    }
  }
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  for (auto& b : module.buffers()) {
    if (b.dim() == 4) b.set_data(b.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

}  // namespace reslab
