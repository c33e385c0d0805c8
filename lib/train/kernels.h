#pragma once
// The convolution kernel of each shape a model uses, chosen by measurement on the machine at hand (the policy
// "auto", RESLAB_CONV's default), cached per machine, and recorded by a run so that its resumed parts compute as
// its first part did (ops/winograd.h holds the kernels and the plan in force).
//
// Under "auto" each candidate kernel (oneDNN's direct convolution, and Winograd F(2x2, 3x3) and the mixed scheme at
// every vector width this CPU has) runs a forward pass and both gradients of the shape at the run's batch, a few times
// after a warm-up; the median decides. The timings are kept in a cache file keyed by this machine (its CPU, the
// instruction sets, LibTorch's version), the thread count, the batch and the shape, so that every run on one
// machine takes the same kernels, and a second run measures nothing.

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "models/network.h"
#include "ops/winograd.h"

namespace reslab {

/// The shapes of `model`'s convolutions that a Winograd kernel could compute (winograd_candidate and
/// winograd_shape at AVX2, channels and map as the model's forward pass sees them), each once, in order.
std::vector<ConvShape> winograd_shapes(const NetworkBase& model);

/// The kernels `policy` chooses among: under kAuto oneDNN's direct convolution, then F(2x2, 3x3) and the mixed
/// scheme (F(2x2) forward, F(4x4) gradients) at each width this CPU has (or the one RESLAB_CONV_ISA fixes) that
/// takes `shape`; under a fixed policy, its one algorithm. F(4x4) throughout is never a candidate: its forward
/// pass flips ReLUs (ops/winograd.h).
std::vector<ConvKernel> plan_candidates(ConvPolicy policy, const ConvShape& shape);

/// The median seconds of a forward pass, the input's gradient and the weights' gradient of `kernel` on random
/// data of `shape` at `batch` (channels-last float32), after a warm-up, over `repeats` passes.
double time_conv_kernel(const ConvShape& shape, int64_t batch, const ConvKernel& kernel, int repeats);

/// One shape's choice, with what decided it.
struct ShapeChoice {
  ConvShape shape;
  ConvKernel kernel;
  /// The median seconds of each candidate (empty when nothing was timed: a fixed policy, or a resumed plan).
  std::vector<std::pair<ConvKernel, double>> seconds;
  bool from_cache = false;
};

/// A plan with its provenance, as summary.json and kernels.json record it.
struct KernelPlan {
  ConvPolicy policy = ConvPolicy::kAuto;
  int64_t batch = 0, threads = 0;
  /// "measured" (timed here, now), "cache" (every shape's timing read from `cache_file`), "none" (the model has
  /// no shape a Winograd kernel takes), "fixed" (the policy's
  /// one algorithm), "resumed" (the run's own kernels.json) or "earlier" (a run begun before plans were kept:
  /// the F(2x2, 3x3) everywhere that reslab ran then), "autocast" (LibTorch's convolutions in the lower precision).
  std::string source;
  std::string cache_file;
  std::vector<ShapeChoice> shapes;
  ConvPlan plan() const;
};

/// The plan for `shapes` at `batch` under the policy in force (conv_policy()). Under kAuto each shape's choice is
/// read from `cache_file` where the file holds this machine's timing of that shape at this batch and thread
/// count, else timed now and written to it (no file when `cache_file` is empty). Throws std::runtime_error naming
/// the cache file when it is not one reslab wrote (delete it, and it is measured again).
KernelPlan plan_kernels(const std::vector<ConvShape>& shapes, int64_t batch, const std::string& cache_file,
                        std::ostream* log);

/// The plan a run recorded (to_json's form, in its kernels.json), to resume it with: every shape's algorithm as
/// recorded, at the recorded width where this CPU has it, else at one it has (the same floats). Throws
/// std::runtime_error naming `source` and the key for one that is not as reslab writes it, or that names an
/// algorithm this CPU cannot run.
KernelPlan plan_from_json(const nlohmann::json& recorded, const std::string& source);

/// The plan for a run begun before plans were recorded (no kernels.json): what reslab ran then, F(2x2, 3x3) for
/// every shape a Winograd kernel takes, at the widest width; or, where RESLAB_CONV fixes an algorithm now (as it
/// must have when the run began with it), that one.
KernelPlan earlier_plan(const std::vector<ConvShape>& shapes, int64_t batch);

/// LibTorch's direct convolution for every shape, nothing timed, with `source` as its provenance (a run under
/// autocast: "autocast").
KernelPlan direct_plan(const std::vector<ConvShape>& shapes, int64_t batch, const std::string& source);

/// One shape's candidates timed in a network's own training step.
struct InStepChoice {
  ConvShape shape;
  ConvKernel kernel;  ///< the fastest in the step
  /// The median seconds of the whole step (forward, backward) with this shape computed by each candidate.
  std::vector<std::pair<ConvKernel, double>> seconds;
};

/// Each shape's candidates (plan_candidates) timed in place, in `model`'s own training step: a forward pass and
/// the backward pass of the cross-entropy of `inputs` against `targets`, with every other shape computed as
/// `start` says, while the shape's candidates take turns, `rounds` rounds, the order turned each round (so that
/// neither drift nor order favours one); the median decides. Shapes are taken in `start`'s order, and each
/// keeps its fastest before the next is timed. What a per-shape timing cannot see shows here: the caches a
/// kernel leaves for its neighbours, the layouts between them. `model`'s weights, BatchNorm statistics and the
/// plan in force are as they were afterwards; its gradients are zero.
std::vector<InStepChoice> time_kernels_in_step(NetworkBase& model, const KernelPlan& start, const torch::Tensor& inputs,
                                               const torch::Tensor& targets, int rounds);

nlohmann::json to_json(const KernelPlan& plan);

/// Where the timings are cached: $RESLAB_CACHE_DIR/conv-plans.json, else $XDG_CACHE_HOME/reslab/conv-plans.json,
/// else $HOME/.cache/reslab/conv-plans.json; "" when none of them is set.
std::string default_kernel_cache();

/// What the cache keys a machine by: the CPU's model name (/proc/cpuinfo), the widths the kernels can use, and
/// LibTorch's version; with the thread count.
std::string machine_signature(int64_t threads);

/// Where a run ran, for its summary: the CPU's model name (/proc/cpuinfo, "unknown CPU" where it names none), the
/// vector widths reslab's kernels can use there ("avx2+avx512", "avx2" or "none"), the logical CPUs this process
/// may use, and the visible GPUs (0 in a CPU-only build).
nlohmann::json machine_info();

}  // namespace reslab
