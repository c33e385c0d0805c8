#pragma once
// The OpenCV side of image decoding, for the loaders inside lib/data (the public API, image_decode.h, has no
// OpenCV types).

#include <opencv2/core.hpp>

#include <string>

namespace reslab {

/// The image at `path` as 8-bit, 3-channel BGR (OpenCV's order), with every check of decode_image_bytes; a
/// missing or unreadable file is a DataError naming it.
cv::Mat decode_bgr(const std::string& path);

}  // namespace reslab
