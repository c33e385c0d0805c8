#pragma once
// The table of datasets reslab reads, and the train/validation/test splits a run uses.

#include <string>
#include <vector>

#include "data/dataset.h"

namespace reslab {

struct DatasetInfo {
  std::string name;
  int64_t channels, height, width, classes;
  int64_t train_examples, test_examples;
  /// Where the data is read from without --data; empty when the user must say.
  std::string default_dir;
  std::string description;
};

/// The datasets by name: "fashion-mnist", "mnist", "cifar10", "cifar100".
const std::vector<DatasetInfo>& dataset_table();
/// The entry for `name`; throws std::invalid_argument naming the value and the known names.
const DatasetInfo& dataset_info(const std::string& name);

/// Reads one part of a dataset from `dir` (the default folder when empty). Throws DataError naming the file.
ImageDataset load_dataset(const std::string& name, const std::string& dir, Mode mode);

struct SplitOptions {
  /// Examples held out of the training set for validation (the paper's 5k on CIFAR-10); 0 for none.
  int64_t val_size = 0;
  /// Training examples kept after the hold-out, for quick runs; 0 keeps all.
  int64_t train_size = 0;
  /// Test examples kept (the first ones, in file order); 0 keeps all.
  int64_t test_size = 0;
  /// Seed of the permutation that picks the validation and training subsets, fixed across run seeds so that
  /// every run of an experiment sees the same split.
  uint64_t split_seed = 0;
};

/// The three parts of a run's data and the per-pixel mean of its training part (float, C x H x W, in [0, 1]).
struct DataSplits {
  ImageDataset train, val, test;
  torch::Tensor mean;
};

/// Loads train and test data and cuts the splits. Throws std::invalid_argument when a size exceeds the data.
DataSplits prepare_splits(const std::string& name, const std::string& dir, const SplitOptions& options);

}  // namespace reslab
