// One rank of the data-parallel test (test_dist.cpp starts two, with torchrun's variables): trains the shared
// setup for kDistSteps steps through the real Trainer, GradientSync and ShardedSource, then saves its
// parameters, buffers and window losses.
// Usage: dist_worker OUT.pt rank-bn|sync-bn BUCKET_BYTES

#include <iostream>

#include "dist_setup.h"
#include "distributed/grad_sync.h"
#include "distributed/sharded_source.h"
#include "train/trainer.h"

namespace {
class LossLog : public reslab::Callback {
 public:
  void on_log(reslab::TrainContext& /*ctx*/, const reslab::WindowStats& w) override { losses.push_back(w.loss); }
  std::vector<double> losses;
};
}  // namespace

int main(int argc, char** argv) {
  using namespace reslab;
  if (argc != 4) {
    std::cerr << "usage: dist_worker OUT.pt rank-bn|sync-bn BUCKET_BYTES\n";
    return 2;
  }
  try {
    torch::set_num_threads(1);
    const std::string out = argv[1], mode = argv[2];
    const int64_t bucket_bytes = std::stoll(argv[3]);
    auto dist = Distributed::connect(read_dist_env(), std::chrono::seconds(60));
    auto global = testing::dist_test_loader();
    ShardedSource shard(*global, dist->rank(), dist->world_size());
    auto model = testing::dist_test_model();
    broadcast_module(*dist, *model, "initial weights");
    if (mode == "sync-bn") {
      set_batch_norm_sync(*model, [&](const torch::Tensor& t) { return differentiable_all_reduce_sum(*dist, t); });
    }
    auto sgd = testing::dist_test_sgd(*model);
    GradientSync sync(*dist, model->parameters(), bucket_bytes);
    TrainContext ctx{*model, *sgd, shard, nullptr, {}};
    ctx.dist = dist.get();
    ctx.grad_sync = &sync;
    Trainer trainer(ctx, testing::kDistSteps, /*log_every=*/1);
    auto log = std::make_shared<LossLog>();
    trainer.add(log);
    trainer.run();
    std::vector<torch::Tensor> saved;
    for (const auto& p : model->parameters()) saved.push_back(p.detach().contiguous());
    for (const auto& b : model->buffers()) saved.push_back(b.detach().contiguous());
    saved.push_back(torch::tensor(log->losses, torch::kFloat64));
    saved.push_back(torch::tensor({sync.buckets(), sync.launched_during_backward()}, torch::kInt64));
    torch::save(saved, out);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "dist_worker: " << e.what() << "\n";
    return 1;
  }
}
