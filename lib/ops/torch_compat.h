#pragma once
// What differs between the LibTorch versions reslab builds against: Debian's 1.13, whose options hold c10's own
// variant, and PyPI's 2.x (scripts/build-cuda), whose c10::variant is std::variant and has no c10::get_if; and
// autocast's switches, one pair per device type in 1.13 and one function taking the device type from 2.4 on.

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <variant>

namespace reslab::compat {

#if TORCH_VERSION_MAJOR >= 2
using std::get;
using std::get_if;
#else
using c10::get;
using c10::get_if;
#endif

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool autocast_enabled(at::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
inline void set_autocast_enabled(at::DeviceType type, bool on) { at::autocast::set_autocast_enabled(type, on); }
inline at::ScalarType autocast_dtype(at::DeviceType type) { return at::autocast::get_autocast_dtype(type); }
inline void set_autocast_dtype(at::DeviceType type, at::ScalarType dtype) {
  at::autocast::set_autocast_dtype(type, dtype);
}
#else
/// Whether autocast is on for `type` (kCPU or kCUDA) on this thread.
inline bool autocast_enabled(at::DeviceType type) {
  return type == at::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}
inline void set_autocast_enabled(at::DeviceType type, bool on) {
  if (type == at::kCPU) {
    at::autocast::set_cpu_enabled(on);
  } else {
    at::autocast::set_enabled(on);
  }
}
/// The lower precision autocast casts to on `type`.
inline at::ScalarType autocast_dtype(at::DeviceType type) {
  return type == at::kCPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
}
inline void set_autocast_dtype(at::DeviceType type, at::ScalarType dtype) {
  if (type == at::kCPU) {
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
}
#endif

}  // namespace reslab::compat
