#pragma once
// Gradient probes as a training callback: records during training, next to the loss curves.

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "probes/gradients.h"
#include "train/trainer.h"

namespace reslab {

/// Runs "grad_norms" and/or "grad_snr" on the training step that follows `at` iterations done (0: the first
/// step, at initialisation), on that step's own batch, and writes each result as a metrics record
/// {"kind": "probe", "name": ..., "iter": ..., "epoch": ..., "layers": [...]}. grad_norms reads the step's own
/// gradients (the input gradients through a tap installed for that step only); grad_snr costs one extra
/// backward pass per example. Other steps cost a set lookup.
class GradientProbeCallback : public Callback {
 public:
  GradientProbeCallback(std::vector<std::string> probes, std::set<int64_t> at);
  ~GradientProbeCallback() override;
  GradientProbeCallback(const GradientProbeCallback&) = delete;
  GradientProbeCallback& operator=(const GradientProbeCallback&) = delete;
  void on_batch_begin(TrainContext& ctx) override;
  void on_after_backward(TrainContext& ctx) override;
  /// A step whose forward pass is tapped (grad_norms) runs eagerly under CUDA graphs.
  bool watches_step() const override { return tap_ != nullptr; }

 private:
  void write(TrainContext& ctx, const std::string& name, nlohmann::json result);

  bool norms_ = false, snr_ = false;
  std::set<int64_t> at_;
  std::unique_ptr<InputGradientTap> tap_;
  NetworkBase* tapped_ = nullptr;  ///< the net the tap is installed on, until the step's backward pass is read
};

}  // namespace reslab
