#include "train/kernels.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "train/device.h"
#include "train/metrics.h"

namespace reslab {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCacheFormat = "reslab-conv-plans";
constexpr int kCacheVersion = 1;

std::mutex memo_mutex;
nlohmann::json process_memo = nlohmann::json::object();  ///< machine -> batch -> shape -> seconds by kernel

std::string batch_key(int64_t batch) { return "b" + std::to_string(batch); }

ConvPolicy parse_policy(const std::string& name) {
  for (ConvPolicy p : {ConvPolicy::kAuto, ConvPolicy::kDirect, ConvPolicy::kWinograd2x2, ConvPolicy::kWinograd4x4,
                       ConvPolicy::kWinogradMixed}) {
    if (to_string(p) == name) return p;
  }
  throw std::invalid_argument("'" + name +
                              "' is not a convolution policy (expected auto, direct, winograd2x2, winograd4x4 or "
                              "winograd-mixed)");
}

/// Whether a Winograd kernel at `isa` runs `shape` on this CPU.
bool isa_takes(ConvIsa isa, const ConvShape& shape) { return isa_available(isa) && winograd_shape(shape, isa); }

/// `algorithm` at the widest width that takes `shape`, or direct where none does.
ConvKernel widest_kernel(ConvAlgorithm algorithm, const ConvShape& shape) {
  if (algorithm == ConvAlgorithm::kDirect) return {ConvAlgorithm::kDirect, ConvIsa::kAvx2};
  const auto widest = widest_isa();
  if (widest && isa_takes(*widest, shape)) return {algorithm, *widest};
  if (isa_takes(ConvIsa::kAvx2, shape)) return {algorithm, ConvIsa::kAvx2};
  return {ConvAlgorithm::kDirect, ConvIsa::kAvx2};
}

/// The kernel with the fewest seconds; in a tie, the earlier candidate (direct first). `seconds` is not empty.
ConvKernel fastest(const std::vector<std::pair<ConvKernel, double>>& seconds) {
  return std::min_element(seconds.begin(), seconds.end(),
                          [](const auto& a, const auto& b) { return a.second < b.second; })
      ->first;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(colon + 1);
        name.erase(0, name.find_first_not_of(' '));
        return name;
      }
    }
  }
  return "unknown CPU";
}

/// The vector widths the kernels can use here, joined by '+' ("avx2+avx512"); "" where none.
std::string isa_names() {
  std::string isas;
  for (ConvIsa isa : {ConvIsa::kAvx2, ConvIsa::kAvx512}) {
    if (isa_available(isa)) isas += (isas.empty() ? "" : "+") + to_string(isa);
  }
  return isas;
}

/// The cache's document: `path`'s, checked, or an empty one where the file does not exist.
nlohmann::json read_cache(const std::string& path) {
  nlohmann::json empty = {{"format", kCacheFormat}, {"version", kCacheVersion}, {"timings", nlohmann::json::object()}};
  if (path.empty() || !fs::exists(path)) return empty;
  const std::string advice = " (delete it, and the kernels are measured again)";
  nlohmann::json doc;
  try {
    doc = read_json_file(path);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + advice);
  }
  if (!doc.is_object() || doc.value("format", "") != kCacheFormat || !doc.contains("version") ||
      doc["version"] != kCacheVersion || !doc.contains("timings") || !doc["timings"].is_object()) {
    throw std::runtime_error(path +
                             ": not a cache of convolution timings reslab wrote (expected an object with "
                             "\"format\": \"" +
                             std::string(kCacheFormat) + "\", \"version\": " + std::to_string(kCacheVersion) +
                             " and \"timings\")" + advice);
  }
  for (const auto& [machine, batches] : doc["timings"].items()) {
    if (!batches.is_object())
      throw std::runtime_error(path + ": timings of '" + machine + "' are not an object" + advice);
    for (const auto& [batch, shapes] : batches.items()) {
      if (!shapes.is_object()) throw std::runtime_error(path + ": timings at " + batch + " are not an object" + advice);
      for (const auto& [shape, kernels] : shapes.items()) {
        const std::string where = path + ": timings." + batch + "." + shape;
        try {
          (void)parse_conv_shape(shape);
        } catch (const std::invalid_argument& e) {
          throw std::runtime_error(where + ": " + e.what() + advice);
        }
        if (!kernels.is_object())
          throw std::runtime_error(where + ": expected an object of seconds by kernel" + advice);
        for (const auto& [kernel, seconds] : kernels.items()) {
          try {
            (void)parse_conv_kernel(kernel);
          } catch (const std::invalid_argument& e) {
            throw std::runtime_error(where + ": " + e.what() + advice);
          }
          if (!seconds.is_number() || !(seconds.get<double>() > 0) || !std::isfinite(seconds.get<double>())) {
            throw std::runtime_error(where + "." + kernel + ": " + seconds.dump() +
                                     "; expected a positive number of seconds" + advice);
          }
        }
      }
    }
  }
  return doc;
}

}  // namespace

std::vector<ConvShape> winograd_shapes(const NetworkBase& model) {
  std::vector<ConvShape> shapes;
  std::set<ConvShape> seen;
  for (const ConvAt& c : model.convolutions()) {
    if (!winograd_candidate(*c.conv)) continue;
    const ConvShape shape{c.conv->options.in_channels(), c.conv->options.out_channels(), c.in_h, c.in_w};
    if (winograd_shape(shape, ConvIsa::kAvx2) && seen.insert(shape).second) shapes.push_back(shape);
  }
  return shapes;
}

std::vector<ConvKernel> plan_candidates(ConvPolicy policy, const ConvShape& shape) {
  if (policy != ConvPolicy::kAuto) return {widest_kernel(policy_algorithm(policy), shape)};
  std::vector<ConvKernel> out = {{ConvAlgorithm::kDirect, ConvIsa::kAvx2}};
  for (ConvIsa isa : {ConvIsa::kAvx2, ConvIsa::kAvx512}) {
    if (conv_isa() && *conv_isa() != isa) continue;
    if (!isa_takes(isa, shape)) continue;
    out.push_back({ConvAlgorithm::kWinograd2x2, isa});
    out.push_back({ConvAlgorithm::kWinogradMixed, isa});
  }
  return out;
}

double time_conv_kernel(const ConvShape& shape, int64_t batch, const ConvKernel& kernel, int repeats) {
  torch::NoGradGuard no_grad;
  const auto cl = torch::MemoryFormat::ChannelsLast;
  // A generator of its own: measuring leaves LibTorch's global one where it was, so that a run that measured
  // and one that read the cache draw the same numbers afterwards.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const auto x = at::randn({batch, shape.in_channels, shape.height, shape.width}, gen).contiguous(cl);
  const auto w = (at::randn({shape.out_channels, shape.in_channels, 3, 3}, gen) * 0.1).contiguous(cl);
  const auto dy = at::randn({batch, shape.out_channels, shape.height, shape.width}, gen).contiguous(cl);
  const std::vector<int64_t> one{1, 1}, zero{0, 0};
  const auto pass = [&] {
    if (kernel.algorithm == ConvAlgorithm::kDirect) {
      (void)at::convolution(x, w, {}, one, one, one, false, zero, 1);
      (void)at::convolution_backward(dy, x, w, c10::nullopt, one, one, one, false, zero, 1, {true, true, false});
    } else {
      (void)winograd_conv3x3(x, w, kernel.algorithm, kernel.isa);
      (void)winograd_conv3x3_backward(dy, x, w, kernel.algorithm, kernel.isa);
    }
  };
  pass();  // warm-up: first-touch of the buffers, oneDNN's primitive cache
  std::vector<double> seconds;
  for (int i = 0; i < std::max(repeats, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    pass();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

ConvPlan KernelPlan::plan() const {
  ConvPlan out;
  for (const auto& s : shapes) out[s.shape] = s.kernel;
  return out;
}

KernelPlan plan_kernels(const std::vector<ConvShape>& shapes, int64_t batch, const std::string& cache_file,
                        std::ostream* log) {
  KernelPlan plan;
  plan.policy = conv_policy();
  plan.batch = batch;
  plan.threads = at::get_num_threads();
  if (plan.policy != ConvPolicy::kAuto || !widest_isa()) {
    // One algorithm everywhere; "auto" on a CPU without the kernels has only the direct convolution.
    const ConvAlgorithm algorithm =
        plan.policy == ConvPolicy::kAuto ? ConvAlgorithm::kDirect : policy_algorithm(plan.policy);
    plan.source = "fixed";
    for (const auto& shape : shapes) plan.shapes.push_back({shape, widest_kernel(algorithm, shape), {}, false});
    return plan;
  }
  plan.cache_file = cache_file;
  nlohmann::json cache = read_cache(cache_file);  // read (and checked) even where this process knows the shapes
  const std::string machine = machine_signature(plan.threads);
  nlohmann::json& known = cache["timings"][machine][batch_key(batch)];
  if (known.is_null()) known = nlohmann::json::object();
  // What this process has timed or read before wins over the file (which another process may have rewritten
  // since): within one process a shape at one batch always takes the same kernel, so two runs of one
  // configuration compute the same floats.
  const std::lock_guard<std::mutex> lock(memo_mutex);
  nlohmann::json& memo = process_memo[machine][batch_key(batch)];
  bool measured = false;
  for (const auto& shape : shapes) {
    ShapeChoice choice{shape, {}, {}, true};
    const auto candidates = plan_candidates(plan.policy, shape);
    nlohmann::json& timings = known[shape.key()];
    if (timings.is_null()) timings = nlohmann::json::object();
    if (memo.contains(shape.key())) {
      for (const auto& [name, seconds] : memo[shape.key()].items()) timings[name] = seconds;
    }
    for (const auto& kernel : candidates) {
      const std::string name = to_string(kernel);
      if (!timings.contains(name)) {
        // Enough passes for about a tenth of a second of each kernel, 3 to 11 of them.
        const double first = time_conv_kernel(shape, batch, kernel, 1);
        const int repeats = static_cast<int>(std::clamp(std::ceil(0.1 / std::max(first, 1e-6)), 3.0, 11.0));
        timings[name] = time_conv_kernel(shape, batch, kernel, repeats);
        choice.from_cache = false;
        measured = true;
      }
      choice.seconds.emplace_back(kernel, timings[name].get<double>());
    }
    memo[shape.key()] = timings;
    choice.kernel = fastest(choice.seconds);
    if (log != nullptr) {
      *log << "convolutions " << shape.key() << " at batch " << batch << ": " << to_string(choice.kernel) << " (";
      for (size_t i = 0; i < choice.seconds.size(); ++i) {
        *log << (i ? ", " : "") << to_string(choice.seconds[i].first) << " " << choice.seconds[i].second * 1e3 << " ms";
      }
      *log << (choice.from_cache ? "; cached)" : "; measured)") << "\n";
    }
    plan.shapes.push_back(std::move(choice));
  }
  plan.source = shapes.empty() ? "none" : measured ? "measured" : "cache";
  if (measured && !cache_file.empty()) {
    try {
      fs::create_directories(fs::path(cache_file).parent_path());
      write_json_file(cache_file, cache);
    } catch (const std::exception& e) {
      // A cache that cannot be written costs a measurement next time, not the run.
      if (log != nullptr) *log << "(the kernel timings are not cached: " << e.what() << ")\n";
      plan.cache_file.clear();
    }
  }
  return plan;
}

KernelPlan plan_from_json(const nlohmann::json& recorded, const std::string& source) {
  const auto fail = [&source](const std::string& key, const std::string& expected) {
    throw std::runtime_error(source + ": key '" + key + "': expected " + expected);
  };
  if (!recorded.is_object()) fail("(top)", "an object as reslab writes a run's kernels.json");
  KernelPlan plan;
  plan.source = "resumed";
  try {
    plan.policy = parse_policy(recorded.value("policy", ""));
  } catch (const std::invalid_argument& e) {
    fail("policy", std::string("a convolution policy (") + e.what() + ")");
  }
  for (const char* key : {"batch", "threads"}) {
    if (!recorded.contains(key) || !recorded[key].is_number_integer() || recorded[key].get<int64_t>() < 0) {
      fail(key, "a non-negative integer");
    }
  }
  plan.batch = recorded["batch"].get<int64_t>();
  plan.threads = recorded["threads"].get<int64_t>();
  if (!recorded.contains("shapes") || !recorded["shapes"].is_object()) fail("shapes", "an object of kernels by shape");
  for (const auto& [key, entry] : recorded["shapes"].items()) {
    ShapeChoice choice;
    try {
      choice.shape = parse_conv_shape(key);
    } catch (const std::invalid_argument& e) {
      fail("shapes", e.what());
    }
    if (!entry.is_object() || !entry.contains("kernel") || !entry["kernel"].is_string()) {
      fail("shapes." + key + ".kernel", "a kernel name such as winograd2x2-avx2");
    }
    try {
      choice.kernel = parse_conv_kernel(entry["kernel"].get<std::string>());
    } catch (const std::invalid_argument& e) {
      fail("shapes." + key + ".kernel", std::string("a kernel name (") + e.what() + ")");
    }
    if (choice.kernel.algorithm != ConvAlgorithm::kDirect) {
      if (!isa_available(ConvIsa::kAvx2)) {
        throw std::runtime_error(source + ": the run computed " + key + " convolutions with " +
                                 to_string(choice.kernel) +
                                 ", which this CPU cannot run (it has no AVX2); resume it on a CPU that has");
      }
      // Either width computes the same floats: the recorded one where this CPU has it and it takes the shape.
      if (!isa_available(choice.kernel.isa) || !isa_takes(choice.kernel.isa, choice.shape)) {
        choice.kernel.isa = ConvIsa::kAvx2;
      }
      if (!isa_takes(ConvIsa::kAvx2, choice.shape)) fail("shapes." + key, "a shape the Winograd kernels take");
    }
    plan.shapes.push_back(choice);
  }
  return plan;
}

KernelPlan direct_plan(const std::vector<ConvShape>& shapes, int64_t batch, const std::string& source) {
  KernelPlan plan;
  plan.policy = ConvPolicy::kDirect;
  plan.batch = batch;
  plan.threads = at::get_num_threads();
  plan.source = source;
  for (const auto& shape : shapes) plan.shapes.push_back({shape, {ConvAlgorithm::kDirect, ConvIsa::kAvx2}, {}, false});
  return plan;
}

KernelPlan earlier_plan(const std::vector<ConvShape>& shapes, int64_t batch) {
  KernelPlan plan;
  // The default then was F(2x2, 3x3) everywhere; a run begun with RESLAB_CONV set is resumed with it set again.
  plan.policy = conv_policy() == ConvPolicy::kAuto ? ConvPolicy::kWinograd2x2 : conv_policy();
  plan.batch = batch;
  plan.threads = at::get_num_threads();
  plan.source = "earlier";
  const ConvAlgorithm algorithm = policy_algorithm(plan.policy);
  for (const auto& shape : shapes) plan.shapes.push_back({shape, widest_kernel(algorithm, shape), {}, false});
  return plan;
}

std::vector<InStepChoice> time_kernels_in_step(NetworkBase& model, const KernelPlan& start, const torch::Tensor& inputs,
                                               const torch::Tensor& targets, int rounds) {
  // What the timing changes, put back however it ends: the plan in force, BN's running statistics, the mode.
  const ConvPlan before = conv_plan();
  std::vector<torch::Tensor> buffers;
  for (const auto& b : model.buffers()) buffers.push_back(b.clone());
  const bool was_training = model.is_training();
  const auto restore = [&] {
    set_conv_plan(before);
    torch::NoGradGuard no_grad;
    const auto now = model.buffers();
    for (size_t i = 0; i < now.size(); ++i) now[i].copy_(buffers[i]);
    model.zero_grad();
    model.train(was_training);
  };
  const auto step = [&] {
    model.zero_grad();
    torch::nn::functional::cross_entropy(model.forward(inputs), targets).backward();
  };
  model.train();
  ConvPlan plan = start.plan();
  std::vector<InStepChoice> out;
  try {
    for (const auto& planned : start.shapes) {
      InStepChoice choice{planned.shape, plan[planned.shape], {}};
      const auto candidates = plan_candidates(ConvPolicy::kAuto, planned.shape);
      if (candidates.size() > 1) {
        std::vector<std::vector<double>> seconds(candidates.size());
        for (const auto& kernel : candidates) {  // warm-up: oneDNN's primitives, the kernels' buffers
          plan[planned.shape] = kernel;
          set_conv_plan(plan);
          step();
        }
        for (int r = 0; r < std::max(rounds, 1); ++r) {
          for (size_t k = 0; k < candidates.size(); ++k) {
            const size_t c = (k + static_cast<size_t>(r)) % candidates.size();
            plan[planned.shape] = candidates[c];
            set_conv_plan(plan);
            const auto t0 = std::chrono::steady_clock::now();
            step();
            seconds[c].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          }
        }
        for (size_t c = 0; c < candidates.size(); ++c) {
          std::sort(seconds[c].begin(), seconds[c].end());
          choice.seconds.emplace_back(candidates[c], seconds[c][seconds[c].size() / 2]);
        }
        choice.kernel = fastest(choice.seconds);
      }
      plan[planned.shape] = choice.kernel;
      out.push_back(std::move(choice));
    }
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return out;
}

nlohmann::json to_json(const KernelPlan& plan) {
  nlohmann::json shapes = nlohmann::json::object();
  for (const auto& s : plan.shapes) {
    nlohmann::json entry = {{"kernel", to_string(s.kernel)}};
    if (!s.seconds.empty()) {
      entry["seconds"] = nlohmann::json::object();
      for (const auto& [kernel, seconds] : s.seconds) entry["seconds"][to_string(kernel)] = seconds;
    }
    shapes[s.shape.key()] = entry;
  }
  nlohmann::json out = {{"policy", to_string(plan.policy)},
                        {"batch", plan.batch},
                        {"threads", plan.threads},
                        {"source", plan.source},
                        {"shapes", shapes}};
  if (!plan.cache_file.empty()) out["cache_file"] = plan.cache_file;
  return out;
}

std::string default_kernel_cache() {
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? "" : v;
  };
  if (const std::string dir = env("RESLAB_CACHE_DIR"); !dir.empty()) return dir + "/conv-plans.json";
  if (const std::string dir = env("XDG_CACHE_HOME"); !dir.empty()) return dir + "/reslab/conv-plans.json";
  if (const std::string dir = env("HOME"); !dir.empty()) return dir + "/.cache/reslab/conv-plans.json";
  return "";
}

std::string machine_signature(int64_t threads) {
  const std::string isas = isa_names();
  return cpu_model_name() + " | " + (isas.empty() ? "no-simd" : isas) + " | libtorch " + TORCH_VERSION + " | " +
         std::to_string(threads) + " threads";
}

nlohmann::json machine_info() {
  const std::string isas = isa_names();
  return {{"cpu", cpu_model_name()},
          {"isa", isas.empty() ? "none" : isas},
          {"logical_cpus", usable_cores()},
          {"gpus", static_cast<int64_t>(torch::cuda::device_count())}};
}

}  // namespace reslab
