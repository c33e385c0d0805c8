#include "distributed/process_group.h"

#if defined(RESLAB_HAVE_GLOO) || defined(RESLAB_HAVE_NCCL)
#define RESLAB_HAVE_C10D 1
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef RESLAB_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef RESLAB_HAVE_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>

namespace reslab {

int64_t Distributed::broadcast_value(int64_t value, const std::string& what) {
  auto t = torch::tensor({value}, torch::kInt64);
  broadcast_from_root({t}, what);
  return t.item<int64_t>();
}

bool Distributed::any(bool value, const std::string& what) {
  auto t = torch::tensor({value ? 1.0f : 0.0f});
  all_reduce_sum(t, what);
  return t.item<float>() > 0.0f;
}

void broadcast_module(Distributed& dist, torch::nn::Module& module, const std::string& what) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p);
  for (const auto& b : module.buffers()) tensors.push_back(b);
  dist.broadcast_from_root(tensors, what);
}

namespace {

class AllReduceSum : public torch::autograd::Function<AllReduceSum> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input, int64_t dist) {
    // The process group lives for the whole job; the graph only keeps its address.
    ctx->saved_data["dist"] = dist;
    auto out = input.clone();
    reinterpret_cast<Distributed*>(dist)->all_reduce_sum(out, "synchronised BatchNorm statistics");
    return out;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto* dist = reinterpret_cast<Distributed*>(ctx->saved_data["dist"].toInt());
    auto grad = grads[0].contiguous().clone();
    dist->all_reduce_sum(grad, "synchronised BatchNorm gradients");
    return {grad, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor differentiable_all_reduce_sum(Distributed& dist, const torch::Tensor& tensor) {
  return AllReduceSum::apply(tensor, reinterpret_cast<int64_t>(&dist));
}

std::string to_string(DistBackend backend) {
  switch (backend) {
    case DistBackend::kGloo:
      return "gloo";
    case DistBackend::kNccl:
      return "nccl";
    default:
      return "auto";
  }
}

DistBackend parse_dist_backend(const std::string& name) {
  for (DistBackend b : {DistBackend::kAuto, DistBackend::kGloo, DistBackend::kNccl}) {
    if (name == to_string(b)) return b;
  }
  throw std::invalid_argument("'" + name + "' is not a data-parallel backend (expected auto, gloo or nccl)");
}

bool nccl_available() {
#ifdef RESLAB_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

DistBackend resolve_backend(DistBackend asked, const torch::Device& device, const std::string& what) {
  if (asked == DistBackend::kAuto)
    return device.is_cuda() && nccl_available() ? DistBackend::kNccl : DistBackend::kGloo;
  if (asked == DistBackend::kNccl && !device.is_cuda()) {
    throw std::invalid_argument(what + ": backend 'nccl' reduces tensors on GPUs, but the ranks train on '" +
                                device.str() + "' (train with --device cuda, or use gloo)");
  }
  if (asked == DistBackend::kNccl && !nccl_available()) {
    throw std::invalid_argument(what +
                                ": backend 'nccl': this reslab was built against a LibTorch without NCCL "
                                "(Debian's is CPU-only; scripts/build-cuda builds against PyPI's CUDA LibTorch), "
                                "so use gloo");
  }
  return asked;
}

#ifdef RESLAB_HAVE_C10D
namespace {

std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

[[maybe_unused]] bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

class C10dPending : public PendingCollective {
 public:
  /// `after` runs once the collective is done (copying a result back from the device it ran on).
  C10dPending(c10::intrusive_ptr<c10d::Work> work, std::function<DistError(const std::exception&)> fail,
              std::function<void()> after)
      : work_(std::move(work)), fail_(std::move(fail)), after_(std::move(after)) {}
  void wait() override {
    try {
      work_->wait();
      if (after_) after_();
    } catch (const std::exception& e) {
      throw fail_(e);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::function<DistError(const std::exception&)> fail_;
  std::function<void()> after_;
};

/// The rendezvous: a TCPStore served by rank 0 that every rank joins within `timeout`.
c10::intrusive_ptr<c10d::Store> rendezvous(const DistEnv& env, std::chrono::milliseconds timeout) {
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(env.master_port);
    opts.isServer = env.rank == 0;
    opts.numWorkers = static_cast<size_t>(env.world_size);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    return c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
  } catch (const std::exception& e) {
    throw DistError(env.describe() + ": the rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) +
                    " failed within " + std::to_string(timeout.count() / 1000) + " s (MASTER_ADDR/MASTER_PORT; " +
                    (env.rank == 0 ? "is the port free, and did every rank start?" : "is rank 0 running?") +
                    "): " + message_of(e));
  }
}

/// One of c10d's process groups (`Group`) over the rendezvous. Where the group reduces on one device only (NCCL's
/// GPU: `staging`), tensors elsewhere (the CPU's flags and totals) are copied there and back.
template <typename Group>
class C10dDistributed : public Distributed {
 public:
  using MakeGroup = std::function<c10::intrusive_ptr<Group>(const c10::intrusive_ptr<c10d::Store>&)>;
  C10dDistributed(const DistEnv& env, std::chrono::milliseconds timeout, std::string name, const MakeGroup& make_group,
                  std::optional<torch::Device> staging)
      : Distributed(env, timeout), name_(std::move(name)), staging_(std::move(staging)) {
    store_ = rendezvous(env, timeout);
    try {
      group_ = make_group(store_);
    } catch (const std::exception& e) {
      throw DistError(env.describe() + ": the rendezvous at " + env.master_addr + ":" +
                      std::to_string(env.master_port) + " failed within " + std::to_string(timeout.count() / 1000) +
                      " s while the ranks connected to each other over " + name_ +
                      " (is every rank running?): " + message_of(e));
    }
  }

  std::string backend_name() const override { return name_; }

  void all_reduce_sum(torch::Tensor& tensor, const std::string& what) override {
    all_reduce_sum_async(tensor, what)->wait();
  }

  std::unique_ptr<PendingCollective> all_reduce_sum_async(torch::Tensor tensor, const std::string& what) override {
    torch::Tensor staged = staged_copy(tensor);
    std::vector<torch::Tensor> tensors{staged};
    std::function<void()> after;
    if (!staged.is_same(tensor)) {
      after = [tensor, staged]() mutable {
        torch::NoGradGuard no_grad;
        tensor.copy_(staged);
      };
    }
    return run(
        what, [&] { return group_->allreduce(tensors); }, std::move(after));
  }

  void broadcast_from_root(std::vector<torch::Tensor> tensors, const std::string& what) override {
    // One flat tensor per dtype and device, one broadcast each, copied back in place.
    torch::NoGradGuard no_grad;
    std::vector<std::vector<torch::Tensor>> groups;
    for (auto& t : tensors) {
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) {
        return g.front().dtype() == t.dtype() && g.front().device() == t.device();
      });
      if (it == groups.end()) {
        groups.push_back({t});
      } else {
        it->push_back(t);
      }
    }
    for (auto& group : groups) {
      std::vector<torch::Tensor> flat_parts;
      for (const auto& t : group) flat_parts.push_back(t.reshape({-1}));
      std::vector<torch::Tensor> one{staged_copy(torch::cat(flat_parts))};
      c10d::BroadcastOptions opts;
      opts.rootRank = 0;
      run(what, [&] { return group_->broadcast(one, opts); }, {})->wait();
      int64_t offset = 0;
      for (auto& t : group) {
        t.copy_(one[0].narrow(0, offset, t.numel()).view(t.sizes()));
        offset += t.numel();
      }
    }
  }

  void barrier(const std::string& what) override {
    c10d::BarrierOptions opts;
    if (staging_ && staging_->is_cuda() && staging_->has_index()) opts.device_ids = {staging_->index()};
    run(what, [&] { return group_->barrier(opts); }, {})->wait();
  }

 private:
  /// `tensor` itself where the group takes it, else a contiguous copy on the staging device.
  torch::Tensor staged_copy(const torch::Tensor& tensor) const {
    if (!staging_ || (tensor.device() == *staging_ && tensor.is_contiguous())) return tensor;
    return tensor.to(*staging_).contiguous();
  }

  DistError failure(const std::string& what, const std::exception& e) const {
    return DistError(env().describe() + ": " + what + " failed (another rank stopped, did not answer within " +
                     std::to_string(timeout().count() / 1000) + " s, or is at another step; " + name_ +
                     "): " + message_of(e));
  }

  template <typename Start>
  std::unique_ptr<PendingCollective> run(const std::string& what, Start start, std::function<void()> after) {
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = start();
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
    return std::make_unique<C10dPending>(
        std::move(work), [this, what](const std::exception& e) { return failure(what, e); }, std::move(after));
  }

  std::string name_;
  std::optional<torch::Device> staging_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Group> group_;
};

#ifdef RESLAB_HAVE_GLOO
std::shared_ptr<Distributed> connect_gloo(const DistEnv& env, std::chrono::milliseconds timeout) {
  const auto make_group = [&](const c10::intrusive_ptr<c10d::Store>& store) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (is_loopback(env.master_addr)) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 2;
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(env.rank),
                                                       static_cast<int>(env.world_size), options);
  };
  return std::make_shared<C10dDistributed<c10d::ProcessGroupGloo>>(env, timeout, "Gloo", make_group, std::nullopt);
}
#endif

#ifdef RESLAB_HAVE_NCCL
std::shared_ptr<Distributed> connect_nccl(const DistEnv& env, std::chrono::milliseconds timeout,
                                          const torch::Device& device) {
  // This rank's GPU is the current one, where NCCL makes its communicator and streams.
  c10::cuda::set_device(device.index());
  const auto make_group = [&](const c10::intrusive_ptr<c10d::Store>& store) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(env.rank),
                                                       static_cast<int>(env.world_size), options);
  };
  return std::make_shared<C10dDistributed<c10d::ProcessGroupNCCL>>(env, timeout, "NCCL", make_group, device);
}
#endif

}  // namespace

std::shared_ptr<Distributed> Distributed::connect(const DistEnv& env, std::chrono::milliseconds timeout,
                                                  DistBackend backend, const torch::Device& device) {
  if (resolve_backend(backend, device, env.describe()) == DistBackend::kNccl) {
#ifdef RESLAB_HAVE_NCCL
    return connect_nccl(env, timeout, device.has_index() ? device : torch::Device(torch::kCUDA, 0));
#endif
  }
#ifdef RESLAB_HAVE_GLOO
  return connect_gloo(env, timeout);
#else
  throw DistError(env.describe() +
                  ": this reslab was built without Gloo (the headers of libgloo-dev were not found), so it trains in "
                  "one process only, or over NCCL on GPUs in a build that has it");
#endif
}
#else
std::shared_ptr<Distributed> Distributed::connect(const DistEnv& env, std::chrono::milliseconds /*timeout*/,
                                                  DistBackend /*backend*/, const torch::Device& /*device*/) {
  throw DistError(env.describe() +
                  ": this reslab was built without Gloo (the headers of libgloo-dev were not "
                  "found), so it trains in one process only");
}
#endif

}  // namespace reslab
