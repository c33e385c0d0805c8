#include "data/datasets.h"

#include "data/cifar.h"
#include "data/idx.h"
#include "data/random.h"

#include <algorithm>
#include <filesystem>

namespace reslab {

const std::vector<DatasetInfo>& dataset_table() {
  static const std::vector<DatasetInfo> table = {
      {"fashion-mnist", 1, 28, 28, 10, 60000, 10000, "/usr/share/datasets/fashion-mnist",
       "Zalando's Fashion-MNIST, IDX files (Debian package dataset-fashion-mnist)"},
      {"mnist", 1, 28, 28, 10, 60000, 10000, "", "MNIST digits, IDX files (gzipped or not); needs --data"},
      {"cifar10", 3, 32, 32, 10, 50000, 10000, "", "CIFAR-10 binary version (cifar-10-batches-bin); needs --data"},
      {"cifar100", 3, 32, 32, 100, 50000, 10000, "", "CIFAR-100 binary version (cifar-100-binary); needs --data"},
      {"image-folder", 3, 224, 224, 1000, 0, 0, "",
       "an image folder, DIR/train/<class>/*.jpg|png and DIR/val/<class>/... (ImageNet, Imagenette); needs --data"},
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
    throw std::invalid_argument("dataset '" + name + "' has no default location: pass --data DIR (" + info.description +
                                ")");
  }
  if (name == "image-folder") {
    throw std::invalid_argument("dataset 'image-folder' is decoded from files batch by batch, not held in memory");
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

int64_t DataSplits::size(Part part) const {
  return part == Part::kTrain ? train.size() : part == Part::kVal ? val.size() : test.size();
}

std::unique_ptr<BatchSource> DataSplits::loader(Part part, const LoaderOptions& options) const {
  const ImageDataset& d = part == Part::kTrain ? train : part == Part::kVal ? val : test;
  return std::make_unique<BatchLoader>(d, mean, options);
}

namespace {

[[maybe_unused]] void check_size(int64_t value, int64_t limit, const std::string& what, const std::string& where) {
  if (value < 0 || value > limit) {
    throw std::invalid_argument(what + " " + std::to_string(value) + " is out of range for " + where +
                                " (expected 0.." + std::to_string(limit) + ")");
  }
}

[[maybe_unused]] std::vector<ImageFile> pick(const std::vector<ImageFile>& files, const std::vector<int64_t>& perm,
                                             int64_t begin, int64_t end) {
  std::vector<int64_t> idx(perm.begin() + begin, perm.begin() + end);
  std::sort(idx.begin(), idx.end());  // file order within the part: classes stay grouped, the loader shuffles
  std::vector<ImageFile> out;
  out.reserve(idx.size());
  for (int64_t i : idx) out.push_back(files[static_cast<size_t>(i)]);
  return out;
}

}  // namespace

FolderSplits prepare_folder_splits(const std::string& dir, const SplitOptions& options, const FolderTransform& t) {
  if (dir.empty()) {
    throw std::invalid_argument("dataset 'image-folder' has no default location: pass --data DIR (" +
                                dataset_info("image-folder").description + ")");
  }
  try {
    check_transform(t);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("image folder transform: ") + e.what());
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir + "/train", ec)) {
    throw DataError(dir +
                    "/train: no such folder (an image folder dataset is DIR/train/<class>/<image> and "
                    "DIR/val/<class>/<image>)");
  }
  std::string test_dir = dir + "/val";
  if (!std::filesystem::is_directory(test_dir, ec) && std::filesystem::is_directory(dir + "/test", ec)) {
    test_dir = dir + "/test";
  }
  if (!std::filesystem::is_directory(test_dir, ec)) {
    throw DataError(dir + "/val: no such folder (nor " + dir +
                    "/test): the images the run is tested on, one "
                    "folder per class as in " +
                    dir + "/train");
  }
#ifdef RESLAB_NO_OPENCV
  (void)options;
  throw DataError(dir +
                  ": this reslab was built without OpenCV (RESLAB_WITH_OPENCV=OFF), which decodes image "
                  "folders; rebuild with OpenCV (scripts/install-deps installs it)");
#else
  ImageFolder train = scan_image_folder(dir + "/train");
  ImageFolder test = scan_image_folder(test_dir, train.classes);
  const auto folders = static_cast<int64_t>(train.classes.size());
  if (!t.class_index.empty()) {
    // Each class folder is the output the index names (the test part has the same folders).
    std::vector<int64_t> output(train.classes.size());
    for (size_t c = 0; c < train.classes.size(); ++c) {
      const auto it = t.class_index.find(train.classes[c]);
      if (it == t.class_index.end()) {
        throw DataError(dir + "/train/" + train.classes[c] +
                        ": a class folder that data.class_index does not name "
                        "(it names " +
                        std::to_string(t.class_index.size()) + " folders)");
      }
      output[c] = it->second;
    }
    for (auto* folder : {&train, &test}) {
      for (auto& f : folder->files) f.label = output[static_cast<size_t>(f.label)];
    }
  } else if (t.classes > 0 && t.classes != folders) {
    throw DataError(dir + "/train: " + std::to_string(folders) + " class folders, but data.classes is " +
                    std::to_string(t.classes) +
                    ": give data.class_index, the output of each folder (e.g. "
                    "scripts/imagenette_classes.json for Imagenette's 10 of ImageNet's 1000)");
  }
  const auto n = static_cast<int64_t>(train.files.size());
  const auto n_test = static_cast<int64_t>(test.files.size());
  check_size(options.val_size, n - 1, "val_size", dir + "/train");
  check_size(options.train_size, n - options.val_size, "train_size", dir + "/train");
  check_size(options.test_size, n_test, "test_size", test_dir);

  FolderSplits s;
  s.class_names = train.classes;
  s.transform = t;
  const std::vector<int64_t> perm = permutation(n, options.split_seed);
  const int64_t train_n = options.train_size > 0 ? options.train_size : n - options.val_size;
  s.val = pick(train.files, perm, 0, options.val_size);
  s.train = pick(train.files, perm, options.val_size, options.val_size + train_n);
  if (options.test_size > 0) {
    s.test = pick(test.files, permutation(n_test, mix_seed(options.split_seed ^ 0x7e57)), 0, options.test_size);
  } else {
    s.test = test.files;
  }
  if (t.mean.empty()) {
    s.stats = channel_stats(s.train, t, kStatsImages, options.split_seed);
  } else {
    for (size_t c = 0; c < 3; ++c) {
      s.stats.mean[c] = static_cast<float>(t.mean[c]);
      s.stats.std[c] = static_cast<float>(t.std[c]);
    }
  }
  return s;
#endif
}

int64_t FolderSplits::size(Part part) const {
  return static_cast<int64_t>(part == Part::kTrain ? train.size() : part == Part::kVal ? val.size() : test.size());
}

std::unique_ptr<BatchSource> FolderSplits::loader(Part part, const LoaderOptions& options) const {
  const auto& files = part == Part::kTrain ? train : part == Part::kVal ? val : test;
#ifdef RESLAB_NO_OPENCV
  (void)files;
  (void)options;
  throw DataError("image folders: this reslab was built without OpenCV (RESLAB_WITH_OPENCV=OFF)");
#else
  return std::make_unique<ImageFolderLoader>(files, stats, transform, options);
#endif
}

std::shared_ptr<const SplitSource> open_splits(const std::string& name, const std::string& dir,
                                               const SplitOptions& options, const FolderTransform& transform) {
  if (name == "image-folder")
    return std::make_shared<const FolderSplits>(prepare_folder_splits(dir, options, transform));
  return std::make_shared<const DataSplits>(prepare_splits(name, dir, options));
}

}  // namespace reslab
