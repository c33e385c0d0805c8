#include "probes/probe_callback.h"

#include <stdexcept>

#include "probes/settings.h"
#include "train/device.h"

namespace reslab {

GradientProbeCallback::GradientProbeCallback(std::vector<std::string> probes, std::set<int64_t> at)
    : at_(std::move(at)) {
  for (const auto& p : probes) {
    check_probe_name(p);
    if (!probe_runs_during_training(p)) {
      throw std::invalid_argument("probe '" + p + "' does not run during training (" + probes_during_training() +
                                  " do)");
    }
    norms_ = norms_ || p == "grad_norms";
    snr_ = snr_ || p == "grad_snr";
  }
}

GradientProbeCallback::~GradientProbeCallback() {
  // A step that threw between on_batch_begin and on_after_backward leaves the tap installed: take it out.
  if (tapped_ != nullptr) tapped_->set_tap(nullptr);
}

void GradientProbeCallback::write(TrainContext& ctx, const std::string& name, nlohmann::json result) {
  if (ctx.metrics == nullptr) return;
  nlohmann::json record = {{"kind", "probe"}, {"name", name}, {"iter", ctx.state.iter}, {"epoch", ctx.state.epoch()}};
  record.update(result);
  ctx.metrics->write(record);
}

void GradientProbeCallback::on_batch_begin(TrainContext& ctx) {
  if (at_.count(ctx.state.iter) == 0) return;
  if (snr_) {
    // The batch this step is about to train on (batches are a function of epoch and index).
    const Batch batch =
        to_device(ctx.train_loader.batch(ctx.state.iter % ctx.state.iters_per_epoch), device_of(ctx.model));
    write(ctx, "grad_snr", gradient_snr(ctx.model, batch));
  }
  if (norms_) {
    tap_ = std::make_unique<InputGradientTap>();
    ctx.model.set_tap(tap_.get());
    tapped_ = &ctx.model;
  }
}

void GradientProbeCallback::on_after_backward(TrainContext& ctx) {
  if (!tap_) return;
  ctx.model.set_tap(nullptr);
  tapped_ = nullptr;
  write(ctx, "grad_norms", gradient_norms_from(ctx.model, *tap_));
  tap_.reset();
}

}  // namespace reslab
