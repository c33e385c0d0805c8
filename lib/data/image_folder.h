#pragma once
// Image folders (root/<class>/**/*.jpg|png, the layout of ImageNet, Imagenette and Tiny ImageNet's training
// part) decoded with OpenCV in worker threads, with the paper's ImageNet augmentation and evaluation.

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/batch_source.h"
#include "data/image_decode.h"
#include "data/loader.h"

namespace reslab {

struct ImageFile {
  std::string path;
  int64_t label = 0;
};

/// The images of one folder: classes are its subfolders in sorted order; the files of a class are every
/// image below its folder (nested folders included), in sorted order.
struct ImageFolder {
  std::string root;
  std::vector<std::string> classes;
  std::vector<ImageFile> files;
};

/// Scans `root`. Throws DataError naming the folder when it is missing, has no class folders, or a class
/// folder has no images. When `classes` is given (the test part takes the training part's), the folder must
/// have exactly those class folders.
ImageFolder scan_image_folder(const std::string& root, const std::vector<std::string>& classes = {});

/// How images become network inputs (He et al. 2015, Section 3.4).
struct FolderTransform {
  /// Training: the shorter side is resized to a size drawn uniformly from [scale_min, scale_max], then a
  /// random crop x crop window is taken and flipped with probability 1/2.
  int64_t crop = 224;
  int64_t scale_min = 256, scale_max = 480;
  /// Evaluation: the shorter side is resized to eval_resize, then the centre crop (eval_crops 1) or the four
  /// corner crops, the centre crop and the flips of all five (eval_crops 10) are taken.
  int64_t eval_resize = 256;
  int64_t eval_crops = 1;
  /// Decoding threads (0: every core) and batches decoded ahead of the one asked for.
  int64_t workers = 0;
  int64_t prefetch = 2;
  /// Per-channel (R, G, B) mean and standard deviation of pixel/255 the inputs are normalised with; empty: both
  /// estimated from the training images. A net trained elsewhere needs its own (torchvision's: mean 0.485,
  /// 0.456, 0.406 and std 0.229, 0.224, 0.225).
  std::vector<double> mean, std;
  /// The labels. classes: the net's outputs (0: one per class folder). class_index: the output of each class
  /// folder by name, for a folder holding some of the net's classes (Imagenette's 10 of ImageNet's 1000);
  /// empty: the class folders in sorted order are outputs 0, 1, ...
  int64_t classes = 0;
  std::map<std::string, int64_t> class_index;
};

/// Throws std::invalid_argument naming the field when the transform is impossible (a crop larger than the
/// image it is cut from, an empty scale range, eval_crops other than 1 or 10, ...).
void check_transform(const FolderTransform& t);

/// Per-channel (R, G, B) mean and standard deviation of pixel/255, used to normalise the inputs.
struct ChannelStats {
  std::array<float, 3> mean{0.0f, 0.0f, 0.0f};
  std::array<float, 3> std{1.0f, 1.0f, 1.0f};
};

/// Estimates the statistics from the evaluation view (centre crop) of up to `max_images` of `files`, a
/// sample fixed by `seed`, decoded in `t.workers` threads.
ChannelStats channel_stats(const std::vector<ImageFile>& files, const FolderTransform& t, int64_t max_images,
                           uint64_t seed);

/// Batches decoded from files. With options.augment the training transform applies (drawn per image from
/// (seed, epoch, position)); otherwise the evaluation one, with `crops()` views per example. Batches ahead of
/// the one asked for are decoded in the background; a file that fails is reported by path when its batch is
/// asked for.
class ImageFolderLoader : public BatchSource {
 public:
  ImageFolderLoader(std::vector<ImageFile> files, ChannelStats stats, FolderTransform transform, LoaderOptions options);
  ~ImageFolderLoader() override;
  ImageFolderLoader(const ImageFolderLoader&) = delete;
  ImageFolderLoader& operator=(const ImageFolderLoader&) = delete;

  void set_epoch(int64_t epoch) override;
  int64_t batches_per_epoch() const override;
  Batch batch(int64_t index) const override;
  /// Decodes only examples [begin, end) of batch `index` (with the views they have in the whole batch), and
  /// prefetches the same share of the batches that follow.
  Batch rows(int64_t index, int64_t begin, int64_t end) const override;
  int64_t size() const override;
  int64_t batch_size() const override;
  int64_t crops() const;

 private:
  Batch fetch(int64_t index, int64_t first, int64_t last) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace reslab
