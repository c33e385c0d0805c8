// Result files: JSON lines, atomic JSON files, the results table.
#include <map>
#include <tuple>

#include "experiment/config.h"
#include "experiment/results.h"
#include "experiment/stats.h"
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
  return {{"run", model},          {"model", model},
          {"depth", depth},        {"residual", residual},
          {"status", "completed"}, {"final", {{"train_error", train}, {"test_error", test}, {"val_error", nullptr}}}};
}

/// A summary at `seed` with its config: the model's name, the seed and `extra` (other resolved settings).
RunResult seeded(nlohmann::json s, uint64_t seed, nlohmann::json extra = nlohmann::json::object()) {
  s["seed"] = seed;
  s["run"] = s["model"].get<std::string>() + "-s" + std::to_string(seed);
  extra["model"]["name"] = s["model"];
  extra["seed"] = seed;
  extra["threads"] = seed;  // where and how fast a run computed does not make it another configuration
  return {s, extra};
}

std::vector<RunResult> unseeded(const std::vector<nlohmann::json>& summaries) {
  std::vector<RunResult> out;
  for (const auto& s : summaries) out.push_back({s, {{"model", {{"name", s["model"]}}}}});
  return out;
}

void expect_number(const nlohmann::json& v, double expected, double tolerance = 1e-6) {
  ASSERT_TRUE(v.is_number()) << v.dump();
  EXPECT_NEAR(v.get<double>(), expected, tolerance);
}

TEST(Stats, StudentQuantilesMatchTheTables) {
  expect_number(student_t_975(1), 12.7062047);
  expect_number(student_t_975(2), 4.3026527);
  expect_number(student_t_975(4), 2.7764451);
  expect_number(student_t_975(30), 2.0422725);
  EXPECT_NEAR(student_t_975(100000), 1.959964, 1e-4);
  testing::expect_error<std::invalid_argument>([] { student_t_975(0); }, {"degrees of freedom 0"});
  // mean 2, deviations -1, 0, 1: sd 1; paired interval 2 +- 4.3026527 / sqrt(3).
  const auto d = paired_difference({1, 2, 3});
  expect_number(d["mean"], 2.0);
  expect_number(d["sd"], 1.0);
  EXPECT_EQ(d["n"], 3);
  expect_number(d["ci95"][0], 2.0 - 2.4841377);
  expect_number(d["ci95"][1], 2.0 + 2.4841377);
  const auto one = paired_difference({4});
  expect_number(one["mean"], 4.0);
  EXPECT_TRUE(one["sd"].is_null());
  EXPECT_TRUE(one["ci95"].is_null());
  EXPECT_TRUE(paired_difference({})["mean"].is_null());
}

TEST(Results, DegradationTableByDepthAveragesRepeats) {
  auto results =
      make_results("exp", "",
                   unseeded({summary(20, false, 10, 12), summary(20, true, 8, 11), summary(56, false, 20, 22),
                             summary(56, true, 6, 9), summary(56, true, 8, 10)}));
  ASSERT_TRUE(results.contains("degradation"));
  const auto& table = results["degradation"];
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table[1]["depth"], 56);
  EXPECT_DOUBLE_EQ(table[1]["residual"]["train_error"].get<double>(), 7.0);
  expect_number(table[1]["residual"]["train_error_sd"], std::sqrt(2.0));
  EXPECT_EQ(table[1]["residual"]["runs"], 2);
  EXPECT_DOUBLE_EQ(table[1]["plain"]["test_error"].get<double>(), 22.0);
  EXPECT_TRUE(table[1]["plain"]["test_error_sd"].is_null());
  // Without seeds nothing pairs.
  EXPECT_EQ(table[1]["paired"]["train_error"]["n"], 0);
  EXPECT_EQ(results["runs"].size(), 5u);
  EXPECT_TRUE(results["versions"].contains("libtorch"));
  std::ostringstream out;
  print_degradation_table(results, out);
  EXPECT_NE(out.str().find("     56 |          20.00 (1)          22.00 (1) |    7.00 ± 1.41 (2)    9.50 ± 0.71 (2) |"),
            std::string::npos)
      << out.str();
}

TEST(Results, RanOnGroupsRunsByMachineDeviceAndThreads) {
  const nlohmann::json here = {{"cpu", "AMD EPYC"}, {"isa", "avx2"}, {"logical_cpus", 2}, {"gpus", 0}};
  const nlohmann::json there = {{"cpu", "Intel Xeon"}, {"isa", "avx2+avx512"}, {"logical_cpus", 2}, {"gpus", 0}};
  std::vector<nlohmann::json> summaries;
  for (const auto& [run, machine, threads] : std::vector<std::tuple<std::string, nlohmann::json, int>>{
           {"a", there, 2}, {"b", here, 2}, {"c", there, 2}, {"d", here, 1}, {"e", nullptr, 2}}) {
    auto s = summary(20, false, 10, 12);
    s["run"] = run;
    s["device"] = "cpu";
    s["threads"] = threads;
    s["world_size"] = 1;
    if (!machine.is_null()) s["machine"] = machine;
    summaries.push_back(s);
  }
  const auto results = make_results("exp", "", unseeded(summaries));
  const auto& groups = results["ran_on"];
  ASSERT_EQ(groups.size(), 4u) << groups.dump();
  EXPECT_EQ(groups[0]["machine"], there);
  EXPECT_EQ(groups[0]["runs"], nlohmann::json({"a", "c"}));
  EXPECT_EQ(groups[1]["runs"], nlohmann::json({"b"}));
  EXPECT_EQ(groups[2]["runs"], nlohmann::json({"d"}));  // the same machine at another thread count
  EXPECT_EQ(groups[2]["threads"], 1);
  EXPECT_TRUE(groups[3]["machine"].is_null());  // a summary from before reslab recorded it
  std::ostringstream out;
  print_ran_on(results, out);
  EXPECT_NE(out.str().find("  2 runs: Intel Xeon (avx2+avx512, 2 logical CPUs), device cpu, 2 threads\n"),
            std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("  1 run:  machine not recorded"), std::string::npos) << out.str();
}

TEST(Results, SeedsGiveMeansSdsAndPairedIntervals) {
  // Worked by hand: plain train 30, 32, 37 (mean 33, sd sqrt(13)); residual 20, 21, 25 (mean 22, sd sqrt(7));
  // residual - plain per seed -10, -11, -12: mean -11, sd 1, 95% interval -11 +- 4.3026527 / sqrt(3).
  // Test errors: plain 31, 33, 35; residual 20, 24, 22; differences -11, -9, -13: sd 2.
  std::vector<RunResult> runs;
  const double plain_train[] = {30, 32, 37}, res_train[] = {20, 21, 25};
  const double plain_test[] = {31, 33, 35}, res_test[] = {20, 24, 22};
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    runs.push_back(seeded(summary(20, false, plain_train[seed - 1], plain_test[seed - 1]), seed));
    runs.push_back(seeded(summary(20, true, res_train[seed - 1], res_test[seed - 1]), seed));
  }
  const auto results = make_results("exp", "", runs);
  ASSERT_EQ(results["degradation"].size(), 1u);
  const auto& row = results["degradation"][0];
  EXPECT_FALSE(row.contains("variant"));
  expect_number(row["plain"]["train_error"], 33.0);
  expect_number(row["plain"]["train_error_sd"], std::sqrt(13.0));
  expect_number(row["residual"]["train_error_sd"], std::sqrt(7.0));
  expect_number(row["plain"]["test_error_sd"], 2.0);
  EXPECT_EQ(row["residual"]["seeds"], nlohmann::json({1, 2, 3}));
  ASSERT_EQ(row["residual"]["per_seed"].size(), 3u);
  EXPECT_EQ(row["residual"]["per_seed"][2]["seed"], 3);
  EXPECT_EQ(row["residual"]["per_seed"][2]["train_error"], 25.0);
  const auto& train = row["paired"]["train_error"];
  expect_number(train["mean"], -11.0);
  expect_number(train["sd"], 1.0);
  EXPECT_EQ(train["n"], 3);
  expect_number(train["ci95"][0], -11.0 - 2.4841377);
  expect_number(train["ci95"][1], -11.0 + 2.4841377);
  const auto& test = row["paired"]["test_error"];
  expect_number(test["mean"], -11.0);
  expect_number(test["ci95"][1], -11.0 + 2 * 2.4841377);
  std::ostringstream out;
  print_degradation_table(results, out);
  EXPECT_NE(out.str().find("33.00 ± 3.61 (3)"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("-11.00 [-13.48, -8.52]"), std::string::npos) << out.str();
}

TEST(Results, DeeperRowsArePairedBySeedWithTheShallowestOfTheirConfiguration) {
  // Plain 20: 20, 22; plain 56: 50, 60 (differences 30, 38: mean 34, sd sqrt(32)); residual 20: 18, 19;
  // residual 56: 17, 19 (differences -1, 0). The -k1 rows form their own ladder, and 44 sits between.
  std::vector<RunResult> runs;
  for (uint64_t seed = 1; seed <= 2; ++seed) {
    runs.push_back(seeded(summary(20, false, seed == 1 ? 20 : 22, 0), seed));
    runs.push_back(seeded(summary(56, false, seed == 1 ? 50 : 60, 0), seed));
    runs.push_back(seeded(summary(44, false, seed == 1 ? 40 : 41, 0), seed));
    runs.push_back(seeded(summary(20, true, seed == 1 ? 18 : 19, 0), seed));
    runs.push_back(seeded(summary(56, true, seed == 1 ? 17 : 19, 0), seed));
    auto k1 = summary(56, true, 30, 0);
    k1["model"] = "resnet56-k1";
    runs.push_back(seeded(k1, seed));
  }
  const auto results = make_results("exp", "", runs);
  std::map<std::string, nlohmann::json> by;
  for (const auto& row : results["degradation"]) by[row["model"].get<std::string>()] = row;
  EXPECT_FALSE(by["resnet20"].contains("vs_shallowest"));
  const auto& vs = by["resnet56"]["vs_shallowest"];
  EXPECT_EQ(vs["depth"], 20);
  expect_number(vs["plain"]["train_error"]["mean"], 34.0);
  expect_number(vs["plain"]["train_error"]["sd"], std::sqrt(32.0));
  expect_number(vs["residual"]["train_error"]["mean"], -0.5);
  EXPECT_EQ(by["resnet44"]["vs_shallowest"]["depth"], 20);
  EXPECT_FALSE(by["resnet44"]["vs_shallowest"].contains("residual"));  // no residual 44 ran
  EXPECT_FALSE(by["resnet56-k1"].contains("vs_shallowest"));           // no shallower -k1 net ran
  std::ostringstream out;
  print_degradation_table(results, out);
  EXPECT_NE(out.str().find("Deeper - shallowest net"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("56 - 20 layers: plain +34.00 [-16.82, 84.82], residual -0.50 [-6.85, 5.85]"),
            std::string::npos)
      << out.str();
  // The whole ordering over three depths or more, one least-squares slope per seed: plain 20, 44, 56 gives
  // 560 / 672 and 684 / 672 points per layer (8.33 and 10.18 per 10 layers); residual has two depths, the -k1
  // family one: no trend for them.
  ASSERT_EQ(results["depth_trend"].size(), 1u) << results["depth_trend"];
  const auto& trend = results["depth_trend"][0];
  EXPECT_EQ(trend["depths"], nlohmann::json({20, 44, 56}));
  EXPECT_FALSE(trend.contains("residual"));
  EXPECT_FALSE(trend.contains("variant"));
  const auto& slope = trend["plain"]["train_error"];
  expect_number(slope["mean"], 10.0 * (560.0 + 684.0) / 2 / 672);
  expect_number(slope["sd"], 10.0 * (684.0 - 560.0) / 672 / std::sqrt(2.0));
  EXPECT_EQ(slope["n"], 2);
  EXPECT_EQ(slope["seeds"], nlohmann::json({1, 2}));
  EXPECT_TRUE(trend["plain"]["test_error"]["mean"].is_number());
  EXPECT_NE(out.str().find("plain +9.26 [-2.47, 20.98] (2) over depths 20,44,56"), std::string::npos) << out.str();
  // A seed missing at one depth is left out of the fit rather than tilting it.
  runs.push_back(seeded(summary(44, false, 45, 0), 3));
  runs.push_back(seeded(summary(56, false, 55, 0), 3));
  EXPECT_EQ(make_results("exp", "", runs)["depth_trend"][0]["plain"]["train_error"]["n"], 2);
}

TEST(Results, AMissingSeedPairsOnlyTheSeedsBothSidesHave) {
  // Plain at seeds 1 and 2, residual at 1, 2 and 3: the pairs are seeds 1 and 2 (differences -10, -11).
  const auto results = make_results("exp", "",
                                    {seeded(summary(20, false, 30, 30), 1), seeded(summary(20, false, 32, 30), 2),
                                     seeded(summary(20, true, 20, 20), 1), seeded(summary(20, true, 21, 20), 2),
                                     seeded(summary(20, true, 99, 20), 3)});
  const auto& row = results["degradation"][0];
  EXPECT_EQ(row["plain"]["runs"], 2);
  EXPECT_EQ(row["residual"]["runs"], 3);
  const auto& train = row["paired"]["train_error"];
  EXPECT_EQ(train["n"], 2);
  expect_number(train["mean"], -10.5);
  // sd 0.7071; t(0.975, 1) = 12.7062047: half-width 12.7062047 x 0.70711 / sqrt(2) = 6.3531024.
  expect_number(train["ci95"][0], -10.5 - 6.3531024);
  expect_number(train["ci95"][1], -10.5 + 6.3531024);
}

TEST(Results, OneSeedChangesNothingButTheCount) {
  auto plain = seeded(summary(20, false, 23.4, 19.45), 1);
  plain.summary["seed"] = 1;  // a signed JSON integer pairs as well as an unsigned one
  const auto results = make_results("exp", "", {plain, seeded(summary(20, true, 19.73, 16.35), 1)});
  const auto& row = results["degradation"][0];
  EXPECT_TRUE(row["residual"]["train_error_sd"].is_null());
  expect_number(row["paired"]["train_error"]["mean"], 19.73 - 23.4);
  EXPECT_TRUE(row["paired"]["train_error"]["ci95"].is_null());
  std::ostringstream out;
  print_degradation_table(results, out);
  EXPECT_NE(out.str().find("23.40 (1)          19.45 (1) |          19.73 (1)          16.35 (1) |"), std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("-3.67"), std::string::npos) << out.str();
}

TEST(Results, VariantsArePairedWithTheirBaselineAtEachSeed) {
  // resnet20-k1 against resnet20 at seeds 1 and 2: training error 25, 27 against 20, 21; differences 5 and 6.
  auto k1 = [](double train, uint64_t seed) {
    auto s = summary(20, true, train, train);
    s["model"] = "resnet20-k1";
    return seeded(s, seed);
  };
  auto skip = summary(56, true, 18, 16);
  skip["model"] = "resnet56-skipinit";  // no resnet56 ran: no baseline to pair with
  const auto results = make_results("exp", "",
                                    {seeded(summary(20, false, 30, 30), 1), seeded(summary(20, true, 20, 20), 1),
                                     seeded(summary(20, false, 31, 30), 2), seeded(summary(20, true, 21, 20), 2),
                                     k1(25, 1), k1(27, 2), seeded(skip, 1)});
  const auto& rows = results["degradation"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].contains("vs_baseline"));  // the baseline itself
  EXPECT_EQ(rows[1]["variant"], "-k1");
  EXPECT_FALSE(rows[1].contains("plain"));
  EXPECT_FALSE(rows[1].contains("paired"));
  const auto& vs = rows[1]["vs_baseline"];
  EXPECT_EQ(vs["model"], "resnet20");
  EXPECT_FALSE(vs.contains("plain"));
  expect_number(vs["residual"]["train_error"]["mean"], 5.5);
  expect_number(vs["residual"]["train_error"]["ci95"][0], 5.5 - 6.3531024);
  EXPECT_EQ(rows[2]["variant"], "-skipinit");
  EXPECT_FALSE(rows[2].contains("vs_baseline"));
  std::ostringstream out;
  print_degradation_table(results, out);
  EXPECT_NE(out.str().find("-k1 (vs the resnet20 row: residual +5.50 [-0.85, 11.85]"), std::string::npos) << out.str();
}

TEST(Results, Bf16RowsArePairedWithFloat32AtEachSeedAndGraphsAreNoConfiguration) {
  // resnet20 in bf16 against float32 at seeds 1 and 2: training error 21, 23 against 20, 21; differences 1 and 2.
  const nlohmann::json bf16 = {{"train", {{"precision", "bf16"}}}};
  const nlohmann::json graphs = {{"train", {{"cuda_graphs", true}}}};  // how, not what: the float32 row
  const auto results =
      make_results("exp", "",
                   {seeded(summary(20, true, 20, 20), 1), seeded(summary(20, true, 21, 20), 2, graphs),
                    seeded(summary(20, true, 21, 22), 1, bf16), seeded(summary(20, true, 23, 22), 2, bf16)});
  const auto& rows = results["degradation"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["variant"], "-bf16");
  EXPECT_EQ(rows[1]["variant"], "-float32");
  EXPECT_EQ(rows[1]["residual"]["runs"], 2);
  EXPECT_FALSE(rows[1].contains("vs_float32"));
  const auto& vs = rows[0]["vs_float32"];
  EXPECT_EQ(vs["precision"], "float32");
  expect_number(vs["residual"]["train_error"]["mean"], 1.5);
  expect_number(vs["residual"]["train_error"]["ci95"][0], 1.5 - 6.3531024);
  expect_number(vs["residual"]["test_error"]["mean"], 2.0);
  std::ostringstream out;
  print_degradation_table(results, out);
  // Both errors: a precision may change generalisation as much as training.
  EXPECT_NE(out.str().find("-bf16 (vs float32: residual train +1.50 [-4.85, 7.85], test +2.00 [2.00, 2.00])"),
            std::string::npos)
      << out.str();
}

TEST(Results, AFixupNetsDefaultParameterGroupsLabelNothingButItsTag) {
  // Fixup's resolved config holds its parameter groups; the other nets' hold none. The tag says it all.
  const nlohmann::json groups = {
      {{"kinds", {"scalar_bias", "multiplier", "bias"}}, {"lr_mult", 0.1}, {"weight_decay", true}}};
  auto fixup = summary(20, true, 30, 28);
  fixup["model"] = "resnet20-fixup";
  const nlohmann::json optim = {{"optim", {{"lr", 0.1}}}};
  auto with_groups = [&](const nlohmann::json& g) {
    auto extra = optim;
    extra["optim"]["param_groups"] = g;
    return extra;
  };
  std::vector<RunResult> runs = {seeded(summary(20, false, 21, 18), 1, optim),
                                 seeded(summary(20, true, 18, 15), 1, optim), seeded(fixup, 1, with_groups(groups))};
  ASSERT_EQ(to_json(default_param_groups("resnet20-fixup")[0]), groups[0]);  // what to_json(run) writes
  auto rows = make_results("exp", "", runs)["degradation"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_FALSE(rows[0].contains("variant"));
  EXPECT_EQ(rows[1]["variant"], "-fixup");
  EXPECT_EQ(rows[1]["vs_baseline"]["model"], "resnet20");
  // Groups of a user's own are a setting like any other and label their row.
  auto other = groups;
  other[0]["lr_mult"] = 0.5;
  runs.push_back(seeded(fixup, 2, with_groups(other)));
  rows = make_results("exp", "", runs)["degradation"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_NE(rows[2]["variant"].get<std::string>().find("lr_mult=0.5"), std::string::npos) << rows[2];
}

TEST(Results, RowsAreConfigurationsNotNames) {
  // Two shortcut options at two seeds each: two rows, labelled by the axis that differs, whatever the names say.
  std::vector<RunResult> runs;
  for (const char* shortcut : {"A", "B"}) {
    for (uint64_t seed : {1, 2}) {
      for (bool residual : {false, true}) {
        auto r = seeded(summary(20, residual, residual ? 10.0 + seed : 20.0 + seed, 5), seed,
                        {{"model", {{"shortcut", shortcut}}}, {"optim", {{"lr", 0.1}}}});
        r.summary["run"] = "whatever";
        runs.push_back(r);
      }
    }
  }
  const auto results = make_results("exp", "", runs);
  const auto& rows = results["degradation"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["variant"], "-A");
  EXPECT_EQ(rows[1]["variant"], "-B");
  EXPECT_EQ(rows[1]["residual"]["seeds"], nlohmann::json({1, 2}));
  expect_number(rows[1]["paired"]["train_error"]["mean"], -10.0);
}

TEST(Results, ModelsOfOneDepthThatNothingElseTellsApartKeepTheirOwnRows) {
  auto preact = summary(20, true, 9, 9);
  preact["model"] = "preact20";
  const auto results =
      make_results("exp", "", unseeded({summary(20, false, 12, 12), summary(20, true, 10, 10), preact}));
  const auto& rows = results["degradation"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["variant"], "preact20");
  EXPECT_EQ(rows[0]["residual"]["train_error"], 9.0);
  EXPECT_EQ(rows[1]["variant"], "resnet20");
  EXPECT_EQ(rows[1]["plain"]["train_error"], 12.0);
}

TEST(Results, AResidualOnlyExperimentGetsItsTableToo) {
  // Table 6 has no plain nets: its rows still carry the means and spreads, with no plain side and no pairing.
  const auto results = make_results(
      "exp", "",
      {seeded(summary(20, true, 8, 11), 1), seeded(summary(20, true, 10, 13), 2), seeded(summary(56, true, 6, 9), 1)});
  const auto& rows = results["degradation"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_FALSE(rows[0].contains("plain"));
  EXPECT_FALSE(rows[0].contains("paired"));
  expect_number(rows[0]["residual"]["test_error"], 12.0);
  expect_number(rows[0]["residual"]["test_error_sd"], std::sqrt(2.0));
  std::ostringstream out;
  print_degradation_table(results, out);
  EXPECT_NE(
      out.str().find("     20 |                  -                  - |    9.00 ± 1.41 (2)   12.00 ± 1.41 (2) |\n"),
      std::string::npos)
      << out.str();
  EXPECT_FALSE(make_results("exp", "", unseeded({})).contains("degradation"));
}

}  // namespace
}  // namespace reslab
