// The image-folder transform's checks: apart from the decoding code, so builds without OpenCV validate configs.
#include <map>
#include <stdexcept>
#include <string>

#include "data/image_folder.h"

namespace reslab {

void check_transform(const FolderTransform& t) {
  auto bad = [](const std::string& field, int64_t value, const std::string& expected) {
    throw std::invalid_argument(field + " " + std::to_string(value) + ": expected " + expected);
  };
  if (t.crop <= 0) bad("crop", t.crop, "a positive size");
  if (t.scale_min < t.crop) bad("scale_min", t.scale_min, "at least the crop (" + std::to_string(t.crop) + ")");
  if (t.scale_max < t.scale_min)
    bad("scale_max", t.scale_max, "at least scale_min (" + std::to_string(t.scale_min) + ")");
  if (t.scale_max > 8192) bad("scale_max", t.scale_max, "at most 8192");
  if (t.eval_resize < t.crop || t.eval_resize > 8192) {
    bad("eval_resize", t.eval_resize, "at least the crop (" + std::to_string(t.crop) + ") and at most 8192");
  }
  if (t.eval_crops != 1 && t.eval_crops != 10) bad("eval_crops", t.eval_crops, "1 (centre crop) or 10 (ten-crop)");
  if (t.workers < 0 || t.workers > 256) bad("workers", t.workers, "0 (every core) to 256");
  if (t.prefetch < 0 || t.prefetch > 64) bad("prefetch", t.prefetch, "0 to 64");
  auto bad_list = [](const std::string& field, const std::string& expected) {
    throw std::invalid_argument(field + ": expected " + expected);
  };
  if (t.mean.size() != t.std.size()) bad_list("mean", "mean and std given together");
  if (!t.mean.empty() && t.mean.size() != 3) bad_list("mean", "three values (R, G, B)");
  for (double m : t.mean) {
    if (!(m >= 0.0 && m <= 1.0)) bad_list("mean", "values of pixel/255 from 0 to 1");
  }
  for (double s : t.std) {
    if (!(s > 0.0 && s <= 10.0)) bad_list("std", "values above 0 and at most 10");
  }
  if (t.classes != 0 && (t.classes < 2 || t.classes > 100000))
    bad("classes", t.classes, "2 to 100000 (0: one per class folder)");
  if (!t.class_index.empty() && t.classes == 0) bad_list("class_index", "'classes' (the net's outputs) beside it");
  std::map<int64_t, std::string> taken;
  for (const auto& [name, index] : t.class_index) {
    if (index < 0 || index >= t.classes) {
      bad_list("class_index", "outputs from 0 to " + std::to_string(t.classes - 1) + " (folder '" + name + "' has " +
                                  std::to_string(index) + ")");
    }
    if (!taken.emplace(index, name).second) {
      bad_list("class_index", "one folder per output ('" + taken[index] + "' and '" + name + "' are both " +
                                  std::to_string(index) + ")");
    }
  }
}

}  // namespace reslab
