// reslab: train plain and residual networks, run experiments, export and plot the results.
#include <c10/util/Exception.h>

#include <csignal>
#include <iostream>

#include "cli.h"
#include "ops/winograd.h"
#include "train/allocator.h"

int main(int argc, char** argv) {
  CLI::App app{"reslab: reproduce and probe \"Deep Residual Learning for Image Recognition\""};
  std::function<int()> action;
  reslab::setup_commands(app, action);
  CLI11_PARSE(app, argc, argv);
  // A file-size limit (ulimit -f) then fails the write with EFBIG, reported like a full disk, instead of
  // killing the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    reslab::keep_freed_memory();
    reslab::choose_convolutions();
    return action();
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
