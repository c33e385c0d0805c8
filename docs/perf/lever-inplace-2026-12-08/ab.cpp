// In-process A/B of the in-place ReLUs and residual additions: one model, one plan, one process; rounds of
// steps alternate between unwatched (in place) and watched by a tap that only looks (out of place, the forward
// pass as it was before). The host's speed drifts over minutes, so ratios within a round are what count.
//   ab MODEL ROUNDS STEPS   (prints one line per round, then the median and range of the ratios)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "models/registry.h"
#include "ops/winograd.h"
#include "train/allocator.h"
#include "train/kernels.h"
#include "train/replica.h"
#include "train/trainer.h"

using namespace reslab;

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "resnet56";
  const int rounds = argc > 2 ? std::stoi(argv[2]) : 8, steps = argc > 3 ? std::stoi(argv[3]) : 4;
  keep_freed_memory();
  at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));  // as reslab does: every core
  ReplicaOptions o;
  o.model = name;
  o.spec = ModelSpec{{1, 28, 28}, 10, Shortcut::A};
  o.seed = 0;
  Replica replica = make_replica(o);
  auto& model = *replica.model;
  const int64_t batch = 128;
  set_conv_plan(plan_kernels(winograd_shapes(model), batch, default_kernel_cache(), nullptr).plan());
  const auto x = torch::randn({batch, 1, 28, 28}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto y = torch::randint(0, 10, {batch}, torch::kInt64);
  ForwardTap looking;
  auto timed = [&](bool watched, bool train) {
    std::optional<TapGuard> guard;
    if (watched) guard.emplace(model, looking);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) {
      if (train) {
        train_step(model, *replica.optimizer, x, y);
      } else {
        torch::InferenceMode inference;
        (void)model.forward(x);
      }
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (bool train : {true, false}) {
    train ? model.train() : model.eval();
    timed(false, train), timed(true, train);  // warm-up
    std::vector<double> ratios;
    for (int r = 0; r < rounds; ++r) {
      const bool watched_first = r % 2 == 1;
      const double a = timed(watched_first, train), b = timed(!watched_first, train);
      const double in_place = watched_first ? b : a, out_of_place = watched_first ? a : b;
      ratios.push_back(out_of_place / in_place);
      std::printf("%s %s round %d: in place %.1f img/s, out of place %.1f img/s, ratio %.3f\n", name.c_str(),
                  train ? "step" : "eval", r, steps * batch / in_place, steps * batch / out_of_place, ratios.back());
    }
    std::sort(ratios.begin(), ratios.end());
    std::printf("%s %s: in place / out of place speed, median %.3f [%.3f, %.3f] over %d rounds\n", name.c_str(),
                train ? "step" : "eval", ratios[ratios.size() / 2], ratios.front(), ratios.back(), rounds);
  }
}
