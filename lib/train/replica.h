#pragma once
// One rank's copy of the net being trained, built the same way for a run, its retries and `reslab bench`.

#include <torch/torch.h>

#include <memory>
#include <string>

#include "distributed/grad_sync.h"
#include "distributed/process_group.h"
#include "models/batch_norm.h"
#include "models/network.h"
#include "models/registry.h"
#include "optim/sgd.h"

namespace reslab {

struct ReplicaOptions {
  std::string model;  ///< a registry name, e.g. resnet56-noaffine
  ModelSpec spec;
  torch::Device device = torch::kCPU;
  bool channels_last = true;
  uint64_t seed = 1;  ///< torch::manual_seed before the weights are drawn
  SgdConfig sgd;
  /// A data-parallel job (null: this process alone): rank 0's weights are broadcast, gradients all-reduced in
  /// buckets of `bucket_bytes`, and with `sync_bn` BatchNorm statistics taken over the global batch.
  Distributed* dist = nullptr;
  int64_t bucket_bytes = int64_t{1} << 20;
  bool sync_bn = false;
};

struct Replica {
  std::shared_ptr<NetworkBase> model;
  std::unique_ptr<torch::optim::SGD> optimizer;
  std::unique_ptr<GradientSync> grad_sync;  ///< null in one process
  StatReduce bn_reduce;                     ///< empty unless sync_bn in a data-parallel job
};

/// The model alone, as make_replica draws it (seed, device, layout): a scratch copy to try checkpoints on.
std::shared_ptr<NetworkBase> make_model(const ReplicaOptions& options);

/// The model, its optimiser (with `sgd`'s parameter groups), and in a data-parallel job the weights from rank
/// 0, the gradient all-reduce and the BatchNorm reducer.
Replica make_replica(const ReplicaOptions& options);

}  // namespace reslab
