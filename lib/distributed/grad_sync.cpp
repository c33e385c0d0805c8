#include "distributed/grad_sync.h"

namespace reslab {

GradientSync::GradientSync(Distributed& dist, std::vector<torch::Tensor> params, int64_t bucket_bytes)
    : dist_(dist), params_(std::move(params)) {
  TORCH_CHECK(bucket_bytes > 0, "GradientSync: bucket_bytes must be positive");
  // Backward produces gradients roughly in reverse order of registration: buckets are filled from the end.
  where_.resize(params_.size());
  int64_t bytes = 0;
  for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i) {
    const auto& p = params_[static_cast<size_t>(i)];
    if (!p.requires_grad()) continue;
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits = !buckets_.empty() && bytes + size <= bucket_bytes && buckets_.back().flat.dtype() == p.dtype() &&
                      buckets_.back().flat.device() == p.device();
    if (!fits) {
      buckets_.emplace_back();
      buckets_.back().flat = torch::empty({0}, p.options());
      bytes = 0;
    }
    auto& b = buckets_.back();
    const int64_t offset = b.slots.empty() ? 0 : b.slots.back().offset + b.slots.back().numel;
    where_[static_cast<size_t>(i)] = {static_cast<int64_t>(buckets_.size()) - 1, static_cast<int64_t>(b.slots.size())};
    b.slots.push_back({i, offset, p.numel()});
    b.flat = torch::empty({offset + p.numel()}, p.options());
    bytes += size;
  }
  for (auto& b : buckets_) b.filled.assign(b.slots.size(), false);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    const auto index = static_cast<int64_t>(i);
    hooks_.push_back(params_[i].register_hook([this, index](const torch::Tensor& grad) { on_grad(index, grad); }));
  }
}

GradientSync::~GradientSync() {
  size_t h = 0;
  for (auto& p : params_) {
    if (p.requires_grad() && h < hooks_.size()) p.remove_hook(hooks_[h++]);
  }
}

void GradientSync::begin_backward() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& b : buckets_) {
    b.pending = static_cast<int64_t>(b.slots.size());
    std::fill(b.filled.begin(), b.filled.end(), false);
    b.work.reset();
  }
  next_launch_ = 0;
  launched_early_ = 0;
  armed_ = true;
}

void GradientSync::on_grad(int64_t param, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;
  const auto [bi, si] = where_[static_cast<size_t>(param)];
  auto& b = buckets_[static_cast<size_t>(bi)];
  const auto& s = b.slots[static_cast<size_t>(si)];
  torch::NoGradGuard no_grad;
  b.flat.narrow(0, s.offset, s.numel).view(grad.sizes()).copy_(grad);
  if (!b.filled[static_cast<size_t>(si)]) {
    b.filled[static_cast<size_t>(si)] = true;
    --b.pending;
  }
  const size_t before = next_launch_;
  launch_ready();
  launched_early_ += static_cast<int64_t>(next_launch_ - before);
}

void GradientSync::launch_ready() {
  // In bucket order only: every rank must start the same all-reduces in the same sequence.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    auto& b = buckets_[next_launch_];
    b.work = dist_.all_reduce_sum_async(b.flat, "the all-reduce of gradient bucket " + std::to_string(next_launch_));
    ++next_launch_;
  }
}

void GradientSync::finish_backward() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    torch::NoGradGuard no_grad;
    for (auto& b : buckets_) {
      for (size_t s = 0; s < b.slots.size(); ++s) {
        if (b.filled[s]) continue;
        // No gradient reached this parameter in this pass: its own .grad if it has one, else zero.
        const auto& slot = b.slots[s];
        auto dst = b.flat.narrow(0, slot.offset, slot.numel);
        const auto& g = params_[static_cast<size_t>(slot.param)].grad();
        if (g.defined()) {
          dst.view(g.sizes()).copy_(g);
        } else {
          dst.zero_();
        }
        b.filled[s] = true;
        --b.pending;
      }
    }
    launch_ready();
  }
  torch::NoGradGuard no_grad;
  const double scale = 1.0 / static_cast<double>(dist_.world_size());
  for (auto& b : buckets_) {
    b.work->wait();
    b.work.reset();
    b.flat.mul_(scale);
    for (const auto& s : b.slots) {
      auto& p = params_[static_cast<size_t>(s.param)];
      auto mean = b.flat.narrow(0, s.offset, s.numel).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(mean);
      } else {
        p.mutable_grad() = mean.clone();
      }
    }
  }
}

}  // namespace reslab
