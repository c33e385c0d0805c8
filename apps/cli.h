#pragma once
// Binding of each subcommand's options to CLI11; the work is done by the run_* functions in lib/app.

#include <CLI/CLI.hpp>

#include <functional>

namespace reslab {

/// Adds every subcommand to `app`. `action` receives the chosen subcommand's runner.
void setup_commands(CLI::App& app, std::function<int()>& action);

}  // namespace reslab
