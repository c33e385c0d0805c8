// Result files: JSON lines, atomic JSON files, the results table.
#include "experiment/results.h"
#include "test_util.h"
#include "train/metrics.h"

namespace reslab {
namespace {

using testing::TempDir;

TEST(Metrics, JsonlAppendsOneFlushedLinePerRecord) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    JsonlWriter w(path);
    w.write({{"kind", "train"}, {"iter", 1}});
    // Flushed already: another reader sees the line while the writer is open.
    EXPECT_EQ(read_jsonl_file(path).size(), 1u);
    w.write({{"kind", "eval"}, {"iter", 2}});
  }
  {
    JsonlWriter again(path);  // appends
    again.write({{"kind", "train"}, {"iter", 3}});
  }
  auto records = read_jsonl_file(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[2]["iter"], 3);
}

TEST(Metrics, TornLastLineIsSkipped) {
  TempDir dir;
  const std::string path = dir.file("m.jsonl");
  testing::write_bytes(path, {'{', '"', 'a', '"', ':', '1', '}', '\n', '{', '"', 'a'});
  EXPECT_EQ(read_jsonl_file(path).size(), 1u);
}

TEST(Metrics, JsonFileIsReplacedWhole) {
  TempDir dir;
  const std::string path = dir.file("summary.json");
  write_json_file(path, {{"a", 1}});
  write_json_file(path, {{"a", 2}});
  EXPECT_EQ(read_json_file(path)["a"], 2);
  // No temporary file is left beside it.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()), 1);
  testing::expect_error<std::runtime_error>([&] { read_json_file(dir.file("nope.json")); }, {"nope.json"});
  testing::expect_error<std::runtime_error>([&] { write_json_file(dir.file("no/such/dir.json"), {}); },
                                            {"no/such/dir.json"});
  testing::expect_error<std::runtime_error>([&] { JsonlWriter w(dir.file("no/such/m.jsonl")); }, {"no/such"});
}

nlohmann::json summary(int64_t depth, bool residual, double train, double test) {
  const std::string model = (residual ? "resnet" : "plain") + std::to_string(depth);
  return {{"run", model},
          {"model", model},
          {"depth", depth},
          {"residual", residual},
          {"status", "completed"},
          {"final", {{"train_error", train}, {"test_error", test}, {"val_error", nullptr}}}};
}

TEST(Results, DegradationTableByDepthAveragesRepeats) {
  auto results = make_results("exp", "", {summary(20, false, 10, 12), summary(20, true, 8, 11),
                                          summary(56, false, 20, 22), summary(56, true, 6, 9),
                                          summary(56, true, 8, 10)});
  ASSERT_TRUE(results.contains("degradation"));
  const auto& table = results["degradation"];
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table[1]["depth"], 56);
  EXPECT_DOUBLE_EQ(table[1]["residual"]["train_error"].get<double>(), 7.0);
  EXPECT_EQ(table[1]["residual"]["runs"], 2);
  EXPECT_DOUBLE_EQ(table[1]["plain"]["test_error"].get<double>(), 22.0);
  EXPECT_EQ(results["runs"].size(), 5u);
  EXPECT_TRUE(results["versions"].contains("libtorch"));
  std::ostringstream out;
  print_degradation_table(results, out);
  EXPECT_NE(out.str().find("     56 |         20.00   22.00 |           7.00    9.50"), std::string::npos)
      << out.str();
}

TEST(Results, VariantsOfAGridAreSeparateRowsAndSeedsAverage) {
  auto a = summary(20, false, 10, 12), b = summary(20, true, 8, 11);
  auto ab = summary(20, false, 30, 32), bb = summary(20, true, 4, 5), bb2 = summary(20, true, 6, 7);
  a["run"] = "plain20-A", a["model"] = "plain20";
  b["run"] = "resnet20-A", b["model"] = "resnet20";
  ab["run"] = "plain20-B-s1", ab["model"] = "plain20";
  bb["run"] = "resnet20-B-s1", bb["model"] = "resnet20";
  bb2["run"] = "resnet20-B-s2", bb2["model"] = "resnet20";
  auto results = make_results("exp", "", {a, b, ab, bb, bb2});
  const auto& table = results["degradation"];
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table[0]["variant"], "-A");
  EXPECT_EQ(table[1]["variant"], "-B");
  EXPECT_DOUBLE_EQ(table[1]["residual"]["train_error"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(table[0]["plain"]["train_error"].get<double>(), 10.0);
}

TEST(Results, NoTableWithoutBothKinds) {
  auto results = make_results("exp", "", {summary(20, true, 8, 11), summary(56, true, 6, 9)});
  EXPECT_FALSE(results.contains("degradation"));
}

}  // namespace
}  // namespace reslab
