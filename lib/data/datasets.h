#pragma once
// The table of datasets reslab reads, and the train/validation/test splits a run uses.

#include <memory>
#include <string>
#include <vector>

#include "data/batch_source.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/loader.h"

namespace reslab {

struct DatasetInfo {
  std::string name;
  /// The network's input; for an image folder, the default crop and ImageNet's 1000 classes.
  int64_t channels, height, width, classes;
  /// 0: known only once the folder is read (image folders).
  int64_t train_examples, test_examples;
  /// Where the data is read from without --data; empty when the user must say.
  std::string default_dir;
  std::string description;
};

/// The datasets by name: "fashion-mnist", "mnist", "cifar10", "cifar100", "image-folder".
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

enum class Part { kTrain, kVal, kTest };

/// A run's data, cut into its three parts: what the network is built for, and loaders over each part.
class SplitSource {
 public:
  virtual ~SplitSource() = default;
  /// The shape of a network input (after cropping) and the number of classes.
  virtual int64_t channels() const = 0;
  virtual int64_t height() const = 0;
  virtual int64_t width() const = 0;
  virtual int64_t classes() const = 0;
  /// Examples in `part` (0 for an absent validation part).
  virtual int64_t size(Part part) const = 0;
  /// A loader over `part` (which must not be empty); `options.augment` selects the training transform.
  virtual std::unique_ptr<BatchSource> loader(Part part, const LoaderOptions& options) const = 0;
};

/// The three parts of an in-memory dataset and the per-pixel mean of its training part (float, C x H x W,
/// in [0, 1]), which its loaders subtract.
struct DataSplits : SplitSource {
  ImageDataset train, val, test;
  torch::Tensor mean;

  int64_t channels() const override { return train.channels(); }
  int64_t height() const override { return train.height(); }
  int64_t width() const override { return train.width(); }
  int64_t classes() const override { return train.classes(); }
  int64_t size(Part part) const override;
  std::unique_ptr<BatchSource> loader(Part part, const LoaderOptions& options) const override;
};

/// Loads train and test data and cuts the splits. Throws std::invalid_argument when a size exceeds the data.
DataSplits prepare_splits(const std::string& name, const std::string& dir, const SplitOptions& options);

/// An image folder's parts: DIR/train/<class>/... is split into train and validation as SplitOptions says,
/// DIR/val/<class>/... (or DIR/test/<class>/...) is the test part; inputs are normalised per channel with
/// statistics estimated from the training part, or with the transform's mean and std; labels follow the
/// transform's class_index where it has one.
struct FolderSplits : SplitSource {
  std::vector<std::string> class_names;
  std::vector<ImageFile> train, val, test;
  ChannelStats stats;
  FolderTransform transform;

  int64_t channels() const override { return 3; }
  int64_t height() const override { return transform.crop; }
  int64_t width() const override { return transform.crop; }
  /// The net's outputs: transform.classes when given, else one per class folder.
  int64_t classes() const override {
    return transform.classes > 0 ? transform.classes : static_cast<int64_t>(class_names.size());
  }
  int64_t size(Part part) const override;
  std::unique_ptr<BatchSource> loader(Part part, const LoaderOptions& options) const override;
};

/// Images the channel statistics of an image folder are estimated from.
constexpr int64_t kStatsImages = 500;

/// Scans an image folder and cuts its splits. Throws DataError naming the folder or std::invalid_argument
/// naming the size that exceeds the data.
FolderSplits prepare_folder_splits(const std::string& dir, const SplitOptions& options, const FolderTransform& t);

/// Either of the above by dataset name (`transform` applies to image folders only).
std::shared_ptr<const SplitSource> open_splits(const std::string& name, const std::string& dir,
                                               const SplitOptions& options, const FolderTransform& transform);

}  // namespace reslab
