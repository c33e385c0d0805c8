#pragma once
// How the process's C allocator treats the memory a training step frees.
//
// LibTorch's CPU tensors come from malloc. glibc hands blocks above its mmap threshold (128 KiB, raised as larger
// blocks are freed) straight back to the kernel when they are freed, and trims the heap's top beyond 128 KiB of
// free space, so a step's activations and gradients can come back as fresh pages that the kernel faults in and
// zeroes again, every step. keep_freed_memory() keeps freed memory in the process instead (blocks up to 1 GiB from
// the heap, no trimming): what a step frees, the next step reuses. Measured (docs/performance.md): at ImageNet
// shapes on the CPU, whose tensors exceed glibc's 32 MiB threshold cap, steps 5-21% faster and peak memory 5-8%
// higher; at CIFAR shapes page faults halve and throughput is unchanged.

#include <string>

namespace reslab {

/// Applies the policy above unless the user chose one: RESLAB_MALLOC=system, or glibc's own MALLOC_MMAP_THRESHOLD_,
/// MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or GLIBC_TUNABLES set. Returns what holds: "keep" (applied), "system"
/// (glibc's defaults, asked for), "user" (the user's glibc settings), or "unsupported" (not glibc).
/// Throws std::invalid_argument for another value of RESLAB_MALLOC.
std::string keep_freed_memory();

/// What the last keep_freed_memory() returned ("system" before any call).
const std::string& allocator_policy();

}  // namespace reslab
