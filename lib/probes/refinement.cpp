#include "probes/refinement.h"

#include <algorithm>
#include <cmath>

#include "probes/gradients.h"
#include "probes/statistics.h"

namespace reslab {

RefinementTap::Block& RefinementTap::at(int64_t block) {
  if (static_cast<int64_t>(blocks_.size()) <= block) blocks_.resize(static_cast<size_t>(block + 1));
  return blocks_[static_cast<size_t>(block)];
}

torch::Tensor RefinementTap::block_input(int64_t block, torch::Tensor input) {
  if (!input.requires_grad()) input = input.detach().requires_grad_(true);
  at(block).input = input;
  return input;
}

void RefinementTap::block_branch(int64_t block, const torch::Tensor& branch, const torch::Tensor& shortcut,
                                 bool identity) {
  auto& b = at(block);
  b.branch = branch;
  b.shortcut = shortcut;
  b.identity = identity;
}

void RefinementTap::block_output(int64_t block, const torch::Tensor& output) { at(block).output = output; }

namespace {

/// One block's figures, example by example, over the test set.
struct BlockSums {
  std::vector<double> cosines, relative;
  double dot = 0.0, branch_sq = 0.0, grad_sq = 0.0;  ///< for the cosine over the flattened test set
  int64_t undefined = 0;
  bool identity = true;
};

struct ReadoutSums {
  double loss = 0.0;
  int64_t wrong = 0;
};

torch::Tensor rows(const torch::Tensor& t) { return t.detach().cpu().to(torch::kFloat64).reshape({t.size(0), -1}); }

void accumulate(BlockSums& s, const RefinementTap::Block& b, const torch::Tensor& grad) {
  const auto f = rows(b.branch), g = rows(grad), base = rows(b.identity ? b.input : b.shortcut);
  const auto dots = (f * g).sum(1).contiguous(), nf = f.norm(2, 1).contiguous(), ng = g.norm(2, 1).contiguous(),
             nb = base.norm(2, 1).contiguous();
  s.dot += dots.sum().item<double>();
  s.branch_sq += nf.pow(2).sum().item<double>();
  s.grad_sq += ng.pow(2).sum().item<double>();
  s.identity = b.identity;
  const double *d = dots.data_ptr<double>(), *pf = nf.data_ptr<double>(), *pg = ng.data_ptr<double>(),
               *pb = nb.data_ptr<double>();
  for (int64_t i = 0; i < dots.size(0); ++i) {
    // A zero branch or a zero gradient has no direction: the example is left out of the mean, and counted.
    if (pf[i] * pg[i] > 0.0) {
      s.cosines.push_back(d[i] / (pf[i] * pg[i]));
    } else {
      ++s.undefined;
    }
    if (pb[i] > 0.0) s.relative.push_back(pf[i] / pb[i]);
  }
}

/// One forward and one backward pass over `inputs`: every block's figures and the readable blocks' readouts.
void probe_chunk(NetworkBase& net, const torch::Tensor& inputs, const torch::Tensor& targets,
                 const std::vector<int64_t>& readable, std::vector<BlockSums>& sums, std::vector<ReadoutSums>& out) {
  namespace F = torch::nn::functional;
  RefinementTap tap;
  torch::Tensor logits;
  {
    TapGuard installed(net, tap);
    logits = net.forward(inputs);
  }
  const auto& blocks = tap.blocks();
  TORCH_CHECK(blocks.size() == sums.size(), "refinement: the forward pass reached ", blocks.size(), " of ", sums.size(),
              " blocks");
  std::vector<torch::Tensor> wrt;
  for (const auto& b : blocks) wrt.push_back(b.identity ? b.input : b.shortcut);
  // Summed, not averaged, so that each example's gradient is its own loss's (eval mode: examples are independent).
  const auto loss = F::cross_entropy(logits, targets, F::CrossEntropyFuncOptions().reduction(torch::kSum));
  const auto grads = torch::autograd::grad({loss}, wrt);
  for (size_t b = 0; b < blocks.size(); ++b) accumulate(sums[b], blocks[b], grads[b]);
  torch::NoGradGuard no_grad;
  for (size_t r = 0; r < readable.size(); ++r) {
    const auto read = net.head(blocks[static_cast<size_t>(readable[r])].output.detach());
    out[r].loss += F::cross_entropy(read, targets, F::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    out[r].wrong += read.argmax(1).ne(targets).sum().item<int64_t>();
  }
}

nlohmann::json block_json(int64_t block, const BlockSums& s) {
  const double pooled = s.branch_sq * s.grad_sq > 0.0 ? s.dot / std::sqrt(s.branch_sq * s.grad_sq) : std::nan("");
  return {{"block", block},
          {"against", s.identity ? "input" : "shortcut_output"},
          {"cosine", finite_or_null(average_of(s.cosines))},
          {"cosine_sd", finite_or_null(sample_sd(s.cosines))},
          {"cosine_pooled", finite_or_null(pooled)},
          {"undefined_examples", s.undefined},
          {"relative_size", finite_or_null(average_of(s.relative))},
          {"relative_size_sd", finite_or_null(sample_sd(s.relative))}};
}

/// The mean of `key` over rows [from, to) where it is defined.
double mean_over(const nlohmann::json& rows, const char* key, size_t from, size_t to) {
  std::vector<double> v;
  for (size_t i = from; i < to; ++i) {
    if (!rows[i][key].is_null()) v.push_back(rows[i][key].get<double>());
  }
  return average_of(v);
}

void add_headline(nlohmann::json& out) {
  const auto& rows = out["per_block"];
  std::vector<double> cosines;
  for (const auto& r : rows) {
    if (!r["cosine"].is_null()) cosines.push_back(r["cosine"].get<double>());
  }
  int64_t negative = 0;
  for (double c : cosines) negative += c < 0.0 ? 1 : 0;
  const size_t half = rows.size() / 2;
  out["cosine_median"] = finite_or_null(median_of(cosines));
  out["cosine_mean"] = finite_or_null(average_of(cosines));
  out["negative_fraction"] =
      cosines.empty() ? nlohmann::json(nullptr) : nlohmann::json(static_cast<double>(negative) / cosines.size());
  out["relative_size_first_half"] = finite_or_null(mean_over(rows, "relative_size", 0, half));
  out["relative_size_second_half"] = finite_or_null(mean_over(rows, "relative_size", half, rows.size()));
  const auto& readout = out["readout"];
  int64_t decreases = 0;
  for (size_t i = 1; i < readout.size(); ++i) {
    decreases += readout[i]["loss"].get<double>() < readout[i - 1]["loss"].get<double>() ? 1 : 0;
  }
  const int64_t steps = readout.empty() ? 0 : static_cast<int64_t>(readout.size()) - 1;
  out["readout_decreases"] = decreases;
  out["readout_steps"] = steps;
  out["readout_falls"] = steps > 0 ? nlohmann::json(decreases == steps) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json refinement_study(NetworkBase& net, const BatchSource& test, const ProbeSettings& s) {
  const int64_t n = net.num_blocks();
  if (!net.residual()) {
    return {{"applies", false},
            {"blocks", n},
            {"reason", "a plain net has no shortcut: a block's output is not its input plus a branch"}};
  }
  TORCH_CHECK(s.batch > 0, "refinement: the batch must be positive, got ", s.batch);
  NetworkStateGuard guard(net);
  net.eval();
  const auto readable = net.readable_blocks();
  std::vector<BlockSums> sums(static_cast<size_t>(n));
  std::vector<ReadoutSums> readout(readable.size());
  int64_t examples = 0;
  for (int64_t b = 0; b < test.batches_per_epoch(); ++b) {
    const Batch batch = test.batch(b);
    TORCH_CHECK(batch.crops == 1, "refinement: one view per example expected, got ", batch.crops);
    const int64_t size = batch.targets.size(0);
    for (int64_t start = 0; start < size; start += s.batch) {
      const int64_t len = std::min(s.batch, size - start);
      probe_chunk(net, batch.inputs.narrow(0, start, len), batch.targets.narrow(0, start, len), readable, sums,
                  readout);
      examples += len;
    }
  }
  TORCH_CHECK(examples > 0, "refinement: the test set is empty");
  nlohmann::json out = {{"applies", true},
                        {"blocks", n},
                        {"examples", examples},
                        {"per_block", nlohmann::json::array()},
                        {"readout", nlohmann::json::array()}};
  for (int64_t b = 0; b < n; ++b) out["per_block"].push_back(block_json(b, sums[static_cast<size_t>(b)]));
  const auto count = static_cast<double>(examples);
  for (size_t r = 0; r < readable.size(); ++r) {
    out["readout"].push_back({{"block", readable[r]},
                              {"loss", readout[r].loss / count},
                              {"error", 100.0 * static_cast<double>(readout[r].wrong) / count}});
  }
  add_headline(out);
  return out;
}

}  // namespace reslab
