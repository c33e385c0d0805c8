#include "train/interrupt.h"

#include <atomic>
#include <csignal>

namespace reslab {

namespace {
std::atomic<bool> g_interrupted{false};

extern "C" void on_signal(int signal) {
  g_interrupted.store(true);
  if (signal == SIGINT) std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}
}  // namespace

void install_interrupt_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

bool interrupt_requested() { return g_interrupted.load(); }
void request_interrupt() { g_interrupted.store(true); }
void clear_interrupt() { g_interrupted.store(false); }

}  // namespace reslab
