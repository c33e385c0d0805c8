#include "data/image_decode.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "data/dataset.h"
#include "data/image_decode_cv.h"

namespace reslab {

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> ext = {".jpg", ".jpeg", ".png",  ".bmp", ".ppm",
                                               ".pgm", ".tif",  ".tiff", ".webp"};
  return ext;
}

std::string extension_list() {
  std::string s;
  for (const auto& e : image_extensions()) s += (s.empty() ? "" : ", ") + e;
  return s;
}

namespace {

std::vector<uint8_t> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open the image file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError(path + ": read error");
  return bytes;
}

/// libjpeg decodes a truncated JPEG with a warning and grey rows; catch it by its missing end-of-image marker.
void check_complete(const std::string& path, const std::vector<uint8_t>& b) {
  const size_t n = b.size();
  if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) {
    // The marker may be followed by padding; look for it near the end (entropy-coded data never holds FF D9).
    const size_t from = n > 4096 ? n - 4096 : 0;
    for (size_t i = n - 1; i > from; --i) {
      if (b[i - 1] == 0xFF && b[i] == 0xD9) return;
    }
    throw DataError(path + ": truncated or corrupt JPEG (no end-of-image marker)");
  }
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n >= 8 && std::equal(kPng, kPng + 8, b.begin())) {
    static const uint8_t kIend[4] = {'I', 'E', 'N', 'D'};
    if (n < 12 || std::search(b.end() - std::min<size_t>(n, 64), b.end(), kIend, kIend + 4) == b.end()) {
      throw DataError(path + ": truncated or corrupt PNG (no IEND chunk)");
    }
  }
}

uint32_t big_endian(const std::vector<uint8_t>& b, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | b[at + static_cast<size_t>(i)];
  return v;
}

/// Width x height from a PNG's IHDR, a BMP's info header or a JPEG's start-of-frame marker; -1 when the header
/// does not say.
int64_t header_pixels(const std::vector<uint8_t>& b) {
  const size_t n = b.size();
  if (n >= 24 && b[0] == 0x89 && b[1] == 'P') {
    // Each side is below 2^32, so the product fits 64 unsigned bits; clamp it into the signed range.
    const uint64_t pixels = uint64_t{big_endian(b, 16, 4)} * big_endian(b, 20, 4);
    return static_cast<int64_t>(std::min<uint64_t>(pixels, uint64_t{1} << 62));
  }
  if (n >= 26 && b[0] == 'B' && b[1] == 'M') {
    // BITMAPINFOHEADER: width and height as little-endian int32 at 18 and 22 (a negative height is top-down).
    auto le32 = [&](size_t at) {
      return static_cast<int32_t>(uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 | uint32_t{b[at + 2]} << 16 |
                                  uint32_t{b[at + 3]} << 24);
    };
    return std::llabs(int64_t{le32(18)}) * std::llabs(int64_t{le32(22)});
  }
  if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return -1;
  size_t i = 2;
  while (i + 4 <= n) {
    if (b[i] != 0xFF) return -1;
    const uint8_t marker = b[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      i += 2;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return -1;  // scan data or end before any frame header
    const size_t length = big_endian(b, i + 2, 2);
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame && i + 9 <= n) return int64_t{big_endian(b, i + 7, 2)} * int64_t{big_endian(b, i + 5, 2)};
    if (length < 2) return -1;
    i += 2 + length;
  }
  return -1;
}

/// Whether the bytes start like a JPEG, PNG, BMP, PBM/PGM/PPM, TIFF or WebP file. Only these reach OpenCV,
/// which would otherwise hand other bytes to every decoder it was built with (DICOM, JPEG 2000, OpenEXR, ...):
/// the fuzzer made Debian's DICOM reader abort on a file of repeated bytes.
bool known_signature(const std::vector<uint8_t>& b) {
  const size_t n = b.size();
  auto starts = [&](std::initializer_list<uint8_t> sig) {
    return n >= sig.size() && std::equal(sig.begin(), sig.end(), b.begin());
  };
  if (starts({0xFF, 0xD8, 0xFF}) || starts({0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}) || starts({'B', 'M'})) {
    return true;
  }
  if (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' && std::isspace(b[2])) return true;
  if (starts({'I', 'I', 0x2A, 0x00}) || starts({'M', 'M', 0x00, 0x2A})) return true;
  return n >= 12 && starts({'R', 'I', 'F', 'F'}) && b[8] == 'W' && b[9] == 'E' && b[10] == 'B' && b[11] == 'P';
}

/// 8-bit, 3-channel BGR.
cv::Mat decode_bytes(const std::vector<uint8_t>& bytes, const std::string& path) {
  if (bytes.empty()) throw DataError(path + ": empty file, not an image");
  if (!known_signature(bytes)) {
    throw DataError(path + ": cannot decode the image: not a JPEG, PNG, BMP, PBM/PGM/PPM, TIFF or WebP file");
  }
  check_complete(path, bytes);
  const int64_t pixels = header_pixels(bytes);
  if (pixels > kMaxImagePixels) {
    throw DataError(path + ": the header says " + std::to_string(pixels) + " pixels, more than the " +
                    std::to_string(kMaxImagePixels) + " reslab decodes (a corrupt header or not a photo)");
  }
  cv::Mat img;
  try {
    img = cv::imdecode(bytes, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw DataError(path + ": cannot decode the image (" + e.what() + ")");
  }
  if (img.empty() || img.rows <= 0 || img.cols <= 0) {
    throw DataError(path + ": cannot decode the image (corrupt, truncated, or not a " + extension_list() + " image)");
  }
  return img;
}

}  // namespace

cv::Mat decode_bgr(const std::string& path) { return decode_bytes(read_whole_file(path), path); }

DecodedImage decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& name) {
  cv::Mat bgr = decode_bytes(bytes, name);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  DecodedImage out;
  out.height = rgb.rows;
  out.width = rgb.cols;
  out.rgb.resize(static_cast<size_t>(out.height * out.width * 3));
  for (int64_t y = 0; y < out.height; ++y) {
    std::copy_n(rgb.ptr<uint8_t>(static_cast<int>(y)), out.width * 3, out.rgb.data() + y * out.width * 3);
  }
  return out;
}

}  // namespace reslab
