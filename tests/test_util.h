#pragma once
// Shared test helpers: a seeded fixture and a temporary folder that cleans up after itself.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace reslab::testing {

/// Every test starts from the same random state and thread count.
class SeededTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    torch::set_num_threads(2);
  }
};

/// A fresh folder under the system temp dir, removed at the end of the test; each one a test makes is its own.
class TempDir {
 public:
  TempDir() {
    static int made = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name =
        std::string("reslab_") + (info ? std::string(info->test_suite_name()) + "_" + info->name() : "t");
    if (made++ > 0) name += "_" + std::to_string(made);
    for (auto& c : name) {
      if (c == '/') c = '_';
    }
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// The Fashion-MNIST folder the end-to-end tests read (installed by scripts/install-deps).
inline std::string fashion_dir() { return "/usr/share/datasets/fashion-mnist"; }

/// Asserts that `fn` throws an exception of type E whose message contains every one of `parts`.
template <typename E, typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const E& e) {
    const std::string message = e.what();
    for (const auto& part : parts) EXPECT_NE(message.find(part), std::string::npos) << "message: " << message;
    return;
  }
  ADD_FAILURE() << "expected an exception";
}

}  // namespace reslab::testing
