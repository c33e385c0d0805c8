#include "data/image_folder.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

#include "data/dataset.h"
#include "data/image_decode_cv.h"
#include "data/random.h"
#include "data/worker_pool.h"

namespace fs = std::filesystem;

namespace reslab {

namespace {

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto& known = image_extensions();
  return std::find(known.begin(), known.end(), ext) != known.end();
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

namespace {

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

}  // namespace

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
  /// The rows of each batch that are decoded: [row_first, row_last) of it (row_last -1: to its end). A
  /// data-parallel rank asks for its share only, so it decodes no other rank's images.
  int64_t row_first = 0, row_last = -1;
  // Last member: destroyed first, so no job outlives the state above.
  std::unique_ptr<WorkerPool> pool;

  int64_t batches() const { return batches_in_epoch(static_cast<int64_t>(files.size()), o.batch, o.drop_last); }

  /// Decodes example `position` of the epoch into views [view0, view0 + crops) of `p`.
  void decode_one(const Pending& p, int64_t row, int64_t position, int64_t file, uint64_t epoch_of_job) const {
    const cv::Mat img = decode_bgr(files[static_cast<size_t>(file)].path);
    float* base = p.inputs.data_ptr<float>();
    const auto st = p.inputs.strides();
    auto dest = [&](int64_t view) { return Destination{base + (row * crops + view) * st[0], st[1], st[2], st[3]}; };
    const int64_t crop = t.crop;
    if (o.augment) {
      Rng rng(mix_seed(o.seed ^ mix_seed((epoch_of_job << 32) ^ static_cast<uint64_t>(position)) ^ 0x1a6e));
      const int64_t side =
          t.scale_min + static_cast<int64_t>(rng.below(static_cast<uint64_t>(t.scale_max - t.scale_min + 1)));
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
    const int64_t full = std::min(o.batch, static_cast<int64_t>(files.size()) - index * o.batch);
    const int64_t begin = index * o.batch + row_first;
    const int64_t count = (row_last < 0 ? full : std::min(row_last, full)) - row_first;
    p->inputs = torch::empty(
        {count * crops, 3, t.crop, t.crop},
        torch::TensorOptions()
            .dtype(torch::kFloat32)
            .memory_format(o.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
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

Batch ImageFolderLoader::batch(int64_t index) const { return fetch(index, 0, -1); }

Batch ImageFolderLoader::rows(int64_t index, int64_t first, int64_t last) const { return fetch(index, first, last); }

Batch ImageFolderLoader::fetch(int64_t index, int64_t first, int64_t last) const {
  Impl& s = *impl_;
  const int64_t n = s.batches();
  TORCH_CHECK(index >= 0 && index < n, "ImageFolderLoader: batch ", index, " out of range");
  const int64_t full = std::min(s.o.batch, static_cast<int64_t>(s.files.size()) - index * s.o.batch);
  TORCH_CHECK(0 <= first && (last < 0 || (first <= last && last <= full)), "ImageFolderLoader: rows [", first, ", ",
              last, ") of a batch of ", full);
  std::unique_lock<std::mutex> lock(s.m);
  if (first != s.row_first || last != s.row_last) {
    // Another share of the batches: what was prefetched for the old one is dropped.
    ++s.generation;
    s.pending.clear();
    s.row_first = first;
    s.row_last = last;
  }
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
