#pragma once
// What each fuzz target feeds its input through. Shared by the libFuzzer targets (scripts/fuzz) and by the
// regression test that replays every saved input (tests/test_fuzz_regressions.cpp). Each returns normally for
// any input: bad input must end in the reader's own exception, which the entry catches.

#include <cstddef>
#include <cstdint>

namespace reslab::fuzz {

int idx_entry(const uint8_t* data, size_t size);         ///< IDX images/labels (first byte picks 1 or 3 dims)
int cifar_entry(const uint8_t* data, size_t size);       ///< CIFAR-10/100 records (first byte picks the format)
int config_entry(const uint8_t* data, size_t size);      ///< experiment JSON
int checkpoint_entry(const uint8_t* data, size_t size);  ///< checkpoint files, loaded into a small model
int image_entry(const uint8_t* data, size_t size);       ///< image files (JPEG, PNG, ...): decoded, cropped
/// The files `--resume`, `collect` and `analyze` read from a run folder (the first byte picks one): a run's
/// summary.json, a run's config.json, an experiment's config.json; each read, checked and made into results.
int run_files_entry(const uint8_t* data, size_t size);
/// PyTorch state_dict files (reslab import): unpickled, and loaded strictly into a small net when they parse.
int pth_entry(const uint8_t* data, size_t size);

}  // namespace reslab::fuzz
