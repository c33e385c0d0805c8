// The image-folder transform's checks: apart from the decoding code, so builds without OpenCV validate configs.
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
  if (t.scale_max < t.scale_min) bad("scale_max", t.scale_max, "at least scale_min (" + std::to_string(t.scale_min) + ")");
  if (t.scale_max > 8192) bad("scale_max", t.scale_max, "at most 8192");
  if (t.eval_resize < t.crop || t.eval_resize > 8192) {
    bad("eval_resize", t.eval_resize, "at least the crop (" + std::to_string(t.crop) + ") and at most 8192");
  }
  if (t.eval_crops != 1 && t.eval_crops != 10) bad("eval_crops", t.eval_crops, "1 (centre crop) or 10 (ten-crop)");
  if (t.workers < 0 || t.workers > 256) bad("workers", t.workers, "0 (every core) to 256");
  if (t.prefetch < 0 || t.prefetch > 64) bad("prefetch", t.prefetch, "0 to 64");
}

}  // namespace reslab
