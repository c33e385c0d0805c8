// The allocator policy (train/allocator.h): freed blocks stay in the process unless the user chose otherwise.
// mallopt lasts for the process: the test of glibc's own policy runs in a fresh one.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "test_util.h"
#include "train/allocator.h"

namespace reslab {
namespace {

constexpr size_t kBlock = size_t{64} << 20;  // a 64 MiB block: far above glibc's default mmap threshold

void clear_environment() {
  for (const char* name :
       {"RESLAB_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"}) {
    unsetenv(name);
  }
}

struct BlockFate {
  bool own_mapping;   ///< the block was a mapping of its own (mmap), not part of the heap
  size_t free_after;  ///< free bytes the heap holds once the block is freed
};

// Allocates, touches and frees one block, and reports where it lived and what the heap kept.
BlockFate allocate_and_free() {
  const auto before = mallinfo2();
  void* volatile block = std::malloc(kBlock);  // volatile: the compiler may not drop the pair
  EXPECT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const auto during = mallinfo2();
  std::free(block);
  return {during.hblks > before.hblks, mallinfo2().fordblks};
}

TEST(AllocatorTest, KeepsFreedBlocksByDefault) {
  clear_environment();
  EXPECT_EQ(keep_freed_memory(), "keep");
  EXPECT_EQ(allocator_policy(), "keep");
  const auto fate = allocate_and_free();
  EXPECT_FALSE(fate.own_mapping);
  EXPECT_GE(fate.free_after, kBlock);  // kept for the next step, not handed back
}

TEST(AllocatorTest, SystemLeavesGlibcsPolicy) {
  // In a fresh process (the "threadsafe" style re-runs this test alone): another test's mallopt would linger.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        clear_environment();
        setenv("RESLAB_MALLOC", "system", 1);
        const bool system = keep_freed_memory() == "system";
        const auto fate = allocate_and_free();
        // glibc maps a block this large by itself and returns it when freed.
        std::exit(system && fate.own_mapping && fate.free_after < kBlock ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(AllocatorTest, UsersGlibcSettingsWin) {
  clear_environment();
  setenv("MALLOC_TRIM_THRESHOLD_", "131072", 1);
  EXPECT_EQ(keep_freed_memory(), "user");
  clear_environment();
  setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072", 1);
  EXPECT_EQ(keep_freed_memory(), "user");
}

TEST(AllocatorTest, UnknownChoiceNamesTheVariable) {
  clear_environment();
  setenv("RESLAB_MALLOC", "fast", 1);
  testing::expect_error<std::invalid_argument>([] { keep_freed_memory(); },
                                               {"RESLAB_MALLOC: unknown value 'fast'", "keep", "system"});
}

}  // namespace
}  // namespace reslab
