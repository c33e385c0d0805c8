#pragma once
// What differs between the LibTorch versions reslab builds against: Debian's 1.13, whose options hold c10's own
// variant, and PyPI's 2.x (scripts/build-cuda), whose c10::variant is std::variant and has no c10::get_if.

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

}  // namespace reslab::compat
