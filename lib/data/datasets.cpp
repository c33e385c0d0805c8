#include "data/datasets.h"

#include "data/cifar.h"
#include "data/idx.h"
#include "data/random.h"

namespace reslab {

const std::vector<DatasetInfo>& dataset_table() {
  static const std::vector<DatasetInfo> table = {
      {"fashion-mnist", 1, 28, 28, 10, 60000, 10000, "/usr/share/datasets/fashion-mnist",
       "Zalando's Fashion-MNIST, IDX files (Debian package dataset-fashion-mnist)"},
      {"mnist", 1, 28, 28, 10, 60000, 10000, "", "MNIST digits, IDX files (gzipped or not); needs --data"},
      {"cifar10", 3, 32, 32, 10, 50000, 10000, "", "CIFAR-10 binary version (cifar-10-batches-bin); needs --data"},
      {"cifar100", 3, 32, 32, 100, 50000, 10000, "", "CIFAR-100 binary version (cifar-100-binary); needs --data"},
  };
  return table;
}

const DatasetInfo& dataset_info(const std::string& name) {
  std::string names;
  for (const auto& info : dataset_table()) {
    if (info.name == name) return info;
    names += (names.empty() ? "" : ", ") + info.name;
  }
  throw std::invalid_argument("unknown dataset '" + name + "': expected one of " + names);
}

ImageDataset load_dataset(const std::string& name, const std::string& dir, Mode mode) {
  const DatasetInfo& info = dataset_info(name);
  const std::string root = dir.empty() ? info.default_dir : dir;
  if (root.empty()) {
    throw std::invalid_argument("dataset '" + name + "' has no default location: pass --data DIR (" +
                                info.description + ")");
  }
  if (name == "cifar10") return read_cifar10(root, mode);
  if (name == "cifar100") return read_cifar100(root, mode);
  return read_idx_dataset(root, mode, info.classes);
}

DataSplits prepare_splits(const std::string& name, const std::string& dir, const SplitOptions& options) {
  ImageDataset full = load_dataset(name, dir, Mode::kTrain);
  ImageDataset test = load_dataset(name, dir, Mode::kTest);
  if (full.images().sizes().slice(1) != test.images().sizes().slice(1)) {
    auto shape = [](const ImageDataset& d) {
      return std::to_string(d.channels()) + "x" + std::to_string(d.height()) + "x" + std::to_string(d.width());
    };
    throw DataError((dir.empty() ? dataset_info(name).default_dir : dir) + ": training images are " + shape(full) +
                    " but test images are " + shape(test) + "; both parts of a dataset must have one shape");
  }
  const int64_t n = full.size();
  auto check = [&](int64_t value, int64_t limit, const std::string& what) {
    if (value < 0 || value > limit) {
      throw std::invalid_argument(what + " " + std::to_string(value) + " is out of range for " + name +
                                  " (expected 0.." + std::to_string(limit) + ")");
    }
  };
  check(options.val_size, n - 1, "val_size");
  check(options.train_size, n - options.val_size, "train_size");
  check(options.test_size, test.size(), "test_size");

  DataSplits splits;
  // A seeded permutation: the first val_size examples validate, the rest train.
  std::vector<int64_t> perm = permutation(n, options.split_seed);
  const torch::Tensor order = torch::from_blob(perm.data(), {n}, torch::kInt64).clone();
  const int64_t train_n = options.train_size > 0 ? options.train_size : n - options.val_size;
  if (options.val_size > 0) splits.val = full.subset(order.slice(0, 0, options.val_size));
  if (options.val_size == 0 && options.train_size == 0) {
    splits.train = full;  // the whole training set in file order; the loader shuffles it
  } else {
    splits.train = full.subset(order.slice(0, options.val_size, options.val_size + train_n));
  }
  splits.test = options.test_size > 0 ? test.subset(torch::arange(options.test_size, torch::kInt64)) : test;
  splits.mean = splits.train.images().to(torch::kFloat32).mean(0).div_(255.0);
  return splits;
}

}  // namespace reslab
