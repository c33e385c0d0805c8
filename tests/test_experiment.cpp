// A whole experiment on a slice of Fashion-MNIST: the files of DESIGN.md, the results table, overwrite rules.
#include <sstream>

#include "experiment/results.h"
#include "experiment/runner.h"
#include "train/metrics.h"
#include "test_util.h"

namespace reslab {
namespace {

using testing::TempDir;

ExperimentConfig tiny_experiment() {
  return parse_experiment(nlohmann::json::parse(R"({
    "name": "tiny",
    "grid": {"depth": [8], "residual": [false, true]},
    "data": {"dataset": "fashion-mnist", "train_size": 512, "val_size": 256, "test_size": 256},
    "optim": {"batch": 64, "epochs": 2, "schedule": {"milestones": [1], "unit": "epochs"}},
    "train": {"log_every": 4},
    "threads": 2
  })"),
                          "tiny.json");
}

class ExperimentTest : public testing::SeededTest {};

TEST_F(ExperimentTest, WritesEveryFileOfTheDesign) {
  TempDir dir;
  const auto results = run_experiment(tiny_experiment(), dir.path(), RunOptions{});
  for (const char* f : {"config.json", "results.json", "plain8/config.json", "plain8/metrics.jsonl",
                        "plain8/summary.json", "plain8/model.pt", "resnet8/summary.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.file(f))) << f;
  }
  const auto on_disk = read_json_file(dir.file("results.json"));
  EXPECT_EQ(on_disk, results);
  ASSERT_EQ(results["runs"].size(), 2u);
  ASSERT_EQ(results["degradation"].size(), 1u);
  EXPECT_EQ(results["degradation"][0]["depth"], 8);

  const auto s = read_json_file(dir.file("resnet8/summary.json"));
  for (const char* key : {"model", "depth", "residual", "params", "flops", "dataset", "iterations", "epochs", "final",
                          "best_test_error", "seconds", "img_per_s", "status", "seed", "versions"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_EQ(s["iterations"], 16);
  EXPECT_DOUBLE_EQ(s["epochs"].get<double>(), 2.0);
  EXPECT_TRUE(s["final"]["val_error"].is_number());
  EXPECT_TRUE(s["final"]["test_error"].is_number());
  EXPECT_TRUE(s["versions"].contains("reslab"));

  // The schedule dropped the lr tenfold after epoch 1, and records carry the lr in force.
  bool saw_base = false, saw_drop = false;
  for (const auto& r : read_jsonl_file(dir.file("resnet8/metrics.jsonl"))) {
    if (r["kind"] != "train") continue;
    saw_base |= r["iter"].get<int64_t>() <= 8 && std::abs(r["lr"].get<double>() - 0.1) < 1e-12;
    saw_drop |= r["iter"].get<int64_t>() > 8 && std::abs(r["lr"].get<double>() - 0.01) < 1e-12;
  }
  EXPECT_TRUE(saw_base);
  EXPECT_TRUE(saw_drop);
  const auto config = read_json_file(dir.file("plain8/config.json"));
  EXPECT_EQ(config["model"]["name"], "plain8");
  EXPECT_EQ(config["data"]["val_size"], 256);
}

TEST(Results, ModelTagsKeepVariantsOfOneDepthApart) {
  auto summary = [](const std::string& model, bool residual, double train) {
    return nlohmann::json{{"run", model},     {"model", model},       {"depth", 20},
                          {"residual", residual}, {"status", "completed"},
                          {"final", {{"train_error", train}, {"test_error", train + 1}}}};
  };
  const auto results = make_results("t", "", {summary("plain20", false, 30), summary("resnet20", true, 20),
                                              summary("plain20-k1", false, 40), summary("resnet20-k1", true, 25),
                                              summary("resnet20-skipinit", true, 22)});
  const auto& rows = results["degradation"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].contains("variant"));
  EXPECT_EQ(rows[0]["plain"]["train_error"], 30.0);
  EXPECT_EQ(rows[1]["variant"], "-k1");
  EXPECT_EQ(rows[1]["plain"]["train_error"], 40.0);
  EXPECT_EQ(rows[1]["residual"]["train_error"], 25.0);
  EXPECT_EQ(rows[2]["variant"], "-skipinit");
  EXPECT_FALSE(rows[2].contains("plain"));
  std::ostringstream table;
  print_degradation_table(results, table);  // a residual-only row prints "-" for the plain side
  EXPECT_NE(table.str().find("-skipinit"), std::string::npos);
}

TEST_F(ExperimentTest, ExistingResultsAreKeptUnlessOverwriteIsAsked) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("resnet8"));
  testing::write_bytes(dir.file("resnet8/summary.json"), {'{', '}'});
  testing::write_bytes(dir.file("notes.txt"), {'x'});
  testing::expect_error<std::runtime_error>([&] { prepare_output_dir(dir.path(), {"plain8", "resnet8"}, false); },
                                            {dir.path(), "already holds results", "--overwrite"});
  EXPECT_TRUE(std::filesystem::exists(dir.file("resnet8/summary.json")));
  prepare_output_dir(dir.path(), {"plain8", "resnet8"}, true);
  EXPECT_FALSE(std::filesystem::exists(dir.file("resnet8")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("notes.txt")));  // not ours: left alone
  prepare_output_dir(dir.path(), {"plain8", "resnet8"}, false);  // now empty of results: fine
}

TEST_F(ExperimentTest, MissingDataIsAnErrorNamingTheFolder) {
  auto ex = tiny_experiment();
  ex.base.data_dir = "/nonexistent/fashion";
  TempDir dir;
  testing::expect_error<DataError>([&] { run_experiment(ex, dir.path(), RunOptions{}); },
                                   {"/nonexistent/fashion", "train-images-idx3-ubyte"});
}

}  // namespace
}  // namespace reslab
