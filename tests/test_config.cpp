// Experiment files: strict keys and types, grid expansion, overrides, and the shipped presets.
#include <filesystem>

#include "experiment/config.h"
#include "test_util.h"
#include "train/metrics.h"

namespace reslab {
namespace {

nlohmann::json minimal() {
  return nlohmann::json::parse(R"({
    "name": "t",
    "grid": {"depth": [20, 56], "residual": [false, true]},
    "optim": {"epochs": 2}
  })");
}

TEST(Config, ExpandsDepthsTimesPlainAndResidual) {
  auto ex = parse_experiment(minimal(), "t.json");
  auto runs = expand_grid(ex);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0].name, "plain20");
  EXPECT_EQ(runs[1].model.name, "resnet20");
  EXPECT_EQ(runs[3].name, "resnet56");
  EXPECT_EQ(runs[3].experiment, "t");
  EXPECT_EQ(*runs[0].optim.epochs, 2.0);
  // Paper defaults where the file is silent.
  EXPECT_EQ(runs[0].optim.batch, 128);
  EXPECT_DOUBLE_EQ(runs[0].optim.sgd.momentum, 0.9);
  EXPECT_DOUBLE_EQ(runs[0].optim.sgd.weight_decay, 1e-4);
  EXPECT_EQ(runs[0].model.shortcut, "A");
}

TEST(Config, ExtraAxesNameTheirRuns) {
  auto doc = minimal();
  doc["grid"] = {{"model", {"resnet20"}}, {"shortcut", {"A", "B"}}, {"seed", {1, 2}}};
  auto runs = expand_grid(parse_experiment(doc, "t.json"));
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0].name, "resnet20-A-s1");
  EXPECT_EQ(runs[3].name, "resnet20-B-s2");
  EXPECT_EQ(runs[3].seed, 2u);
}

TEST(Config, UnknownKeysAreErrorsNamingKeyAndFile) {
  auto doc = minimal();
  doc["optim"]["learning_rate"] = 0.1;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); },
                                     {"exp.json", "'optim.learning_rate'", "not a known key", "lr"});
  doc = minimal();
  doc["bogus"] = 1;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"exp.json", "'bogus'"});
}

TEST(Config, TheKnownKeysAreTheKeysTheReaderAsksFor) {
  // No list of keys is kept by hand: an unknown key's error lists every key the section's reads asked for,
  // present or not, in order; one looked at only with has() (data.class_index) is known too.
  auto doc = minimal();
  doc["optim"]["learning_rate"] = 0.1;
  testing::expect_error<ConfigError>(
      [&] { parse_experiment(doc, "exp.json"); },
      {"expected one of: batch, clip_grad_norm, epochs, iterations, lr, momentum, nesterov, param_groups, schedule, "
       "weight_decay"});
  doc = minimal();
  doc["data"] = {
      {"dataset", "image-folder"}, {"dir", "/x"}, {"classes", 10}, {"class_index", {{"cat", 3}}}, {"crops", 1}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); },
                                     {"'data.crops' is not a known key", "class_index, classes, crop,", "workers"});
  doc = minimal();
  doc["optim"]["schedule"] = {{"warmup", {{"lr", 0.01}, {"iterations", 5}, {"until", 1}}}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); },
                                     {"'optim.schedule.warmup.until'", "iterations, lr, min_depth, until_error"});
}

TEST(Config, SetsApplyToTheDocumentBeforeItIsRead) {
  testing::TempDir dir;
  write_json_file(dir.file("e.json"), minimal());
  const auto ex = load_experiment(dir.file("e.json"),
                                  {"optim.lr=0.05", "data.train_size=8000", "grid.depth=[32]", "model.shortcut=B",
                                   "optim.schedule.milestones=[1, 1.5]", "optim.schedule.unit=epochs",
                                   "train.tensorboard=false", "optim.epochs=null", "optim.iterations=30"});
  const auto runs = expand_grid(ex);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].name, "resnet32");
  EXPECT_DOUBLE_EQ(runs[1].optim.sgd.lr, 0.05);
  EXPECT_EQ(runs[1].data.split.train_size, 8000);
  EXPECT_EQ(runs[1].model.shortcut, "B");  // not JSON: taken as a string
  EXPECT_EQ(runs[1].optim.schedule.milestones, (std::vector<double>{1, 1.5}));
  EXPECT_TRUE(runs[1].optim.schedule.milestones_in_epochs);
  EXPECT_FALSE(runs[1].train.tensorboard);
  EXPECT_FALSE(runs[1].optim.epochs.has_value());  // null removed it
  EXPECT_EQ(*runs[1].optim.iterations, 30);
  EXPECT_EQ(ex.source, dir.file("e.json") +
                           " --set optim.lr=0.05 --set data.train_size=8000 --set grid.depth=[32] "
                           "--set model.shortcut=B --set optim.schedule.milestones=[1, 1.5] --set "
                           "optim.schedule.unit=epochs --set train.tensorboard=false --set optim.epochs=null --set "
                           "optim.iterations=30");
  // A later assignment wins; sections are made where absent.
  const auto later =
      expand_grid(load_experiment(dir.file("e.json"), {"optim.lr=0.2", "optim.lr=0.3", "dist.sync_bn=true"}));
  EXPECT_DOUBLE_EQ(later[0].optim.sgd.lr, 0.3);
  EXPECT_TRUE(later[0].dist.sync_bn);
  // The data-parallel backend: written only when not "auto" (files from before it read as they did), not part of
  // a checkpoint's identity (NCCL and Gloo add the same gradients), and checked by name.
  EXPECT_FALSE(to_json(later[0]).at("dist").contains("backend"));
  const auto nccl = expand_grid(load_experiment(dir.file("e.json"), {"dist.sync_bn=true", "dist.backend=nccl"}));
  EXPECT_EQ(nccl[0].dist.backend, "nccl");
  EXPECT_EQ(to_json(nccl[0]).at("dist").at("backend"), "nccl");
  const auto sync = expand_grid(load_experiment(dir.file("e.json"), {"dist.sync_bn=true"}));
  EXPECT_EQ(checkpoint_identity(nccl[0]), checkpoint_identity(sync[0]));
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"dist.backend=mpi"}); },
                                     {"--set dist.backend=mpi", "dist.backend = \"mpi\"; expected auto, gloo or nccl"});
  // Checked by the file's own rules, with the assignments named.
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"optim.lrr=0.05"}); },
                                     {"e.json --set optim.lrr=0.05: key 'optim.lrr' is not a known key", "lr"});
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"optim.lr=fast"}); },
                                     {"key 'optim.lr' has value \"fast\"; expected a number"});
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"optim.epochs=-1"}); },
                                     {"--set optim.epochs=-1", "optim.epochs", "above 0"});
  // Assignments that are not KEY=VALUE, or whose path runs through a value.
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"optim.lr"}); },
                                     {"--set \"optim.lr\"", "expected KEY=VALUE"});
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {".lr=1"}); },
                                     {"--set \".lr=1\"", "dotted path"});
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"optim..lr=1"}); }, {"dotted path"});
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"optim.epochs.x=1"}); },
                                     {"key 'optim.epochs' holds 2, not an object"});
  testing::expect_error<ConfigError>([&] { load_experiment(dir.file("e.json"), {"a\nb=1"}); },
                                     {"--set \"a\\nb=1\"", "control"});
}

TEST(Config, SetsApplyToATrainRunsConfiguration) {
  RunConfig run;
  run.model.name = "resnet20";
  run.name = "mine";
  run.optim.schedule.milestones_in_epochs = true;
  // Untouched keys keep their values, the name is kept, and 1 epoch is the default when neither is set.
  const auto set = apply_sets(run, {"optim.lr=0.05", "data.train_size=640"});
  EXPECT_DOUBLE_EQ(set.optim.sgd.lr, 0.05);
  EXPECT_EQ(set.data.split.train_size, 640);
  EXPECT_EQ(set.name, "mine");
  EXPECT_EQ(set.model.name, "resnet20");
  EXPECT_EQ(*set.optim.epochs, 1.0);
  EXPECT_EQ(to_json(apply_sets(run, {"optim.lr=0.1"}))["optim"], to_json([&] {
              RunConfig r = run;
              r.optim.epochs = 1.0;
              return r;
            }())["optim"]);
  const auto it = apply_sets(run, {"optim.iterations=7"});
  EXPECT_FALSE(it.optim.epochs.has_value());
  EXPECT_EQ(*it.optim.iterations, 7);
  // Another model brings its own default parameter groups, not the first model's.
  const auto fixup = apply_sets(run, {"model.name=resnet20-fixup"});
  EXPECT_EQ(resolved_param_groups(fixup).size(), 1u);
  run.model.name = "resnet20-fixup";
  EXPECT_TRUE(resolved_param_groups(apply_sets(run, {"model.name=resnet20"})).empty());
  testing::expect_error<ConfigError>([&] { apply_sets(run, {"optim.momentum=2"}); },
                                     {"command line --set optim.momentum=2", "optim.momentum", "[0, 1)"});
  testing::expect_error<ConfigError>([&] { apply_sets(run, {"grid.seed=[1,2]"}); }, {"describes 2 runs, not one"});
}

TEST(Config, WrongTypesAreErrorsNamingKeyValueAndExpectation) {
  auto doc = minimal();
  doc["optim"]["lr"] = "fast";
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); },
                                     {"exp.json", "'optim.lr'", "\"fast\"", "a number"});
  doc = minimal();
  doc["optim"]["batch"] = 12.5;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'optim.batch'", "integer"});
  doc = minimal();
  doc["grid"]["residual"] = {"yes"};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'grid.residual'", "true/false"});
  doc = minimal();
  doc["data"] = 3;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'data'", "an object"});
}

TEST(Config, InvalidValuesAreRejectedBeforeTraining) {
  auto doc = minimal();
  doc["grid"]["depth"] = {20, 21};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"exp.json", "plain21", "6n+2"});
  doc = minimal();
  doc["optim"]["lr"] = -1;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"optim.lr", "positive"});
  doc = minimal();
  doc["model"] = {{"shortcut", "D"}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"shortcut", "'D'"});
  doc = minimal();
  doc["data"] = {{"dataset", "imagenet"}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"data.dataset", "imagenet"});
  doc = minimal();
  doc["data"] = {{"train_size", 70000}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"train_size", "60000"});
  doc = minimal();
  doc["optim"]["iterations"] = 100;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"not both"});
  doc = minimal();
  doc["optim"].erase("epochs");
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'epochs' or 'iterations'"});
  doc = minimal();
  doc["optim"]["schedule"] = {{"warmup", {{"lr", 0.01}}}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"until_error"});
  doc = minimal();
  doc.erase("name");
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'name'"});
}

TEST(Config, AmbiguousOrRepeatedGridsAreErrors) {
  auto doc = minimal();
  doc["grid"]["depth"] = {20, 20};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"exp.json", "'plain20' twice"});
  doc = minimal();
  doc["model"] = {{"name", "resnet20"}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'grid.depth'", "model.name"});
  doc = minimal();
  doc["grid"] = {{"model", {"resnet20"}}, {"residual", {true}}};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'grid.residual'"});
  doc = minimal();
  doc["seed"] = -1;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'seed'", "non-negative"});
  doc = minimal();
  doc["data"] = {{"train_size", 100}};
  doc["optim"]["batch"] = 128;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"optim.batch", "128"});
}

TEST(Config, EmptyListsWhereNothingIsAValidAnswer) {
  auto doc = minimal();
  doc["train"] = {{"eval_at", nlohmann::json::array()}};
  doc["optim"]["schedule"] = {{"milestones", nlohmann::json::array()}};
  auto runs = expand_grid(parse_experiment(doc, "t.json"));
  EXPECT_TRUE(runs[0].train.eval_at.empty());
  EXPECT_TRUE(runs[0].optim.schedule.milestones.empty());
  doc["grid"]["depth"] = nlohmann::json::array();
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "t.json"); }, {"'grid.depth'", "non-empty"});
}

TEST(Config, CommandLineOverridesReplaceFileValues) {
  auto ex = parse_experiment(minimal(), "t.json");
  Overrides o;
  o.depths = std::vector<int64_t>{32};
  o.iterations = 50;
  o.seed = 9;
  o.train_size = 1000;
  apply_overrides(ex, o);
  auto runs = expand_grid(ex);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].model.name, "resnet32");
  EXPECT_FALSE(runs[1].optim.epochs.has_value());
  EXPECT_EQ(*runs[1].optim.iterations, 50);
  EXPECT_EQ(runs[1].seed, 9u);
  EXPECT_EQ(runs[1].data.split.train_size, 1000);
  o.depths = std::vector<int64_t>{33};
  testing::expect_error<ConfigError>([&] { apply_overrides(ex, o); }, {"33", "6n+2"});
}

TEST(Config, SeedsFromTheCommandLineRunEveryPointAtEachSeed) {
  auto ex = parse_experiment(minimal(), "t.json");
  Overrides o;
  o.seeds = std::vector<int64_t>{1, 2, 3};
  apply_overrides(ex, o);
  const auto runs = expand_grid(ex);
  ASSERT_EQ(runs.size(), 12u);
  EXPECT_EQ(runs[0].name, "plain20-s1");
  EXPECT_EQ(runs[2].seed, 3u);
  EXPECT_EQ(runs[3].name, "resnet20-s1");
  EXPECT_EQ(runs[0].data.split.split_seed, runs[2].data.split.split_seed);  // one split for the whole experiment
  o.seed = 4;
  testing::expect_error<ConfigError>([&] { apply_overrides(ex, o); }, {"--seed or --seeds"});
  o.seed.reset();
  o.seeds = std::vector<int64_t>{1, -2};
  testing::expect_error<ConfigError>([&] { apply_overrides(ex, o); }, {"--seeds", "-2", "non-negative"});
  o.seeds = std::vector<int64_t>{1, 1};
  testing::expect_error<ConfigError>([&] { apply_overrides(ex, o); }, {"twice"});
}

TEST(Config, ParameterGroupsAreReadCheckedAndWrittenWhereTheyApply) {
  // Fixup's default: its scalars and the classifier's bias at a tenth of the rate, in the resolved config.
  auto doc = minimal();
  doc.erase("grid");
  doc["grid"] = {{"model", {"resnet20", "resnet20-fixup"}}};
  auto runs = expand_grid(parse_experiment(doc, "t.json"));
  EXPECT_FALSE(to_json(runs[0])["optim"].contains("param_groups"));  // the paper's nets read as before
  const auto fixup = to_json(runs[1])["optim"]["param_groups"];
  ASSERT_EQ(fixup.size(), 1u);
  EXPECT_EQ(fixup[0]["kinds"], nlohmann::json({"scalar_bias", "multiplier", "bias"}));
  EXPECT_DOUBLE_EQ(fixup[0]["lr_mult"].get<double>(), 0.1);
  EXPECT_EQ(fixup[0]["weight_decay"], true);
  // The file's own groups replace the default, and survive the round trip through config.json.
  doc["optim"]["param_groups"] = nlohmann::json::parse(R"([{"kinds": ["norm"], "weight_decay": false}])");
  runs = expand_grid(parse_experiment(doc, "t.json"));
  const auto written = to_json(runs[1]);
  EXPECT_EQ(written["optim"]["param_groups"],
            nlohmann::json::parse(R"([{"kinds": ["norm"], "lr_mult": 1.0, "weight_decay": false}])"));
  nlohmann::json again = written;
  again["name"] = again["experiment"];
  again.erase("experiment");
  EXPECT_EQ(to_json(expand_grid(parse_experiment(again, "config.json"))[0])["optim"], written["optim"]);
  // An empty list turns Fixup's default off, and stays off.
  doc["optim"]["param_groups"] = nlohmann::json::array();
  EXPECT_EQ(to_json(expand_grid(parse_experiment(doc, "t.json"))[1])["optim"]["param_groups"], nlohmann::json::array());
  for (const auto& [bad, expected] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {R"([{"kinds": ["gamma"]}])", {"'optim.param_groups[0].kinds'", "scalar_bias"}},
           {R"([{"lr_mult": 0.1}])", {"'optim.param_groups[0].kinds'"}},
           {R"([{"kinds": ["bias"], "lr_mult": -1}])", {"'optim.param_groups[0].lr_mult'", "0 to 1000"}},
           {R"([{"kinds": ["bias"], "rate": 1}])", {"'optim.param_groups[0].rate'", "not a known key"}},
           {R"([{"kinds": ["bias"]}, {"kinds": ["bias"]}])", {"'optim.param_groups'", "'bias' is in two groups"}},
           {R"({"kinds": ["bias"]})", {"'optim.param_groups'", "a list of objects"}}}) {
    doc["optim"]["param_groups"] = nlohmann::json::parse(bad);
    testing::expect_error<ConfigError>([&] { parse_experiment(doc, "t.json"); }, expected);
  }
}

TEST(Config, DeviceIsReadCheckedAndWrittenOnlyWhenNotTheCpu) {
  auto doc = minimal();
  auto run = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_EQ(run.device, "cpu");
  EXPECT_FALSE(to_json(run).contains("device"));  // CPU runs' config.json reads as before the key existed
  doc["device"] = "cuda:1";
  run = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_EQ(run.device, "cuda:1");
  EXPECT_EQ(to_json(run)["device"], "cuda:1");
  testing::TempDir dir;
  write_json_file(dir.file("config.json"), to_json(run));
  EXPECT_EQ(load_run_config(dir.file("config.json")).device, "cuda:1");
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "CUDA", "cuda:12345"}) {
    doc["device"] = bad;
    testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); },
                                       {"exp.json", "device", std::string("'") + bad + "'", "cpu, cuda or cuda:N"});
  }
  doc["device"] = 1;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"'device'"});
  Overrides o;
  o.device = "cuda";
  doc["device"] = "cpu";
  auto ex = parse_experiment(doc, "exp.json");
  apply_overrides(ex, o);
  EXPECT_EQ(expand_grid(ex)[0].device, "cuda");
}

TEST(Config, TensorBoardIsOnByDefaultAndWrittenOnlyWhenOff) {
  auto doc = minimal();
  auto run = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_TRUE(run.train.tensorboard);
  EXPECT_FALSE(to_json(run)["train"].contains("tensorboard"));  // config.json reads as before the key existed
  doc["train"]["tensorboard"] = false;
  run = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_FALSE(run.train.tensorboard);
  EXPECT_EQ(to_json(run)["train"]["tensorboard"], false);
  // A copy of the metrics: not part of what a checkpoint or model belongs to.
  EXPECT_EQ(checkpoint_identity(run), checkpoint_identity(expand_grid(parse_experiment(minimal(), "exp.json"))[0]));
  doc["train"]["tensorboard"] = "yes";
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"exp.json", "'train.tensorboard'"});
}

TEST(Config, PrecisionIsFloat32ByDefaultAndBf16IsPartOfWhatACheckpointBelongsTo) {
  auto doc = minimal();
  const auto float32 = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_EQ(float32.train.precision, "float32");
  EXPECT_FALSE(to_json(float32)["train"].contains("precision"));  // config.json reads as before the key existed
  doc["train"]["precision"] = "bf16";
  const auto bf16 = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_EQ(bf16.train.precision, "bf16");
  EXPECT_EQ(to_json(bf16)["train"]["precision"], "bf16");
  // Other arithmetic, other weights: a float32 run does not resume from a bf16 run's checkpoint, nor reuse it.
  EXPECT_NE(checkpoint_identity(bf16), checkpoint_identity(float32));
  EXPECT_NE(training_identity(bf16), training_identity(float32));
  doc["train"]["precision"] = "fp16";
  testing::expect_error<ConfigError>([&] { expand_grid(parse_experiment(doc, "exp.json")); },
                                     {"exp.json", "train.precision = 'fp16'; expected float32 or bf16"});
  doc["train"]["precision"] = 16;
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"exp.json", "'train.precision'"});
}

TEST(Config, CudaGraphsAreOffByDefaultNeedACudaDeviceAndAStepScheduleAndAreNotPartOfTheIdentity) {
  auto doc = minimal();
  const auto eager = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_FALSE(eager.train.cuda_graphs);
  EXPECT_FALSE(to_json(eager)["train"].contains("cuda_graphs"));  // config.json reads as before the key existed
  doc["device"] = "cuda";
  doc["train"]["cuda_graphs"] = true;
  const auto graphed = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_TRUE(graphed.train.cuda_graphs);
  EXPECT_EQ(to_json(graphed)["train"]["cuda_graphs"], true);
  // The same kernels launched another way: a run resumes or is reused across it, and collect groups the two.
  doc.erase("train");
  const auto cuda_eager = expand_grid(parse_experiment(doc, "exp.json"))[0];
  EXPECT_EQ(checkpoint_identity(graphed), checkpoint_identity(cuda_eager));
  EXPECT_EQ(training_identity(graphed), training_identity(cuda_eager));
  doc["train"]["cuda_graphs"] = true;
  doc["device"] = "cpu";
  testing::expect_error<ConfigError>([&] { expand_grid(parse_experiment(doc, "exp.json")); },
                                     {"exp.json", "train.cuda_graphs = true; expected false on the CPU"});
  doc["device"] = "cuda:0";
  doc["optim"]["schedule"] = {{"cosine", true}};
  testing::expect_error<ConfigError>([&] { expand_grid(parse_experiment(doc, "exp.json")); },
                                     {"exp.json", "train.cuda_graphs = true", "optim.schedule.cosine"});
  doc["optim"].erase("schedule");
  doc["train"]["cuda_graphs"] = "on";
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); }, {"exp.json", "'train.cuda_graphs'"});
}

TEST(Config, APrecisionAxisNamesItsRunsAndChecksItsValues) {
  auto doc = minimal();
  doc["grid"]["precision"] = {"float32", "bf16"};
  doc["grid"]["seed"] = {1, 2};
  const auto runs = expand_grid(parse_experiment(doc, "exp.json"));
  ASSERT_EQ(runs.size(), 16u);  // 4 models x 2 precisions x 2 seeds
  EXPECT_EQ(runs[0].name, "plain20-float32-s1");
  EXPECT_EQ(runs[0].train.precision, "float32");
  EXPECT_EQ(runs[2].name, "plain20-bf16-s1");
  EXPECT_EQ(runs[2].train.precision, "bf16");
  EXPECT_EQ(to_json(runs[2])["train"]["precision"], "bf16");
  doc["grid"]["precision"] = {"bf16"};  // one value: no suffix, the precision set
  const auto one = expand_grid(parse_experiment(doc, "exp.json"));
  EXPECT_EQ(one[0].name, "plain20-s1");
  EXPECT_EQ(one[0].train.precision, "bf16");
  doc["grid"]["precision"] = {"float32", "fp8"};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); },
                                     {"exp.json", "train.precision = 'fp8'; expected float32 or bf16"});
  doc["grid"]["precision"] = {"float32", 16};
  testing::expect_error<ConfigError>([&] { parse_experiment(doc, "exp.json"); },
                                     {"exp.json", "'grid.precision'", "a list of strings"});
}

TEST(Config, ResolvedRunRoundTripsItsKeyValues) {
  auto run = expand_grid(parse_experiment(minimal(), "t.json"))[0];
  auto j = to_json(run);
  EXPECT_EQ(j["model"]["name"], "plain20");
  EXPECT_EQ(j["optim"]["epochs"], 2.0);
  EXPECT_EQ(j["data"]["dataset"], "fashion-mnist");
  EXPECT_FALSE(j["optim"].contains("iterations"));
}

TEST(Config, GradientClippingIsReadCheckedAndWrittenOnlyWhenOn) {
  auto run = expand_grid(parse_experiment(minimal(), "t.json"))[0];
  EXPECT_EQ(run.optim.clip_grad_norm, 0.0);
  EXPECT_FALSE(to_json(run)["optim"].contains("clip_grad_norm"));  // configs and identities of old runs stay
  auto doc = minimal();
  doc["optim"]["clip_grad_norm"] = 5;
  run = expand_grid(parse_experiment(doc, "t.json"))[0];
  EXPECT_EQ(run.optim.clip_grad_norm, 5.0);
  EXPECT_EQ(to_json(run)["optim"]["clip_grad_norm"], 5.0);
  EXPECT_NE(checkpoint_identity(run), checkpoint_identity(expand_grid(parse_experiment(minimal(), "t.json"))[0]));
  testing::TempDir dir;
  write_json_file(dir.file("config.json"), to_json(run));
  EXPECT_EQ(load_run_config(dir.file("config.json")).optim.clip_grad_norm, 5.0);
  for (const nlohmann::json& bad : {nlohmann::json(-1), nlohmann::json(1e7), nlohmann::json("big")}) {
    doc["optim"]["clip_grad_norm"] = bad;
    testing::expect_error<ConfigError>([&] { parse_experiment(doc, "t.json"); }, {"optim.clip_grad_norm"});
  }
}

TEST(Config, ProbesSectionIsReadStrictly) {
  auto doc = minimal();
  doc["probes"] = nlohmann::json::parse(R"({
    "during_training": ["grad_norms"], "at": [0, 10],
    "after_training": ["lesions", "paths"], "at_init": ["shattered"], "init_depths": [8, 110],
    "settings": {"batch": 16, "lesion_k": [1, 3], "points": 20, "max_lag": 5}
  })");
  auto ex = parse_experiment(doc, "p.json");
  EXPECT_EQ(ex.base.probes.during_training, std::vector<std::string>{"grad_norms"});
  EXPECT_EQ(ex.base.probes.at, (std::vector<int64_t>{0, 10}));
  EXPECT_EQ(expand_grid(ex)[3].probes.at, (std::vector<int64_t>{0, 10}));  // every run probes
  EXPECT_EQ(ex.analysis.after_training, (std::vector<std::string>{"lesions", "paths"}));
  EXPECT_EQ(ex.analysis.init_depths, (std::vector<int64_t>{8, 110}));
  EXPECT_EQ(ex.analysis.settings.batch, 16);
  EXPECT_EQ(ex.analysis.settings.lesion_k, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(ex.analysis.settings.samples, ProbeSettings{}.samples);  // defaults where silent

  auto bad = [&](const char* key, const nlohmann::json& value, std::vector<std::string> parts) {
    auto d = doc;
    d["probes"][key] = value;
    testing::expect_error<ConfigError>([&] { parse_experiment(d, "p.json"); }, parts);
  };
  bad("after_training", {"lesion"}, {"p.json", "'probes.after_training'", "unknown probe 'lesion'", "lesions"});
  bad("during_training", {"lesions"}, {"'probes.during_training'", "grad_norms, grad_snr"});
  bad("at", {-1}, {"'probes.at'", "non-negative"});
  bad("init_depths", {20, 21}, {"'probes.init_depths'", "21", "6n+2"});
  bad("bogus", 1, {"'probes.bogus'"});
  bad("settings", {{"batch", 0}}, {"'probes.settings.batch'", "positive"});
  bad("settings", {{"points", 4}, {"max_lag", 4}}, {"'probes.settings.max_lag'", "fewer than 'points'"});
  auto no_at = doc;
  no_at["probes"].erase("at");
  testing::expect_error<ConfigError>([&] { parse_experiment(no_at, "p.json"); }, {"'probes.at'", "iterations"});
}

TEST(Config, ImageFolderTransformKeysAreReadAndChecked) {
  auto doc = minimal();
  doc["data"] = {{"dataset", "image-folder"}, {"dir", "/data/imagenette"}, {"crop", 112}, {"scale", {128, 240}},
                 {"eval_resize", 128},        {"eval_crops", 10},          {"workers", 3}};
  const auto runs = expand_grid(parse_experiment(doc, "exp.json"));
  const FolderTransform& t = runs[0].data.folder;
  EXPECT_EQ(t.crop, 112);
  EXPECT_EQ(t.scale_min, 128);
  EXPECT_EQ(t.scale_max, 240);
  EXPECT_EQ(t.eval_resize, 128);
  EXPECT_EQ(t.eval_crops, 10);
  EXPECT_EQ(t.workers, 3);
  EXPECT_EQ(to_json(runs[0])["data"]["scale"], nlohmann::json({128, 240}));
  testing::TempDir dir;
  write_json_file(dir.file("config.json"), to_json(runs[0]));
  EXPECT_EQ(to_json(load_run_config(dir.file("config.json"))), to_json(runs[0]));
  // Only an image folder has them, and only possible values pass.
  EXPECT_FALSE(to_json(expand_grid(parse_experiment(minimal(), "exp.json"))[0])["data"].contains("crop"));
  auto bad = [&](const char* key, nlohmann::json value, std::vector<std::string> parts) {
    auto d = doc;
    d["data"][key] = value;
    testing::expect_error<ConfigError>([&] { parse_experiment(d, "exp.json"); }, parts);
  };
  bad("eval_crops", 5, {"exp.json", "'data.eval_crops'", "1 (centre crop) or 10"});
  bad("scale", {300, 200}, {"'data.scale'", "[300,200]", "scale_max at least scale_min (300)"});
  bad("scale", {256}, {"'data.scale'", "[min, max]"});
  bad("crop", 300, {"'data.scale'", "at least the crop (300)"});
  bad("workers", -1, {"'data.workers'"});
  auto other = minimal();
  other["data"] = {{"dataset", "fashion-mnist"}, {"crop", 24}};
  testing::expect_error<ConfigError>([&] { parse_experiment(other, "exp.json"); },
                                     {"'data.crop'", "image-folder only"});
}

TEST(Config, ARunsConfigJsonReadsBackAsTheSameRun) {
  auto doc = minimal();
  doc["probes"] = {{"during_training", {"grad_snr"}}, {"at", {5}}};
  doc["data"] = {{"train_size", 1000}, {"test_size", 300}};
  const auto run = expand_grid(parse_experiment(doc, "t.json"))[1];
  testing::TempDir dir;
  write_json_file(dir.file("config.json"), to_json(run));
  const auto back = load_run_config(dir.file("config.json"));
  EXPECT_EQ(to_json(back), to_json(run));
  EXPECT_EQ(back.name, "resnet20");
  EXPECT_EQ(back.experiment, "t");
  // A run without probes writes empty lists, which read back as no probes.
  const auto plain = expand_grid(parse_experiment(minimal(), "t.json"))[0];
  write_json_file(dir.file("plain.json"), to_json(plain));
  EXPECT_EQ(to_json(load_run_config(dir.file("plain.json"))), to_json(plain));
  testing::write_bytes(dir.file("bad.json"), {'[', '1', ']'});
  testing::expect_error<ConfigError>([&] { load_run_config(dir.file("bad.json")); }, {"bad.json", "config.json"});
  testing::expect_error<ConfigError>([&] { load_run_config(dir.file("missing.json")); }, {"missing.json"});
}

TEST(Config, ShippedExperimentsParse) {
  const std::string dir = std::string(RESLAB_SOURCE_DIR) + "/experiments";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    auto ex = load_experiment(entry.path().string());
    EXPECT_FALSE(expand_grid(ex).empty());
    ++count;
  }
  EXPECT_GE(count, 3);
  // Figure 6: plain and residual at 20, 32, 44, 56, 110 with the paper's recipe.
  auto fig6 = load_experiment(dir + "/cifar10_fig6.json");
  auto runs = expand_grid(fig6);
  EXPECT_EQ(runs.size(), 10u);
  EXPECT_EQ(*runs[0].optim.iterations, 64000);
  // The paper's final protocol: Figure 6 and Table 6 train on all 50k images; the 45k/5k split the schedule was
  // chosen on is cifar10_val.json.
  EXPECT_EQ(runs[0].data.split.val_size, 0);
  EXPECT_EQ(runs[0].optim.schedule.milestones, (std::vector<double>{32000, 48000}));
  const auto val = expand_grid(load_experiment(dir + "/cifar10_val.json"));
  EXPECT_EQ(val.size(), 10u);
  EXPECT_EQ(val[0].data.split.val_size, 5000);
  EXPECT_EQ(*val[0].optim.iterations, 64000);
  // Table 6: ResNet-110 and -1202 warm up, shallower nets do not.
  auto table6 = expand_grid(load_experiment(dir + "/cifar10_table6.json"));
  EXPECT_EQ(table6.size(), 6u);
  EXPECT_EQ(table6.back().model.name, "resnet1202");
  EXPECT_EQ(table6.back().optim.schedule.warmup_min_depth, 110);
  EXPECT_EQ(table6.back().data.split.val_size, 0);
}

}  // namespace
}  // namespace reslab
