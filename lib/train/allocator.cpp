#include "train/allocator.h"

#include <cstdlib>
#include <stdexcept>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace reslab {

namespace {
std::string policy = "system";

bool set(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0';
}
}  // namespace

std::string keep_freed_memory() {
  const char* choice = std::getenv("RESLAB_MALLOC");
  const std::string asked = choice == nullptr ? "" : choice;
  if (!asked.empty() && asked != "keep" && asked != "system") {
    throw std::invalid_argument("RESLAB_MALLOC: unknown value '" + asked +
                                "' (expected keep, the default, or system: glibc's own policy)");
  }
  if (asked == "system") {
    policy = "system";
  } else if (set("MALLOC_MMAP_THRESHOLD_") || set("MALLOC_TRIM_THRESHOLD_") || set("MALLOC_TOP_PAD_") ||
             set("GLIBC_TUNABLES")) {
    policy = "user";
  } else {
#if defined(__GLIBC__)
    constexpr int kMmapThreshold = 1 << 30;  // blocks up to 1 GiB come from the heap and return to it
    constexpr int kTrimThreshold = 1 << 30;  // the heap's top is never handed back in practice
    const bool ok = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
    policy = ok ? "keep" : "system";
#else
    policy = "unsupported";
#endif
  }
  return policy;
}

const std::string& allocator_policy() { return policy; }

}  // namespace reslab
