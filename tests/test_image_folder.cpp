// Image folders: scanning, the paper's ImageNet transforms (scale augmentation, crops, flips, 10-crop), per-
// channel normalisation, worker-thread decoding, corrupt files, splits, multi-crop evaluation and a whole run.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/datasets.h"
#include "data/image_folder.h"
#include "experiment/runner.h"
#include "models/registry.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace reslab {
namespace {

using testing::expect_error;
using testing::TempDir;

/// An image whose red channel rises with x (2x), green with y (4y), blue is constant: every view of it says
/// where it was cut from and whether it was mirrored. OpenCV stores B, G, R.
cv::Mat gradient_image(int h, int w, int blue = 77) {
  cv::Mat img(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x)
      img.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uint8_t>(blue), static_cast<uint8_t>(4 * y), static_cast<uint8_t>(2 * x));
  }
  return img;
}

void write_image(const std::string& path, const cv::Mat& img) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_TRUE(cv::imwrite(path, img)) << path;
}

/// root/<class>/i.png for classes a, b, c with `per_class` images each; image i of class k has blue = 10k + i.
void write_folder(const std::string& root, int per_class, int h = 40, int w = 60) {
  const char* classes[] = {"a", "b", "c"};
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < per_class; ++i) {
      write_image(root + "/" + classes[k] + "/" + std::to_string(i) + ".png", gradient_image(h, w, 10 * k + i));
    }
  }
}

FolderTransform small_transform() {
  FolderTransform t;
  t.crop = 16;
  t.scale_min = 20;
  t.scale_max = 30;
  t.eval_resize = 20;
  t.workers = 2;
  return t;
}

LoaderOptions eval_options(int64_t batch) {
  LoaderOptions o;
  o.batch = batch;
  o.shuffle = o.augment = o.drop_last = false;
  return o;
}

TEST(ImageFolder, ScansClassesInOrderWithNestedFoldersAndIgnoresOtherFiles) {
  TempDir dir;
  write_image(dir.file("zebra/1.png"), gradient_image(8, 8));
  write_image(dir.file("ant/images/2.JPG"), gradient_image(8, 8));  // nested, upper-case extension
  write_image(dir.file("ant/1.png"), gradient_image(8, 8));
  testing::write_bytes(dir.file("ant/boxes.txt"), {'x'});
  fs::create_directories(dir.file(".cache/x"));
  const ImageFolder f = scan_image_folder(dir.path());
  ASSERT_EQ(f.classes, (std::vector<std::string>{"ant", "zebra"}));
  ASSERT_EQ(f.files.size(), 3u);
  EXPECT_EQ(f.files[0].path, dir.file("ant/1.png"));
  EXPECT_EQ(f.files[1].path, dir.file("ant/images/2.JPG"));
  EXPECT_EQ(f.files[0].label, 0);
  EXPECT_EQ(f.files[2].label, 1);
}

TEST(ImageFolder, BadFoldersAreErrorsNamingTheFolder) {
  TempDir dir;
  expect_error<DataError>([&] { scan_image_folder(dir.file("nope")); }, {dir.file("nope"), "no such folder"});
  expect_error<DataError>([&] { scan_image_folder(dir.path()); }, {dir.path(), "no class folders"});
  write_image(dir.file("a/1.png"), gradient_image(8, 8));
  fs::create_directories(dir.file("b/sub"));
  testing::write_bytes(dir.file("b/sub/readme.txt"), {'x'});
  expect_error<DataError>([&] { scan_image_folder(dir.path()); }, {dir.file("b"), "class folder with no images"});
  fs::remove_all(dir.file("b"));
  expect_error<DataError>([&] { scan_image_folder(dir.path(), {"a", "b"}); }, {dir.path(), "missing: b"});
  expect_error<DataError>([&] { scan_image_folder(dir.path(), {"x"}); }, {"missing: x", "not in training: a"});
}

TEST(ImageFolder, CenterCropIsTheMiddleOfTheResizedImageInRgbOrder) {
  TempDir dir;
  write_image(dir.file("a/0.png"), gradient_image(40, 60));
  // 40 x 60 -> shorter side 20: 20 x 30, an exact 2x2 average; pixel (y, x) has R = 4x + 1, G = 8y + 2, B = 77.
  FolderTransform t = small_transform();
  ImageFolderLoader loader({{dir.file("a/0.png"), 0}}, ChannelStats{}, t, eval_options(1));
  const Batch b = loader.batch(0);
  ASSERT_EQ(b.inputs.sizes(), (std::vector<int64_t>{1, 3, 16, 16}));
  EXPECT_EQ(b.crops, 1);
  const int64_t y0 = 2, x0 = 7;  // (20 - 16) / 2, (30 - 16) / 2
  for (int64_t y : {0, 5, 15}) {
    for (int64_t x : {0, 9, 15}) {
      EXPECT_FLOAT_EQ(b.inputs[0][0][y][x].item<float>(), (4 * (x0 + x) + 1) / 255.0f) << y << "," << x;
      EXPECT_FLOAT_EQ(b.inputs[0][1][y][x].item<float>(), (8 * (y0 + y) + 2) / 255.0f);
      EXPECT_FLOAT_EQ(b.inputs[0][2][y][x].item<float>(), 77 / 255.0f);
    }
  }
}

TEST(ImageFolder, TenCropIsFourCornersCentreAndTheirMirrors) {
  TempDir dir;
  write_image(dir.file("a/0.png"), gradient_image(40, 60));
  FolderTransform t = small_transform();
  t.eval_crops = 10;
  ImageFolderLoader loader({{dir.file("a/0.png"), 0}}, ChannelStats{}, t, eval_options(1));
  const Batch b = loader.batch(0);
  ASSERT_EQ(b.inputs.size(0), 10);
  EXPECT_EQ(b.crops, 10);
  EXPECT_EQ(b.targets.size(0), 1);
  const int64_t ys[5] = {0, 0, 4, 4, 2}, xs[5] = {0, 14, 0, 14, 7};
  for (int64_t v = 0; v < 10; ++v) {
    const bool flip = v >= 5;
    const int64_t y0 = ys[v % 5], x0 = xs[v % 5];
    // Top-left pixel of the view: the window's top-left, or its top-right when mirrored.
    const int64_t sx = x0 + (flip ? 15 : 0);
    EXPECT_FLOAT_EQ(b.inputs[v][0][0][0].item<float>(), (4 * sx + 1) / 255.0f) << "view " << v;
    EXPECT_FLOAT_EQ(b.inputs[v][1][0][0].item<float>(), (8 * y0 + 2) / 255.0f) << "view " << v;
  }
  // A single-view loader of the same transform gives the centre crop only.
  LoaderOptions o = eval_options(1);
  o.single_view = true;
  ImageFolderLoader single({{dir.file("a/0.png"), 0}}, ChannelStats{}, t, o);
  EXPECT_TRUE(torch::equal(single.batch(0).inputs[0], b.inputs[4]));
}

TEST(ImageFolder, NormalisesPerChannel) {
  TempDir dir;
  write_image(dir.file("a/0.png"), gradient_image(40, 60));
  ChannelStats stats;
  stats.mean = {0.5f, 0.25f, 0.1f};
  stats.std = {0.5f, 0.2f, 0.25f};
  ImageFolderLoader raw({{dir.file("a/0.png"), 0}}, ChannelStats{}, small_transform(), eval_options(1));
  ImageFolderLoader norm({{dir.file("a/0.png"), 0}}, stats, small_transform(), eval_options(1));
  const auto m = torch::tensor({0.5f, 0.25f, 0.1f}).view({3, 1, 1}),
             s = torch::tensor({0.5f, 0.2f, 0.25f}).view({3, 1, 1});
  EXPECT_TRUE(torch::allclose(norm.batch(0).inputs[0], (raw.batch(0).inputs[0] - m) / s, 1e-5, 1e-5));
}

TEST(ImageFolder, ChannelStatisticsOfKnownImages) {
  TempDir dir;
  std::vector<ImageFile> files;
  for (int i = 0; i < 6; ++i) {
    // Half pure red, half pure blue: R and B have mean 1/2 and std 1/2, G is 0.
    const cv::Scalar colour = i % 2 == 0 ? cv::Scalar(0, 0, 255) : cv::Scalar(255, 0, 0);
    write_image(dir.file("a/" + std::to_string(i) + ".png"), cv::Mat(24, 30, CV_8UC3, colour));
    files.push_back({dir.file("a/" + std::to_string(i) + ".png"), 0});
  }
  const ChannelStats st = channel_stats(files, small_transform(), 100, 0);
  EXPECT_NEAR(st.mean[0], 0.5, 1e-6);
  EXPECT_NEAR(st.mean[1], 0.0, 1e-6);
  EXPECT_NEAR(st.mean[2], 0.5, 1e-6);
  EXPECT_NEAR(st.std[0], 0.5, 1e-6);
  EXPECT_NEAR(st.std[2], 0.5, 1e-6);
  EXPECT_GT(st.std[1], 0.0);  // a flat channel keeps a finite scale
}

TEST(ImageFolder, TrainingViewsAreCropsOfARescaledImageAndHalfAreMirrored) {
  TempDir dir;
  std::vector<ImageFile> files;
  for (int i = 0; i < 24; ++i) {
    write_image(dir.file("a/" + std::to_string(i) + ".png"), gradient_image(40, 60));
    files.push_back({dir.file("a/" + std::to_string(i) + ".png"), 0});
  }
  LoaderOptions o;
  o.batch = 24;
  o.augment = true;
  o.seed = 5;
  ImageFolderLoader loader(files, ChannelStats{}, small_transform(), o);
  const Batch b = loader.batch(0);
  ASSERT_EQ(b.inputs.sizes(), (std::vector<int64_t>{24, 3, 16, 16}));
  int mirrored = 0;
  std::set<float> steps;
  for (int64_t i = 0; i < 24; ++i) {
    // Red rises by the same step per pixel to the right (falls when mirrored); the step says the scale:
    // 60 px resized to 30..45 px gives 2 * 60 / width per pixel, between 2.67 and 4 (in units of 1/255).
    const auto red = b.inputs[i][0][8];
    const float step = (red[15].item<float>() - red[0].item<float>()) * 255.0f / 15.0f;
    if (step < 0) ++mirrored;
    EXPECT_GE(std::abs(step), 2.6f) << i;
    EXPECT_LE(std::abs(step), 4.1f) << i;
    steps.insert(std::round(std::abs(step) * 10.0f));
    EXPECT_NEAR(b.inputs[i][2][3][3].item<float>(), 77 / 255.0f, 1e-6);
  }
  EXPECT_GT(mirrored, 3);
  EXPECT_LT(mirrored, 21);
  EXPECT_GT(steps.size(), 3u);  // several scales were drawn
}

TEST(ImageFolder, BatchesDependOnlyOnSeedEpochAndIndexNotOnThreadsOrOrder) {
  TempDir dir;
  std::vector<ImageFile> files;
  for (int i = 0; i < 20; ++i) {
    write_image(dir.file("a/" + std::to_string(i) + ".png"), gradient_image(30 + i, 50, i));
    files.push_back({dir.file("a/" + std::to_string(i) + ".png"), i % 4});
  }
  LoaderOptions o;
  o.batch = 6;
  o.augment = true;
  o.seed = 9;
  FolderTransform one = small_transform(), three = small_transform();
  one.workers = 1;
  one.prefetch = 0;
  three.workers = 3;
  three.prefetch = 3;
  ImageFolderLoader a(files, ChannelStats{}, one, o), b(files, ChannelStats{}, three, o);
  EXPECT_EQ(a.batches_per_epoch(), 3);
  a.set_epoch(2);
  b.set_epoch(2);
  const Batch b2 = b.batch(2), b0 = b.batch(0), b1 = b.batch(1);
  const Batch a0 = a.batch(0), a1 = a.batch(1), a2 = a.batch(2);
  EXPECT_TRUE(torch::equal(a0.inputs, b0.inputs));
  EXPECT_TRUE(torch::equal(a1.inputs, b1.inputs));
  EXPECT_TRUE(torch::equal(a2.inputs, b2.inputs));
  EXPECT_TRUE(torch::equal(a2.targets, b2.targets));
  // Another epoch draws another order and other views.
  b.set_epoch(3);
  EXPECT_FALSE(torch::equal(b.batch(0).inputs, a0.inputs));
  // Every example once per epoch.
  std::multiset<int64_t> seen;
  for (int64_t i = 0; i < 3; ++i) {
    const auto t = a.batch(i).targets;
    for (int64_t j = 0; j < t.size(0); ++j) seen.insert(t[j].item<int64_t>());
  }
  EXPECT_EQ(seen.size(), 18u);
  // A data-parallel rank's share: only those rows decoded, each with the view it has in the whole batch.
  b.set_epoch(2);
  const Batch share = b.rows(1, 2, 5);
  EXPECT_TRUE(torch::equal(share.inputs, a1.inputs.narrow(0, 2, 3)));
  EXPECT_TRUE(torch::equal(share.targets, a1.targets.narrow(0, 2, 3)));
  EXPECT_TRUE(torch::equal(b.rows(2, 0, 3).inputs, a2.inputs.narrow(0, 0, 3)));
  EXPECT_TRUE(torch::equal(b.batch(0).inputs, a0.inputs));  // and back to whole batches
}

TEST(ImageFolder, CorruptFilesAreReportedByPath) {
  TempDir dir;
  write_image(dir.file("a/good.png"), gradient_image(40, 60));
  write_image(dir.file("a/good.jpg"), gradient_image(40, 60));
  testing::write_bytes(dir.file("a/text.jpg"), {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  testing::write_bytes(dir.file("a/empty.png"), {});
  for (const char* name : {"good.jpg", "good.png"}) {
    // Truncated copies: half the bytes.
    std::ifstream in(dir.file(std::string("a/") + name), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes.resize(bytes.size() / 2);
    testing::write_bytes(dir.file(std::string("a/cut_") + name), bytes);
  }
  auto load = [&](const std::string& name) {
    ImageFolderLoader loader({{dir.file("a/good.png"), 0}, {dir.file(name), 0}}, ChannelStats{}, small_transform(),
                             eval_options(2));
    return loader.batch(0);
  };
  EXPECT_NO_THROW(load("a/good.jpg"));
  expect_error<DataError>([&] { load("a/text.jpg"); }, {dir.file("a/text.jpg"), "cannot decode"});
  expect_error<DataError>([&] { load("a/empty.png"); }, {dir.file("a/empty.png"), "empty file"});
  expect_error<DataError>([&] { load("a/cut_good.jpg"); }, {dir.file("a/cut_good.jpg"), "truncated"});
  expect_error<DataError>([&] { load("a/cut_good.png"); }, {dir.file("a/cut_good.png"), "truncated"});
  expect_error<DataError>([&] { load("a/gone.png"); }, {dir.file("a/gone.png"), "cannot open"});
  // An image smaller than the crop is resized up to it, not read out of bounds.
  write_image(dir.file("a/tiny.png"), gradient_image(3, 5));
  EXPECT_EQ(load("a/tiny.png").inputs.size(2), 16);
}

TEST(ImageFolder, AHeaderAskingForGigapixelsIsRejectedBeforeDecoding) {
  cv::Mat img = gradient_image(9, 12);
  std::vector<uint8_t> png, jpg;
  ASSERT_TRUE(cv::imencode(".png", img, png));
  ASSERT_TRUE(cv::imencode(".jpg", img, jpg));
  EXPECT_EQ(decode_image_bytes(png, "ok.png").width, 12);
  EXPECT_EQ(decode_image_bytes(jpg, "ok.jpg").height, 9);
  // PNG: IHDR's width and height (bytes 16..23) set to 40000 x 40000.
  for (size_t i : {16u, 20u}) {
    png[i] = 0;
    png[i + 1] = 0;
    png[i + 2] = 0x9C;
    png[i + 3] = 0x40;
  }
  expect_error<DataError>([&] { decode_image_bytes(png, "huge.png"); }, {"huge.png", "1600000000 pixels", "more than"});
  // JPEG: the start-of-frame marker's height and width set to 65535.
  size_t sof = 2;
  while (sof + 1 < jpg.size() && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) ++sof;
  ASSERT_LT(sof + 9, jpg.size());
  for (size_t i = sof + 5; i < sof + 9; ++i) jpg[i] = 0xFF;
  expect_error<DataError>([&] { decode_image_bytes(jpg, "huge.jpg"); }, {"huge.jpg", "4294836225 pixels"});
  // BMP: width 30000, height -30000 (top-down) in the info header.
  std::vector<uint8_t> bmp;
  ASSERT_TRUE(cv::imencode(".bmp", img, bmp));
  EXPECT_EQ(decode_image_bytes(bmp, "ok.bmp").width, 12);
  const int32_t w = 30000, h = -30000;
  std::memcpy(&bmp[18], &w, 4);
  std::memcpy(&bmp[22], &h, 4);
  expect_error<DataError>([&] { decode_image_bytes(bmp, "huge.bmp"); }, {"huge.bmp", "900000000 pixels"});
}

TEST(ImageFolder, ImpossibleTransformsAreRejectedByField) {
  FolderTransform t = small_transform();
  t.scale_min = 10;
  expect_error<std::invalid_argument>([&] { check_transform(t); }, {"scale_min 10", "at least the crop (16)"});
  t = small_transform();
  t.eval_crops = 5;
  expect_error<std::invalid_argument>([&] { check_transform(t); }, {"eval_crops 5", "1 (centre crop) or 10"});
  t = small_transform();
  t.scale_max = 19;
  expect_error<std::invalid_argument>([&] { check_transform(t); }, {"scale_max 19"});
}

TEST(ImageFolder, SplitsHoldOutValidationAndTestOnTheValFolder) {
  TempDir dir;
  write_folder(dir.file("train"), 6);
  write_folder(dir.file("val"), 2);
  SplitOptions split;
  split.val_size = 3;
  split.test_size = 4;
  const FolderSplits s = prepare_folder_splits(dir.path(), split, small_transform());
  EXPECT_EQ(s.classes(), 3);
  EXPECT_EQ(s.size(Part::kTrain), 15);
  EXPECT_EQ(s.size(Part::kVal), 3);
  EXPECT_EQ(s.size(Part::kTest), 4);
  std::set<std::string> train_paths;
  for (const auto& f : s.train) train_paths.insert(f.path);
  for (const auto& f : s.val) EXPECT_FALSE(train_paths.count(f.path)) << f.path;
  for (const auto& f : s.test) EXPECT_NE(f.path.find("/val/"), std::string::npos);
  EXPECT_EQ(s.height(), 16);

  testing::expect_error<std::invalid_argument>(
      [&] {
        SplitOptions too_many;
        too_many.test_size = 7;
        prepare_folder_splits(dir.path(), too_many, small_transform());
      },
      {"test_size 7", "0..6"});
  fs::remove_all(dir.file("val/c"));
  expect_error<DataError>([&] { prepare_folder_splits(dir.path(), {}, small_transform()); }, {"missing: c"});
  fs::remove_all(dir.file("val"));
  expect_error<DataError>([&] { prepare_folder_splits(dir.path(), {}, small_transform()); },
                          {dir.file("val"), "no such folder"});
  expect_error<std::invalid_argument>([&] { prepare_folder_splits("", {}, small_transform()); }, {"--data"});
}

TEST(ImageFolder, ClassIndexAndFixedStatisticsServeANetTrainedElsewhere) {
  // A 1000-class net read on a folder of three of its classes (as ImageNet's on Imagenette): each folder is the
  // output its index names, and the inputs are normalised with the net's own statistics, not estimated ones.
  TempDir dir;
  write_folder(dir.file("train"), 2);
  write_folder(dir.file("val"), 1);
  FolderTransform t = small_transform();
  t.classes = 1000;
  t.class_index = {{"a", 0}, {"b", 217}, {"c", 701}};
  t.mean = {0.485, 0.456, 0.406};
  t.std = {0.229, 0.224, 0.225};
  const FolderSplits s = prepare_folder_splits(dir.path(), {}, t);
  EXPECT_EQ(s.classes(), 1000);
  std::set<int64_t> train_labels, test_labels;
  for (const auto& f : s.train) {
    train_labels.insert(f.label);
    const int64_t expected = f.path.find("/a/") != std::string::npos   ? 0
                             : f.path.find("/b/") != std::string::npos ? 217
                                                                       : 701;
    EXPECT_EQ(f.label, expected) << f.path;
  }
  for (const auto& f : s.test) test_labels.insert(f.label);
  EXPECT_EQ(train_labels, (std::set<int64_t>{0, 217, 701}));
  EXPECT_EQ(test_labels, train_labels);
  EXPECT_FLOAT_EQ(s.stats.mean[1], 0.456f);
  EXPECT_FLOAT_EQ(s.stats.std[2], 0.225f);
  LoaderOptions eval;
  eval.batch = 3;
  eval.shuffle = false;
  eval.drop_last = false;
  const auto batch = s.loader(Part::kTest, eval)->batch(0);
  const auto targets = batch.targets.contiguous();
  EXPECT_EQ(std::set<int64_t>(targets.data_ptr<int64_t>(), targets.data_ptr<int64_t>() + 3),
            (std::set<int64_t>{0, 217, 701}));

  // Without the index, a folder of fewer classes than the net's outputs is an error that says what to give.
  FolderTransform no_index = t;
  no_index.class_index.clear();
  expect_error<DataError>([&] { prepare_folder_splits(dir.path(), {}, no_index); },
                          {"3 class folders", "data.classes is 1000", "data.class_index"});
  FolderTransform partial = t;
  partial.class_index.erase("c");
  expect_error<DataError>([&] { prepare_folder_splits(dir.path(), {}, partial); },
                          {dir.file("train") + "/c", "does not name"});
  FolderTransform out_of_range = t;
  out_of_range.class_index["c"] = 1000;
  expect_error<std::invalid_argument>([&] { check_transform(out_of_range); }, {"class_index", "0 to 999", "'c'"});
  FolderTransform twice = t;
  twice.class_index["c"] = 217;
  expect_error<std::invalid_argument>([&] { check_transform(twice); }, {"'b' and 'c' are both 217"});
  FolderTransform half = t;
  half.std.clear();
  expect_error<std::invalid_argument>([&] { check_transform(half); }, {"mean and std given together"});
}

TEST(ImageFolder, MultiCropEvaluationAveragesTheSoftmaxOverViews) {
  TempDir dir;
  write_folder(dir.file("x"), 2);
  std::vector<ImageFile> files = scan_image_folder(dir.file("x")).files;
  FolderTransform t = small_transform();
  t.eval_crops = 10;
  ImageFolderLoader ten(files, ChannelStats{}, t, eval_options(4));
  torch::manual_seed(0);
  auto net = build_model("resnet8", ModelSpec{{3, 16, 16}, 3, Shortcut::A});
  net->eval();
  const EvalResult r = evaluate(*net, ten);
  EXPECT_EQ(r.examples, 6);
  // By hand: the mean of the ten softmaxes.
  double loss = 0.0;
  int64_t wrong = 0;
  torch::NoGradGuard no_grad;
  for (int64_t b = 0; b < ten.batches_per_epoch(); ++b) {
    const Batch batch = ten.batch(b);
    const auto p = torch::softmax(net->forward(batch.inputs), 1).view({-1, 10, 3}).mean(1);
    for (int64_t i = 0; i < p.size(0); ++i) {
      const int64_t target = batch.targets[i].item<int64_t>();
      loss -= std::log(p[i][target].item<double>());
      wrong += p[i].argmax().item<int64_t>() != target;
    }
  }
  EXPECT_NEAR(r.loss, loss / 6, 1e-5);
  EXPECT_NEAR(r.error, 100.0 * wrong / 6, 1e-9);
}

TEST(ImageFolder, ARunTrainsOnAFolderAndEvaluatesTenCrops) {
  torch::set_num_threads(2);
  TempDir dir;
  write_folder(dir.file("data/train"), 8, 36, 44);
  write_folder(dir.file("data/val"), 3, 36, 44);
  RunConfig run;
  run.name = "folder";
  run.model.name = "resnet8";
  run.data.dataset = "image-folder";
  run.data.dir = dir.file("data");
  run.data.split.val_size = 3;
  run.data.folder = small_transform();
  run.data.folder.eval_crops = 10;
  run.optim.batch = 7;
  run.train.eval_batch = 5;
  run.optim.iterations = 6;
  run.optim.sgd.lr = 0.05;
  run.train.log_every = 3;
  DataCache cache;
  RunOptions options;
  const auto summary = train_run(run, dir.file("out"), cache, options);
  EXPECT_EQ(summary.at("status"), "completed");
  EXPECT_EQ(summary.at("train_examples"), 21);
  EXPECT_EQ(summary.at("iterations"), 6);
  EXPECT_TRUE(summary.at("final").at("test_error").is_number());
  EXPECT_TRUE(summary.at("final").at("val_error").is_number());
  const auto config = read_json_file(dir.file("out/config.json"));
  EXPECT_EQ(config.at("data").at("eval_crops"), 10);
  EXPECT_EQ(config.at("data").at("scale"), nlohmann::json({20, 30}));
  // The trained model evaluated again on the test part gives the run's figure.
  torch::manual_seed(run.seed);
  auto net = build_model(run.model.name, ModelSpec{{3, 16, 16}, 3, Shortcut::A});
  load_model_file(dir.file("out/model.pt"), *net);
  to_channels_last(*net);
  const auto data = open_run_data(run, cache, run.optim.batch, 0);
  EXPECT_NEAR(evaluate(*net, *data.test).error, summary.at("final").at("test_error").get<double>(), 1e-9);
}

}  // namespace
}  // namespace reslab
