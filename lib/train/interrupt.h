#pragma once
// Ctrl-C and SIGTERM as a request: the trainer finishes its step, the run is summarised as "interrupted".

namespace reslab {

/// Installs handlers for SIGINT and SIGTERM. The first signal sets the request flag; a second SIGINT ends the
/// process at once (the default action is restored after the first).
void install_interrupt_handlers();
/// True once a signal (or request_interrupt) asked the runs to stop.
bool interrupt_requested();
/// Sets or clears the flag by hand (tests, embedding programs).
void request_interrupt();
void clear_interrupt();

}  // namespace reslab
