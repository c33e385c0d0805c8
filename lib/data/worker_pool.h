#pragma once
// A fixed set of threads running queued jobs: the image decoders of an ImageFolderLoader.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace reslab {

/// A fixed set of threads running queued jobs; queued jobs not started are dropped at destruction.
class WorkerPool {
 public:
  explicit WorkerPool(int64_t n) {
    for (int64_t i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
      jobs_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(m_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (stop_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

/// `workers`, or every core when 0.
inline int64_t resolve_workers(int64_t workers) {
  if (workers > 0) return workers;
  const unsigned cores = std::thread::hardware_concurrency();
  return cores > 0 ? static_cast<int64_t>(cores) : 1;
}

}  // namespace reslab
