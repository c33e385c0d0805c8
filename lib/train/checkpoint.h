#pragma once
// Checkpoints: everything a run's future depends on, written atomically, loaded with clear errors.

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace reslab {

/// A checkpoint that cannot be used (missing, truncated, corrupt, or from another model or configuration).
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Writes the model, the optimizer (momentum buffers included) and `meta` (the loop's and the callbacks'
/// state, as JSON) to `path`: a temporary file, flushed and fsynced, renamed over `path`, then the folder
/// fsynced, so that a crash leaves either the old file or the new one.
void save_checkpoint(const std::string& path, const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                     const nlohmann::json& meta);

/// Loads a checkpoint into `model` and `optimizer` and returns its meta. Throws CheckpointError naming the
/// path on any failure; `model` and `optimizer` may then be partly overwritten: rebuild them before another try.
nlohmann::json load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer);

/// Writes a model's weights and `meta` (what it is: name, input, classes) to `path`, with the same footer and
/// atomic replacement as a checkpoint: the final model of a run (model.pt).
void save_model_file(const std::string& path, const torch::nn::Module& model, const nlohmann::json& meta);
/// Loads a file written by save_model_file into `model` and returns its meta; throws CheckpointError naming the
/// path when it is missing, truncated, corrupt or for another model.
nlohmann::json load_model_file(const std::string& path, torch::nn::Module& model);
/// The meta of a file written by save_model_file, its weights not loaded (what model to build for it); throws
/// CheckpointError as load_model_file does.
nlohmann::json read_model_meta(const std::string& path);

/// The checkpoints in `dir` (checkpoint-<iteration>.pt), newest first.
std::vector<std::string> list_checkpoints(const std::string& dir);
/// "checkpoint-000123.pt" under `dir` for iteration 123.
std::string checkpoint_path(const std::string& dir, int64_t iter);

}  // namespace reslab
