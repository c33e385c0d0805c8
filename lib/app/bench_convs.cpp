#include "app/bench_convs.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "ops/torch_compat.h"
#include "ops/winograd.h"
#include "train/device.h"
#include "train/kernels.h"

namespace reslab {

/// Multiply-adds per second of single 3x3 convolutions, stride 1, padding 1, no bias, as the CIFAR nets' stages
/// have them (16 channels on 32x32 maps, 32 on 16x16, 64 on 8x8, and 32 on 32x32), forward alone and forward
/// with backward to inputs and weights: LibTorch's direct convolutions in both memory layouts (the best is what
/// the machine gives this work) and every Winograd kernel this CPU runs (its rate counts the direct convolution's
/// multiply-adds, so it shows the speed-up; it does fewer). Then, per shape, the kernel the "auto" policy picks
/// (train/kernels.h), from the cache or measured, beside the fastest of the timings above.
int bench_ceiling(const BenchOptions& options, int64_t threads, torch::Device device) {
  struct Shape {
    int64_t channels, size;
  };
  const Shape shapes[] = {{16, 32}, {32, 16}, {64, 8}, {32, 32}};
  nlohmann::json rows = nlohmann::json::array();
  double best = 0.0, best_winograd = 0.0;
  if (!options.json) {
    std::printf("%-9s %5s %6s %20s %12s %12s\n", "channels", "map", "batch", "kernel", "pass", "GMAC/s");
  }
  struct Kind {
    std::string label;
    bool channels_last;
    std::optional<ConvKernel> winograd;
  };
  std::vector<Kind> kinds = {{"direct-channels-last", true, std::nullopt}, {"direct-NCHW", false, std::nullopt}};
  if (device.is_cpu()) {
    for (ConvAlgorithm a : {ConvAlgorithm::kWinograd2x2, ConvAlgorithm::kWinograd4x4, ConvAlgorithm::kWinogradMixed}) {
      for (ConvIsa isa : {ConvIsa::kAvx2, ConvIsa::kAvx512}) {
        if (isa_available(isa)) kinds.push_back({to_string(ConvKernel{a, isa}), true, ConvKernel{a, isa}});
      }
    }
  }
  nlohmann::json picks = nlohmann::json::array();
  for (const Shape& shape : shapes) {
    double fastest_fwd_bwd = 0.0;
    std::string fastest_label;
    for (const Kind& kind : kinds) {
      torch::manual_seed(0);
      const auto memory = kind.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
      torch::nn::Conv2d conv(torch::nn::Conv2dOptions(shape.channels, shape.channels, 3).padding(1).bias(false));
      conv->to(device);
      conv->weight.set_data(conv->weight.contiguous(memory));
      auto x = torch::randn({options.batch, shape.channels, shape.size, shape.size}).to(device).contiguous(memory);
      if (kind.winograd && !winograd_applies(x, conv->weight, kind.winograd->isa)) continue;
      const auto run = [&](const torch::Tensor& in) {
        return kind.winograd ? winograd_conv3x3(in, conv->weight, kind.winograd->algorithm, kind.winograd->isa)
                             : conv->forward(in);
      };
      const double macs =
          static_cast<double>(options.batch * shape.channels * shape.channels * 9 * shape.size * shape.size);
      for (bool backward : {false, true}) {
        auto input = backward ? x.clone().requires_grad_(true) : x;
        auto once = [&] {
          if (backward) {
            conv->zero_grad();
            input.mutable_grad() = torch::Tensor();
            run(input).sum().backward();
          } else {
            torch::NoGradGuard no_grad;
            (void)run(input);
          }
        };
        for (int64_t i = 0; i < std::max<int64_t>(options.warmup, 1); ++i) once();
        synchronize(device);
        const auto start = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < options.iterations; ++i) once();
        synchronize(device);
        // The backward pass costs two convolutions' worth: to the inputs and to the weights.
        const double rate =
            macs * (backward ? 3.0 : 1.0) * static_cast<double>(options.iterations) / seconds_since(start);
        double& top = kind.winograd ? best_winograd : best;
        top = std::max(top, rate);
        if (backward && rate > fastest_fwd_bwd) fastest_fwd_bwd = rate, fastest_label = kind.label;
        const char* pass = backward ? "fwd+bwd" : "forward";
        rows.push_back({{"channels", shape.channels},
                        {"map", shape.size},
                        {"batch", options.batch},
                        {"kernel", kind.label},
                        {"pass", pass},
                        {"macs_per_s", rate}});
        if (!options.json) {
          std::printf("%-9lld %5lld %6lld %20s %12s %12.1f\n", static_cast<long long>(shape.channels),
                      static_cast<long long>(shape.size), static_cast<long long>(options.batch), kind.label.c_str(),
                      pass, rate / 1e9);
        }
      }
    }
    if (device.is_cpu()) {
      // What a run at this batch would take for this shape (the policy in force; "auto" measures or reads the
      // cache), beside the fastest channels-last or Winograd timing above.
      const ConvShape conv_shape{shape.channels, shape.channels, shape.size, shape.size};
      const KernelPlan plan = plan_kernels({conv_shape}, options.batch, default_kernel_cache(), nullptr);
      const std::string pick = to_string(plan.shapes.at(0).kernel);
      picks.push_back({{"shape", conv_shape.key()},
                       {"batch", options.batch},
                       {"policy", to_string(plan.policy)},
                       {"kernel", pick},
                       {"source", plan.source},
                       {"fastest_above", fastest_label}});
      if (!options.json) {
        std::printf("  %s picks %s (%s); fastest above: %s\n", to_string(plan.policy).c_str(), pick.c_str(),
                    plan.source.c_str(), fastest_label.c_str());
      }
    }
  }
  if (options.json) {
    const nlohmann::json winograd_best = best_winograd > 0 ? nlohmann::json(best_winograd) : nlohmann::json();
    std::cout << nlohmann::json{{"threads", threads},
                                {"best_macs_per_s", best},
                                {"best_winograd_macs_per_s", winograd_best},
                                {"convolutions", rows},
                                {"picks", picks}}
                     .dump(2)
              << "\n";
  } else {
    std::printf("best: %.1f G multiply-adds/s with %lld threads\n", best / 1e9, static_cast<long long>(threads));
    if (best_winograd > 0) {
      std::printf("best through Winograd: %.1f G direct-convolution multiply-adds/s\n", best_winograd / 1e9);
    }
  }
  return 0;
}

double conv_bound_rate(const NetworkBase& model, int64_t batch, at::MemoryFormat memory, torch::Device device,
                       int64_t iterations, int64_t warmup) {
  struct Work {
    torch::Tensor input, weight, grad_output;
    std::vector<int64_t> stride, padding, dilation;
    int64_t groups;
    bool input_grad;
    ConvKernel kernel;  // the kernel the model runs this one with (conv_kernel, as conv_forward decides)
  };
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  std::vector<Work> work;
  for (const ConvAt& c : model.convolutions()) {
    const auto& o = c.conv->options;
    auto vec = [](const torch::ExpandingArray<2>& a) { return c10::IntArrayRef(a).vec(); };
    const auto dtype = torch::dtype(c.conv->weight.scalar_type());
    auto random = [&](int64_t channels, int64_t h, int64_t w) {
      return torch::randn({batch, channels, h, w}, dtype).to(device).contiguous(memory);
    };
    const torch::Tensor input = random(o.in_channels(), c.in_h, c.in_w);
    work.push_back({input, c.conv->weight.detach().to(device).contiguous(memory),
                    random(o.out_channels(), c.out_h, c.out_w), vec(o.stride()),
                    vec(compat::get<torch::ExpandingArray<2>>(o.padding())), vec(o.dilation()), o.groups(),
                    !work.empty(), conv_kernel(*c.conv, input)});
  }
  const std::vector<int64_t> no_output_padding{0, 0};
  auto pass = [&] {
    for (const Work& w : work) {
      if (w.kernel.algorithm != ConvAlgorithm::kDirect) {
        (void)winograd_conv3x3(w.input, w.weight, w.kernel.algorithm, w.kernel.isa);
        continue;
      }
      (void)at::convolution(w.input, w.weight, {}, w.stride, w.padding, w.dilation, false, no_output_padding, w.groups);
    }
    for (auto it = work.rbegin(); it != work.rend(); ++it) {
      if (it->kernel.algorithm != ConvAlgorithm::kDirect) {
        (void)winograd_conv3x3_backward(it->grad_output, it->input, it->weight, it->kernel.algorithm, it->kernel.isa);
        continue;
      }
      (void)at::convolution_backward(it->grad_output, it->input, it->weight, c10::nullopt, it->stride, it->padding,
                                     it->dilation, false, no_output_padding, it->groups, {it->input_grad, true, false});
    }
  };
  for (int64_t i = 0; i < std::max<int64_t>(warmup, 1); ++i) pass();
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iterations; ++i) pass();
  synchronize(device);
  return static_cast<double>(batch * iterations) / seconds_since(start);
}

}  // namespace reslab
