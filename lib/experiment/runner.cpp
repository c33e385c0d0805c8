#include "experiment/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <ostream>
#include <thread>
#include <tuple>

#include <sched.h>

#include "data/loader.h"
#include "data/random.h"
#include "distributed/sharded_source.h"
#include "experiment/results.h"
#include "models/registry.h"
#include "ops/winograd.h"
#include "probes/probe_callback.h"
#include "train/allocator.h"
#include "train/callbacks.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;

namespace reslab {

std::shared_ptr<const SplitSource> DataCache::get(const RunConfig& run) {
  std::string key = run.dataset + "|" + run.data_dir + "|" + std::to_string(run.train_size) + "|" +
                    std::to_string(run.val_size) + "|" + std::to_string(run.test_size) + "|" +
                    std::to_string(run.split_seed);
  if (run.dataset == "image-folder") {
    const auto& t = run.folder;
    // The cached splits carry the transform their loaders use, decoding threads included.
    for (int64_t v : {t.crop, t.scale_min, t.scale_max, t.eval_resize, t.eval_crops, t.workers, t.prefetch}) {
      key += "|" + std::to_string(v);
    }
    // And the labels and normalisation (a net trained elsewhere reads the same folder with its own).
    key += "|" + nlohmann::json(t.mean).dump() + nlohmann::json(t.std).dump() + "|" + std::to_string(t.classes) + "|" +
           nlohmann::json(t.class_index).dump();
  }
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  SplitOptions split;
  split.train_size = run.train_size;
  split.val_size = run.val_size;
  split.test_size = run.test_size;
  split.split_seed = run.split_seed;
  auto splits = open_splits(run.dataset, run.data_dir, split, run.folder);
  cache_[key] = splits;
  return splits;
}

RunData open_run_data(const RunConfig& run, DataCache& cache, int64_t train_batch, uint64_t loader_seed,
                      bool single_view) {
  RunData d;
  d.splits = cache.get(run);
  const SplitSource& s = *d.splits;
  d.spec = ModelSpec{{s.channels(), s.height(), s.width()}, s.classes(), parse_shortcut(run.shortcut)};
  LoaderOptions train_opts;
  train_opts.batch = train_batch;
  train_opts.augment = run.augment;
  train_opts.seed = loader_seed;
  train_opts.channels_last = run.channels_last;
  d.train = s.loader(Part::kTrain, train_opts);
  LoaderOptions eval_opts = train_opts;
  eval_opts.batch = run.eval_batch;
  eval_opts.shuffle = eval_opts.augment = eval_opts.drop_last = false;
  eval_opts.single_view = single_view;
  if (s.size(Part::kVal) > 0) d.val = s.loader(Part::kVal, eval_opts);
  d.test = s.loader(Part::kTest, eval_opts);
  return d;
}

int64_t resolve_threads(int64_t requested, int64_t local_ranks) {
  if (requested > 0) return requested;
  // The cores this process may use (a Slurm task's, a taskset's), else every core of the machine.
  int64_t cores = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int64_t>(std::thread::hardware_concurrency());
  // Ranks bound to their own cores (Slurm) see only those; ranks that share the machine's cores split them.
  const auto machine = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (local_ranks > 1 && cores >= machine) cores /= local_ranks;
  return std::max<int64_t>(cores, 1);
}

std::shared_ptr<Distributed> join_job(const RunConfig& run, std::ostream* log) {
  const DistEnv env = read_dist_env();
  if (!env.distributed()) return nullptr;
  const auto timeout = std::chrono::milliseconds(std::llround(run.dist_timeout_s * 1000.0));
  auto dist = Distributed::connect(env, timeout);
  if (log != nullptr && dist->is_root()) {
    *log << "data-parallel: " << env.world_size << " ranks (" << env.source << " variables), rendezvous at "
         << env.master_addr << ":" << env.master_port << ", Gloo\n";
  }
  return dist;
}

namespace {

nlohmann::json optional_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

/// The newest checkpoint in `run_dir` that loads into a fresh model (from `fresh`) and was written with
/// `identity`, with its meta; ("", null) when none is. Each one passed over is reported on `log`.
std::pair<std::string, nlohmann::json> newest_usable_checkpoint(
    const std::string& run_dir, const nlohmann::json& identity,
    const std::function<std::shared_ptr<NetworkBase>()>& fresh, const SgdConfig& sgd, std::ostream* log) {
  for (const auto& path : list_checkpoints(run_dir)) {
    try {
      // Tried on scratch copies: a checkpoint that fails leaves the run's own model untouched.
      auto scratch = fresh();
      auto scratch_opt = make_sgd(*scratch, sgd);
      auto meta = load_checkpoint(path, *scratch, *scratch_opt);
      if (!meta.contains("trainer") || !meta.value("metrics_offset", nlohmann::json()).is_number_integer()) {
        throw CheckpointError(path + ": incomplete checkpoint (no trainer state or metrics offset)");
      }
      const auto written_with = meta.value("config", nlohmann::json());
      if (written_with != identity) {
        const auto d = first_difference(written_with, identity);
        throw CheckpointError(path + ": written by another configuration (it differs at '" + d.at + "': " +
                              d.recorded.value_or("(absent)") + " in the checkpoint, " +
                              d.expected.value_or("(absent)") +
                              " in this run); resume with the same settings, or start again with --overwrite");
      }
      return {path, meta};
    } catch (const CheckpointError& e) {
      if (log != nullptr) *log << "warning: " << e.what() << "; trying an older one\n";
    }
  }
  return {"", nullptr};
}

/// Cuts metrics.jsonl back to the bytes `checkpoint` was written with: nothing is duplicated, a torn last line
/// disappears.
void cut_metrics(const std::string& run_dir, const nlohmann::json& meta, const std::string& checkpoint) {
  const auto offset = meta.at("metrics_offset").get<int64_t>();
  const std::string metrics_path = run_dir + "/metrics.jsonl";
  if (!fs::exists(metrics_path) || static_cast<int64_t>(fs::file_size(metrics_path)) < offset) {
    throw CheckpointError(metrics_path + ": shorter than the " + std::to_string(offset) + " bytes that " +
                          checkpoint + " was written with; start again with --overwrite");
  }
  fs::resize_file(metrics_path, static_cast<uintmax_t>(offset));
}

/// MemAvailable from /proc/meminfo, in bytes; nullopt where it cannot be read.
std::optional<int64_t> mem_available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

/// Stops a CPU run that cannot fit before it starts, rather than hours later or through the kernel's OOM
/// killer. The data and the model are already in memory here, so MemAvailable is what training has left.
void check_memory(const RunConfig& run, const NetworkBase& model, torch::Device device, int64_t batch,
                  int64_t ranks_here) {
  if (!device.is_cpu()) return;
  const char* skip = std::getenv("RESLAB_SKIP_MEMORY_CHECK");
  if (skip != nullptr && std::string(skip) == "1") return;
  const auto available = mem_available_bytes();
  if (!available) return;
  const int64_t needed = estimate_training_bytes(model, batch) * ranks_here;
  if (needed <= *available) return;
  const auto mib = [](int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; };
  throw std::runtime_error(
      "run '" + run.name + "': training " + run.model + " at batch " + std::to_string(batch) + " needs about " +
      mib(needed) + (ranks_here > 1 ? " for its " + std::to_string(ranks_here) + " ranks on this machine" : "") +
      " (activations kept for the backward pass: " +
      mib(activation_bytes(model, batch)) + ") but this machine has " + mib(*available) +
      " available (MemAvailable in /proc/meminfo); use a smaller batch, or set RESLAB_SKIP_MEMORY_CHECK=1 if the "
      "estimate is wrong");
}

/// Runs a rank-0-only callback (a probe) with every BatchNorm on this rank's own statistics: a probe's extra
/// forward and backward passes must not start the collectives of synchronised BN, which the other ranks, busy
/// with their training step, would never join.
class RankLocalBatchNorm : public Callback {
 public:
  RankLocalBatchNorm(std::shared_ptr<Callback> inner, NetworkBase& model, StatReduce reduce)
      : inner_(std::move(inner)), model_(model), reduce_(std::move(reduce)) {}
  void on_train_begin(TrainContext& ctx) override { local([&] { inner_->on_train_begin(ctx); }); }
  void on_batch_begin(TrainContext& ctx) override { local([&] { inner_->on_batch_begin(ctx); }); }
  void on_after_backward(TrainContext& ctx) override { local([&] { inner_->on_after_backward(ctx); }); }
  void on_batch_end(TrainContext& ctx) override { local([&] { inner_->on_batch_end(ctx); }); }
  void on_log(TrainContext& ctx, const WindowStats& w) override { local([&] { inner_->on_log(ctx, w); }); }
  void on_epoch_end(TrainContext& ctx) override { local([&] { inner_->on_epoch_end(ctx); }); }
  void on_train_end(TrainContext& ctx) override { local([&] { inner_->on_train_end(ctx); }); }
  std::string state_name() const override { return inner_->state_name(); }
  nlohmann::json save_state() const override { return inner_->save_state(); }
  void load_state(const nlohmann::json& state) override { inner_->load_state(state); }

 private:
  template <typename F>
  void local(F&& f) {
    set_batch_norm_sync(model_, nullptr);
    try {
      f();
    } catch (...) {
      set_batch_norm_sync(model_, reduce_);
      throw;
    }
    set_batch_norm_sync(model_, reduce_);
  }
  std::shared_ptr<Callback> inner_;
  NetworkBase& model_;
  StatReduce reduce_;
};

/// The checkpoint to continue from: the newest usable one as rank 0 sees it (in one process, this process's
/// own choice). The other ranks load that very file rather than listing the folder themselves, which a cached
/// network file system may show them otherwise; one that cannot read it stops every rank with a DistError.
std::pair<std::string, nlohmann::json> choose_checkpoint(
    Distributed* dist, const std::string& run_dir, const nlohmann::json& identity,
    const std::function<std::shared_ptr<NetworkBase>()>& fresh, const SgdConfig& sgd, std::ostream* log,
    const std::string& what) {
  std::pair<std::string, nlohmann::json> chosen;
  if (dist == nullptr || dist->is_root()) chosen = newest_usable_checkpoint(run_dir, identity, fresh, sgd, log);
  if (dist == nullptr) return chosen;
  const int64_t iter = dist->broadcast_value(
      chosen.first.empty() ? -1 : chosen.second.at("trainer").at("iter").get<int64_t>(), what);
  std::string error;
  if (!dist->is_root() && iter >= 0) {
    chosen.first = checkpoint_path(run_dir, iter);
    try {
      auto scratch = fresh();
      auto scratch_opt = make_sgd(*scratch, sgd);
      chosen.second = load_checkpoint(chosen.first, *scratch, *scratch_opt);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (dist->any(!error.empty(), what)) {
    throw DistError(dist->env().describe() + ": " + what + ": " +
                    (error.empty() ? "another rank could not read rank 0's checkpoint" : error) +
                    "; every rank must see the same run folder (a shared file system)");
  }
  return chosen;
}

}  // namespace

ConfigDifference first_difference(const nlohmann::json& recorded, const nlohmann::json& expected) {
  const auto diff = nlohmann::json::diff(recorded, expected);
  ConfigDifference d;
  d.at = diff.empty() ? std::string("?") : diff[0].value("path", "?");
  auto value_at = [&d](const nlohmann::json& doc) -> std::optional<std::string> {
    try {
      return doc.at(nlohmann::json::json_pointer(d.at)).dump();
    } catch (const std::exception&) {
      return std::nullopt;
    }
  };
  d.recorded = value_at(recorded);
  d.expected = value_at(expected);
  return d;
}

void check_reuse_folders(const std::vector<std::string>& from) {
  for (const auto& dir : from) {
    if (!fs::is_directory(dir)) {
      throw ConfigError(dir + ": --reuse expects an experiment's output folder (reslab run --out); there is no "
                        "such folder");
    }
  }
}

std::string find_reusable_run(const RunConfig& run, const std::vector<std::string>& from, int64_t threads,
                              const std::string& device, std::ostream* log) {
  const nlohmann::json wanted = training_identity(run);
  const std::string conv = convolution_policy(torch::Device(device));
  const nlohmann::json versions = version_info();
  check_reuse_folders(from);
  for (const auto& dir : from) {
    std::vector<fs::path> folders;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_directory() && fs::exists(entry.path() / "config.json") && fs::exists(entry.path() / "summary.json")) {
        folders.push_back(entry.path());
      }
    }
    std::sort(folders.begin(), folders.end());
    for (const auto& folder : folders) {
      const std::string config_path = (folder / "config.json").string();
      const std::string summary_path = (folder / "summary.json").string();
      try {
        const RunConfig candidate = load_run_config(config_path);
        if (training_identity(candidate) != wanted) continue;
        const nlohmann::json summary = read_json_file(summary_path);
        check_summary(summary, summary_path);
        // What else decides the weights: the threads, the device, the convolutions this build runs there and
        // the versions; and no retry (retry settings are not part of the identity: they matter only then).
        const nlohmann::json retries = summary.value("retries", nlohmann::json::array());
        if (summary["status"] != "completed" || summary.value("threads", nlohmann::json()) != threads ||
            summary.value("device", nlohmann::json()) != device || summary.value("world_size", 1) != 1 ||
            summary.value("conv", nlohmann::json()) != conv || summary.value("versions", nlohmann::json()) != versions ||
            !retries.is_array() || !retries.empty() || summary.contains("reused_from") ||
            !fs::exists(folder / "metrics.jsonl")) {
          continue;
        }
        return folder.string();
      } catch (const std::exception& e) {
        if (log != nullptr) *log << "(--reuse passes over " << folder.string() << ": " << e.what() << ")\n";
      }
    }
  }
  return "";
}

namespace {

/// Copies the completed run in `source` into `run_dir` as `run`'s (metrics.jsonl, model.pt when there is one,
/// this run's config.json, and last its summary.json with the names replaced and "reused_from"), each file
/// written whole under a temporary name first.
nlohmann::json copy_reused_run(const RunConfig& run, const std::string& source, const std::string& run_dir,
                               int64_t threads) {
  fs::create_directories(run_dir);
  for (const char* file : {"metrics.jsonl", "model.pt"}) {
    const fs::path from = fs::path(source) / file;
    if (!fs::exists(from)) continue;
    const fs::path tmp = fs::path(run_dir) / (std::string(file) + ".reuse.tmp");
    fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, fs::path(run_dir) / file);
  }
  nlohmann::json config = to_json(run);
  config["threads"] = threads;  // resolved, as train_run writes it
  write_json_file(run_dir + "/config.json", config);
  if (run.tensorboard) rebuild_event_file(run_dir);
  nlohmann::json summary = read_json_file(source + "/summary.json");
  summary["run"] = run.name;
  summary["experiment"] = run.experiment;
  summary["reused_from"] = fs::absolute(source).lexically_normal().string();
  write_json_file(run_dir + "/summary.json", summary);
  return summary;
}

}  // namespace

nlohmann::json train_run(const RunConfig& run, const std::string& run_dir, DataCache& data, const RunOptions& options) {
  Distributed* dist = options.dist.get();
  const bool root = dist == nullptr || dist->is_root();
  std::ostream* progress = root ? options.progress : nullptr;
  if (options.resume) {
    nlohmann::json done;
    bool completed = false;
    if (fs::exists(run_dir + "/summary.json")) {
      done = read_json_file(run_dir + "/summary.json");
      check_summary(done, run_dir + "/summary.json");
      completed = done["status"] == "completed";
    }
    // Ranks skip a completed run together, and only when they all see it completed.
    if (dist != nullptr &&
        dist->any((dist->broadcast_value(completed ? 1 : 0, "the resume check") == 1) != completed, "the resume check")) {
      throw DistError(dist->env().describe() + ": the ranks disagree on whether " + run_dir +
                      "/summary.json holds a completed run; every rank must see the same run folder (a shared file "
                      "system)");
    }
    if (completed) {
      if (progress != nullptr) *progress << run.name << ": completed earlier, skipped\n";
      return done;
    }
  }
  const int64_t threads = resolve_threads(run.threads, dist != nullptr ? dist->env().local_world_size : 1);
  if (torch::get_num_threads() != threads) torch::set_num_threads(static_cast<int>(threads));
  // One GPU per rank: "cuda" in a data-parallel job is this rank's GPU on its machine.
  const torch::Device device =
      parse_rank_device(run.device, dist != nullptr ? dist->env().local_rank : -1, "run '" + run.name + "'");

  // A run not yet begun may be taken from a completed one of the same training configuration elsewhere. Not
  // for a data-parallel job, nor when callbacks would record something during training that a copy lacks.
  if (!options.reuse_from.empty() && !fs::exists(run_dir + "/metrics.jsonl") && !fs::exists(run_dir + "/summary.json")) {
    if (dist != nullptr || !options.callbacks.empty()) {
      if (progress != nullptr) {
        *progress << run.name << ": not reused (" << (dist != nullptr ? "a data-parallel job" : "probes record during training")
                  << "): trained here\n";
      }
    } else if (const std::string source = find_reusable_run(run, options.reuse_from, threads, device.str(), progress);
               !source.empty()) {
      auto summary = copy_reused_run(run, source, run_dir, threads);
      if (progress != nullptr) {
        *progress << run.name << ": reused " << source << " (the same training configuration, seed, " << threads
                  << " threads and device; not trained again)\n";
      }
      return summary;
    }
  }

  RunData data_of_run = open_run_data(run, data, run.batch, mix_seed(run.seed));
  const ModelSpec& spec = data_of_run.spec;
  std::unique_ptr<ShardedSource> shard;
  if (dist != nullptr) {
    if (run.batch % dist->world_size() != 0) {
      throw ConfigError("run '" + run.name + "': optim.batch " + std::to_string(run.batch) + " does not split " +
                        "evenly across " + std::to_string(dist->world_size()) + " ranks: use a multiple of " +
                        std::to_string(dist->world_size()) + " (the batch is the global one, across all ranks)");
    }
    shard = std::make_unique<ShardedSource>(*data_of_run.train, dist->rank(), dist->world_size());
  }
  BatchSource& train_loader = shard ? *shard : *data_of_run.train;
  const int64_t local_batch = shard ? shard->local_batch() : run.batch;
  torch::manual_seed(run.seed);
  auto model = build_model(run.model, spec);
  model->to(device);
  if (run.channels_last) to_channels_last(*model);
  std::unique_ptr<GradientSync> grad_sync;
  StatReduce bn_reduce;
  if (dist != nullptr) {
    broadcast_module(*dist, *model, "sharing rank 0's initial weights");
    grad_sync = std::make_unique<GradientSync>(*dist, model->parameters(),
                                               std::llround(run.dist_bucket_mb * 1024.0 * 1024.0));
    if (run.sync_bn) {
      bn_reduce = [dist](const torch::Tensor& t) { return differentiable_all_reduce_sum(*dist, t); };
      set_batch_norm_sync(*model, bn_reduce);
    }
  }
  // Callbacks that run on rank 0 alone see rank-local BatchNorm (see RankLocalBatchNorm).
  auto rank_local = [&](std::shared_ptr<Callback> cb) -> std::shared_ptr<Callback> {
    if (!bn_reduce) return cb;
    return std::make_shared<RankLocalBatchNorm>(std::move(cb), *model, bn_reduce);
  };
  const auto parsed = parse_model_name(run.model);

  const int64_t per_epoch = train_loader.batches_per_epoch();
  if (per_epoch == 0) {
    throw ConfigError("run '" + run.name + "': the training set has " + std::to_string(train_loader.size()) +
                      " examples, fewer than one batch of " + std::to_string(run.batch));
  }
  const int64_t total = run.iterations ? *run.iterations
                                       : std::max<int64_t>(1, std::llround(*run.epochs * static_cast<double>(per_epoch)));
  ScheduleConfig schedule = run.schedule;
  if (parsed.depth < run.warmup_min_depth) schedule.warmup_lr.reset();
  SgdConfig sgd{run.lr, run.momentum, run.weight_decay, run.nesterov};
  sgd.groups = resolved_param_groups(run);
  auto optimizer = make_sgd(*model, sgd);
  check_memory(run, *model, device, local_batch, dist != nullptr ? dist->env().local_world_size : 1);

  const nlohmann::json identity = checkpoint_identity(run);
  std::string resume_from;
  nlohmann::json resume_meta;
  auto fresh = [&] {
    torch::manual_seed(run.seed);
    auto scratch = build_model(run.model, spec);
    scratch->to(device);
    if (run.channels_last) to_channels_last(*scratch);
    return scratch;
  };
  if (options.resume) {
    std::tie(resume_from, resume_meta) =
        choose_checkpoint(dist, run_dir, identity, fresh, sgd, progress, "choosing the checkpoint to resume from");
  }

  std::unique_ptr<EventWriter> events;  // before metrics, whose mirror writes to it: destroyed after it
  std::unique_ptr<JsonlWriter> metrics;
  // metrics.jsonl, with the TensorBoard events rebuilt from what it holds and then mirroring it.
  auto open_metrics = [&] {
    metrics = std::make_unique<JsonlWriter>(run_dir + "/metrics.jsonl");
    events.reset();
    if (!run.tensorboard) {
      fs::remove(run_dir + "/" + kEventFileName);  // one from before it was turned off would be stale
      return;
    }
    rebuild_event_file(run_dir);
    events = std::make_unique<EventWriter>(run_dir + "/" + kEventFileName);
    metrics->mirror = [w = events.get()](const nlohmann::json& record) { w->write_record(record); };
  };
  if (root) {
    fs::create_directories(run_dir);
    nlohmann::json config = to_json(run);
    config["threads"] = threads;
    write_json_file(run_dir + "/config.json", config);
    fs::remove(run_dir + "/summary.json");
    if (resume_from.empty()) {
      fs::remove(run_dir + "/metrics.jsonl");
      for (const auto& stale : list_checkpoints(run_dir)) fs::remove(stale);
    } else {
      cut_metrics(run_dir, resume_meta, resume_from);
    }
    open_metrics();
  }

  TrainContext ctx{*model, *optimizer, train_loader, metrics.get(), {}};
  ctx.dist = dist;
  ctx.grad_sync = grad_sync.get();
  Trainer trainer(ctx, total, run.log_every);
  auto schedule_cb = std::make_shared<ScheduleCallback>(make_schedule(schedule, run.lr, per_epoch, total));
  trainer.add(schedule_cb);
  trainer.add(std::make_shared<TrainRecordCallback>());
  auto eval = std::make_shared<EvalCallback>(data_of_run.val.get(), data_of_run.test.get(), run.eval_every_epoch,
                                             std::set<int64_t>(run.eval_at.begin(), run.eval_at.end()));
  trainer.add(eval);
  if (progress != nullptr) {
    trainer.add(std::make_shared<ProgressCallback>(run.name, *progress, options.terminal));
  }
  // Probes and extra callbacks observe and write: rank 0's job (they see the all-reduced gradients).
  if (!run.probes.empty() && root) {
    trainer.add(rank_local(std::make_shared<GradientProbeCallback>(
        run.probes, std::set<int64_t>(run.probe_at.begin(), run.probe_at.end()))));
  }
  if (root) {
    for (const auto& cb : options.callbacks) trainer.add(rank_local(cb));
  }
  std::shared_ptr<CheckpointCallback> checkpoints;
  if (root) {
    checkpoints = std::make_shared<CheckpointCallback>(trainer, run_dir, options.checkpoint_every, identity, 2,
                                                       /*save_at_start=*/run.retry_diverged > 0);
    trainer.add(checkpoints);
  }
  if (!resume_from.empty()) {
    load_checkpoint(resume_from, *model, *optimizer);
    trainer.load_state(resume_meta.at("trainer"));
    if (progress != nullptr) {
      *progress << "resuming " << run.name << " at iteration " << ctx.state.iter << " from " << resume_from
                        << "\n";
    }
  }
  const auto start = std::chrono::steady_clock::now();
  trainer.run();
  // Retries after a non-finite loss: back to the newest checkpoint (the records cut back to it), the learning
  // rate scaled down; each retry is a "retry" record and an entry of the summary's "retries".
  nlohmann::json retries = nlohmann::json::array();
  while (ctx.state.status == "diverged" && static_cast<int64_t>(retries.size()) < run.retry_diverged) {
    const int64_t diverged_at = ctx.state.diverged_at.value_or(ctx.state.iter + 1);
    const double scale_in_force = schedule_cb->lr_scale();  // earlier retries' included
    auto [path, meta] =
        choose_checkpoint(dist, run_dir, identity, fresh, sgd, progress, "choosing the checkpoint to retry from");
    if (path.empty()) break;  // none could be read: the run stays diverged
    if (root) {
      ctx.metrics = nullptr;
      metrics.reset();
      cut_metrics(run_dir, meta, path);
      open_metrics();
      ctx.metrics = metrics.get();
    }
    load_checkpoint(path, *model, *optimizer);
    // Rank 0 rewrites that checkpoint below: every rank has read it first.
    if (dist != nullptr) dist->barrier("loading the checkpoint to retry from");
    trainer.load_state(meta.at("trainer"));
    schedule_cb->set_lr_scale(scale_in_force * run.retry_lr_scale);
    ctx.state.status = "running";
    ctx.state.diverged_at.reset();
    nlohmann::json retry = {{"kind", "retry"},        {"iter", ctx.state.iter},
                            {"epoch", ctx.state.epoch()}, {"diverged_at", diverged_at},
                            {"lr_scale", schedule_cb->lr_scale()}, {"checkpoint", fs::path(path).filename().string()}};
    if (metrics) metrics->write(retry);
    // The checkpoint again, with the lowered scale and the retry record: a run stopped from here on resumes
    // with the learning rate it was retrying at.
    if (checkpoints) checkpoints->save_now(ctx);
    retry.erase("kind");
    retries.push_back(retry);
    if (progress != nullptr) {
      *progress << run.name << ": loss not finite at iteration " << diverged_at << "; retrying from "
                        << path << " (iteration " << ctx.state.iter << ") with the learning rate x"
                        << schedule_cb->lr_scale() << "\n";
    }
    trainer.run();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto& state = ctx.state;

  nlohmann::json summary = {
      {"experiment", run.experiment},
      {"run", run.name},
      {"model", run.model},
      {"depth", model->depth()},
      {"residual", model->residual()},
      {"shortcut", run.shortcut},
      {"params", count_parameters(*model)},
      {"flops", model->macs()},
      {"dataset", run.dataset},
      {"train_examples", train_loader.size()},
      {"iterations", state.iter},
      {"epochs", state.epoch()},
      {"final",
       {{"train_error", optional_json(trainer.last_epoch_train_error())},
        {"val_error", optional_json(eval->val_error())},
        {"test_error", optional_json(eval->test_error())}}},
      {"best_test_error", optional_json(eval->best_test_error())},
      {"seconds", seconds},
      {"train_seconds", state.train_seconds},
      {"eval_seconds", eval->seconds()},
      {"img_per_s", state.train_seconds > 0 ? state.iter * run.batch / state.train_seconds : 0.0},
      {"world_size", dist != nullptr ? dist->world_size() : 1},
      {"status", state.status},
      {"seed", run.seed},
      {"threads", threads},
      {"malloc", allocator_policy()},
      {"conv", convolution_policy(device)},
      {"device", run.device},
      {"retries", retries},
      {"versions", version_info()}};
  if (state.diverged_at) {
    summary["diverged_at"] = *state.diverged_at;
    summary["last_finite_loss"] = optional_json(state.last_finite_loss);
  }
  if (!root) return summary;  // rank 0 writes the folder
  if (options.save_model && state.status == "completed") {
    save_model_file(run_dir + "/model.pt", *model,
                    {{"model", run.model}, {"shortcut", run.shortcut}, {"dataset", run.dataset},
                     {"input", {spec.input.channels, spec.input.height, spec.input.width}},
                     {"classes", spec.classes}, {"iterations", state.iter}, {"config", identity}});
  }
  write_json_file(run_dir + "/summary.json", summary);
  return summary;
}

void prepare_output_dir(const std::string& dir, const std::vector<std::string>& run_names, bool overwrite) {
  std::vector<fs::path> found;
  std::error_code ec;
  if (fs::exists(dir + "/results.json", ec)) found.push_back(dir + "/results.json");
  for (const char* file : {"summary.json", "metrics.jsonl"}) {
    if (fs::exists(dir + "/" + file, ec)) found.push_back(dir + "/" + file);
  }
  for (const auto& name : run_names) {
    for (const char* file : {"summary.json", "metrics.jsonl"}) {
      const fs::path p = fs::path(dir) / name / file;
      if (fs::exists(p, ec)) found.push_back(p);
    }
  }
  if (found.empty()) return;
  if (!overwrite) {
    throw std::runtime_error(dir + " already holds results (" + found.front().string() +
                             (found.size() > 1 ? " and " + std::to_string(found.size() - 1) + " more" : "") +
                             "); pass --overwrite to replace them, or --out to write elsewhere");
  }
  for (const char* file : {"results.json", "summary.json", "metrics.jsonl", "curves.png"}) fs::remove(dir + "/" + file, ec);
  for (const auto& name : run_names) fs::remove_all(fs::path(dir) / name, ec);
}

nlohmann::json run_experiment(const ExperimentConfig& experiment, const std::string& out_dir,
                              const RunOptions& options) {
  const std::vector<RunConfig> runs = expand_grid(experiment);
  const bool root = options.dist == nullptr || options.dist->is_root();
  if (root) {
    fs::create_directories(out_dir);
    write_json_file(out_dir + "/config.json", to_json(experiment));
  }
  DataCache data;
  std::vector<RunResult> done;
  nlohmann::json results;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (options.progress != nullptr && root) {
      *options.progress << "[" << (i + 1) << "/" << runs.size() << "] " << runs[i].name << " on " << runs[i].dataset
                        << "\n";
    }
    done.push_back({train_run(runs[i], out_dir + "/" + runs[i].name, data, options), to_json(runs[i])});
    results = make_results(experiment.name, experiment.description, done);
    if (root) write_json_file(out_dir + "/results.json", results);
    if (done.back().summary["status"] == "interrupted") break;  // the remaining runs are not started
  }
  return results;
}

}  // namespace reslab
