#pragma once
// Reading one image file with OpenCV, refusing what a dataset should not hold: unknown formats, truncated
// files, and headers that ask for gigapixels.

#include <cstdint>
#include <string>
#include <vector>

namespace reslab {

/// File extensions read as images (lower case; the test is case-insensitive), and the same joined by ", ".
const std::vector<std::string>& image_extensions();
std::string extension_list();

/// One image as 8-bit RGB rows (height x width x 3).
struct DecodedImage {
  int64_t height = 0, width = 0;
  std::vector<uint8_t> rgb;
};
/// Decodes the bytes of an image file; `name` is what errors call it. Throws DataError naming it when the bytes
/// are not an image, a truncated JPEG or PNG, or (by the header) larger than kMaxImagePixels.
DecodedImage decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& name);

/// The largest image decoded (width x height), checked from a JPEG's, PNG's or BMP's header before any pixel is
/// allocated: a corrupt header cannot ask for gigabytes. ImageNet's largest images have about 30 million pixels.
constexpr int64_t kMaxImagePixels = int64_t{1} << 27;

}  // namespace reslab
