#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include "app/bench_convs.h"
#include "app/commands.h"
#include "data/datasets.h"
#include "data/worker_pool.h"
#include "distributed/grad_sync.h"
#include "experiment/config.h"
#include "experiment/runner.h"
#include "models/registry.h"
#include "ops/winograd.h"
#include "optim/sgd.h"
#include "train/allocator.h"
#include "train/device.h"
#include "train/graphs.h"
#include "train/kernels.h"
#include "train/precision.h"
#include "train/replica.h"

namespace reslab {

namespace {

/// Images per second of `batches` batches of `loader` (from batch `first`), after `warmup` untimed ones.
double loader_rate(const BatchSource& loader, int64_t first, int64_t batches, int64_t warmup) {
  const int64_t n = loader.batches_per_epoch();
  int64_t i = first;
  for (int64_t w = 0; w < warmup; ++w) loader.batch(i++ % n);
  int64_t images = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < batches; ++b) images += loader.batch(i++ % n).targets.size(0);
  return static_cast<double>(images) / seconds_since(start);
}

/// The run whose data a bench reads: the dataset, its folder, the batch and the loader's settings, validated
/// as a run's are.
RunConfig bench_run(const BenchOptions& options, int64_t threads) {
  RunConfig run;
  run.name = "bench";
  run.data = options.data;
  run.optim.batch = options.batch;
  run.train.eval_batch = options.batch;
  run.optim.iterations = options.iterations;
  run.train.channels_last = options.channels_last;
  run.threads = threads;
  validate_run(run, "bench");
  return run;
}

int bench_loader(const BenchOptions& options, int64_t threads) {
  const RunConfig run = bench_run(options, threads);
  DataCache cache;
  RunData data = open_run_data(run, cache, run.optim.batch, 0);
  if (data.train->batches_per_epoch() == 0) {
    throw std::invalid_argument("bench: --batch " + std::to_string(options.batch) + " is larger than the " +
                                std::to_string(data.train->size()) + " training examples");
  }
  // The decoding threads an image folder's loader starts (in-memory datasets have none).
  const int64_t workers = options.data.dataset == "image-folder" ? resolve_workers(options.data.folder.workers) : 0;
  const double train = loader_rate(*data.train, 0, options.iterations, options.warmup);
  const double eval = loader_rate(*data.test, 0, std::min(options.iterations, data.test->batches_per_epoch()),
                                  std::min(options.warmup, data.test->batches_per_epoch() - 1));
  nlohmann::json row = {{"dataset", options.data.dataset},
                        {"batch", options.batch},
                        {"workers", workers},
                        {"input", {data.spec.input.channels, data.spec.input.height, data.spec.input.width}},
                        {"loader_train_img_per_s", train},
                        {"loader_eval_img_per_s", eval}};
  if (options.data.dataset == "image-folder") row["eval_crops"] = options.data.folder.eval_crops;
  if (options.json) {
    std::cout << row.dump(2) << "\n";
  } else {
    std::printf("%-14s %6s %8s %18s %18s\n", "dataset", "batch", "workers", "train img/s (aug)", "eval img/s");
    std::printf("%-14s %6lld %8lld %18.1f %18.1f\n", options.data.dataset.c_str(),
                static_cast<long long>(options.batch), static_cast<long long>(workers), train, eval);
  }
  return 0;
}

/// Resets the kernel's peak-resident-set counter of this process (Linux 4.0+); false where it cannot.
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return false;
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

/// Peak resident memory in MiB: VmHWM, or getrusage's maximum where /proc is not there.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

/// Writes the file that scripts/bench_pytorch.py --check reads with torch.load, to show that the Python
/// reference computes what reslab computes. It is a tuple: (model name, parameter names, parameters,
/// buffer names, buffers, inputs, targets, losses, parameter count, channels-last, LibTorch's version). The tensors are
/// the freshly initialised model's (NCHW, on the CPU); the losses (float64) are the training-mode cross-entropy on the
/// batch at the start, after one SGD step and after two (the paper's SGD: momentum 0.9, weight decay 1e-4, lr 0.1),
/// then the evaluation-mode loss (running BN statistics) after those steps, computed in the layout the last field says.
int bench_export_check(const BenchOptions& options, const ModelSpec& spec, torch::Device device) {
  if (options.models.size() != 1) {
    throw std::invalid_argument("bench --export-check: name one model (--model), got " +
                                std::to_string(options.models.size()));
  }
  const std::string& name = options.models.front();
  torch::manual_seed(0);
  auto model = build_model(name, spec);
  c10::List<std::string> param_names, buffer_names;
  c10::List<at::Tensor> params, buffers;
  for (const auto& p : model->named_parameters()) {
    param_names.push_back(p.key());
    params.push_back(p.value().detach().contiguous().clone());
  }
  for (const auto& b : model->named_buffers()) {
    buffer_names.push_back(b.key());
    buffers.push_back(b.value().detach().contiguous().clone());
  }
  torch::manual_seed(1);
  const auto& in = spec.input;
  const auto inputs = torch::randn({options.batch, in.channels, in.height, in.width});
  const auto targets = torch::randint(0, spec.classes, {options.batch}, torch::kInt64);
  model->to(device);
  if (options.channels_last) to_channels_last(*model);
  const auto memory = options.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const auto x = inputs.to(device).contiguous(memory), y = targets.to(device);
  auto optimizer = make_sgd(model->parameters(), SgdConfig{});
  model->train();
  std::vector<double> losses;
  for (int step = 0; step < 3; ++step) {
    optimizer->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    losses.push_back(loss.item<double>());
    if (step == 2) break;
    loss.backward();
    optimizer->step();
  }
  model->eval();
  {
    torch::NoGradGuard no_grad;
    losses.push_back(torch::nn::functional::cross_entropy(model->forward(x), y).item<double>());
  }
  const int64_t count = count_parameters(*model);
  const auto bytes = torch::pickle_save(c10::ivalue::Tuple::create(
      {name, param_names, params, buffer_names, buffers, inputs, targets, torch::tensor(losses, torch::kFloat64), count,
       options.channels_last, std::string(TORCH_VERSION)}));
  const std::string tmp = options.export_check + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw std::runtime_error("bench --export-check: cannot write " + options.export_check);
    }
  }
  if (std::rename(tmp.c_str(), options.export_check.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("bench --export-check: cannot write " + options.export_check);
  }
  std::printf("%s: %lld parameters; loss %.6f, after one step %.6f, after two %.6f, eval %.6f -> %s\n", name.c_str(),
              static_cast<long long>(count), losses[0], losses[1], losses[2], losses[3], options.export_check.c_str());
  return 0;
}

}  // namespace

/// Seconds per all-reduce of each size between the ranks of the job: the median of `iterations`, after `warmup`.
int bench_allreduce(const BenchOptions& options, Distributed& dist) {
  nlohmann::json rows = nlohmann::json::array();
  const int64_t n = dist.world_size();
  const torch::Device device = parse_rank_device(options.device, dist.env().local_rank, "bench --device");
  if (dist.is_root() && !options.json) {
    std::printf("%d ranks (%s, %s:%lld)\n%10s %12s %14s %14s\n", static_cast<int>(n), dist.backend_name().c_str(),
                dist.env().master_addr.c_str(), static_cast<long long>(dist.env().master_port), "MiB", "ms",
                "algbw GB/s", "busbw GB/s");
  }
  for (double mb : options.allreduce_mb) {
    const auto count = std::max<int64_t>(1, std::llround(mb * 1024.0 * 1024.0 / 4.0));
    // On the rank's device, as training's gradient buckets are (a GPU's under NCCL).
    auto t = torch::ones({count}, torch::TensorOptions().device(device));
    std::vector<double> times;
    for (int64_t i = 0; i < options.warmup + options.iterations; ++i) {
      dist.barrier("the all-reduce bench");
      synchronize(device);
      const auto start = std::chrono::steady_clock::now();
      dist.all_reduce_sum(t, "the all-reduce bench");
      synchronize(device);
      if (i >= options.warmup) times.push_back(seconds_since(start));
    }
    std::sort(times.begin(), times.end());
    auto median = torch::tensor({times[times.size() / 2]}, torch::kFloat64);
    dist.all_reduce_sum(median, "the all-reduce bench");
    const double seconds = median.item<double>() / static_cast<double>(n);  // mean over ranks of the medians
    const double bytes = static_cast<double>(count) * 4.0;
    const double algbw = bytes / seconds / 1e9;
    const double busbw = algbw * 2.0 * static_cast<double>(n - 1) / static_cast<double>(n);
    rows.push_back({{"mb", bytes / (1024.0 * 1024.0)},
                    {"bytes", bytes},
                    {"seconds", seconds},
                    {"algbw_gb_per_s", algbw},
                    {"busbw_gb_per_s", busbw}});
    if (dist.is_root() && !options.json) {
      std::printf("%10.4f %12.3f %14.3f %14.3f\n", bytes / (1024.0 * 1024.0), seconds * 1e3, algbw, busbw);
    }
  }
  if (dist.is_root() && options.json) {
    std::cout << nlohmann::json{{"ranks", n},
                                {"backend", dist.backend_name() == "NCCL" ? "nccl" : "gloo"},
                                {"master_addr", dist.env().master_addr},
                                {"allreduce", rows}}
                     .dump(2)
              << "\n";
  }
  return 0;
}

int run_bench(const BenchOptions& options) {
  // Launched as several ranks: the data-parallel step (each rank a share of the batch) or the all-reduce alone.
  const DistEnv env = read_dist_env();
  std::shared_ptr<Distributed> dist;
  if (env.distributed()) {
    // One GPU per rank, as in training; its device decides the process group (NCCL on GPUs where built with it).
    const torch::Device device = parse_rank_device(options.device, env.local_rank, "bench --device");
    dist = Distributed::connect(env, std::chrono::seconds(300), DistBackend::kAuto, device);
  }
  // Every number in range before anything runs (a wild --batch or --allreduce-mb was an allocator failure).
  if (options.batch <= 0 || options.batch > kMaxBatch || options.iterations <= 0 || options.iterations > 10000000 ||
      options.warmup < 0 || options.warmup > 10000000) {
    throw std::invalid_argument("bench: --batch must be 1 to " + std::to_string(kMaxBatch) +
                                ", --iterations 1 to 10000000 and --warmup 0 to 10000000");
  }
  if (options.threads < 0 || options.threads > 4096) {
    throw std::invalid_argument("bench: --threads " + std::to_string(options.threads) + ": expected 0 to 4096");
  }
  for (double mb : options.allreduce_mb) {
    if (!(mb > 0 && mb <= 4096)) {
      throw std::invalid_argument("bench: --allreduce-mb " + std::to_string(mb) +
                                  ": expected more than 0, at most 4096");
    }
  }
  if (!options.allreduce_mb.empty()) {
    if (!dist) {
      throw std::invalid_argument(
          "bench --allreduce-mb times all-reduces between ranks: launch it as several, e.g. "
          "scripts/launch-local 2 reslab bench --allreduce-mb 1,4");
    }
    return bench_allreduce(options, *dist);
  }
  const int64_t threads = resolve_threads(options.threads, env.local_world_size);
  torch::set_num_threads(static_cast<int>(threads));
  const DatasetInfo& data = dataset_info(options.data.dataset);
  if (options.batch <= 0 || options.iterations <= 0 || options.warmup < 0) {
    throw std::invalid_argument("bench: --batch and --iterations must be positive, --warmup non-negative");
  }
  // One GPU per rank, as in training.
  const torch::Device device = parse_rank_device(options.device, dist ? env.local_rank : -1, "bench --device");
  if (options.in_step > 0 &&
      (!device.is_cpu() || dist || options.loader || options.ceiling || !options.export_check.empty())) {
    throw std::invalid_argument(
        "bench --in-step times the CPU's convolution kernels inside a model's step in one process: not with "
        "--device cuda, across ranks, or with --loader, --ceiling or --export-check");
  }
  const Precision precision = parse_precision(options.precision);  // names the value when it is not one
  if (precision != Precision::kFloat32 &&
      (options.in_step > 0 || options.loader || options.ceiling || !options.export_check.empty())) {
    throw std::invalid_argument("bench --precision " + options.precision +
                                " times the model's step and evaluation: not with --in-step, --loader, --ceiling or "
                                "--export-check");
  }
  if (options.cuda_graphs && (!device.is_cuda() || dist || options.in_step > 0 || options.loader || options.ceiling ||
                              !options.export_check.empty())) {
    throw std::invalid_argument(
        "bench --cuda-graphs replays a model's step and evaluation on a CUDA device in one process: not on " +
        device.str() + ", across ranks, or with --in-step, --loader, --ceiling or --export-check");
  }
  if (options.loader) return bench_loader(options, threads);
  if (options.ceiling) return bench_ceiling(options, threads, device);
  // A whole epoch reads the dataset itself: its loader, augmentation and batches, as a run has them.
  std::optional<RunData> epoch_data;
  DataCache cache;
  if (options.epoch) epoch_data.emplace(open_run_data(bench_run(options, threads), cache, options.batch, 0));
  const ModelSpec spec =
      epoch_data ? epoch_data->spec : ModelSpec{{data.channels, data.height, data.width}, data.classes, Shortcut::A};
  if (!options.export_check.empty()) return bench_export_check(options, spec, device);
  if (dist && (options.epoch || options.batch % dist->world_size() != 0)) {
    throw std::invalid_argument("bench across " + std::to_string(dist->world_size()) + " ranks times the step alone, " +
                                "with a --batch that splits evenly (not --epoch)");
  }
  const int64_t local_batch = dist ? options.batch / dist->world_size() : options.batch;
  const bool report = !dist || dist->is_root();
  nlohmann::json all = nlohmann::json::array();
  if (!options.json && report) {
    if (dist)
      std::printf("%lld ranks, a share of %lld images each per step\n", static_cast<long long>(dist->world_size()),
                  static_cast<long long>(local_batch));
    std::printf("%-12s %6s %8s %12s %12s %12s %10s %10s %12s\n", "model", "batch", "threads", "step img/s",
                "epoch img/s", "eval img/s", "GMAC/s", "peak MiB", "convs img/s");
  }
  for (const auto& name : options.models) {
    const bool peak_per_model = reset_peak_rss();
    // The replica and the step a run trains with (train/replica.h, train_step).
    ReplicaOptions replica_options;
    replica_options.model = name;
    replica_options.spec = spec;
    replica_options.device = device;
    replica_options.channels_last = options.channels_last;
    replica_options.seed = 0;
    replica_options.sgd.foreach = options.sgd_foreach;
    replica_options.dist = dist.get();
    Replica replica = make_replica(replica_options);
    auto& model = replica.model;
    // The kernels a run at this batch takes (train/kernels.h): under "auto", measured once per machine and cached.
    nlohmann::json kernels = nullptr;
    KernelPlan plan;
    if (device.is_cpu()) {
      // Under autocast, LibTorch's convolutions, recorded as a run under autocast records them.
      plan = precision != Precision::kFloat32
                 ? direct_plan(winograd_shapes(*model), local_batch, "autocast")
                 : plan_kernels(winograd_shapes(*model), local_batch, default_kernel_cache(), nullptr);
      set_conv_plan(plan.plan());
      kernels = to_json(plan);
    }
    const auto memory = options.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    const auto& in = spec.input;
    auto inputs = torch::randn({local_batch, in.channels, in.height, in.width}).to(device).contiguous(memory);
    auto targets = torch::randint(0, spec.classes, {local_batch}, torch::kInt64).to(device);
    model->train();
    // Under --cuda-graphs the step is a CapturedStep: its own eager warm-up, then a capture, inside the warm-up.
    std::unique_ptr<CapturedStep> captured;
    std::unique_ptr<CapturedEval> captured_eval;
    if (options.cuda_graphs) {
      captured = std::make_unique<CapturedStep>(*model, *replica.optimizer, precision, 0.0, kGraphWarmup);
      captured_eval = std::make_unique<CapturedEval>(*model, precision);
    }
    auto step = [&](const torch::Tensor& x, const torch::Tensor& y) {
      if (captured) {
        captured->step(x, y);
      } else {
        train_step(*model, *replica.optimizer, x, y, replica.grad_sync.get(), {}, 0.0, precision);
      }
    };
    const int64_t warmup = captured ? std::max<int64_t>(options.warmup, kGraphWarmup + 1) : options.warmup;
    for (int64_t i = 0; i < warmup; ++i) step(inputs, targets);
    synchronize(device);
    if (dist) dist->barrier("the bench's start");
    auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < options.iterations; ++i) step(inputs, targets);
    synchronize(device);
    const double img_per_s = static_cast<double>(options.batch * options.iterations) / seconds_since(start);
    // Training costs about three forward passes: forward, and backward to inputs and to weights.
    const double macs_per_s = img_per_s * 3.0 * static_cast<double>(model->macs());

    nlohmann::json epoch_rate = nullptr;
    if (epoch_data) {
      BatchSource& loader = *epoch_data->train;
      loader.set_epoch(0);
      int64_t images = 0;
      start = std::chrono::steady_clock::now();
      for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
        const Batch batch = to_device(loader.batch(b), device);
        step(batch.inputs, batch.targets);
        images += batch.targets.size(0);
      }
      synchronize(device);
      epoch_rate = static_cast<double>(images) / seconds_since(start);
    }

    // Evaluation: eval-mode BN, no autograd, the same synthetic batches.
    model->eval();
    double eval_rate = 0.0;
    if (captured_eval) {
      // A run's evaluation batch: the forward pass, the summed loss and the count of errors, replayed.
      for (int64_t i = 0; i < warmup; ++i) (void)captured_eval->batch(inputs, targets);
      synchronize(device);
      start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < options.iterations; ++i) (void)captured_eval->batch(inputs, targets);
      synchronize(device);
      eval_rate = static_cast<double>(local_batch * options.iterations) / seconds_since(start);
    } else {
      torch::InferenceMode inference;
      const AutocastScope autocast(precision, device);  // no step in between: its cast weights stay valid
      for (int64_t i = 0; i < options.warmup; ++i) (void)model->forward(inputs);
      synchronize(device);
      start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < options.iterations; ++i) (void)model->forward(inputs);
      synchronize(device);
      // Across ranks: each evaluates its share at once, so the job's rate is the ranks' rates added.
      eval_rate = static_cast<double>(local_batch * options.iterations) / seconds_since(start);
      if (dist) {
        auto total = torch::tensor({eval_rate}, torch::kFloat64);
        dist->all_reduce_sum(total, "the bench's evaluation rate");
        eval_rate = total.item<double>();
      }
    }
    nlohmann::json conv_rate = nullptr;
    if (options.conv_bound) {
      conv_rate = conv_bound_rate(*model, local_batch, memory, device, options.iterations, options.warmup);
    }
    // Each shape's candidates timed in this step, beside what the per-shape timings chose (--in-step).
    nlohmann::json in_step = nullptr;
    if (options.in_step > 0) {
      const auto chosen = time_kernels_in_step(*model, plan, inputs, targets, static_cast<int>(options.in_step));
      in_step = nlohmann::json::array();
      for (size_t i = 0; i < chosen.size(); ++i) {
        nlohmann::json seconds = nlohmann::json::object();
        for (const auto& [kernel, s] : chosen[i].seconds) seconds[to_string(kernel)] = s;
        in_step.push_back({{"shape", chosen[i].shape.key()},
                           {"per_shape", to_string(plan.shapes[i].kernel)},
                           {"in_step", to_string(chosen[i].kernel)},
                           {"step_seconds", seconds}});
      }
    }
    const double rss = peak_rss_mb();
    nlohmann::json row = {
        {"model", name},
        {"dataset", options.data.dataset},
        {"batch", options.batch},
        {"threads", threads},
        {"device", options.device},
        {"channels_last", options.channels_last},
        {"sgd", options.sgd_foreach ? "foreach" : "loop"},
        {"malloc", allocator_policy()},
        {"conv", convolutions_at(precision, device)},
        {"precision", options.precision},
        {"cuda_graphs", captured ? to_json(*captured, *captured_eval) : nlohmann::json(false)},
        {"kernels", kernels},
        {"train_img_per_s", img_per_s},
        {"epoch_img_per_s", epoch_rate},
        {"eval_img_per_s", eval_rate},
        {"macs_per_s", macs_per_s},
        {"peak_rss_mb", rss},
        {"estimated_train_mb", static_cast<double>(estimate_training_bytes(*model, options.batch)) / (1 << 20)},
        {"peak_rss_scope", peak_per_model ? "model" : "process"}};
    if (epoch_data) row["epoch_examples"] = epoch_data->train->size();
    if (options.conv_bound) {
      row["conv_bound_img_per_s"] = conv_rate;
      row["step_of_conv_bound"] = img_per_s / conv_rate.get<double>();
    }
    if (!in_step.is_null()) row["in_step"] = in_step;
    if (dist) {
      row["ranks"] = dist->world_size();
      row["gradient_buckets"] = replica.grad_sync->buckets();
    }
    all.push_back(row);
    if (!options.json && report) {
      char epoch_text[32] = "-", conv_text[32] = "-";
      if (epoch_rate.is_number()) std::snprintf(epoch_text, sizeof epoch_text, "%.1f", epoch_rate.get<double>());
      if (conv_rate.is_number()) std::snprintf(conv_text, sizeof conv_text, "%.1f", conv_rate.get<double>());
      std::printf("%-12s %6lld %8lld %12.1f %12s %12.1f %10.1f %10.0f %12s\n", name.c_str(),
                  static_cast<long long>(options.batch), static_cast<long long>(threads), img_per_s, epoch_text,
                  eval_rate, macs_per_s / 1e9, rss, conv_text);
      for (const auto& shape : in_step.is_null() ? nlohmann::json::array() : in_step) {
        std::printf("  %-14s per shape: %-18s in the step: %-18s (", shape["shape"].get<std::string>().c_str(),
                    shape["per_shape"].get<std::string>().c_str(), shape["in_step"].get<std::string>().c_str());
        const char* sep = "";
        for (const auto& [kernel, seconds] : shape["step_seconds"].items()) {
          std::printf("%s%s %.1f ms", sep, kernel.c_str(), seconds.get<double>() * 1e3);
          sep = ", ";
        }
        std::printf("%s)\n", shape["step_seconds"].empty() ? "one candidate" : " a step");
      }
    }
  }
  if (options.json && report) std::cout << (all.size() == 1 ? all[0] : all).dump(2) << "\n";
  return 0;
}

}  // namespace reslab
