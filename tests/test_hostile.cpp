// Hostile input, one test per class: JSON nested to crash a recursive reader, duplicate keys, numbers out of
// range, names that would leave the output folder, grids whose size overflows, files larger than reslab reads,
// gzip streams that expand past what their header declares, summaries of the wrong shape, a model file of
// another net. Each must end in an error naming its source, never a crash, a bare allocator failure or silence.
#include <zlib.h>

#include <filesystem>
#include <limits>

#include "data/dataset.h"
#include "data/file_bytes.h"
#include "data/idx.h"
#include "experiment/analysis.h"
#include "experiment/config.h"
#include "experiment/results.h"
#include "models/registry.h"
#include "test_util.h"
#include "train/metrics.h"

namespace reslab {
namespace {

using testing::expect_error;
using testing::TempDir;

std::string deep(size_t levels, const std::string& inner = "1") {
  return std::string(levels, '[') + inner + std::string(levels, ']');
}

nlohmann::json minimal_experiment() {
  return parse_json(R"({"name": "t", "grid": {"depth": [8]}, "optim": {"epochs": 1}})", "t.json");
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

TEST(StrictJson, NestingPastTheLimitIsAnErrorNamingTheKeyNotACrash) {
  // A few hundred thousand levels overflowed the stack when parsed, copied or printed recursively.
  expect_error<JsonError>([] { parse_json(deep(300000), "deep.json"); }, {"deep.json", "nested more than 64"});
  expect_error<JsonError>([] { parse_json(R"({"name": )" + deep(300000, "\"x\"") + "}", "in_name.json"); },
                          {"in_name.json", "key 'name[0][0]", "nested more than 64"});
  expect_error<JsonError>([] { parse_json(R"({"grid": {"depth": )" + deep(100000) + "}}", "axis.json"); },
                          {"axis.json", "key 'grid.depth[0]", "nested"});
  // At the limit it reads.
  const auto ok = parse_json(deep(kMaxJsonDepth), "ok.json");
  EXPECT_TRUE(ok.is_array());
  TempDir dir;
  const std::string file = dir.file("deep_experiment.json");
  write_text(file, R"({"name": "x", "grid": {"depth": )" + deep(500000, "8") + "}}");
  expect_error<ConfigError>([&] { load_experiment(file); }, {file, "nested more than 64"});
}

TEST(StrictJson, DuplicateKeysAreErrorsNamingThePath) {
  expect_error<JsonError>([] { parse_json(R"({"a": 1, "a": 2})", "d.json"); }, {"d.json", "key 'a' appears twice"});
  expect_error<JsonError>([] { parse_json(R"({"optim": {"lr": 0.1, "momentum": 0.9, "lr": 5}})", "e.json"); },
                          {"e.json", "key 'optim.lr' appears twice"});
  expect_error<JsonError>([] { parse_json(R"([{"k": 1}, {"k": 1, "k": 1}])", "l.json"); }, {"key '[1].k'"});
  // The same key in sibling objects is not a duplicate.
  const auto ok = parse_json(R"({"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 3}, {"k": 4}]})", "ok.json");
  EXPECT_EQ(ok["c"][1]["k"], 4);
}

TEST(StrictJson, NumbersPastADoubleAndSyntaxErrorsNameTheFileAndKey) {
  expect_error<JsonError>([] { parse_json(R"({"optim": {"epochs": 1e999}})", "big.json"); },
                          {"big.json", "key 'optim.epochs'", "1e999", "finite"});
  expect_error<JsonError>([] { parse_json(R"({"optim": {"lr": -1e400}})", "neg.json"); }, {"key 'optim.lr'"});
  expect_error<JsonError>([] { parse_json(R"({"a": [1, 2,]})", "syntax.json"); },
                          {"syntax.json", "not valid JSON", "key 'a[2]'"});
  expect_error<JsonError>([] { parse_json("{} trailing", "tail.json"); }, {"tail.json", "not valid JSON"});
  expect_error<JsonError>([] { parse_json("", "empty.json"); }, {"empty.json", "not valid JSON"});
}

TEST(StrictJson, FilesPastTheSizeLimitAreRefusedBeforeTheyAreRead) {
  TempDir dir;
  const std::string file = dir.file("huge.json");
  write_text(file, "{}");
  std::filesystem::resize_file(file, kMaxJsonFileBytes + 1);  // sparse: nothing is written
  expect_error<JsonError>([&] { read_json_file(file); }, {file, "expected a JSON file of at most 256 MiB"});
  expect_error<JsonError>([&] { read_json_file(dir.file("absent.json")); }, {"absent.json", "cannot open"});
}

TEST(StrictJson, AMetricsLineThatIsNotJsonIsNamedUnlessItIsTheTornLastOne) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  write_text(path, "{\"iter\": 1}\nnot json\n{\"iter\": 3}\n");
  expect_error<JsonError>([&] { read_jsonl_file(path); }, {path + " line 2", "not valid JSON"});
  write_text(path, "{\"iter\": 1}\n{\"iter\": 2, \"iter\": 2}\n");
  expect_error<JsonError>([&] { read_jsonl_file(path); }, {"line 2", "appears twice"});
  write_text(path, "{\"iter\": 1}\n\n{\"iter\": 2}");  // a complete last line without its newline is kept
  EXPECT_EQ(read_jsonl_file(path).size(), 2u);
}

TEST(Ranges, EveryNumberIsCheckedBeforeWorkStarts) {
  auto with = [](const std::string& section, const std::string& key, const nlohmann::json& value) {
    auto doc = minimal_experiment();
    if (section.empty()) {
      doc[key] = value;
    } else if (section == "schedule") {
      doc["optim"]["schedule"][key] = value;
    } else {
      doc[section][key] = value;
    }
    return doc;
  };
  const std::vector<std::tuple<std::string, std::string, nlohmann::json, std::string>> cases = {
      {"optim", "epochs", 1e300, "optim.epochs = 1e+300"},
      {"optim", "iterations", int64_t{1} << 50, "optim.iterations"},
      {"optim", "lr", 1e6, "optim.lr"},
      {"optim", "weight_decay", 50.0, "optim.weight_decay"},
      {"optim", "batch", int64_t{1} << 30, "optim.batch"},
      {"optim", "batch", std::numeric_limits<uint64_t>::max(), "an integer of at most 9223372036854775807"},
      {"schedule", "gamma", 1e9, "optim.schedule.gamma"},
      {"schedule", "milestones", nlohmann::json::array({1e300}), "optim.schedule.milestones"},
      {"train", "log_every", int64_t{1} << 50, "train.log_every"},
      {"train", "eval_at", nlohmann::json::array({int64_t{1} << 50}), "train.eval_at"},
      {"data", "test_size", int64_t{1} << 40, "data.test_size"},
      {"", "threads", 100000, "threads = 100000"},
  };
  for (const auto& [section, key, value, expected] : cases) {
    SCOPED_TRACE(section + "." + key);
    // A lambda captures no structured binding before C++20 (clang refuses it): the document is made outside.
    const auto doc = with(section, key, value);
    expect_error<ConfigError>([&doc] { parse_experiment(doc, "r.json"); }, {"r.json", expected});
  }
  // The same ranges hold for the command line: --epochs inf used to "complete" after one iteration.
  for (double epochs : {std::numeric_limits<double>::infinity(), 1e300, std::nan("")}) {
    auto ex = parse_experiment(minimal_experiment(), "r.json");
    Overrides o;
    o.epochs = epochs;
    expect_error<ConfigError>([&] { apply_overrides(ex, o); }, {"optim.epochs"});
  }
  auto doc = minimal_experiment();
  doc["optim"]["schedule"]["warmup"] = {{"lr", 0.01}, {"until_error", 150}};
  expect_error<ConfigError>([&] { parse_experiment(doc, "w.json"); }, {"warmup.until_error", "0 to 100"});
  doc = minimal_experiment();
  doc["probes"] = {{"after_training", {"lesions"}}, {"settings", {{"samples", int64_t{1} << 40}}}};
  expect_error<ConfigError>([&] { parse_experiment(doc, "p.json"); }, {"p.json", "probes.settings.samples"});
}

TEST(Ranges, ModelsAreBuiltOnlyForSaneClassesAndInputs) {
  // 10^11 classes was an allocator failure, not an error.
  expect_error<std::invalid_argument>(
      [] {
        build_model("resnet20", ModelSpec{{3, 32, 32}, 100000000000, Shortcut::A});
      },
      {"resnet20", "100000000000 classes", "2 to 100000"});
  expect_error<std::invalid_argument>(
      [] {
        build_model("resnet20", ModelSpec{{0, 32, 32}, 10, Shortcut::A});
      },
      {"input 0x32x32"});
}

TEST(Grid, APointCountThatWouldOverflowIsRefusedByTheCap) {
  auto doc = minimal_experiment();
  doc["grid"].erase("depth");
  nlohmann::json models = nlohmann::json::array(), lrs = nlohmann::json::array(), batches = nlohmann::json::array(),
                 seeds = nlohmann::json::array(), shortcuts = nlohmann::json::array();
  for (int i = 0; i < 9000; ++i) {
    models.push_back("resnet8");
    lrs.push_back(0.1);
    batches.push_back(8);
    seeds.push_back(i);
    shortcuts.push_back("A");
  }
  doc["grid"] = {{"model", models}, {"lr", lrs}, {"batch", batches}, {"seed", seeds}, {"shortcut", shortcuts}};
  // 9000^5 = 5.9e19 points overflows 64 bits: the cap used to be bypassed, and the error was about something else.
  expect_error<ConfigError>([&] { parse_experiment(doc, "g.json"); },
                            {"g.json", "more than 10000 points", "9000 models", "at most 10000"});
  doc = minimal_experiment();
  doc["grid"]["depth"] = nlohmann::json::array();
  for (int i = 0; i < 20000; ++i) doc["grid"]["depth"].push_back(8);
  expect_error<ConfigError>([&] { parse_experiment(doc, "d.json"); }, {"d.json", "more than 10000 points"});
}

TEST(Names, NamesThatWouldLeaveTheFolderOrBreakAScriptAreErrors) {
  for (const std::string& bad : std::vector<std::string>{"../../escaped", "a/b", "a\nb", ".hidden", "-rf", "", "a b",
                                                         "x;rm", "$(id)", std::string(200, 'a'), "caf\xc3\xa9"}) {
    SCOPED_TRACE(bad);
    auto doc = minimal_experiment();
    doc["name"] = bad;
    expect_error<ConfigError>([&] { parse_experiment(doc, "n.json"); }, {"n.json", "key 'name'"});
    EXPECT_FALSE(name_problem(bad).empty());
  }
  for (const std::string& good :
       std::vector<std::string>{"fashion_degradation", "cifar10-fig6", "a.b+c=d", "resnet20-k1-lr0.05-s3"}) {
    EXPECT_EQ(name_problem(good), "") << good;
  }
  // A run's config.json whose name would put its folder elsewhere.
  TempDir dir;
  auto run = expand_grid(parse_experiment(minimal_experiment(), "t.json"))[0];
  auto config = to_json(run);
  config["name"] = "../../outside";
  write_json_file(dir.file("config.json"), config);
  expect_error<ConfigError>([&] { load_run_config(dir.file("config.json")); },
                            {dir.file("config.json"), "key 'name'", "../../outside", "'/'"});
}

TEST(Names, ValuesInMessagesAreEscapedAsciiAndCut) {
  // A terminal escape, a right-to-left override and an invalid UTF-8 byte reach the message as escapes.
  const std::string shown =
      shown_json(std::string("a\x1b[2Jb\xe2\x80\xae"
                             "c\xff"));
  EXPECT_EQ(shown, "\"a\\u001b[2Jb\\u202ec\\ufffd\"");
  EXPECT_EQ(shown_json(std::string(500, 'x')).size(), 80u);
  EXPECT_EQ(shown_json(std::string(500, 'x')).substr(77), "...");
  EXPECT_EQ(shown_json(nlohmann::json{{"k", 1}}), "{\"k\":1}");
  EXPECT_EQ(first_control_char("plain"), -1);
  EXPECT_EQ(first_control_char(std::string("ok\tthen\n")), 9);
  EXPECT_EQ(first_control_char(std::string("del\x7f")), 0x7f);
  // The control character is named before any other fault of the same name.
  EXPECT_EQ(name_problem("a/b\x01"), "holds a control character (code 1)");
}
void write_gz_stream(const std::string& path, const std::vector<uint8_t>& head, size_t zeros) {
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr);
  gzwrite(f, head.data(), static_cast<unsigned>(head.size()));
  const std::vector<uint8_t> block(1 << 20, 0);
  for (size_t left = zeros; left > 0;) {
    const size_t n = std::min(left, block.size());
    gzwrite(f, block.data(), static_cast<unsigned>(n));
    left -= n;
  }
  gzclose(f);
}

TEST(Decompression, AStreamThatExpandsPastItsHeaderIsStoppedThere) {
  TempDir dir;
  // 10 images of 4x3 declared (136 bytes in all); the stream holds 200 MB more zeros.
  const std::vector<uint8_t> header = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 4, 0, 0, 0, 3};
  const std::string bomb = dir.file("bomb-images-idx3-ubyte.gz");
  write_gz_stream(bomb, header, size_t{200} << 20);
  EXPECT_LT(std::filesystem::file_size(bomb), size_t{1} << 20);
  expect_error<DataError>([&] { read_idx_ubyte(bomb, 3); }, {bomb, "expands past the 136 bytes its header declares"});
  // A header that declares more than the machine can hold is refused before anything past it is read.
  const std::vector<uint8_t> greedy = {0, 0, 8, 3, 0, 0x0f, 0x42, 0x40, 0, 0, 0x03, 0xe8, 0, 0, 0x03, 0xe8};
  const std::string big = dir.file("greedy.gz");
  write_gz_stream(big, greedy, 1000);
  expect_error<DataError>([&] { read_idx_ubyte(big, 3); }, {big, "declares 1000000000016 bytes", "memory"});
  // Without a header, a file is bounded by the limit its reader gives.
  const std::string plain = dir.file("records.gz");
  write_gz_stream(plain, {}, 5000);
  expect_error<DataError>([&] { read_file_bytes(plain, 4096); }, {plain, "expands past 4096 bytes"});
  EXPECT_EQ(read_file_bytes(plain, 5000).size(), 5000u);
}

TEST(Summaries, AFileOfTheWrongShapeIsNamedWithItsKey) {
  const nlohmann::json good = {{"run", "resnet8"},
                               {"status", "completed"},
                               {"iterations", 4},
                               {"final", {{"train_error", 10.0}, {"test_error", nullptr}}}};
  EXPECT_NO_THROW(check_summary(good, "s.json"));
  auto with_machine = good;
  with_machine["machine"] = {{"cpu", "AMD EPYC"}, {"isa", "avx2"}, {"logical_cpus", 2}, {"gpus", 0}};
  EXPECT_NO_THROW(check_summary(with_machine, "s.json"));
  const std::vector<std::pair<nlohmann::json, std::string>> bad = {
      {nlohmann::json::array(), "expected a JSON object"},
      {{{"status", "completed"}}, "key 'run'"},
      {{{"run", "r"}, {"status", 5}, {"iterations", 1}, {"final", nlohmann::json::object()}}, "key 'status'"},
      {{{"run", "r"}, {"status", "completed"}, {"iterations", -1}, {"final", nlohmann::json::object()}},
       "key 'iterations'"},
      {{{"run", "r"}, {"status", "completed"}, {"iterations", 1}, {"final", {{"train_error", "low"}}}},
       "final.train_error"},
      {{{"run", "r"},
        {"status", "completed"},
        {"iterations", 1},
        {"final", nlohmann::json::object()},
        {"machine", "a laptop"}},
       "key 'machine' has value \"a laptop\""},
      {{{"run", "r"},
        {"status", "completed"},
        {"iterations", 1},
        {"final", nlohmann::json::object()},
        {"machine", {{"cpu", "x"}, {"isa", "avx2"}, {"logical_cpus", -2}, {"gpus", 0}}}},
       "\"logical_cpus\" and \"gpus\" counts"},
      {{{"run", "r"},
        {"status", "completed"},
        {"iterations", 1},
        {"final", nlohmann::json::object()},
        {"machine", {{"cpu", "x"}, {"isa", "avx2"}, {"logical_cpus", 2}}}},
       "key 'machine'"},
  };
  for (const auto& [summary, expected] : bad) {
    SCOPED_TRACE(summary.dump());
    expect_error<std::runtime_error>([&s = summary] { check_summary(s, "RUN/summary.json"); },
                                     {"RUN/summary.json", expected});
  }
}

TEST(ModelFiles, AModelOfAnotherRunIsNeverProbedAsThisOne) {
  auto runs =
      expand_grid(parse_experiment(parse_json(R"({"name": "t", "grid": {"depth": [8], "residual": [false, true]},
      "optim": {"epochs": 1}})",
                                              "t.json"),
                                   "t.json"));
  const RunConfig& plain = runs[0];
  const RunConfig& residual = runs[1];
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  nlohmann::json meta = {{"model", plain.model.name}, {"shortcut", "A"}, {"dataset", plain.data.dataset},
                         {"input", {1, 28, 28}},      {"classes", 10},   {"config", checkpoint_identity(plain)}};
  EXPECT_NO_THROW(check_model_meta(meta, plain, spec, "p/model.pt", "p/config.json"));
  // The same training configuration under other names (reslab run --reuse) is the same model.
  auto renamed = plain;
  renamed.name = "plain8-copy";
  renamed.experiment = "another";
  EXPECT_NO_THROW(check_model_meta(meta, renamed, spec, "c/model.pt", "c/config.json"));
  // plain8 and resnet8 have the same parameter names and shapes: only the recorded model tells them apart.
  expect_error<ConfigError>([&] { check_model_meta(meta, residual, spec, "r/model.pt", "r/config.json"); },
                            {"r/model.pt", "records model \"plain8\"", "r/config.json", "\"resnet8\""});
  auto other_lr = plain;
  other_lr.optim.sgd.lr = 0.05;
  expect_error<ConfigError>([&] { check_model_meta(meta, other_lr, spec, "p/model.pt", "p/config.json"); },
                            {"/optim/lr", "0.1", "0.05"});
  meta.erase("config");  // a model file from before the configuration was recorded: its name is still checked
  EXPECT_NO_THROW(check_model_meta(meta, plain, spec, "p/model.pt", "p/config.json"));
  expect_error<ConfigError>(
      [&] {
        check_model_meta({{"classes", 10}}, plain, spec, "p/model.pt", "c");
      },
      {"p/model.pt", "records no model name"});
}

}  // namespace
}  // namespace reslab
