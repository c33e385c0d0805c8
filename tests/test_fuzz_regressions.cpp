// Every input the fuzzers found (tests/fuzz_regressions/<target>/) and every seed input (fuzz/seeds/<target>/)
// goes through its reader again: it must end in the reader's own error or succeed, never crash.
#include <filesystem>
#include <fstream>

#include "entries.h"
#include "test_util.h"

namespace reslab {
namespace {

using Entry = int (*)(const uint8_t*, size_t);

int replay(const std::string& dir, Entry entry) {
  int count = 0;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return 0;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(file.path(), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(file.path().string());
    EXPECT_EQ(entry(bytes.data(), bytes.size()), 0);
    ++count;
  }
  return count;
}

void replay_target(const std::string& name, Entry entry) {
  const std::string root = RESLAB_SOURCE_DIR;
  const int seeds = replay(root + "/fuzz/seeds/" + name, entry);
  replay(root + "/tests/fuzz_regressions/" + name, entry);
  EXPECT_GT(seeds, 0) << "no seed inputs for " << name;
}

TEST(FuzzRegressions, Idx) { replay_target("idx", fuzz::idx_entry); }
TEST(FuzzRegressions, Cifar) { replay_target("cifar", fuzz::cifar_entry); }
TEST(FuzzRegressions, Config) { replay_target("config", fuzz::config_entry); }
TEST(FuzzRegressions, Checkpoint) { replay_target("checkpoint", fuzz::checkpoint_entry); }
TEST(FuzzRegressions, Image) { replay_target("image", fuzz::image_entry); }
TEST(FuzzRegressions, RunFiles) { replay_target("run_files", fuzz::run_files_entry); }
TEST(FuzzRegressions, Pth) { replay_target("pth", fuzz::pth_entry); }

}  // namespace
}  // namespace reslab
