// A whole experiment on a slice of Fashion-MNIST: the files of docs/design.md, the results table, overwrite rules.
#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "experiment/analysis.h"
#include "experiment/results.h"
#include "experiment/runner.h"
#include "models/registry.h"
#include "ops/winograd.h"
#include "test_callbacks.h"
#include "test_util.h"
#include "train/callbacks.h"
#include "train/checkpoint.h"
#include "train/kernels.h"
#include "train/metrics.h"

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

TEST_F(ExperimentTest, ARunRecordsItsKernelsAndKeepsThemWhenResumed) {
  TempDir dir;
  set_conv_policy(ConvPolicy::kAuto);
  DataCache data;
  const RunConfig run = testing::fashion_run("resnet8", 256, 128, 64, 1, 2);
  const std::string out = dir.file("resnet8");
  clear_interrupt();
  RunOptions interrupting;
  interrupting.callbacks = {std::make_shared<testing::InterruptAt>(2)};
  const auto stopped = train_run(run, out, data, interrupting);
  clear_interrupt();
  ASSERT_EQ(stopped["status"], "interrupted");
  // The plan is in kernels.json and in the summary: resnet8's three stage shapes at the run's batch.
  const auto recorded = read_json_file(out + "/kernels.json");
  EXPECT_EQ(recorded["batch"], 64);
  EXPECT_EQ(recorded["policy"], "auto");
  EXPECT_EQ(recorded["shapes"].size(), 3u);
  EXPECT_EQ(stopped["kernels"], recorded);
  // As if the run had begun on a machine where the direct convolution won everywhere: the resumed part computes
  // as the run began, whatever this machine would choose now.
  auto direct = recorded;
  for (auto& [shape, entry] : direct["shapes"].items()) entry = {{"kernel", "direct"}};
  write_json_file(out + "/kernels.json", direct);
  RunOptions resume;
  resume.resume = true;
  const auto summary = train_run(run, out, data, resume);
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["kernels"]["source"], "resumed");
  for (const auto& [shape, entry] : summary["kernels"]["shapes"].items()) EXPECT_EQ(entry["kernel"], "direct") << shape;
  for (const auto& [shape, kernel] : conv_plan()) EXPECT_EQ(kernel.algorithm, ConvAlgorithm::kDirect);
  // A record that is not one stops a resume, naming the file.
  std::filesystem::remove(out + "/summary.json");
  clear_interrupt();
  train_run(run, dir.file("again"), data, interrupting);
  clear_interrupt();
  std::ofstream(dir.file("again/kernels.json")) << R"({"policy": "auto", "batch": 64})";
  testing::expect_error<std::runtime_error>([&] { train_run(run, dir.file("again"), data, resume); },
                                            {"again/kernels.json", "threads"});
  set_conv_policy(ConvPolicy::kAuto);
}

TEST_F(ExperimentTest, AnalyzeProbesARunWithTheKernelsItTrainedWith) {
  TempDir dir;
  set_conv_policy(ConvPolicy::kAuto);
  DataCache data;
  const RunConfig run = testing::fashion_run("resnet8", 256, 128, 64, 1, 2);
  const std::string out = dir.file("resnet8");
  ASSERT_EQ(train_run(run, out, data, RunOptions{})["status"], "completed");
  // As if the run had trained where the direct convolution won every shape.
  auto direct = read_json_file(out + "/kernels.json");
  for (auto& [shape, entry] : direct["shapes"].items()) entry = {{"kernel", "direct"}};
  write_json_file(out + "/kernels.json", direct);
  ProbeSettings settings;
  settings.batch = 32;
  const auto probe = [&] { return probe_subject("grad_norms", trained_subject(out), settings, data); };
  const auto figures = [](nlohmann::json r) {
    r.erase("seconds");
    r.erase("kernels");
    return r;
  };
  const ConvPlan before = {{ConvShape{16, 16, 28, 28}, {ConvAlgorithm::kWinograd2x2, ConvIsa::kAvx2}}};
  set_conv_plan(before);
  const auto as_recorded = probe();
  EXPECT_EQ(as_recorded["kernels"]["source"], "run");
  EXPECT_EQ(as_recorded["kernels"]["shapes"], direct["shapes"]);
  EXPECT_EQ(conv_plan(), before) << "the plan in force before the probe is put back";
  // The same numbers as under the direct policy, and not those of F(2x2, 3x3) everywhere (what analyze ran before
  // it read the run's record), so the record is what decided them.
  set_conv_policy(ConvPolicy::kDirect);
  const auto under_direct = probe();
  EXPECT_EQ(under_direct["kernels"]["source"], "policy");
  EXPECT_EQ(under_direct["kernels"]["policy"], "direct");
  EXPECT_EQ(figures(as_recorded), figures(under_direct));
  set_conv_policy(ConvPolicy::kWinograd2x2);
  EXPECT_NE(figures(probe()), figures(under_direct));
  // A run without a record trained with F(2x2, 3x3) everywhere, and is probed so.
  set_conv_policy(ConvPolicy::kAuto);
  std::filesystem::remove(out + "/kernels.json");
  const auto earlier = probe();
  EXPECT_EQ(earlier["kernels"]["source"], "earlier");
  EXPECT_NE(figures(earlier), figures(under_direct));
  // A record that is not one stops the probe, naming the file and the key.
  std::ofstream(out + "/kernels.json") << R"({"policy": "auto", "batch": 64, "threads": 2, "shapes": 3})";
  testing::expect_error<ConfigError>(probe, {"resnet8/kernels.json", "shapes"});
  set_conv_policy(ConvPolicy::kAuto);
}

TEST_F(ExperimentTest, WritesEveryFileOfTheDesign) {
  TempDir dir;
  const auto results = run_experiment(tiny_experiment(), dir.path(), RunOptions{});
  for (const char* f :
       {"config.json", "results.json", "plain8/config.json", "plain8/metrics.jsonl", "plain8/summary.json",
        "plain8/model.pt", "resnet8/summary.json", "plain8/events.out.tfevents.reslab"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.file(f))) << f;
  }
  const auto on_disk = read_json_file(dir.file("results.json"));
  EXPECT_EQ(on_disk, results);
  ASSERT_EQ(results["runs"].size(), 2u);
  ASSERT_EQ(results["degradation"].size(), 1u);
  EXPECT_EQ(results["degradation"][0]["depth"], 8);

  const auto s = read_json_file(dir.file("resnet8/summary.json"));
  for (const char* key : {"model", "depth", "residual", "params", "flops", "dataset", "iterations", "epochs", "final",
                          "best_test_error", "seconds", "img_per_s", "status", "seed", "conv", "versions"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  EXPECT_EQ(s["iterations"], 16);
  EXPECT_DOUBLE_EQ(s["epochs"].get<double>(), 2.0);
  EXPECT_TRUE(s["final"]["val_error"].is_number());
  EXPECT_TRUE(s["final"]["test_error"].is_number());
  EXPECT_TRUE(s["versions"].contains("reslab"));
  // Where it ran: this machine, as /proc/cpuinfo and the kernels' checks see it.
  EXPECT_EQ(s["machine"], machine_info());
  EXPECT_TRUE(s["machine"]["cpu"].is_string());
  EXPECT_GE(s["machine"]["logical_cpus"].get<int64_t>(), 1);
  EXPECT_EQ(s["machine"]["isa"], isa_available(ConvIsa::kAvx2)
                                     ? (isa_available(ConvIsa::kAvx512) ? "avx2+avx512" : "avx2")
                                 : isa_available(ConvIsa::kAvx512) ? "avx512"
                                                                   : "none");
  // results.json groups the runs by where they ran: both ran here, with the same device and threads.
  ASSERT_EQ(results["ran_on"].size(), 1u);
  EXPECT_EQ(results["ran_on"][0]["machine"], machine_info());
  EXPECT_EQ(results["ran_on"][0]["device"], "cpu");
  EXPECT_EQ(results["ran_on"][0]["runs"], nlohmann::json({"plain8", "resnet8"}));

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

using testing::PoisonAt;

RunConfig tiny_run(int64_t retries) {
  RunConfig run = expand_grid(tiny_experiment())[1];  // resnet8, 8 iterations an epoch, lr 0.1 then 0.01
  run.train.retry_diverged = retries;
  return run;
}

/// Iterations of the "train" records, which must rise strictly (nothing duplicated after a cut).
std::vector<int64_t> train_iters(const std::string& metrics) {
  std::vector<int64_t> iters;
  for (const auto& r : read_jsonl_file(metrics)) {
    if (r["kind"] == "train") iters.push_back(r["iter"].get<int64_t>());
  }
  return iters;
}

TEST_F(ExperimentTest, ADivergedRunRetriesFromItsLastCheckpointWithALowerLearningRate) {
  TempDir dir;
  DataCache cache;
  RunOptions options;
  options.callbacks.push_back(std::make_shared<PoisonAt>(12, 0.005));  // epoch 2 runs at lr 0.01
  const auto summary = train_run(tiny_run(1), dir.file("r"), cache, options);
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["iterations"], 16);
  ASSERT_EQ(summary["retries"].size(), 1u);
  const auto& retry = summary["retries"][0];
  EXPECT_EQ(retry["diverged_at"], 12);
  EXPECT_EQ(retry["iter"], 8);  // the checkpoint at the end of epoch 1
  EXPECT_DOUBLE_EQ(retry["lr_scale"].get<double>(), 0.1);
  // The records: cut back to the checkpoint, a retry record, then the run continued at a tenth of the lr.
  const auto records = read_jsonl_file(dir.file("r/metrics.jsonl"));
  int64_t retry_records = 0;
  for (const auto& r : records) {
    if (r["kind"] == "retry") ++retry_records;
    if (r["kind"] == "train" && r["iter"].get<int64_t>() > 8) {
      EXPECT_NEAR(r["lr"].get<double>(), 0.001, 1e-12);
    }
  }
  EXPECT_EQ(retry_records, 1);
  // The checkpoint it went back to was written again with the lowered scale: a stop after the retry resumes
  // at the retried learning rate.
  auto model = build_model("resnet8", ModelSpec{{1, 28, 28}, 10, Shortcut::A});
  auto optimizer = make_sgd(model->parameters(), SgdConfig{});
  const auto meta = load_checkpoint(dir.file("r/checkpoint-000000008.pt"), *model, *optimizer);
  EXPECT_DOUBLE_EQ(meta["trainer"]["callbacks"]["schedule"]["lr_scale"].get<double>(), 0.1);
  const auto iters = train_iters(dir.file("r/metrics.jsonl"));
  EXPECT_TRUE(std::is_sorted(iters.begin(), iters.end()) &&
              std::adjacent_find(iters.begin(), iters.end()) == iters.end());
  EXPECT_EQ(iters.back(), 16);
}

TEST_F(ExperimentTest, ADivergenceBeforeTheFirstEpochRetriesFromTheStart) {
  TempDir dir;
  DataCache cache;
  RunOptions options;
  options.callbacks.push_back(std::make_shared<PoisonAt>(3, 0.05));
  const auto summary = train_run(tiny_run(2), dir.file("r"), cache, options);
  EXPECT_EQ(summary["status"], "completed");
  ASSERT_EQ(summary["retries"].size(), 1u);
  EXPECT_EQ(summary["retries"][0]["iter"], 0);  // the checkpoint written before the first step
  EXPECT_EQ(summary["retries"][0]["diverged_at"], 3);
  EXPECT_EQ(train_iters(dir.file("r/metrics.jsonl")).front(), 4);  // nothing of the diverged attempt is left
}

TEST_F(ExperimentTest, RetriesStopAfterTheirNumberAndWithoutTheFlagTheRunEndsDiverged) {
  for (int64_t retries : {0, 2}) {
    TempDir dir;
    DataCache cache;
    RunOptions options;
    options.callbacks.push_back(std::make_shared<PoisonAt>(12));  // at any learning rate
    const auto summary = train_run(tiny_run(retries), dir.file("r"), cache, options);
    EXPECT_EQ(summary["status"], "diverged") << retries;
    EXPECT_EQ(summary["diverged_at"], 12);
    EXPECT_EQ(summary["retries"].size(), static_cast<size_t>(retries));
    if (retries == 2) {
      EXPECT_DOUBLE_EQ(summary["retries"][1]["lr_scale"].get<double>(), 0.01);
    }
  }
}

TEST(Results, ModelTagsKeepVariantsOfOneDepthApart) {
  auto summary = [](const std::string& model, bool residual, double train) {
    return nlohmann::json{{"run", model},          {"model", model},
                          {"depth", 20},           {"residual", residual},
                          {"status", "completed"}, {"final", {{"train_error", train}, {"test_error", train + 1}}}};
  };
  std::vector<RunResult> runs;
  for (const auto& s : {summary("plain20", false, 30), summary("resnet20", true, 20), summary("plain20-k1", false, 40),
                        summary("resnet20-k1", true, 25), summary("resnet20-skipinit", true, 22)}) {
    runs.push_back({s, {{"model", {{"name", s["model"]}}}}});
  }
  const auto results = make_results("t", "", runs);
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
  testing::expect_error<std::runtime_error>(
      [&] {
        prepare_output_dir(dir.path(), {"plain8", "resnet8"}, false);
      },
      {dir.path(), "already holds results", "--overwrite"});
  EXPECT_TRUE(std::filesystem::exists(dir.file("resnet8/summary.json")));
  prepare_output_dir(dir.path(), {"plain8", "resnet8"}, true);
  EXPECT_FALSE(std::filesystem::exists(dir.file("resnet8")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("notes.txt")));   // not ours: left alone
  prepare_output_dir(dir.path(), {"plain8", "resnet8"}, false);  // now empty of results: fine
}

TEST_F(ExperimentTest, ReuseTakesACompletedRunOfTheSameTrainingConfigurationAndNothingElse) {
  TempDir first, second;
  auto experiment = [](const std::string& name, const nlohmann::json& grid) {
    nlohmann::json doc = nlohmann::json::parse(R"({
      "data": {"dataset": "fashion-mnist", "train_size": 512, "val_size": 256, "test_size": 256},
      "optim": {"batch": 64, "epochs": 2, "lr": 0.1, "schedule": {"milestones": [1], "unit": "epochs"}},
      "train": {"log_every": 4},
      "threads": 2
    })");
    doc["name"] = name;
    doc["grid"] = grid;
    return parse_experiment(doc, name + ".json");
  };
  run_experiment(experiment("tiny", {{"depth", {8}}, {"residual", {true}}}), first.path(), RunOptions{});
  const std::string source = first.file("resnet8");

  // Another experiment: the same net under another name (a grid over lr), and one at another lr.
  const auto other = experiment("other", {{"depth", {8}}, {"residual", {true}}, {"lr", {0.1, 0.05}}});
  RunOptions options;
  options.reuse_from = {first.path()};
  const auto results = run_experiment(other, second.path(), options);
  ASSERT_EQ(results["runs"].size(), 2u);
  int reused = 0;
  for (const auto& s : results["runs"]) {
    const std::string name = s["run"];
    const auto config = read_json_file(second.file(name + "/config.json"));
    EXPECT_EQ(config["name"], name);
    EXPECT_EQ(config["threads"], 2);  // resolved, reused or trained
    EXPECT_EQ(config["experiment"], "other");
    if (config["optim"]["lr"] == 0.05) {
      EXPECT_FALSE(s.contains("reused_from")) << name;  // another configuration: trained here
      continue;
    }
    ++reused;
    EXPECT_EQ(s["reused_from"], std::filesystem::absolute(source).lexically_normal().string());
    EXPECT_EQ(s["experiment"], "other");
    EXPECT_EQ(s["final"], read_json_file(source + "/summary.json")["final"]);
    EXPECT_EQ(read_jsonl_file(second.file(name + "/metrics.jsonl")), read_jsonl_file(source + "/metrics.jsonl"));
    EXPECT_TRUE(std::filesystem::exists(second.file(name + "/model.pt")));
    // The reused model is probed as this run's: the names are not part of what decides its weights.
    const RunConfig reused_run = load_run_config(second.file(name + "/config.json"));
    EXPECT_EQ(training_identity(reused_run), training_identity(load_run_config(source + "/config.json")));
  }
  EXPECT_EQ(reused, 1);

  // Not on other threads or another device; a copy is never copied on; unreadable folders are passed over by name.
  const RunConfig run = load_run_config(source + "/config.json");
  EXPECT_EQ(find_reusable_run(run, {first.path()}, 2, "cpu", nullptr), source);
  EXPECT_EQ(find_reusable_run(run, {first.path()}, 1, "cpu", nullptr), "");
  EXPECT_EQ(find_reusable_run(run, {first.path()}, 2, "cuda:0", nullptr), "");
  EXPECT_EQ(find_reusable_run(run, {second.path()}, 2, "cpu", nullptr), "");
  // Nor a run that retried after diverging, nor one whose convolutions or versions were not this build's, nor
  // one another CPU kind computed.
  const auto summary = read_json_file(source + "/summary.json");
  auto elsewhere = summary["machine"];
  elsewhere["cpu"] = "Another CPU";
  auto narrower = summary["machine"];
  narrower["isa"] = summary["machine"]["isa"] == "none" ? "avx2" : "none";
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"retries", nlohmann::json::array({{{"diverged_at", 5}, {"lr_scale", 0.1}}})},
           {"conv", summary["conv"] == "direct" ? "winograd" : "direct"},
           {"versions", {{"reslab", "0.0.0"}, {"libtorch", "1.0.0"}}},
           {"machine", elsewhere},
           {"machine", narrower}}) {
    auto changed = summary;
    changed[key] = value;
    write_json_file(source + "/summary.json", changed);
    EXPECT_EQ(find_reusable_run(run, {first.path()}, 2, "cpu", nullptr), "") << key;
  }
  // A summary from before reslab recorded the machine: the machine is the user's to match, as it was then.
  auto unrecorded = summary;
  unrecorded.erase("machine");
  write_json_file(source + "/summary.json", unrecorded);
  EXPECT_EQ(find_reusable_run(run, {first.path()}, 2, "cpu", nullptr), source);
  write_json_file(source + "/summary.json", summary);
  std::filesystem::create_directories(first.file("broken"));
  testing::write_bytes(first.file("broken/config.json"), {'{', '"'});
  testing::write_bytes(first.file("broken/summary.json"), {'{', '}'});
  std::ostringstream log;
  EXPECT_EQ(find_reusable_run(run, {first.path()}, 2, "cpu", &log), source);
  EXPECT_NE(log.str().find(first.file("broken/config.json")), std::string::npos) << log.str();
  testing::expect_error<ConfigError>([&] { find_reusable_run(run, {first.file("nothing")}, 2, "cpu", nullptr); },
                                     {first.file("nothing"), "--reuse"});
}

TEST_F(ExperimentTest, MissingDataIsAnErrorNamingTheFolder) {
  auto ex = tiny_experiment();
  ex.base.data.dir = "/nonexistent/fashion";
  TempDir dir;
  testing::expect_error<DataError>([&] { run_experiment(ex, dir.path(), RunOptions{}); },
                                   {"/nonexistent/fashion", "train-images-idx3-ubyte"});
}

}  // namespace
}  // namespace reslab
