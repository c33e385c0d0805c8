#include "train/replica.h"

namespace reslab {

std::shared_ptr<NetworkBase> make_model(const ReplicaOptions& o) {
  torch::manual_seed(o.seed);
  auto model = build_model(o.model, o.spec);
  model->to(o.device);
  if (o.channels_last) to_channels_last(*model);
  return model;
}

Replica make_replica(const ReplicaOptions& o) {
  Replica r;
  r.model = make_model(o);
  if (o.dist != nullptr) {
    broadcast_module(*o.dist, *r.model, "sharing rank 0's initial weights");
    r.grad_sync = std::make_unique<GradientSync>(*o.dist, r.model->parameters(), o.bucket_bytes);
    if (o.sync_bn) {
      Distributed* dist = o.dist;
      r.bn_reduce = [dist](const torch::Tensor& t) { return differentiable_all_reduce_sum(*dist, t); };
      set_batch_norm_sync(*r.model, r.bn_reduce);
    }
  }
  r.optimizer = make_sgd(*r.model, o.sgd);
  return r;
}

}  // namespace reslab
