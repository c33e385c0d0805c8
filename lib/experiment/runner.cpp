#include "experiment/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <ostream>
#include <tuple>

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
#include "train/graphs.h"
#include "train/kernels.h"
#include "train/metrics.h"
#include "train/precision.h"
#include "train/replica.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;

namespace reslab {

std::shared_ptr<const SplitSource> DataCache::get(const DataConfig& data) {
  const SplitOptions& split = data.split;
  std::string key = data.dataset + "|" + data.dir + "|" + std::to_string(split.train_size) + "|" +
                    std::to_string(split.val_size) + "|" + std::to_string(split.test_size) + "|" +
                    std::to_string(split.split_seed);
  if (data.dataset == "image-folder") {
    const auto& t = data.folder;
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
  auto splits = open_splits(data.dataset, data.dir, split, data.folder);
  cache_[key] = splits;
  return splits;
}

RunData open_run_data(const RunConfig& run, DataCache& cache, int64_t train_batch, uint64_t loader_seed,
                      bool single_view) {
  RunData d;
  d.splits = cache.get(run.data);
  const SplitSource& s = *d.splits;
  d.spec = ModelSpec{{s.channels(), s.height(), s.width()}, s.classes(), parse_shortcut(run.model.shortcut)};
  LoaderOptions train_opts;
  train_opts.batch = train_batch;
  train_opts.augment = run.data.augment;
  train_opts.seed = loader_seed;
  train_opts.channels_last = run.train.channels_last;
  d.train = s.loader(Part::kTrain, train_opts);
  LoaderOptions eval_opts = train_opts;
  eval_opts.batch = run.train.eval_batch;
  eval_opts.shuffle = eval_opts.augment = eval_opts.drop_last = false;
  eval_opts.single_view = single_view;
  if (s.size(Part::kVal) > 0) d.val = s.loader(Part::kVal, eval_opts);
  d.test = s.loader(Part::kTest, eval_opts);
  return d;
}

std::shared_ptr<Distributed> join_job(const RunConfig& run, std::ostream* log) {
  const DistEnv env = read_dist_env();
  if (!env.distributed()) return nullptr;
  const auto timeout = std::chrono::milliseconds(std::llround(run.dist.timeout_s * 1000.0));
  // The device this rank trains on decides the process group (auto: NCCL on GPUs where this build has it).
  const std::string what = "run '" + run.name + "'";
  const torch::Device device = parse_rank_device(run.device, env.local_rank, what);
  DistBackend backend;
  try {
    backend = resolve_backend(parse_dist_backend(run.dist.backend), device, what + ": dist.backend");
  } catch (const std::invalid_argument& e) {
    throw DistError(e.what());
  }
  auto dist = Distributed::connect(env, timeout, backend, device);
  if (log != nullptr && dist->is_root()) {
    *log << "data-parallel: " << env.world_size << " ranks (" << env.source << " variables), rendezvous at "
         << env.master_addr << ":" << env.master_port << ", " << dist->backend_name() << "\n";
  }
  return dist;
}

namespace {

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
        throw CheckpointError(path + ": written by another configuration (it differs at '" + d.at +
                              "': " + d.recorded.value_or("(absent)") + " in the checkpoint, " +
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
    throw CheckpointError(metrics_path + ": shorter than the " + std::to_string(offset) + " bytes that " + checkpoint +
                          " was written with; start again with --overwrite");
  }
  fs::resize_file(metrics_path, static_cast<uintmax_t>(offset));
}

/// The checkpoint to continue from: the newest usable one as rank 0 sees it (in one process, this process's
/// own choice). The other ranks load that very file rather than listing the folder themselves, which a cached
/// network file system may show them otherwise; one that cannot read it stops every rank with a DistError.
std::pair<std::string, nlohmann::json> choose_checkpoint(Distributed* dist, const std::string& run_dir,
                                                         const nlohmann::json& identity,
                                                         const std::function<std::shared_ptr<NetworkBase>()>& fresh,
                                                         const SgdConfig& sgd, std::ostream* log,
                                                         const std::string& what) {
  std::pair<std::string, nlohmann::json> chosen;
  if (dist == nullptr || dist->is_root()) chosen = newest_usable_checkpoint(run_dir, identity, fresh, sgd, log);
  if (dist == nullptr) return chosen;
  const int64_t iter =
      dist->broadcast_value(chosen.first.empty() ? -1 : chosen.second.at("trainer").at("iter").get<int64_t>(), what);
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
      throw ConfigError(dir +
                        ": --reuse expects an experiment's output folder (reslab run --out); there is no "
                        "such folder");
    }
  }
}

std::string find_reusable_run(const RunConfig& run, const std::vector<std::string>& from, int64_t threads,
                              const std::string& device, std::ostream* log) {
  const nlohmann::json wanted = training_identity(run);
  const std::string conv = convolutions_at(parse_precision(run.train.precision), torch::Device(device));
  const nlohmann::json here = machine_info();
  const nlohmann::json versions = version_info();
  check_reuse_folders(from);
  for (const auto& dir : from) {
    std::vector<fs::path> folders;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_directory() && fs::exists(entry.path() / "config.json") &&
          fs::exists(entry.path() / "summary.json")) {
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
            summary.value("conv", nlohmann::json()) != conv ||
            (summary.contains("machine") &&
             (summary["machine"]["cpu"] != here["cpu"] || summary["machine"]["isa"] != here["isa"])) ||
            summary.value("versions", nlohmann::json()) != versions || !retries.is_array() || !retries.empty() ||
            summary.contains("reused_from") || !fs::exists(folder / "metrics.jsonl")) {
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
  if (run.train.tensorboard) rebuild_event_file(run_dir);
  nlohmann::json summary = read_json_file(source + "/summary.json");
  summary["run"] = run.name;
  summary["experiment"] = run.experiment;
  summary["reused_from"] = fs::absolute(source).lexically_normal().string();
  write_json_file(run_dir + "/summary.json", summary);
  return summary;
}

}  // namespace

namespace {

/// One training run, in the stages train_run lists. Each stage is small and reads what the stages before it
/// set; in a data-parallel job every rank walks the same stages, and rank 0 alone writes the folder.
class RunSession {
 public:
  RunSession(const RunConfig& run, std::string run_dir, DataCache& cache, const RunOptions& options)
      : run_(run),
        run_dir_(std::move(run_dir)),
        cache_(cache),
        options_(options),
        dist_(options.dist.get()),
        root_(dist_ == nullptr || dist_->is_root()),
        progress_(root_ ? options.progress : nullptr) {}

  /// With --resume, the summary of a run that completed earlier (every rank agreeing), else nullopt.
  std::optional<nlohmann::json> completed_earlier();
  /// Threads for LibTorch's pool and this rank's device.
  void set_up_environment();
  /// A run not yet begun, copied from a completed one of the same training identity under --reuse's folders.
  std::optional<nlohmann::json> reuse_completed();
  /// The spec and loaders, and this rank's shard of each global batch in a data-parallel job.
  void open_data();
  /// The model, its optimiser, gradient sync and BN reducer, built once (the retries reuse them); the run's
  /// length in iterations; the memory check.
  void build_replica();
  /// With --resume, the newest usable checkpoint (as rank 0 sees it).
  void choose_resume_point();
  /// Rank 0: config.json, no stale summary, and metrics.jsonl begun afresh or cut back to the checkpoint.
  void prepare_folder();
  /// The convolution kernel of each shape the model uses: on a fresh run the plan the policy makes (under "auto",
  /// measured or cached; rank 0's in a data-parallel job), recorded in kernels.json; on a resumed one, the plan
  /// it recorded, so that it computes as it did.
  void plan_convolutions();
  /// The trainer with the standard callbacks, the probes and the caller's; the checkpoint's state loaded.
  void assemble_trainer();
  /// Trains; after a non-finite loss, goes back to the newest checkpoint up to retry_diverged times.
  void train_with_retries();
  /// Rank 0 writes model.pt (completed runs) and summary.json; every rank returns the summary.
  nlohmann::json finish();

 private:
  /// metrics.jsonl, with the TensorBoard events rebuilt from what it holds and then mirroring it.
  void open_metrics();
  std::pair<std::string, nlohmann::json> choose(const std::string& what) {
    return choose_checkpoint(
        dist_, run_dir_, identity_, [this] { return make_model(replica_options_); }, replica_options_.sgd, progress_,
        what);
  }

  const RunConfig& run_;
  const std::string run_dir_;
  DataCache& cache_;
  const RunOptions& options_;
  Distributed* const dist_;
  const bool root_;
  std::ostream* const progress_;

  int64_t threads_ = 1;
  torch::Device device_ = torch::kCPU;
  RunData data_;
  std::unique_ptr<ShardedSource> shard_;
  BatchSource* train_loader_ = nullptr;  ///< the shard, or the whole training set
  int64_t local_batch_ = 0;
  ReplicaOptions replica_options_;
  Replica replica_;
  int64_t per_epoch_ = 0, total_ = 0;
  ScheduleConfig schedule_;
  nlohmann::json identity_;
  std::string resume_from_;
  nlohmann::json resume_meta_;
  KernelPlan kernels_;
  std::unique_ptr<EventWriter> events_;  // before metrics_, whose mirror writes to it: destroyed after it
  std::unique_ptr<JsonlWriter> metrics_;
  std::unique_ptr<TrainContext> ctx_;
  std::unique_ptr<CapturedStep> captured_step_;  // train.cuda_graphs
  std::unique_ptr<CapturedEval> captured_eval_;
  std::unique_ptr<Trainer> trainer_;
  std::shared_ptr<ScheduleCallback> schedule_cb_;
  std::shared_ptr<EvalCallback> eval_;
  std::shared_ptr<CheckpointCallback> checkpoints_;
  nlohmann::json retries_ = nlohmann::json::array();
  double seconds_ = 0.0;
};

std::optional<nlohmann::json> RunSession::completed_earlier() {
  if (!options_.resume) return std::nullopt;
  nlohmann::json done;
  bool completed = false;
  if (fs::exists(run_dir_ + "/summary.json")) {
    done = read_json_file(run_dir_ + "/summary.json");
    check_summary(done, run_dir_ + "/summary.json");
    completed = done["status"] == "completed";
  }
  // Ranks skip a completed run together, and only when they all see it completed.
  if (dist_ != nullptr && dist_->any((dist_->broadcast_value(completed ? 1 : 0, "the resume check") == 1) != completed,
                                     "the resume check")) {
    throw DistError(dist_->env().describe() + ": the ranks disagree on whether " + run_dir_ +
                    "/summary.json holds a completed run; every rank must see the same run folder (a shared file "
                    "system)");
  }
  if (!completed) return std::nullopt;
  if (progress_ != nullptr) *progress_ << run_.name << ": completed earlier, skipped\n";
  return done;
}

void RunSession::set_up_environment() {
  threads_ = resolve_threads(run_.threads, dist_ != nullptr ? dist_->env().local_world_size : 1);
  if (torch::get_num_threads() != threads_) torch::set_num_threads(static_cast<int>(threads_));
  // One GPU per rank: "cuda" in a data-parallel job is this rank's GPU on its machine.
  device_ = parse_rank_device(run_.device, dist_ != nullptr ? dist_->env().local_rank : -1, "run '" + run_.name + "'");
}

std::optional<nlohmann::json> RunSession::reuse_completed() {
  // Not for a data-parallel job, nor when callbacks would record something during training that a copy lacks.
  if (options_.reuse_from.empty() || fs::exists(run_dir_ + "/metrics.jsonl") ||
      fs::exists(run_dir_ + "/summary.json")) {
    return std::nullopt;
  }
  if (dist_ != nullptr || !options_.callbacks.empty()) {
    if (progress_ != nullptr) {
      *progress_ << run_.name << ": not reused ("
                 << (dist_ != nullptr ? "a data-parallel job" : "probes record during training") << "): trained here\n";
    }
    return std::nullopt;
  }
  const std::string source = find_reusable_run(run_, options_.reuse_from, threads_, device_.str(), progress_);
  if (source.empty()) return std::nullopt;
  auto summary = copy_reused_run(run_, source, run_dir_, threads_);
  if (progress_ != nullptr) {
    *progress_ << run_.name << ": reused " << source << " (the same training configuration, seed, " << threads_
               << " threads and device; not trained again)\n";
  }
  return summary;
}

void RunSession::open_data() {
  data_ = open_run_data(run_, cache_, run_.optim.batch, mix_seed(run_.seed));
  if (dist_ != nullptr) {
    if (run_.optim.batch % dist_->world_size() != 0) {
      throw ConfigError("run '" + run_.name + "': optim.batch " + std::to_string(run_.optim.batch) +
                        " does not split " + "evenly across " + std::to_string(dist_->world_size()) +
                        " ranks: use a multiple of " + std::to_string(dist_->world_size()) +
                        " (the batch is the global one, across all ranks)");
    }
    shard_ = std::make_unique<ShardedSource>(*data_.train, dist_->rank(), dist_->world_size());
  }
  train_loader_ = shard_ ? shard_.get() : data_.train.get();
  local_batch_ = shard_ ? shard_->local_batch() : run_.optim.batch;
  per_epoch_ = train_loader_->batches_per_epoch();
  if (per_epoch_ == 0) {
    throw ConfigError("run '" + run_.name + "': the training set has " + std::to_string(train_loader_->size()) +
                      " examples, fewer than one batch of " + std::to_string(run_.optim.batch));
  }
}

void RunSession::build_replica() {
  auto& o = replica_options_;
  o.model = run_.model.name;
  o.spec = data_.spec;
  o.device = device_;
  o.channels_last = run_.train.channels_last;
  o.seed = run_.seed;
  o.sgd = run_.optim.sgd;
  o.sgd.groups = resolved_param_groups(run_);
  o.dist = dist_;
  o.bucket_bytes = std::llround(run_.dist.bucket_mb * 1024.0 * 1024.0);
  o.sync_bn = run_.dist.sync_bn;
  replica_ = make_replica(o);
  total_ = run_.optim.iterations
               ? *run_.optim.iterations
               : std::max<int64_t>(1, std::llround(*run_.optim.epochs * static_cast<double>(per_epoch_)));
  schedule_ = run_.optim.schedule;
  if (parse_model_name(run_.model.name).depth < run_.optim.schedule.warmup_min_depth) schedule_.warmup_lr.reset();
  check_training_memory(*replica_.model, run_.model.name, device_, local_batch_,
                        dist_ != nullptr ? dist_->env().local_world_size : 1, "run '" + run_.name + "'");
}

void RunSession::choose_resume_point() {
  identity_ = checkpoint_identity(run_);
  if (options_.resume) std::tie(resume_from_, resume_meta_) = choose("choosing the checkpoint to resume from");
}

void RunSession::open_metrics() {
  metrics_ = std::make_unique<JsonlWriter>(run_dir_ + "/metrics.jsonl");
  events_.reset();
  if (!run_.train.tensorboard) {
    fs::remove(run_dir_ + "/" + kEventFileName);  // one from before it was turned off would be stale
    return;
  }
  rebuild_event_file(run_dir_);
  events_ = std::make_unique<EventWriter>(run_dir_ + "/" + kEventFileName);
  metrics_->mirror = [w = events_.get()](const nlohmann::json& record) { w->write_record(record); };
}

void RunSession::prepare_folder() {
  if (!root_) return;
  fs::create_directories(run_dir_);
  nlohmann::json config = to_json(run_);
  config["threads"] = threads_;
  write_json_file(run_dir_ + "/config.json", config);
  fs::remove(run_dir_ + "/summary.json");
  if (resume_from_.empty()) {
    fs::remove(run_dir_ + "/metrics.jsonl");
    for (const auto& stale : list_checkpoints(run_dir_)) fs::remove(stale);
  } else {
    cut_metrics(run_dir_, resume_meta_, resume_from_);
  }
  open_metrics();
}

void RunSession::plan_convolutions() {
  if (!device_.is_cpu()) return;  // LibTorch's convolutions, as convolution_policy(device) says
  const std::string file = run_dir_ + "/kernels.json";
  const std::vector<ConvShape> shapes = winograd_shapes(*replica_.model);
  if (parse_precision(run_.train.precision) != Precision::kFloat32) {
    // Under autocast every convolution is LibTorch's (conv_kernel), on every rank: recorded as such, nothing timed.
    kernels_ = direct_plan(shapes, local_batch_, "autocast");
    if (root_) write_json_file(file, to_json(kernels_));
    return;
  }
  if (root_) {
    if (!resume_from_.empty()) {
      kernels_ = fs::exists(file) ? plan_from_json(read_json_file(file), file) : earlier_plan(shapes, local_batch_);
    } else {
      kernels_ = plan_kernels(shapes, local_batch_, default_kernel_cache(), progress_);
    }
  }
  if (dist_ != nullptr) {
    // Every rank computes with rank 0's algorithms, each at the widest width its CPU has (the same floats).
    const ConvPlan chosen = kernels_.plan();
    KernelPlan mine = kernels_;
    if (!root_) {
      mine = earlier_plan(shapes, local_batch_);
      mine.source = "rank 0";
    }
    for (auto& s : mine.shapes) {
      const auto it = chosen.find(s.shape);
      const int64_t algorithm = dist_->broadcast_value(
          static_cast<int64_t>(it != chosen.end() ? it->second.algorithm : s.kernel.algorithm), "sharing the kernels");
      if (!root_) {
        s.kernel.algorithm = static_cast<ConvAlgorithm>(algorithm);
        if (s.kernel.algorithm == ConvAlgorithm::kDirect) s.kernel.isa = ConvIsa::kAvx2;
      }
    }
    if (!root_) kernels_ = mine;
  }
  set_conv_plan(kernels_.plan());
  if (root_) write_json_file(file, to_json(kernels_));
}

void RunSession::assemble_trainer() {
  ctx_ = std::make_unique<TrainContext>(
      TrainContext{*replica_.model, *replica_.optimizer, *train_loader_, metrics_.get(), {}});
  ctx_->dist = dist_;
  ctx_->grad_sync = replica_.grad_sync.get();
  ctx_->clip_grad_norm = run_.optim.clip_grad_norm;
  ctx_->precision = parse_precision(run_.train.precision);
  if (run_.train.cuda_graphs) {
    if (dist_ != nullptr) {
      throw ConfigError("run '" + run_.name +
                        "': train.cuda_graphs trains in one process; this is a data-parallel "
                        "job of " +
                        std::to_string(dist_->world_size()) +
                        " ranks, whose gradient all-reduce a captured step cannot hold (set it to false)");
    }
    if (!device_.is_cuda()) {
      throw ConfigError("run '" + run_.name + "': train.cuda_graphs needs a CUDA device, not " + device_.str());
    }
    captured_step_ = std::make_unique<CapturedStep>(*replica_.model, *replica_.optimizer, ctx_->precision,
                                                    run_.optim.clip_grad_norm);
    captured_eval_ = std::make_unique<CapturedEval>(*replica_.model, ctx_->precision);
    ctx_->captured_step = captured_step_.get();
    ctx_->captured_eval = captured_eval_.get();
  }
  trainer_ = std::make_unique<Trainer>(*ctx_, total_, run_.train.log_every);
  Trainer& trainer = *trainer_;
  schedule_cb_ = std::make_shared<ScheduleCallback>(make_schedule(schedule_, run_.optim.sgd.lr, per_epoch_, total_));
  trainer.add(schedule_cb_);
  trainer.add(std::make_shared<TrainRecordCallback>());
  eval_ = std::make_shared<EvalCallback>(data_.val.get(), data_.test.get(), run_.train.eval_every_epoch,
                                         std::set<int64_t>(run_.train.eval_at.begin(), run_.train.eval_at.end()));
  trainer.add(eval_);
  if (progress_ != nullptr) trainer.add(std::make_shared<ProgressCallback>(run_.name, *progress_, options_.terminal));
  // Callbacks that run on rank 0 alone see rank-local BatchNorm (see RankLocalBatchNorm).
  auto rank_local = [this](std::shared_ptr<Callback> cb) -> std::shared_ptr<Callback> {
    if (!replica_.bn_reduce) return cb;
    return std::make_shared<RankLocalBatchNorm>(std::move(cb), *replica_.model, replica_.bn_reduce);
  };
  // Probes and extra callbacks observe and write: rank 0's job (they see the all-reduced gradients).
  if (!run_.probes.during_training.empty() && root_) {
    trainer.add(rank_local(std::make_shared<GradientProbeCallback>(
        run_.probes.during_training, std::set<int64_t>(run_.probes.at.begin(), run_.probes.at.end()))));
  }
  if (root_) {
    for (const auto& cb : options_.callbacks) trainer.add(rank_local(cb));
    checkpoints_ = std::make_shared<CheckpointCallback>(trainer, run_dir_, options_.checkpoint_every, identity_, 2,
                                                        /*save_at_start=*/run_.train.retry_diverged > 0);
    trainer.add(checkpoints_);
  }
  if (!resume_from_.empty()) {
    load_checkpoint(resume_from_, *replica_.model, *replica_.optimizer);
    trainer.load_state(resume_meta_.at("trainer"));
    if (progress_ != nullptr) {
      *progress_ << "resuming " << run_.name << " at iteration " << ctx_->state.iter << " from " << resume_from_
                 << "\n";
    }
  }
}

void RunSession::train_with_retries() {
  TrainContext& ctx = *ctx_;
  const auto start = std::chrono::steady_clock::now();
  trainer_->run();
  // Retries after a non-finite loss: back to the newest checkpoint (the records cut back to it), the learning
  // rate scaled down; each retry is a "retry" record and an entry of the summary's "retries".
  while (ctx.state.status == RunStatus::kDiverged &&
         static_cast<int64_t>(retries_.size()) < run_.train.retry_diverged) {
    const int64_t diverged_at = ctx.state.diverged_at.value_or(ctx.state.iter + 1);
    const double scale_in_force = schedule_cb_->lr_scale();  // earlier retries' included
    auto [path, meta] = choose("choosing the checkpoint to retry from");
    if (path.empty()) break;  // none could be read: the run stays diverged
    if (root_) {
      ctx.metrics = nullptr;
      metrics_.reset();
      cut_metrics(run_dir_, meta, path);
      open_metrics();
      ctx.metrics = metrics_.get();
    }
    load_checkpoint(path, *replica_.model, *replica_.optimizer);
    // Rank 0 rewrites that checkpoint below: every rank has read it first.
    if (dist_ != nullptr) dist_->barrier("loading the checkpoint to retry from");
    trainer_->load_state(meta.at("trainer"));
    schedule_cb_->set_lr_scale(scale_in_force * run_.train.retry_lr_scale);
    ctx.state.status = RunStatus::kRunning;
    ctx.state.diverged_at.reset();
    nlohmann::json retry = {{"kind", "retry"},
                            {"iter", ctx.state.iter},
                            {"epoch", ctx.state.epoch()},
                            {"diverged_at", diverged_at},
                            {"lr_scale", schedule_cb_->lr_scale()},
                            {"checkpoint", fs::path(path).filename().string()}};
    if (metrics_) metrics_->write(retry);
    // The checkpoint again, with the lowered scale and the retry record: a run stopped from here on resumes
    // with the learning rate it was retrying at.
    if (checkpoints_) checkpoints_->save_now(ctx);
    retry.erase("kind");
    retries_.push_back(retry);
    if (progress_ != nullptr) {
      *progress_ << run_.name << ": loss not finite at iteration " << diverged_at << "; retrying from " << path
                 << " (iteration " << ctx.state.iter << ") with the learning rate x" << schedule_cb_->lr_scale()
                 << "\n";
    }
    trainer_->run();
  }
  seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

nlohmann::json RunSession::finish() {
  const TrainState& state = ctx_->state;
  RunOutcome outcome(run_, *replica_.model, state);
  outcome.train_examples = train_loader_->size();
  outcome.train_error = trainer_->last_epoch_train_error();
  outcome.val_error = eval_->val_error();
  outcome.test_error = eval_->test_error();
  outcome.best_test_error = eval_->best_test_error();
  outcome.seconds = seconds_;
  outcome.eval_seconds = eval_->seconds();
  outcome.world_size = dist_ != nullptr ? dist_->world_size() : 1;
  outcome.threads = threads_;
  outcome.conv = convolutions_at(ctx_->precision, device_);
  if (captured_step_) {
    outcome.cuda_graphs = to_json(*captured_step_, *captured_eval_);
  }
  if (device_.is_cpu()) outcome.kernels = to_json(kernels_);
  outcome.retries = retries_;
  nlohmann::json summary = make_summary(outcome);
  if (!root_) return summary;  // rank 0 writes the folder
  if (options_.save_model && state.status == RunStatus::kCompleted) {
    const ModelSpec& spec = data_.spec;
    save_model_file(run_dir_ + "/model.pt", *replica_.model,
                    {{"model", run_.model.name},
                     {"shortcut", run_.model.shortcut},
                     {"dataset", run_.data.dataset},
                     {"input", {spec.input.channels, spec.input.height, spec.input.width}},
                     {"classes", spec.classes},
                     {"iterations", state.iter},
                     {"config", identity_}});
  }
  write_json_file(run_dir_ + "/summary.json", summary);
  return summary;
}

}  // namespace

nlohmann::json train_run(const RunConfig& run, const std::string& run_dir, DataCache& data, const RunOptions& options) {
  RunSession session(run, run_dir, data, options);
  if (auto done = session.completed_earlier()) return *done;
  session.set_up_environment();
  if (auto copied = session.reuse_completed()) return *copied;
  session.open_data();
  session.build_replica();
  session.choose_resume_point();
  session.prepare_folder();
  session.plan_convolutions();
  session.assemble_trainer();
  session.train_with_retries();
  return session.finish();
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
  for (const char* file : {"results.json", "summary.json", "metrics.jsonl", "curves.png"})
    fs::remove(dir + "/" + file, ec);
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
      *options.progress << "[" << (i + 1) << "/" << runs.size() << "] " << runs[i].name << " on "
                        << runs[i].data.dataset << "\n";
    }
    done.push_back({train_run(runs[i], out_dir + "/" + runs[i].name, data, options), to_json(runs[i])});
    results = make_results(experiment.name, experiment.description, done);
    if (root) write_json_file(out_dir + "/results.json", results);
    if (done.back().summary["status"] == "interrupted") break;  // the remaining runs are not started
  }
  return results;
}

}  // namespace reslab
