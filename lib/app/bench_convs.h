#pragma once
// What the convolutions alone can do on this machine: single convolutions shaped like the CIFAR stages (the
// ceiling), and every convolution of one model at its own shapes (the bound its training step cannot beat with
// these kernels; BN, ReLU, the additions, the loss and the update come on top).

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <chrono>

#include "app/commands.h"
#include "models/network.h"

namespace reslab {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// `reslab bench --ceiling`: prints (or with --json writes) the multiply-add rates of single 3x3 convolutions.
int bench_ceiling(const BenchOptions& options, int64_t threads, torch::Device device);

/// Images per second of `model`'s convolutions alone at `batch`: each one's forward pass in order, then its
/// backward pass (to the weights, and to the input for all but the first) in reverse, on random data of the
/// shapes `model.convolutions()` lists, in `memory` layout, with the model's own weights; after `warmup`
/// untimed passes, over `iterations`. Each runs the kernel the model runs it with (conv_kernel, as conv_forward
/// decides under the plan in force): a Winograd kernel, or LibTorch's convolution.
double conv_bound_rate(const NetworkBase& model, int64_t batch, at::MemoryFormat memory, torch::Device device,
                       int64_t iterations, int64_t warmup);

}  // namespace reslab
