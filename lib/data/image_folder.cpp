#include "data/image_folder.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "data/dataset.h"
#include "data/random.h"

namespace fs = std::filesystem;

namespace reslab {

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> ext = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"};
  return ext;
}

namespace {

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto& known = image_extensions();
  return std::find(known.begin(), known.end(), ext) != known.end();
}

std::string extension_list() {
  std::string s;
  for (const auto& e : image_extensions()) s += (s.empty() ? "" : ", ") + e;
  return s;
}

}  // namespace

ImageFolder scan_image_folder(const std::string& root, const std::vector<std::string>& classes) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    throw DataError(root + ": no such folder (expected an image folder: " + root + "/<class>/<image>.jpg)");
  }
  ImageFolder folder;
  folder.root = root;
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.empty() && name[0] != '.' && entry.is_directory(ec)) found.push_back(name);
  }
  if (ec) throw DataError(root + ": cannot list the folder (" + ec.message() + ")");
  std::sort(found.begin(), found.end());
  if (found.empty()) {
    throw DataError(root + ": no class folders (expected " + root + "/<class>/<image>.jpg, one folder per class)");
  }
  if (!classes.empty() && found != classes) {
    const std::set<std::string> want(classes.begin(), classes.end()), have(found.begin(), found.end());
    std::string missing, extra;
    for (const auto& c : want) {
      if (!have.count(c)) missing += (missing.empty() ? "" : ", ") + c;
    }
    for (const auto& c : have) {
      if (!want.count(c)) extra += (extra.empty() ? "" : ", ") + c;
    }
    throw DataError(root + ": its class folders differ from the training folder's (" +
                    (missing.empty() ? "" : "missing: " + missing) + (missing.empty() || extra.empty() ? "" : "; ") +
                    (extra.empty() ? "" : "not in training: " + extra) + ")");
  }
  folder.classes = found;
  for (size_t label = 0; label < found.size(); ++label) {
    const fs::path dir = fs::path(root) / found[label];
    std::vector<std::string> paths;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec) && is_image_name(it->path())) paths.push_back(it->path().string());
    }
    if (ec) throw DataError(dir.string() + ": cannot list the folder (" + ec.message() + ")");
    if (paths.empty()) {
      throw DataError(dir.string() + ": class folder with no images (expected files ending in " + extension_list() +
                      ")");
    }
    std::sort(paths.begin(), paths.end());
    for (auto& p : paths) folder.files.push_back({std::move(p), static_cast<int64_t>(label)});
  }
  return folder;
}

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

cv::Mat decode_mat(const std::string& path) { return decode_bytes(read_whole_file(path), path); }

/// `img` resized so that its shorter side is `side` (aspect kept).
cv::Mat resize_shorter(const cv::Mat& img, int64_t side) {
  const int64_t h = img.rows, w = img.cols;
  int64_t nh, nw;
  if (h <= w) {
    nh = side;
    nw = std::max<int64_t>(side, (w * side + h / 2) / h);
  } else {
    nw = side;
    nh = std::max<int64_t>(side, (h * side + w / 2) / w);
  }
  if (nh == h && nw == w) return img;
  cv::Mat out;
  cv::resize(img, out, cv::Size(static_cast<int>(nw), static_cast<int>(nh)), 0, 0,
             nh < h ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

/// Where one view of an image goes in a batch tensor, and how it is normalised.
struct Destination {
  float* data;
  int64_t sc, sh, sw;  // strides of channel, row, column (elements)
};

/// Writes the crop x crop window of BGR `img` at (y0, x0), mirrored when `flip`, as normalised RGB.
void write_view(const cv::Mat& img, int64_t y0, int64_t x0, int64_t crop, bool flip, const ChannelStats& stats,
                const Destination& d) {
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * stats.std[c]);
    shift[c] = stats.mean[c] / stats.std[c];
  }
  for (int64_t y = 0; y < crop; ++y) {
    const uint8_t* row = img.ptr<uint8_t>(static_cast<int>(y0 + y));
    for (int64_t x = 0; x < crop; ++x) {
      const uint8_t* px = row + 3 * (x0 + (flip ? crop - 1 - x : x));
      float* out = d.data + y * d.sh + x * d.sw;
      // OpenCV's pixels are B, G, R; the network sees R, G, B.
      out[0] = px[2] * scale[0] - shift[0];
      out[d.sc] = px[1] * scale[1] - shift[1];
      out[2 * d.sc] = px[0] * scale[2] - shift[2];
    }
  }
}

/// A fixed set of threads running queued jobs; queued jobs not started are dropped at destruction.
class WorkerPool {
 public:
  explicit WorkerPool(int64_t n) {
    for (int64_t i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
      jobs_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(m_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (stop_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

int64_t resolve_workers(int64_t workers) {
  if (workers > 0) return workers;
  const unsigned cores = std::thread::hardware_concurrency();
  return cores > 0 ? static_cast<int64_t>(cores) : 1;
}

}  // namespace

DecodedImage decode_image_file(const std::string& path) { return decode_image_bytes(read_whole_file(path), path); }

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

struct ImageFolderLoader::Impl {
  struct Pending {
    torch::Tensor inputs, targets;
    int64_t remaining = 0;
    std::string error;
  };

  std::vector<ImageFile> files;
  ChannelStats stats;
  FolderTransform t;
  LoaderOptions o;
  int64_t crops = 1;
  int64_t epoch = 0;
  std::vector<int64_t> order;
  std::atomic<uint64_t> generation{0};

  std::mutex m;
  std::condition_variable done;
  std::map<int64_t, std::shared_ptr<Pending>> pending;
  // Last member: destroyed first, so no job outlives the state above.
  std::unique_ptr<WorkerPool> pool;

  int64_t batches() const {
    const int64_t n = static_cast<int64_t>(files.size()), b = o.batch;
    return o.drop_last ? n / b : (n + b - 1) / b;
  }

  /// Decodes example `position` of the epoch into views [view0, view0 + crops) of `p`.
  void decode_one(const Pending& p, int64_t row, int64_t position, int64_t file, uint64_t epoch_of_job) const {
    const cv::Mat img = decode_mat(files[static_cast<size_t>(file)].path);
    float* base = p.inputs.data_ptr<float>();
    const auto st = p.inputs.strides();
    auto dest = [&](int64_t view) { return Destination{base + (row * crops + view) * st[0], st[1], st[2], st[3]}; };
    const int64_t crop = t.crop;
    if (o.augment) {
      Rng rng(mix_seed(o.seed ^ mix_seed((epoch_of_job << 32) ^ static_cast<uint64_t>(position)) ^ 0x1a6e));
      const int64_t side = t.scale_min + static_cast<int64_t>(rng.below(static_cast<uint64_t>(t.scale_max - t.scale_min + 1)));
      const cv::Mat r = resize_shorter(img, side);
      const int64_t y0 = static_cast<int64_t>(rng.below(static_cast<uint64_t>(r.rows - crop + 1)));
      const int64_t x0 = static_cast<int64_t>(rng.below(static_cast<uint64_t>(r.cols - crop + 1)));
      const bool flip = rng.below(2) == 1;
      write_view(r, y0, x0, crop, flip, stats, dest(0));
      return;
    }
    const cv::Mat r = resize_shorter(img, t.eval_resize);
    const int64_t cy = (r.rows - crop) / 2, cx = (r.cols - crop) / 2;
    if (crops == 1) {
      write_view(r, cy, cx, crop, false, stats, dest(0));
      return;
    }
    const int64_t ys[5] = {0, 0, r.rows - crop, r.rows - crop, cy};
    const int64_t xs[5] = {0, r.cols - crop, 0, r.cols - crop, cx};
    for (int64_t v = 0; v < 10; ++v) write_view(r, ys[v % 5], xs[v % 5], crop, v >= 5, stats, dest(v));
  }

  /// Queues the decoding of batch `index`; `m` is held.
  void schedule(int64_t index) {
    auto p = std::make_shared<Pending>();
    const int64_t begin = index * o.batch;
    const int64_t count = std::min(o.batch, static_cast<int64_t>(files.size()) - begin);
    p->inputs = torch::empty({count * crops, 3, t.crop, t.crop},
                             torch::TensorOptions().dtype(torch::kFloat32).memory_format(
                                 o.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
    p->targets = torch::empty({count}, torch::kInt64);
    p->remaining = count;
    int64_t* tgt = p->targets.data_ptr<int64_t>();
    const uint64_t gen = generation.load();
    const auto job_epoch = static_cast<uint64_t>(epoch);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t position = begin + i;
      const int64_t file = order[static_cast<size_t>(position)];
      tgt[i] = files[static_cast<size_t>(file)].label;
      pool->submit([this, p, i, position, file, gen, job_epoch] {
        std::string error;
        if (generation.load() == gen) {  // a batch of an epoch left behind is not decoded
          try {
            decode_one(*p, i, position, file, job_epoch);
          } catch (const std::exception& e) {
            error = e.what();
          }
        }
        std::lock_guard<std::mutex> lock(m);
        if (!error.empty() && p->error.empty()) p->error = error;
        if (--p->remaining == 0) done.notify_all();
      });
    }
    pending[index] = p;
  }
};

ImageFolderLoader::ImageFolderLoader(std::vector<ImageFile> files, ChannelStats stats, FolderTransform transform,
                                     LoaderOptions options)
    : impl_(std::make_unique<Impl>()) {
  check_transform(transform);
  TORCH_CHECK(options.batch > 0, "ImageFolderLoader: batch must be positive, got ", options.batch);
  TORCH_CHECK(!files.empty(), "ImageFolderLoader: no images");
  for (int c = 0; c < 3; ++c) {
    TORCH_CHECK(stats.std[c] > 0, "ImageFolderLoader: channel std must be positive");
  }
  // The workers are the parallelism; OpenCV's own pool inside each of them would oversubscribe the cores.
  cv::setNumThreads(0);
  impl_->files = std::move(files);
  impl_->stats = stats;
  impl_->t = transform;
  impl_->o = options;
  impl_->crops = options.augment || options.single_view ? 1 : transform.eval_crops;
  impl_->pool = std::make_unique<WorkerPool>(resolve_workers(transform.workers));
  set_epoch(0);
}

ImageFolderLoader::~ImageFolderLoader() {
  if (impl_) impl_->pool.reset();  // joins the workers before the files and tensors go
}

void ImageFolderLoader::set_epoch(int64_t epoch) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.m);
  ++s.generation;
  s.pending.clear();
  s.epoch = epoch;
  s.order = epoch_order(static_cast<int64_t>(s.files.size()), s.o.shuffle, s.o.seed, epoch);
}

int64_t ImageFolderLoader::batches_per_epoch() const { return impl_->batches(); }
int64_t ImageFolderLoader::size() const { return static_cast<int64_t>(impl_->files.size()); }
int64_t ImageFolderLoader::batch_size() const { return impl_->o.batch; }
int64_t ImageFolderLoader::crops() const { return impl_->crops; }

Batch ImageFolderLoader::batch(int64_t index) const {
  Impl& s = *impl_;
  const int64_t n = s.batches();
  TORCH_CHECK(index >= 0 && index < n, "ImageFolderLoader: batch ", index, " out of range");
  std::unique_lock<std::mutex> lock(s.m);
  if (!s.pending.count(index)) s.schedule(index);
  for (int64_t j = 1; j <= s.t.prefetch && index + j < n; ++j) {
    if (!s.pending.count(index + j)) s.schedule(index + j);
  }
  auto p = s.pending.at(index);
  s.done.wait(lock, [&] { return p->remaining == 0; });
  // This batch and any left behind are done with; those ahead stay queued.
  s.pending.erase(s.pending.begin(), s.pending.upper_bound(index));
  if (!p->error.empty()) throw DataError(p->error);
  return {p->inputs, p->targets, s.crops};
}

ChannelStats channel_stats(const std::vector<ImageFile>& files, const FolderTransform& t, int64_t max_images,
                           uint64_t seed) {
  TORCH_CHECK(!files.empty() && max_images > 0, "channel_stats: no images");
  const auto n = static_cast<int64_t>(files.size());
  const int64_t count = std::min(n, max_images);
  std::vector<ImageFile> sample;
  const std::vector<int64_t> perm = permutation(n, mix_seed(seed ^ 0x57a75));
  for (int64_t i = 0; i < count; ++i) sample.push_back(files[static_cast<size_t>(perm[static_cast<size_t>(i)])]);
  FolderTransform view = t;
  view.eval_crops = 1;
  LoaderOptions o;
  o.batch = 32;
  o.shuffle = o.augment = o.drop_last = false;
  o.channels_last = false;
  ImageFolderLoader loader(std::move(sample), ChannelStats{}, view, o);
  auto sum = torch::zeros({3}, torch::kFloat64), sq = torch::zeros({3}, torch::kFloat64);
  for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
    const auto x = loader.batch(b).inputs.to(torch::kFloat64);
    sum += x.sum({0, 2, 3});
    sq += x.square().sum({0, 2, 3});
  }
  const double per_channel = static_cast<double>(count * t.crop * t.crop);
  const auto mean = sum / per_channel;
  const auto var = (sq / per_channel - mean.square()).clamp_min(0);
  ChannelStats stats;
  for (int c = 0; c < 3; ++c) {
    stats.mean[c] = static_cast<float>(mean[c].item<double>());
    // A folder of flat images has no spread; keep the scale finite.
    stats.std[c] = static_cast<float>(std::max(std::sqrt(var[c].item<double>()), 1e-3));
  }
  return stats;
}

}  // namespace reslab
