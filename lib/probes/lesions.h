#pragma once
// Residual nets as ensembles of shallow paths (Veit, Wilber, Belongie 2016): delete blocks of a trained net at
// test time, and measure how much gradient the paths of each length carry to the input.

#include <nlohmann/json.hpp>

#include <set>
#include <vector>

#include "data/loader.h"
#include "models/network.h"
#include "probes/settings.h"

namespace reslab {

/// Routes each block by a fixed table: the blocks in `removed` lose their branch; the blocks in `branch`
/// (kBranchGradient) or every other block (kShortcutGradient) when `paths` is set.
class RouteTap : public ForwardTap {
 public:
  std::set<int64_t> removed;
  std::set<int64_t> branch;
  bool paths = false;
  BranchRoute route(int64_t block) override;
};

/// Test error (percent) of `net` over `test` with the blocks in `removed` deleted (eval mode).
double error_without(NetworkBase& net, const BatchSource& test, const std::set<int64_t>& removed);

/// The baseline test error, the error with each removable block deleted in turn, and for each k of
/// settings.lesion_k (up to the number of removable blocks) the errors of settings.samples random sets of k
/// removable blocks deleted together; "single_median_error" is the median of the single-block errors.
nlohmann::json lesion_study(NetworkBase& net, const BatchSource& test, const ProbeSettings& settings);

/// P(path length = k) for k = 0..n in a net of n residual blocks: every path takes each block's branch or its
/// shortcut, so the lengths are Binomial(n, 1/2).
std::vector<double> path_length_distribution(int64_t n);

/// For path lengths k from 0 to n (at most settings.max_lengths of them, evenly spaced), settings.samples random
/// paths of length k: the norm of the input gradient of the loss carried by that single path (the backward pass
/// goes through the branches of the path's k blocks and the shortcuts of the others), averaged over the
/// examples of `batch`. With the number of paths of each length, the share of the total gradient magnitude that
/// paths of each length carry. A plain net has one path; it reports only its input-gradient norm. Eval mode.
nlohmann::json path_gradients(NetworkBase& net, const Batch& batch, const ProbeSettings& settings);

}  // namespace reslab
