#pragma once
// Callbacks that tests use to interrupt a run at a chosen iteration.

#include "train/interrupt.h"
#include "train/trainer.h"

namespace reslab::testing {

/// Asks for an interrupt (as Ctrl-C would) during the step that makes iteration `at`.
class InterruptAt : public Callback {
 public:
  explicit InterruptAt(int64_t at) : at_(at) {}
  void on_batch_begin(TrainContext& ctx) override {
    if (ctx.state.iter + 1 == at_) request_interrupt();
  }

 private:
  int64_t at_;
};

}  // namespace reslab::testing
