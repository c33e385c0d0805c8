// Checkpoints and resume: a run that crashes anywhere and resumes ends with exactly the metrics it would have had.
#include <filesystem>
#include <fstream>
#include <tuple>

#include "event_reader.h"
#include "experiment/runner.h"
#include "models/registry.h"
#include "optim/sgd.h"
#include "test_callbacks.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/interrupt.h"
#include "train/metrics.h"

namespace reslab {
namespace {

using testing::TempDir;

using testing::CrashAt;
using testing::SimulatedCrash;

/// 16 iterations an epoch, 3 epochs; windows of 5 straddle the epoch ends.
RunConfig tiny_run() { return testing::fashion_run("resnet8", 512, 128, 32, 3, 5); }

std::vector<nlohmann::json> records_without_timing(const std::string& path) {
  auto records = read_jsonl_file(path);
  for (auto& r : records) r.erase("img_per_s");
  return records;
}

class CheckpointTest : public testing::SeededTest {
 protected:
  DataCache data_;
};

TEST_F(CheckpointTest, AFixupRunResumesWithItsParameterGroups) {
  // Fixup's groups (its scalars and the classifier's bias at lr / 10) live in the checkpoint: a run that crashes
  // and resumes ends with the uninterrupted run's records; one whose groups differ is not continued from it.
  RunConfig run = tiny_run();
  run.model.name = run.name = "resnet8-fixup";
  run.optim.epochs = 2;
  TempDir dir;
  const std::string reference = dir.file("reference"), out = dir.file("crashed");
  train_run(run, reference, data_, RunOptions{});
  RunOptions crashing;
  crashing.callbacks = {std::make_shared<CrashAt>(20)};
  EXPECT_THROW(train_run(run, out, data_, crashing), SimulatedCrash);
  RunConfig other = run;
  other.optim.param_groups = std::vector<ParamGroupRule>{};  // one group: another optimizer
  std::ostringstream log;
  RunOptions resume;
  resume.resume = true;
  resume.progress = &log;
  const std::string copy = dir.file("copy");
  std::filesystem::copy(out, copy);
  train_run(other, copy, data_, resume);
  EXPECT_NE(log.str().find("different number of parameter groups"), std::string::npos) << log.str();
  EXPECT_EQ(log.str().find("resuming"), std::string::npos) << log.str();
  log.str("");
  train_run(run, out, data_, resume);
  EXPECT_NE(log.str().find("resuming resnet8-fixup at iteration 16"), std::string::npos) << log.str();
  EXPECT_EQ(records_without_timing(out + "/metrics.jsonl"), records_without_timing(reference + "/metrics.jsonl"));
}

TEST(ModelFile, RoundTripsAndRejectsDamage) {
  torch::manual_seed(0);
  TempDir dir;
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  auto net = build_model("resnet8", spec);
  save_model_file(dir.file("model.pt"), *net, {{"model", "resnet8"}});
  torch::manual_seed(99);
  auto other = build_model("resnet8", spec);
  EXPECT_EQ(load_model_file(dir.file("model.pt"), *other)["model"], "resnet8");
  for (size_t i = 0; i < net->parameters().size(); ++i) {
    EXPECT_TRUE(torch::equal(net->parameters()[i], other->parameters()[i]));
  }
  // Another architecture, a flipped byte, a cut file, no file: each named, none crashes.
  auto deeper = build_model("resnet14", spec);
  testing::expect_error<CheckpointError>([&] { load_model_file(dir.file("model.pt"), *deeper); },
                                         {"model.pt", "does not fit this model"});
  std::string bytes;
  {
    std::ifstream in(dir.file("model.pt"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::vector<uint8_t> flipped(bytes.begin(), bytes.end());
  flipped[flipped.size() / 2] ^= 0x40;
  testing::write_bytes(dir.file("flipped.pt"), flipped);
  testing::expect_error<CheckpointError>([&] { load_model_file(dir.file("flipped.pt"), *other); },
                                         {"flipped.pt", "checksum"});
  testing::write_bytes(dir.file("cut.pt"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + 100));
  testing::expect_error<CheckpointError>([&] { load_model_file(dir.file("cut.pt"), *other); }, {"cut.pt", "truncated"});
  testing::expect_error<CheckpointError>([&] { load_model_file(dir.file("none.pt"), *other); }, {"none.pt"});
}

TEST(CheckpointFile, AMomentumBufferOfAnotherShapeIsAnErrorNamingTheFile) {
  // A file whose optimizer state sits on the wrong parameters (what LibTorch 2.x made of 1.x's keys) stops the
  // load with the file and both shapes, not the next step with a bare tensor-size error.
  torch::manual_seed(0);
  TempDir dir;
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  auto net = build_model("resnet8", spec);
  auto optimizer = make_sgd(*net, SgdConfig{});
  auto x = torch::randn({4, 1, 28, 28});
  net->forward(x).sum().backward();
  optimizer->step();
  const auto params = net->parameters();
  ASSERT_NE(params[0].sizes(), params[1].sizes());
  // The state's own tensors take each other's shape and values (set_), whatever this LibTorch keys them by.
  torch::NoGradGuard no_grad;
  auto b0 = momentum_buffer(*optimizer, params[0]), b1 = momentum_buffer(*optimizer, params[1]);
  ASSERT_TRUE(b0.defined() && b1.defined());
  const auto c0 = b0.clone(), c1 = b1.clone();
  b0.set_(c1.clone());
  b1.set_(c0.clone());
  save_checkpoint(dir.file("swapped.pt"), *net, *optimizer, {{"iter", 1}});
  auto fresh = build_model("resnet8", spec);
  auto fresh_optimizer = make_sgd(*fresh, SgdConfig{});
  testing::expect_error<CheckpointError>(
      [&] { load_checkpoint(dir.file("swapped.pt"), *fresh, *fresh_optimizer); },
      {"swapped.pt", "momentum buffer of shape " + c10::str(params[1].sizes()), c10::str(params[0].sizes())});
  // Unswapped, the same file loads.
  b0.set_(c0.clone());
  b1.set_(c1.clone());
  save_checkpoint(dir.file("good.pt"), *net, *optimizer, {{"iter", 1}});
  EXPECT_EQ(load_checkpoint(dir.file("good.pt"), *fresh, *fresh_optimizer)["iter"], 1);
}

/// A run's TensorBoard events without their wall times (img_per_s aside): (step, tag, value) in file order.
std::vector<std::tuple<int64_t, std::string, float>> steps_and_scalars(const std::string& run_dir) {
  std::vector<std::tuple<int64_t, std::string, float>> out;
  for (const auto& e : testing::read_event_file(run_dir + "/" + kEventFileName)) {
    for (const auto& s : e.scalars) {
      if (s.tag != "train/img_per_s") out.emplace_back(e.step, s.tag, s.value);
    }
  }
  return out;
}

TEST_F(CheckpointTest, ResumeAfterACrashAnywhereGivesIdenticalMetrics) {
  TempDir dir;
  const std::string reference = dir.file("reference");
  const auto expected_summary = train_run(tiny_run(), reference, data_, RunOptions{});
  const auto expected = records_without_timing(reference + "/metrics.jsonl");
  ASSERT_GT(expected.size(), 10u);
  // Before the first checkpoint, mid-epoch, right after a checkpoint, and on the last step.
  for (int64_t crash : {7, 20, 32, 33, 48}) {
    SCOPED_TRACE("crash at iteration " + std::to_string(crash));
    const std::string out = dir.file("crash" + std::to_string(crash));
    RunOptions crashing;
    crashing.callbacks = {std::make_shared<CrashAt>(crash)};
    EXPECT_THROW(train_run(tiny_run(), out, data_, crashing), SimulatedCrash);
    EXPECT_FALSE(std::filesystem::exists(out + "/summary.json"));
    RunOptions resume;
    resume.resume = true;
    const auto summary = train_run(tiny_run(), out, data_, resume);
    EXPECT_EQ(records_without_timing(out + "/metrics.jsonl"), expected);
    // The TensorBoard curves were cut back with metrics.jsonl: each step once, as in the uninterrupted run.
    EXPECT_EQ(steps_and_scalars(out), steps_and_scalars(reference));
    EXPECT_EQ(summary["final"], expected_summary["final"]);
    EXPECT_EQ(summary["iterations"], 48);
    EXPECT_LE(list_checkpoints(out).size(), 2u);  // the newest two are kept
  }
}

TEST_F(CheckpointTest, AnInterruptedRunResumesExactlyMidWindow) {
  TempDir dir;
  const std::string reference = dir.file("reference");
  train_run(tiny_run(), reference, data_, RunOptions{});
  const std::string out = dir.file("interrupted");
  clear_interrupt();
  RunOptions interrupting;
  interrupting.callbacks = {std::make_shared<testing::InterruptAt>(23)};
  const auto stopped = train_run(tiny_run(), out, data_, interrupting);
  clear_interrupt();
  EXPECT_EQ(stopped["status"], "interrupted");
  EXPECT_EQ(stopped["iterations"], 23);
  EXPECT_FALSE(std::filesystem::exists(out + "/model.pt"));
  RunOptions resume;
  resume.resume = true;
  const auto summary = train_run(tiny_run(), out, data_, resume);
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(records_without_timing(out + "/metrics.jsonl"), records_without_timing(reference + "/metrics.jsonl"));
}

TEST_F(CheckpointTest, ATornNewestCheckpointFallsBackToThePreviousOne) {
  TempDir dir;
  const std::string reference = dir.file("reference");
  train_run(tiny_run(), reference, data_, RunOptions{});
  const std::string out = dir.file("torn");
  RunOptions crashing;
  crashing.callbacks = {std::make_shared<CrashAt>(40)};
  EXPECT_THROW(train_run(tiny_run(), out, data_, crashing), SimulatedCrash);
  auto checkpoints = list_checkpoints(out);
  ASSERT_EQ(checkpoints.size(), 2u);  // after epochs 1 and 2
  // The newest one torn half-way, as a crash during a (non-atomic) write would leave it.
  const auto size = std::filesystem::file_size(checkpoints[0]);
  std::filesystem::resize_file(checkpoints[0], size / 2);
  torch::nn::Linear other(3, 3);
  auto opt = make_sgd(other->parameters(), SgdConfig{});
  testing::expect_error<CheckpointError>([&] { load_checkpoint(checkpoints[0], *other, *opt); },
                                         {checkpoints[0], "unreadable"});
  testing::expect_error<CheckpointError>([&] { load_checkpoint(checkpoints[1], *other, *opt); },
                                         {checkpoints[1], "does not fit"});
  // One flipped bit anywhere in the archive is caught by the checksum before LibTorch reads a byte.
  const std::string flipped = dir.file("flipped.pt");
  std::filesystem::copy_file(checkpoints[1], flipped);
  {
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(1000);
    const char c = static_cast<char>(f.get());
    f.seekp(1000);
    f.put(static_cast<char>(c ^ 0x10));
  }
  testing::expect_error<CheckpointError>([&] { load_checkpoint(flipped, *other, *opt); }, {flipped, "checksum"});
  std::ostringstream log;
  RunOptions resume;
  resume.resume = true;
  resume.progress = &log;
  train_run(tiny_run(), out, data_, resume);
  EXPECT_NE(log.str().find("unreadable"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("resuming resnet8 at iteration 16"), std::string::npos) << log.str();
  EXPECT_EQ(records_without_timing(out + "/metrics.jsonl"), records_without_timing(reference + "/metrics.jsonl"));
}

TEST_F(CheckpointTest, ACheckpointOfAnotherConfigurationIsNotContinued) {
  TempDir dir;
  RunOptions crashing;
  crashing.callbacks = {std::make_shared<CrashAt>(20)};
  EXPECT_THROW(train_run(tiny_run(), dir.path(), data_, crashing), SimulatedCrash);
  auto changed = tiny_run();
  changed.optim.sgd.lr = 0.05;
  std::ostringstream log;
  RunOptions resume;
  resume.resume = true;
  resume.progress = &log;
  const auto summary = train_run(changed, dir.path(), data_, resume);
  EXPECT_NE(log.str().find("another configuration"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("/optim/lr"), std::string::npos) << log.str();
  // Both values, so the message says which run the file belongs to.
  EXPECT_NE(log.str().find(nlohmann::json(tiny_run().optim.sgd.lr).dump() + " in the checkpoint, 0.05 in this run"),
            std::string::npos)
      << log.str();
  EXPECT_EQ(log.str().find("resuming"), std::string::npos);  // started again from scratch
  EXPECT_EQ(summary["iterations"], 48);
  const auto records = read_jsonl_file(dir.file("metrics.jsonl"));
  EXPECT_EQ(records.front()["iter"], 5);  // the old records are gone
}

TEST_F(CheckpointTest, ACompletedRunIsNotTrainedAgain) {
  TempDir dir;
  const auto first = train_run(tiny_run(), dir.path(), data_, RunOptions{});
  const auto bytes = std::filesystem::file_size(dir.file("metrics.jsonl"));
  RunOptions resume;
  resume.resume = true;
  const auto again = train_run(tiny_run(), dir.path(), data_, resume);
  EXPECT_EQ(again, first);
  EXPECT_EQ(std::filesystem::file_size(dir.file("metrics.jsonl")), bytes);
}

}  // namespace
}  // namespace reslab
