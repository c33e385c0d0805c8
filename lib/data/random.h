#pragma once
// Deterministic, platform-independent random streams for data order and augmentation.

#include <cstdint>
#include <vector>

namespace reslab {

/// SplitMix64: mixes a 64-bit value into a well-distributed one; used to derive independent seeds.
uint64_t mix_seed(uint64_t x);

/// A small, fast generator (xoshiro256**) seeded through SplitMix64. Unlike std::shuffle and the std::
/// distributions, its draws are the same on every platform and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  /// Uniform integer in [0, bound), bound > 0.
  uint64_t below(uint64_t bound);

 private:
  uint64_t s_[4];
};

/// A uniformly random permutation of 0..n-1 (Fisher-Yates).
std::vector<int64_t> permutation(int64_t n, uint64_t seed);

/// The order in which a loader serves n examples in `epoch`: a permutation drawn from (seed, epoch) when
/// shuffling, 0..n-1 otherwise.
std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch);

}  // namespace reslab
