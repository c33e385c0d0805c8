#include "experiment/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <sstream>

#include "data/datasets.h"
#include "models/network.h"
#include "models/registry.h"
#include "train/device.h"
#include "train/metrics.h"

namespace reslab {

namespace {

/// A number as a person wrote it: 0.1, 1e+300, inf.
std::string number_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

/// Reports a value out of range in a resolved run: "SOURCE: run 'NAME': KEY = VALUE; expected WHAT".
struct RunCheck {
  const std::string& source;
  const std::string& run;
  [[noreturn]] void bad(const std::string& key, const std::string& value, const std::string& expected) const {
    throw ConfigError(source + ": run '" + run + "': " + key + " = " + value + "; expected " + expected);
  }
  /// "SOURCE: WHAT", for a message a component's own check wrote.
  [[noreturn]] void fail(const std::string& what) const { throw ConfigError(source + ": " + what); }
};

// Each section of the file below: its reader, its to_json and its check, side by side.

// ---- model ----

void read_model(JsonSection m, ModelConfig& model) {
  if (auto v = m.string("name")) model.name = *v;
  if (auto v = m.string("shortcut")) model.shortcut = *v;
  m.finish();
}

void check_model(const ModelConfig& model, const RunCheck& check) {
  try {
    parse_model_name(model.name);
  } catch (const std::invalid_argument& e) {
    check.fail(e.what());
  }
  try {
    parse_shortcut(model.shortcut);
  } catch (const std::invalid_argument& e) {
    check.fail(std::string("model.shortcut: ") + e.what());
  }
}

}  // namespace

nlohmann::json to_json(const ModelConfig& model) { return {{"name", model.name}, {"shortcut", model.shortcut}}; }

// ---- data ----

std::map<std::string, int64_t> read_class_index(JsonSection& parent, const std::string& key) {
  std::map<std::string, int64_t> out;
  auto index = parent.section(key);
  if (!index) return out;
  for (const auto& folder : index->keys()) {
    if (folder.empty() || folder.size() > 255 || folder.find('/') != std::string::npos || folder == "." ||
        folder == ".." || first_control_char(folder) >= 0) {
      parent.fail(key, "class folder names (one path component without control characters), not " + shown_json(folder));
    }
    const auto v = index->integer(folder);
    if (!v) parent.fail(key, "an integer output index for each class folder (" + shown_json(folder) + " has none)");
    out[folder] = *v;
  }
  if (out.empty()) parent.fail(key, "an object naming the output index of each class folder");
  return out;
}

namespace {

void read_folder_transform(JsonSection& d, DataConfig& data) {
  FolderTransform& t = data.folder;
  bool given = false;
  if (auto v = d.integer("crop")) t.crop = *v, given = true;
  if (auto v = d.integers("scale")) {
    if (v->size() != 2) d.fail("scale", "[min, max]: the range the shorter side is resized to in training");
    t.scale_min = (*v)[0];
    t.scale_max = (*v)[1];
    given = true;
  }
  if (auto v = d.integer("eval_resize")) t.eval_resize = *v, given = true;
  if (auto v = d.integer("eval_crops")) t.eval_crops = *v, given = true;
  if (auto v = d.integer("workers")) t.workers = *v, given = true;
  for (const char* key : {"mean", "std"}) {
    if (auto v = d.numbers(key)) {
      if (v->size() != 3) d.fail(key, "three numbers, one for each of R, G and B (pixel/255)");
      (std::string(key) == "mean" ? t.mean : t.std) = *v;
      given = true;
    }
  }
  if (auto v = d.integer("classes")) t.classes = *v, given = true;
  if (d.has("class_index")) {
    t.class_index = read_class_index(d, "class_index");
    given = true;
  }
  if (given && data.dataset != "image-folder") {
    for (const char* key :
         {"crop", "scale", "eval_resize", "eval_crops", "workers", "mean", "std", "classes", "class_index"}) {
      if (d.has(key)) d.fail(key, "no such key for dataset '" + data.dataset + "' (image-folder only)");
    }
  }
  try {
    check_transform(t);
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    const std::string field = what.substr(0, what.find(' '));
    const std::string named = field.back() == ':' ? field.substr(0, field.size() - 1) : field;
    const std::string key = named == "scale_min" || named == "scale_max" ? "scale" : named;
    const auto at = what.find(": expected ");
    d.fail(key, (key == named ? "" : named + " ") + (at == std::string::npos ? what : what.substr(at + 11)));
  }
}

void read_data(JsonSection d, DataConfig& data) {
  if (auto v = d.string("dataset")) data.dataset = *v;
  if (auto v = d.string("dir")) data.dir = *v;
  if (auto v = d.integer("train_size")) data.split.train_size = *v;
  if (auto v = d.integer("val_size")) data.split.val_size = *v;
  if (auto v = d.integer("test_size")) data.split.test_size = *v;
  if (auto v = d.integer("split_seed")) {
    if (*v < 0) d.fail("split_seed", "a non-negative integer");
    data.split.split_seed = static_cast<uint64_t>(*v);
  }
  if (auto v = d.boolean("augment")) data.augment = *v;
  read_folder_transform(d, data);
  d.finish();
}

void check_data(const DataConfig& data, const RunCheck& check) {
  const SplitOptions& split = data.split;
  if (data.dataset == "image-folder") {
    try {
      check_transform(data.folder);
    } catch (const std::invalid_argument& e) {
      check.fail("run '" + check.run + "': image folder transform: " + e.what());
    }
  }
  try {
    const auto& info = dataset_info(data.dataset);
    if (split.train_size < 0 || split.val_size < 0 || split.test_size < 0) {
      check.bad("data sizes",
                std::to_string(split.train_size) + "/" + std::to_string(split.val_size) + "/" +
                    std::to_string(split.test_size),
                "non-negative sizes (0 keeps all)");
    }
    // An image folder's sizes are checked when it is read.
    if (info.train_examples > 0 &&
        (split.val_size + split.train_size > info.train_examples || split.val_size >= info.train_examples)) {
      check.bad("data.train_size + data.val_size", std::to_string(split.train_size + split.val_size),
                "at most " + std::to_string(info.train_examples) + " (" + info.name + " training examples)");
    }
    if (info.test_examples > 0 && split.test_size > info.test_examples) {
      check.bad("data.test_size", std::to_string(split.test_size), "at most " + std::to_string(info.test_examples));
    }
  } catch (const std::invalid_argument& e) {
    check.fail(std::string("data.dataset: ") + e.what());
  }
  for (const auto& [key, value] : {std::pair<const char*, int64_t>{"data.train_size", split.train_size},
                                   {"data.val_size", split.val_size},
                                   {"data.test_size", split.test_size}}) {
    if (value > kMaxExamples) check.bad(key, std::to_string(value), "at most " + std::to_string(kMaxExamples));
  }
}

}  // namespace

nlohmann::json to_json(const DataConfig& data) {
  nlohmann::json d = {{"dataset", data.dataset},
                      {"dir", data.dir},
                      {"train_size", data.split.train_size},
                      {"val_size", data.split.val_size},
                      {"test_size", data.split.test_size},
                      {"split_seed", data.split.split_seed},
                      {"augment", data.augment}};
  if (data.dataset == "image-folder") {
    const auto& t = data.folder;
    d["crop"] = t.crop;
    d["scale"] = {t.scale_min, t.scale_max};
    d["eval_resize"] = t.eval_resize;
    d["eval_crops"] = t.eval_crops;
    d["workers"] = t.workers;
    // Written only when given, so that configs (and checkpoint identities) of estimated-statistics runs stay.
    if (!t.mean.empty()) {
      d["mean"] = t.mean;
      d["std"] = t.std;
    }
    if (t.classes > 0) d["classes"] = t.classes;
    if (!t.class_index.empty()) d["class_index"] = t.class_index;
  }
  return d;
}

// ---- optim ----

namespace {

void read_schedule(JsonSection s, ScheduleConfig& sc) {
  if (auto v = s.numbers("milestones", /*allow_empty=*/true)) sc.milestones = *v;
  if (auto v = s.string("unit")) {
    if (*v != "iterations" && *v != "epochs") s.fail("unit", "\"iterations\" or \"epochs\"");
    sc.milestones_in_epochs = *v == "epochs";
  }
  if (auto v = s.number("gamma")) sc.gamma = *v;
  if (auto v = s.boolean("cosine")) sc.cosine = *v;
  if (auto w = s.section("warmup")) {
    sc.warmup_lr = w->number("lr");
    if (!sc.warmup_lr) w->fail("lr", "the warm-up learning rate (a number)");
    sc.warmup_until_error = w->number("until_error");
    sc.warmup_iterations = w->integer("iterations");
    if (!sc.warmup_until_error && !sc.warmup_iterations) {
      w->fail("until_error", "'until_error' (percent) or 'iterations' to end the warm-up");
    }
    if (auto v = w->integer("min_depth")) sc.warmup_min_depth = *v;
    w->finish();
  }
  s.finish();
}

nlohmann::json schedule_json(const ScheduleConfig& s) {
  nlohmann::json schedule = {{"milestones", s.milestones},
                             {"unit", s.milestones_in_epochs ? "epochs" : "iterations"},
                             {"gamma", s.gamma},
                             {"cosine", s.cosine}};
  if (s.warmup_lr) {
    schedule["warmup"] = {{"lr", *s.warmup_lr}, {"min_depth", s.warmup_min_depth}};
    if (s.warmup_until_error) schedule["warmup"]["until_error"] = *s.warmup_until_error;
    if (s.warmup_iterations) schedule["warmup"]["iterations"] = *s.warmup_iterations;
  }
  return schedule;
}

void check_schedule(const ScheduleConfig& s, const RunCheck& check) {
  if (!(s.gamma > 0 && s.gamma <= 1000)) {
    check.bad("optim.schedule.gamma", number_text(s.gamma), "a factor above 0 and at most 1000");
  }
  if (s.milestones.size() > 1000) {
    check.bad("optim.schedule.milestones", std::to_string(s.milestones.size()) + " milestones", "at most 1000");
  }
  for (double m : s.milestones) {
    if (!(m > 0 && m <= static_cast<double>(kMaxIterations))) {
      check.bad("optim.schedule.milestones", number_text(m),
                "positive iterations or epochs of at most " + std::to_string(kMaxIterations));
    }
  }
  if (s.warmup_lr && !(*s.warmup_lr > 0 && *s.warmup_lr <= 1000)) {
    check.bad("optim.schedule.warmup.lr", number_text(*s.warmup_lr), "a positive number of at most 1000");
  }
  if (s.warmup_until_error && !(*s.warmup_until_error >= 0 && *s.warmup_until_error <= 100)) {
    check.bad("optim.schedule.warmup.until_error", number_text(*s.warmup_until_error), "a percentage, 0 to 100");
  }
  if (s.warmup_iterations && (*s.warmup_iterations < 0 || *s.warmup_iterations > kMaxIterations)) {
    check.bad("optim.schedule.warmup.iterations", std::to_string(*s.warmup_iterations),
              "0 to " + std::to_string(kMaxIterations));
  }
  if (s.warmup_min_depth < 0 || s.warmup_min_depth > 100000) {
    check.bad("optim.schedule.warmup.min_depth", std::to_string(s.warmup_min_depth), "0 to 100000 layers");
  }
}

ParamGroupRule read_param_group(JsonSection& g) {
  ParamGroupRule rule;
  auto kinds = g.strings("kinds");
  if (!kinds) g.fail("kinds", "the parameter kinds of the group, e.g. [\"scalar_bias\", \"multiplier\"]");
  rule.kinds = *kinds;
  for (const auto& k : rule.kinds) {
    const auto& known = parameter_kinds();
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (const auto& name : known) list += (list.empty() ? "" : ", ") + name;
      g.fail("kinds", "parameter kinds among " + list);
    }
  }
  if (auto v = g.number("lr_mult")) {
    if (!(*v >= 0 && *v <= 1000)) g.fail("lr_mult", "a learning-rate multiplier from 0 to 1000");
    rule.lr_mult = *v;
  }
  if (auto v = g.boolean("weight_decay")) rule.weight_decay = *v;
  g.finish();
  return rule;
}

void read_optim(JsonSection o, OptimConfig& optim) {
  SgdConfig& sgd = optim.sgd;
  if (auto v = o.integer("batch")) optim.batch = *v;
  optim.epochs = o.number("epochs");
  optim.iterations = o.integer("iterations");
  if (optim.epochs && optim.iterations) o.fail("iterations", "either 'epochs' or 'iterations', not both");
  if (auto v = o.number("lr")) sgd.lr = *v;
  if (auto v = o.number("momentum")) sgd.momentum = *v;
  if (auto v = o.number("weight_decay")) sgd.weight_decay = *v;
  if (auto v = o.boolean("nesterov")) sgd.nesterov = *v;
  if (auto v = o.number("clip_grad_norm")) optim.clip_grad_norm = *v;
  if (auto s = o.section("schedule")) read_schedule(*s, optim.schedule);
  if (auto groups = o.sections("param_groups", /*allow_empty=*/true)) {
    optim.param_groups.emplace();
    for (auto& g : *groups) optim.param_groups->push_back(read_param_group(g));
    try {
      check_rules(*optim.param_groups);
    } catch (const std::invalid_argument& e) {
      o.fail("param_groups", std::string("groups of distinct parameter kinds (") + e.what() + ")");
    }
  }
  o.finish();
}

/// The optimiser's values, checked against the data it trains on (a batch no larger than the training set);
/// after check_data.
void check_optim(const OptimConfig& optim, const DataConfig& data, const RunCheck& check) {
  const SgdConfig& sgd = optim.sgd;
  if (optim.batch <= 0) check.bad("optim.batch", std::to_string(optim.batch), "a positive integer");
  const auto& info = dataset_info(data.dataset);  // check_data, which runs first, names an unknown dataset
  const int64_t train_size = data.split.train_size;
  if ((train_size > 0 || info.train_examples > 0) &&
      optim.batch > (train_size > 0 ? train_size : info.train_examples - data.split.val_size)) {
    check.bad("optim.batch", std::to_string(optim.batch), "at most the number of training examples");
  }
  if (!optim.epochs && !optim.iterations) check.bad("optim.epochs", "(missing)", "'epochs' or 'iterations'");
  // Every number has a finite range, checked before anything runs: a run of 1e300 epochs would "complete" after
  // one iteration (the count overflows), an infinite one never.
  if (optim.epochs && !(*optim.epochs > 0 && *optim.epochs <= kMaxEpochs)) {
    check.bad("optim.epochs", number_text(*optim.epochs),
              "a number of epochs above 0 and at most " + number_text(kMaxEpochs));
  }
  if (optim.iterations && (*optim.iterations <= 0 || *optim.iterations > kMaxIterations)) {
    check.bad("optim.iterations", std::to_string(*optim.iterations), "1 to " + std::to_string(kMaxIterations));
  }
  if (!(sgd.lr > 0 && sgd.lr <= 1000)) check.bad("optim.lr", number_text(sgd.lr), "a positive number of at most 1000");
  if (!(sgd.momentum >= 0 && sgd.momentum < 1)) check.bad("optim.momentum", number_text(sgd.momentum), "in [0, 1)");
  if (!(sgd.weight_decay >= 0 && sgd.weight_decay <= 1)) {
    check.bad("optim.weight_decay", number_text(sgd.weight_decay), "from 0 to 1");
  }
  if (!(optim.clip_grad_norm >= 0 && optim.clip_grad_norm <= 1e6)) {
    check.bad("optim.clip_grad_norm", number_text(optim.clip_grad_norm), "a gradient norm from 0 (no clipping) to 1e6");
  }
  check_schedule(optim.schedule, check);
  if (optim.batch > kMaxBatch) {
    check.bad("optim.batch", std::to_string(optim.batch), "at most " + std::to_string(kMaxBatch));
  }
}

}  // namespace

nlohmann::json to_json(const OptimConfig& optim, const std::vector<ParamGroupRule>& groups) {
  const SgdConfig& sgd = optim.sgd;
  nlohmann::json out = {{"batch", optim.batch},     {"lr", sgd.lr},
                        {"momentum", sgd.momentum}, {"weight_decay", sgd.weight_decay},
                        {"nesterov", sgd.nesterov}, {"schedule", schedule_json(optim.schedule)}};
  // Written where they apply, so that a run without groups reads (and checkpoints) as before.
  if (!groups.empty() || optim.param_groups) {
    out["param_groups"] = nlohmann::json::array();
    for (const auto& g : groups) out["param_groups"].push_back(to_json(g));
  }
  if (optim.clip_grad_norm > 0) out["clip_grad_norm"] = optim.clip_grad_norm;  // only when on: configs stay
  if (optim.epochs) out["epochs"] = *optim.epochs;
  if (optim.iterations) out["iterations"] = *optim.iterations;
  return out;
}

// ---- train (the loop) ----

namespace {

void read_loop(JsonSection t, LoopConfig& loop) {
  if (auto v = t.integer("log_every")) loop.log_every = *v;
  if (auto v = t.boolean("eval_every_epoch")) loop.eval_every_epoch = *v;
  if (auto v = t.integers("eval_at", /*allow_empty=*/true)) loop.eval_at = *v;
  if (auto v = t.integer("eval_batch")) loop.eval_batch = *v;
  if (auto v = t.boolean("channels_last")) loop.channels_last = *v;
  if (auto v = t.integer("retry_diverged")) loop.retry_diverged = *v;
  if (auto v = t.number("retry_lr_scale")) loop.retry_lr_scale = *v;
  if (auto v = t.boolean("tensorboard")) loop.tensorboard = *v;
  if (auto v = t.string("precision")) loop.precision = *v;
  if (auto v = t.boolean("cuda_graphs")) loop.cuda_graphs = *v;
  t.finish();
}

/// A list of iterations (train.eval_at, probes.at): at most 100000 of them, each in range.
void check_iterations(const char* key, const std::vector<int64_t>& list, const RunCheck& check) {
  if (list.size() > 100000) check.bad(key, std::to_string(list.size()) + " iterations", "at most 100000");
  for (int64_t it : list) {
    if (it < 0 || it > kMaxIterations) check.bad(key, std::to_string(it), "0 to " + std::to_string(kMaxIterations));
  }
}

void check_loop(const LoopConfig& loop, const RunCheck& check) {
  if (loop.log_every <= 0 || loop.log_every > kMaxIterations) {
    check.bad("train.log_every", std::to_string(loop.log_every), "1 to " + std::to_string(kMaxIterations));
  }
  if (loop.eval_batch <= 0 || loop.eval_batch > kMaxBatch) {
    check.bad("train.eval_batch", std::to_string(loop.eval_batch), "1 to " + std::to_string(kMaxBatch));
  }
  check_iterations("train.eval_at", loop.eval_at, check);
  if (loop.retry_diverged < 0 || loop.retry_diverged > 100) {
    check.bad("train.retry_diverged", std::to_string(loop.retry_diverged), "0 to 100 retries");
  }
  if (!(loop.retry_lr_scale > 0 && loop.retry_lr_scale < 1)) {
    check.bad("train.retry_lr_scale", std::to_string(loop.retry_lr_scale), "a factor between 0 and 1 (exclusive)");
  }
  if (loop.precision != "float32" && loop.precision != "bf16") {
    check.bad("train.precision", "'" + loop.precision + "'", "float32 or bf16");
  }
}

}  // namespace

nlohmann::json to_json(const LoopConfig& loop) {
  nlohmann::json out = {{"log_every", loop.log_every},
                        {"eval_every_epoch", loop.eval_every_epoch},
                        {"eval_at", loop.eval_at},
                        {"eval_batch", loop.eval_batch},
                        {"channels_last", loop.channels_last}};
  if (!loop.tensorboard) out["tensorboard"] = false;  // on, the default, is not written: configs stay as they were
  if (loop.precision != "float32") out["precision"] = loop.precision;  // likewise: float32 runs' identity stays
  if (loop.cuda_graphs) out["cuda_graphs"] = true;
  if (loop.retry_diverged > 0) {
    out["retry_diverged"] = loop.retry_diverged;
    out["retry_lr_scale"] = loop.retry_lr_scale;
  }
  return out;
}

// ---- dist ----

namespace {

void read_dist(JsonSection d, DistConfig& dist) {
  if (auto v = d.boolean("sync_bn")) dist.sync_bn = *v;
  if (auto v = d.number("bucket_mb")) dist.bucket_mb = *v;
  if (auto v = d.number("timeout_s")) dist.timeout_s = *v;
  if (auto v = d.string("backend")) dist.backend = *v;
  d.finish();
}

void check_dist(const DistConfig& dist, const RunCheck& check) {
  if (!(dist.bucket_mb > 0 && dist.bucket_mb <= 1024)) {
    check.bad("dist.bucket_mb", std::to_string(dist.bucket_mb), "MiB per all-reduce, more than 0 and at most 1024");
  }
  if (!(dist.timeout_s >= 1 && dist.timeout_s <= 86400)) {
    check.bad("dist.timeout_s", std::to_string(dist.timeout_s), "seconds, 1 to 86400");
  }
  if (dist.backend != "auto" && dist.backend != "gloo" && dist.backend != "nccl") {
    check.bad("dist.backend", shown_json(dist.backend, 40), "auto, gloo or nccl");
  }
}

}  // namespace

nlohmann::json to_json(const DistConfig& dist) {
  nlohmann::json out = {{"sync_bn", dist.sync_bn}, {"bucket_mb", dist.bucket_mb}, {"timeout_s", dist.timeout_s}};
  if (dist.backend != DistConfig().backend) out["backend"] = dist.backend;  // files from before it read as they did
  return out;
}

// ---- probes ----

namespace {

void read_probe_settings(JsonSection s, ProbeSettings& p) {
  auto positive = [&s](const char* key, int64_t& target) {
    if (auto v = s.integer(key)) {
      if (*v < 1) s.fail(key, "a positive integer");
      target = *v;
    }
  };
  positive("batch", p.batch);
  positive("samples", p.samples);
  positive("max_lengths", p.max_lengths);
  positive("points", p.points);
  positive("lines", p.lines);
  positive("max_lag", p.max_lag);
  positive("calibration_batches", p.calibration_batches);
  if (auto v = s.integers("lesion_k")) {
    for (int64_t k : *v) {
      if (k < 1) s.fail("lesion_k", "a list of positive integers (blocks deleted together)");
    }
    p.lesion_k = *v;
  }
  if (auto v = s.integer("seed")) {
    if (*v < 0) s.fail("seed", "a non-negative integer");
    p.seed = static_cast<uint64_t>(*v);
  }
  if (p.max_lag >= p.points) s.fail("max_lag", "fewer than 'points' (" + std::to_string(p.points) + ")");
  if (p.max_lengths < 2) s.fail("max_lengths", "at least 2");
  try {
    check_probe_settings(p);
  } catch (const ProbeSettingsError& e) {
    s.fail(e.key(), e.expected());
  }
  s.finish();
}

std::vector<std::string> read_probe_list(JsonSection& s, const std::string& key, bool during_training) {
  // An empty list is "no probes", as a run's config.json writes it.
  auto v = s.strings(key, /*allow_empty=*/true);
  if (!v) return {};
  for (const auto& name : *v) {
    try {
      check_probe_name(name);
    } catch (const std::invalid_argument& e) {
      s.fail(key, std::string("a list of probe names (") + e.what() + ")");
    }
    if (during_training && !probe_runs_during_training(name)) {
      s.fail(key,
             "probes that run during training: " + probes_during_training() + " ('" + name + "' runs after training)");
    }
  }
  return *v;
}

/// The probes section: the run's probes during training, and the experiment's analysis after it.
void read_probes(JsonSection s, ExperimentConfig& ex) {
  ProbeSchedule& during = ex.base.probes;
  during.during_training = read_probe_list(s, "during_training", /*during_training=*/true);
  if (auto v = s.integers("at", /*allow_empty=*/true)) {
    for (int64_t it : *v) {
      if (it < 0) s.fail("at", "a list of iterations (non-negative integers)");
    }
    during.at = *v;
  }
  if (!during.during_training.empty() && during.at.empty()) {
    s.fail("at", "the iterations at which 'during_training' probes run");
  }
  auto& a = ex.analysis;
  a.after_training = read_probe_list(s, "after_training", false);
  a.at_init = read_probe_list(s, "at_init", false);
  if (auto v = s.integers("init_depths", /*allow_empty=*/true)) {
    for (int64_t d : *v) {
      try {
        parse_model_name("resnet" + std::to_string(d));
      } catch (const std::invalid_argument& e) {
        s.fail("init_depths", std::string("a list of depths the nets can have (") + e.what() + ")");
      }
    }
    a.init_depths = *v;
  }
  if (!a.at_init.empty() && a.init_depths.empty() && ex.depths.empty()) {
    s.fail("init_depths", "the depths of the fresh nets for 'at_init' (the grid names no depths)");
  }
  if (auto set = s.section("settings")) read_probe_settings(*set, a.settings);
  s.finish();
}

void check_probes(const ProbeSchedule& probes, const RunCheck& check) {
  check_iterations("probes.at", probes.at, check);
}

}  // namespace

nlohmann::json to_json(const ProbeSchedule& probes) {
  return {{"during_training", probes.during_training}, {"at", probes.at}};
}

// ---- the experiment file ----

ExperimentConfig parse_experiment(const nlohmann::json& doc, const std::string& source) {
  ExperimentConfig ex;
  ex.source = source;
  JsonSection top(doc, source, "");
  auto name = top.string("name");
  if (!name || name->empty()) top.fail("name", "the experiment's name (a non-empty string)");
  if (const std::string problem = name_problem(*name); !problem.empty()) {
    top.fail("name", "the experiment's name, which names its folder: 1 to " + std::to_string(kMaxNameLength) +
                         " letters, digits and . _ - + =, not starting with . or - (it " + problem + ")");
  }
  ex.name = *name;
  ex.description = top.string("description").value_or("");
  RunConfig& run = ex.base;
  run.experiment = ex.name;
  if (auto v = top.integer("seed")) {
    if (*v < 0) top.fail("seed", "a non-negative integer");
    run.seed = static_cast<uint64_t>(*v);
  }
  if (auto v = top.integer("threads")) run.threads = *v;
  if (auto v = top.string("device")) run.device = *v;

  bool model_name_given = false;
  if (auto m = top.section("model")) {
    model_name_given = m->has("name");
    read_model(*m, run.model);
    if (model_name_given) ex.models = {run.model.name};
  }
  if (auto d = top.section("data")) read_data(*d, run.data);
  if (auto o = top.section("optim")) read_optim(*o, run.optim);
  if (auto t = top.section("train")) read_loop(*t, run.train);
  if (auto g = top.section("grid")) {
    if (auto v = g->integers("depth")) ex.depths = *v;
    if (auto v = g->booleans("residual")) ex.residual = *v;
    if (auto v = g->strings("model")) ex.models = *v;
    if (auto v = g->strings("shortcut")) ex.shortcuts = *v;
    if (auto v = g->integers("seed")) {
      for (int64_t s : *v) {
        if (s < 0) g->fail("seed", "a list of non-negative integers");
      }
      ex.seeds.assign(v->begin(), v->end());
    }
    if (auto v = g->numbers("lr")) ex.lrs = *v;
    if (auto v = g->integers("batch")) ex.batches = *v;
    if (auto v = g->strings("precision")) ex.precisions = *v;
    if (!ex.depths.empty() && g->has("model"))
      g->fail("model", "either 'model' or 'depth' (with 'residual'), not both");
    if (g->has("residual") && ex.depths.empty()) g->fail("residual", "'residual' only together with 'depth'");
    if (g->has("model") && model_name_given) g->fail("model", "either 'grid.model' or 'model.name', not both");
    if (g->has("depth") && model_name_given) g->fail("depth", "either 'grid.depth' or 'model.name', not both");
    g->finish();
  }
  if (auto p = top.section("probes")) read_probes(*p, ex);
  if (auto d = top.section("dist")) read_dist(*d, run.dist);
  if (ex.depths.empty() && ex.models.empty()) {
    top.fail("grid", "'grid.depth' (with 'grid.residual'), 'grid.model' or 'model.name' to say what to train");
  }
  top.finish();
  expand_grid(ex);  // validates every run now, before anything trains
  return ex;
}

namespace {

/// The JSON document in `path`; a missing, unreadable or malformed file is a ConfigError naming it.
nlohmann::json read_config_file(const std::string& path) {
  try {
    return read_json_file(path);
  } catch (const std::runtime_error& e) {
    throw ConfigError(e.what());
  }
}

/// A run's config.json (as to_json writes it) in the experiment file's layout: the experiment named under "name".
void as_experiment_document(nlohmann::json& doc) {
  doc["name"] = doc["experiment"];
  doc.erase("experiment");
}

/// The one run an experiment document describes; a ConfigError naming `source` when it describes several.
RunConfig only_run(const nlohmann::json& doc, const std::string& source) {
  auto runs = expand_grid(parse_experiment(doc, source));
  if (runs.size() != 1) throw ConfigError(source + ": describes " + std::to_string(runs.size()) + " runs, not one");
  return runs[0];
}

}  // namespace

RunConfig load_run_config(const std::string& path) {
  nlohmann::json doc = read_config_file(path);
  if (!doc.is_object() || !doc.value("name", nlohmann::json()).is_string() ||
      !doc.value("experiment", nlohmann::json()).is_string()) {
    throw ConfigError(path + ": not a run's config.json (expected an object with 'experiment' and 'name')");
  }
  // A run's config has the experiment file's shape, with the experiment named under "experiment".
  const std::string run_name = doc["name"];
  check_name(run_name, path + ": key 'name'");
  as_experiment_document(doc);
  RunConfig run = only_run(doc, path);
  run.name = run_name;
  return run;
}

ExperimentConfig load_experiment(const std::string& path, const std::vector<std::string>& sets) {
  nlohmann::json doc = read_config_file(path);
  if (sets.empty()) return parse_experiment(doc, path);
  if (!doc.is_object()) throw ConfigError(path + ": the file must be a JSON object, got " + shown_json(doc));
  apply_sets(doc, sets);
  return parse_experiment(doc, with_sets(path, sets));
}

std::string with_sets(const std::string& source, const std::vector<std::string>& sets) {
  std::string out = source;
  for (const auto& set : sets) out += " --set " + set;
  return out;
}

void apply_sets(nlohmann::json& doc, const std::vector<std::string>& sets) {
  if (!sets.empty() && !doc.is_object()) throw ConfigError("--set: the configuration is not a JSON object");
  for (const auto& set : sets) {
    const std::string shown = "--set " + shown_json(set);
    const auto eq = set.find('=');
    if (eq == std::string::npos) {
      throw ConfigError(shown + ": expected KEY=VALUE, e.g. --set optim.lr=0.05");
    }
    const std::string key = set.substr(0, eq);
    const std::string text = set.substr(eq + 1);
    std::vector<std::string> path;
    for (size_t start = 0;;) {
      const auto dot = key.find('.', start);
      path.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    for (const auto& part : path) {
      if (part.empty() || part.size() > 100 || first_control_char(part) >= 0) {
        throw ConfigError(shown +
                          ": KEY must be a dotted path of keys (each 1 to 100 characters, no control "
                          "characters), e.g. optim.lr or data.train_size");
      }
    }
    // JSON where it reads as JSON (numbers, true, lists, null), else the text itself (a model or folder name).
    nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) value = text;
    nlohmann::json* at = &doc;
    std::string walked;
    for (size_t i = 0; i + 1 < path.size(); ++i) {
      walked += (walked.empty() ? "" : ".") + path[i];
      nlohmann::json& next = (*at)[path[i]];  // made (null) where absent
      if (next.is_null()) next = nlohmann::json::object();
      if (!next.is_object()) {
        throw ConfigError(shown + ": key '" + walked + "' holds " + shown_json(next) +
                          ", not an object, so it has no key '" + path[i + 1] + "'");
      }
      at = &next;
    }
    if (value.is_null()) {
      at->erase(path.back());
    } else {
      (*at)[path.back()] = value;
    }
  }
}

RunConfig apply_sets(const RunConfig& run, const std::vector<std::string>& sets) {
  if (sets.empty()) return run;
  // The run's config.json in the experiment file's layout (the experiment named under "name"), without the
  // values that train derives or defaults later, so that a --set of one of them is not contradicted.
  nlohmann::json doc = to_json(run);
  as_experiment_document(doc);
  if (!run.optim.param_groups) doc["optim"].erase("param_groups");  // the model's default, whatever model is set
  apply_sets(doc, sets);
  if (doc.is_object() && doc.contains("optim") && doc["optim"].is_object() && !doc["optim"].contains("epochs") &&
      !doc["optim"].contains("iterations")) {
    doc["optim"]["epochs"] = 1.0;  // train's default
  }
  RunConfig out = only_run(doc, with_sets("command line", sets));
  out.name = run.name;
  return out;
}

void apply_overrides(RunConfig& run, const Overrides& o) {
  OptimConfig& optim = run.optim;
  if (o.epochs) {
    optim.epochs = o.epochs;
    optim.iterations.reset();
  }
  if (o.iterations) {
    optim.iterations = o.iterations;
    optim.epochs.reset();
  }
  if (o.train_size) run.data.split.train_size = *o.train_size;
  if (o.test_size) run.data.split.test_size = *o.test_size;
  if (o.batch) optim.batch = *o.batch;
  if (o.threads) run.threads = *o.threads;
  if (o.log_every) run.train.log_every = *o.log_every;
  if (o.seed) run.seed = *o.seed;
  if (o.lr) optim.sgd.lr = *o.lr;
  if (o.data_dir) run.data.dir = *o.data_dir;
  if (o.device) run.device = *o.device;
  if (o.retry_diverged) run.train.retry_diverged = *o.retry_diverged;
  if (o.sync_bn) run.dist.sync_bn = *o.sync_bn;
  if (o.dist_timeout_s) run.dist.timeout_s = *o.dist_timeout_s;
  if (o.dist_backend) run.dist.backend = *o.dist_backend;
}

void apply_overrides(ExperimentConfig& ex, const Overrides& o) {
  apply_overrides(ex.base, o);
  if (o.depths) {
    ex.depths = *o.depths;
    ex.models.clear();
  }
  if (o.seed) ex.seeds.clear();
  if (o.seeds) {
    if (o.seed) throw ConfigError("command line: either --seed or --seeds, not both");
    if (o.seeds->empty()) throw ConfigError("command line: --seeds: expected a list of seeds, e.g. 1,2,3");
    for (int64_t s : *o.seeds) {
      if (s < 0) throw ConfigError("command line: --seeds: " + std::to_string(s) + "; expected non-negative integers");
    }
    ex.seeds.assign(o.seeds->begin(), o.seeds->end());
  }
  if (o.lr) ex.lrs.clear();
  if (o.batch) ex.batches.clear();
  expand_grid(ex);
}

std::vector<ParamGroupRule> default_param_groups(const std::string& model) {
  try {
    if (parse_model_name(model).tags.fixup) return {ParamGroupRule{{"scalar_bias", "multiplier", "bias"}, 0.1, true}};
  } catch (const std::invalid_argument&) {
    // validate_run names the model
  }
  return {};
}

std::vector<ParamGroupRule> resolved_param_groups(const RunConfig& run) {
  return run.optim.param_groups ? *run.optim.param_groups : default_param_groups(run.model.name);
}

std::string name_problem(const std::string& name) {
  if (name.empty()) return "is empty";
  if (name.size() > kMaxNameLength) return "is " + std::to_string(name.size()) + " characters long";
  if (const int code = first_control_char(name); code >= 0) {
    return "holds a control character (code " + std::to_string(code) + ")";
  }
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) != 0 || c == '.' || c == '_' || c == '-' || c == '+' || c == '=') || u >= 0x80) {
      if (c == '/') return "holds a '/' (a path, not a name)";
      return std::string("holds the character '") + c + "'";
    }
  }
  if (name[0] == '.') return "starts with '.'";
  if (name[0] == '-') return "starts with '-'";
  return "";
}

void check_name(const std::string& name, const std::string& where) {
  const std::string problem = name_problem(name);
  if (problem.empty()) return;
  throw ConfigError(where + ": " + shown_json(name) + " " + problem + "; expected a name of 1 to " +
                    std::to_string(kMaxNameLength) +
                    " letters, digits and . _ - + = (one folder name, not starting with . or -)");
}

void validate_run(const RunConfig& run, const std::string& source) {
  const RunCheck check{source, run.name};
  check_model(run.model, check);
  check_data(run.data, check);
  check_optim(run.optim, run.data, check);
  check_loop(run.train, check);
  check_probes(run.probes, check);
  if (run.threads < 0 || run.threads > 4096)
    check.bad("threads", std::to_string(run.threads), "0 (every core) to 4096");
  if (!valid_device_name(run.device)) check.bad("device", "'" + run.device + "'", "cpu, cuda or cuda:N");
  if (run.train.cuda_graphs && run.device == "cpu") {
    check.bad("train.cuda_graphs", "true", "false on the CPU (CUDA graphs need device cuda or cuda:N)");
  }
  if (run.train.cuda_graphs && run.optim.schedule.cosine) {
    check.bad("train.cuda_graphs", "true",
              "false with optim.schedule.cosine (a captured step holds its learning rate, and cosine changes it every "
              "iteration: capturing each step again is slower than no graphs)");
  }
  check_dist(run.dist, check);
}

std::vector<RunConfig> expand_grid(const ExperimentConfig& ex) {
  if (ex.models.empty() && ex.depths.size() * ex.residual.size() > kMaxGridPoints) {
    throw ConfigError(ex.source + ": the grid has more than " + std::to_string(kMaxGridPoints) + " points (" +
                      std::to_string(ex.depths.size()) + " depths x " + std::to_string(ex.residual.size()) +
                      " residual values); at most " + std::to_string(kMaxGridPoints) +
                      " are allowed in one experiment (split it into several)");
  }
  std::vector<std::string> models = ex.models;
  if (models.empty()) {
    for (int64_t d : ex.depths) {
      for (bool r : ex.residual) models.push_back((r ? "resnet" : "plain") + std::to_string(d));
    }
  }
  const std::vector<std::string> shortcuts =
      ex.shortcuts.empty() ? std::vector<std::string>{ex.base.model.shortcut} : ex.shortcuts;
  const std::vector<uint64_t> seeds = ex.seeds.empty() ? std::vector<uint64_t>{ex.base.seed} : ex.seeds;
  const std::vector<double> lrs = ex.lrs.empty() ? std::vector<double>{ex.base.optim.sgd.lr} : ex.lrs;
  const std::vector<int64_t> batches = ex.batches.empty() ? std::vector<int64_t>{ex.base.optim.batch} : ex.batches;
  const std::vector<std::string> precisions =
      ex.precisions.empty() ? std::vector<std::string>{ex.base.train.precision} : ex.precisions;

  // The product, stopped past the cap (six axes of 10,000 values each would overflow it).
  size_t points = 1;
  bool over = false;
  for (size_t n : {models.size(), shortcuts.size(), lrs.size(), batches.size(), precisions.size(), seeds.size()}) {
    if (n == 0) points = 0;
    if (points != 0 && n > kMaxGridPoints / points) over = true;
    if (!over) points *= n;
  }
  if (over || points > kMaxGridPoints) {
    throw ConfigError(ex.source + ": the grid has " +
                      (over ? "more than " + std::to_string(kMaxGridPoints) : std::to_string(points)) + " points (" +
                      std::to_string(models.size()) + " models x " + std::to_string(shortcuts.size()) +
                      " shortcuts x " + std::to_string(lrs.size()) + " learning rates x " +
                      std::to_string(batches.size()) + " batch sizes x " + std::to_string(precisions.size()) +
                      " precisions x " + std::to_string(seeds.size()) + " seeds); at most " +
                      std::to_string(kMaxGridPoints) + " are allowed in one experiment (split it into several)");
  }
  std::vector<RunConfig> runs;
  std::set<std::string> names;
  for (const auto& model : models) {
    for (const auto& shortcut : shortcuts) {
      for (double lr : lrs) {
        for (int64_t batch : batches) {
          for (const auto& precision : precisions) {
            for (uint64_t seed : seeds) {
              RunConfig run = ex.base;
              run.model.name = model;
              run.model.shortcut = shortcut;
              run.optim.sgd.lr = lr;
              run.optim.batch = batch;
              run.train.precision = precision;
              run.seed = seed;
              std::ostringstream name;
              name << model;
              if (shortcuts.size() > 1) name << "-" << shortcut;
              if (lrs.size() > 1) name << "-lr" << lr;
              if (batches.size() > 1) name << "-b" << batch;
              if (precisions.size() > 1) name << "-" << precision;
              if (seeds.size() > 1) name << "-s" << seed;
              run.name = name.str();
              check_name(run.name, ex.source + ": run name");
              validate_run(run, ex.source);
              if (!names.insert(run.name).second) {
                throw ConfigError(ex.source + ": the grid has run '" + run.name +
                                  "' twice (a value repeats in grid.depth, grid.model or another axis)");
              }
              runs.push_back(run);
            }
          }
        }
      }
    }
  }
  return runs;
}

nlohmann::json to_json(const RunConfig& r) {
  nlohmann::json out = {{"experiment", r.experiment},
                        {"name", r.name},
                        {"seed", r.seed},
                        {"threads", r.threads},
                        {"model", to_json(r.model)},
                        {"data", to_json(r.data)},
                        {"optim", to_json(r.optim, resolved_param_groups(r))},
                        {"train", to_json(r.train)},
                        {"probes", to_json(r.probes)}};
  // Where the run computed; written only when not the CPU, so CPU runs' files read as before.
  if (r.device != "cpu") out["device"] = r.device;
  // Data-parallel settings, written only when not the defaults (as "device").
  const DistConfig defaults;
  if (r.dist.sync_bn || r.dist.bucket_mb != defaults.bucket_mb || r.dist.timeout_s != defaults.timeout_s ||
      r.dist.backend != defaults.backend) {
    out["dist"] = to_json(r.dist);
  }
  return out;
}

nlohmann::json checkpoint_identity(const RunConfig& run) {
  nlohmann::json identity = to_json(run);
  identity.erase("threads");
  if (identity["data"].contains("workers")) identity["data"].erase("workers");
  identity.erase("device");                   // a run continues on another device: checkpoints load onto the model's
  identity["train"].erase("retry_diverged");  // retrying or not does not change what a checkpoint holds
  identity["train"].erase("retry_lr_scale");
  identity["train"].erase("tensorboard");  // a copy of the metrics, not part of the run
  identity["train"].erase("cuda_graphs");  // how the same kernels are launched
  if (identity.contains("dist")) {
    // How the gradients travel does not change what a checkpoint holds; synchronised BN does.
    identity["dist"].erase("bucket_mb");
    identity["dist"].erase("timeout_s");
    identity["dist"].erase("backend");  // NCCL or Gloo: the same sums, like threads, in another order
  }
  return identity;
}

nlohmann::json training_identity(const RunConfig& run) {
  nlohmann::json identity = checkpoint_identity(run);
  identity.erase("name");
  identity.erase("experiment");
  return identity;
}

nlohmann::json to_json(const ExperimentConfig& ex) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& run : expand_grid(ex)) runs.push_back(to_json(run));
  const auto& a = ex.analysis;
  return {{"name", ex.name},
          {"description", ex.description},
          {"source", ex.source},
          {"runs", runs},
          {"analysis",
           {{"after_training", a.after_training},
            {"at_init", a.at_init},
            {"init_depths", a.init_depths},
            {"settings", to_json(a.settings)}}}};
}

}  // namespace reslab
