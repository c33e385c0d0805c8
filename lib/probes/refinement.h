#pragma once
// Residual blocks as iterative refinement (Greff et al. 2017; Jastrzebski et al. 2018, "Residual connections
// encourage iterative inference"): does each block's branch move the representation down the loss, by small
// steps, with a loss that falls block by block? The ensembles-of-paths view (lesions.h) predicts the same lesion
// robustness without these.

#include <nlohmann/json.hpp>

#include <vector>

#include "data/loader.h"
#include "models/network.h"
#include "probes/settings.h"

namespace reslab {

/// Captures, for one forward pass, each block's input h (made to require a gradient where it did not), the two
/// terms a residual block adds (branch F(h) and shortcut s(h)) and each block's output.
class RefinementTap : public ForwardTap {
 public:
  struct Block {
    torch::Tensor input, branch, shortcut, output;
    bool identity = true;  ///< the shortcut is the identity (s(h) is h)
  };
  torch::Tensor block_input(int64_t block, torch::Tensor input) override;
  void block_branch(int64_t block, const torch::Tensor& branch, const torch::Tensor& shortcut, bool identity) override;
  void block_output(int64_t block, const torch::Tensor& output) override;
  const std::vector<Block>& blocks() const { return blocks_; }
  void clear() { blocks_.clear(); }

 private:
  Block& at(int64_t block);
  std::vector<Block> blocks_;
};

/// Over the test set, in eval mode, `settings.batch` examples per forward pass. Per residual block i:
/// - "cosine": the cosine between the branch's output F_i(h_i) and the loss gradient dL/dh_i at the block's input
///   ("against": "input"), or at the shortcut's output s_i(h_i) where the shortcut subsamples, pads or projects
///   ("against": "shortcut_output"), per example and then averaged over the examples (the headline; "cosine_sd"
///   its sd over examples); null when F or the gradient is zero for every example ("undefined_examples" counts
///   the examples left out for that reason). "cosine_pooled" is the cosine over the whole flattened test set.
/// - "relative_size": ||F_i(h_i)|| / ||h_i|| per example (||s_i(h_i)|| where the shape changes), averaged.
/// For the blocks that head() can read, "readout": the test loss and error (percent) of the head applied to each
/// block's output. Headline fields: "cosine_median", "cosine_mean" and "negative_fraction" over the blocks with a
/// defined cosine, "relative_size_first_half" (blocks 0 .. n/2 - 1) and "relative_size_second_half",
/// "readout_decreases" (of "readout_steps" steps between consecutive readable blocks; "readout_falls": at every
/// step, null without one).
/// Iterative refinement predicts negative cosines, small relative sizes in later blocks and a readout loss that
/// falls block by block.
/// A plain net: {"applies": false, "reason": ...}.
nlohmann::json refinement_study(NetworkBase& net, const BatchSource& test, const ProbeSettings& settings);

}  // namespace reslab
