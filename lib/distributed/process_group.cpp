#include "distributed/process_group.h"

#ifdef RESLAB_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <algorithm>
#include <cstdlib>

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

#ifdef RESLAB_HAVE_GLOO
namespace {

std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

class GlooDistributed;

class GlooPending : public PendingCollective {
 public:
  GlooPending(c10::intrusive_ptr<c10d::Work> work, std::function<DistError(const std::exception&)> fail)
      : work_(std::move(work)), fail_(std::move(fail)) {}
  void wait() override {
    try {
      work_->wait();
    } catch (const std::exception& e) {
      throw fail_(e);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::function<DistError(const std::exception&)> fail_;
};

class GlooDistributed : public Distributed {
 public:
  GlooDistributed(const DistEnv& env, std::chrono::milliseconds timeout) : Distributed(env, timeout) {
    const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
    const std::string seconds = std::to_string(timeout.count() / 1000);
    try {
      c10d::TCPStoreOptions opts;
      opts.port = static_cast<uint16_t>(env.master_port);
      opts.isServer = env.rank == 0;
      opts.numWorkers = static_cast<size_t>(env.world_size);
      opts.waitWorkers = true;
      opts.timeout = timeout;
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
    } catch (const std::exception& e) {
      throw DistError(env.describe() + ": the rendezvous at " + where + " failed within " + seconds +
                      " s (MASTER_ADDR/MASTER_PORT; " +
                      (env.rank == 0 ? "is the port free, and did every rank start?" : "is rank 0 running?") +
                      "): " + message_of(e));
    }
    try {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(env.master_addr)) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      options->threads = 2;
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, static_cast<int>(env.rank),
                                                           static_cast<int>(env.world_size), options);
    } catch (const std::exception& e) {
      throw DistError(env.describe() + ": the rendezvous at " + where + " failed within " + seconds +
                      " s while the ranks connected to each other (is every rank running?): " + message_of(e));
    }
  }

  void all_reduce_sum(torch::Tensor& tensor, const std::string& what) override {
    all_reduce_sum_async(tensor, what)->wait();
  }

  std::unique_ptr<PendingCollective> all_reduce_sum_async(torch::Tensor tensor, const std::string& what) override {
    std::vector<torch::Tensor> tensors{std::move(tensor)};
    return run(what, [&] { return group_->allreduce(tensors); });
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
      std::vector<torch::Tensor> one{torch::cat(flat_parts)};
      c10d::BroadcastOptions opts;
      opts.rootRank = 0;
      run(what, [&] { return group_->broadcast(one, opts); })->wait();
      int64_t offset = 0;
      for (auto& t : group) {
        t.copy_(one[0].narrow(0, offset, t.numel()).view(t.sizes()));
        offset += t.numel();
      }
    }
  }

  void barrier(const std::string& what) override {
    run(what, [&] { return group_->barrier(); })->wait();
  }

 private:
  DistError failure(const std::string& what, const std::exception& e) const {
    return DistError(env().describe() + ": " + what + " failed (another rank stopped, did not answer within " +
                     std::to_string(timeout().count() / 1000) + " s, or is at another step): " + message_of(e));
  }

  template <typename Start>
  std::unique_ptr<PendingCollective> run(const std::string& what, Start start) {
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = start();
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
    return std::make_unique<GlooPending>(std::move(work),
                                         [this, what](const std::exception& e) { return failure(what, e); });
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::shared_ptr<Distributed> Distributed::connect(const DistEnv& env, std::chrono::milliseconds timeout) {
  return std::make_shared<GlooDistributed>(env, timeout);
}
#else
std::shared_ptr<Distributed> Distributed::connect(const DistEnv& env, std::chrono::milliseconds /*timeout*/) {
  throw DistError(env.describe() +
                  ": this reslab was built without Gloo (the headers of libgloo-dev were not "
                  "found), so it trains in one process only");
}
#endif

}  // namespace reslab
