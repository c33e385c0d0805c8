// The training loop on real data: the error falls, seeded runs repeat exactly, non-finite losses end a run.
#include "data/datasets.h"
#include "experiment/runner.h"
#include "models/registry.h"
#include "ops/torch_compat.h"
#include "optim/sgd.h"
#include "test_callbacks.h"
#include "test_util.h"
#include "train/callbacks.h"
#include "train/device.h"
#include "train/interrupt.h"
#include "train/precision.h"

namespace reslab {
namespace {

using testing::TempDir;

/// 32 iterations an epoch, 3 epochs, lr / 10 for the last one (the final weights settle).
RunConfig small_run(const std::string& model) { return testing::fashion_run(model, 2048, 500, 64, 3, 4); }

class TrainerTest : public testing::SeededTest {
 protected:
  DataCache data_;
};

TEST_F(TrainerTest, TrainingErrorFallsOnFashionMnist) {
  TempDir dir;
  const auto summary = train_run(small_run("resnet8"), dir.path(), data_, RunOptions{});
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["iterations"], 96);
  auto records = read_jsonl_file(dir.file("metrics.jsonl"));
  std::vector<double> train_errors;
  int evals = 0;
  for (const auto& r : records) {
    ASSERT_TRUE(r.contains("kind") && r.contains("iter") && r.contains("epoch"));
    if (r["kind"] == "train") train_errors.push_back(r["error"].get<double>());
    if (r["kind"] == "eval") {
      EXPECT_EQ(r["split"], "test");
      ++evals;
    }
  }
  ASSERT_GE(train_errors.size(), 20u);
  // From chance (90%) to well below it within three epochs of 2048 images.
  EXPECT_GT(train_errors.front(), 70.0);
  EXPECT_LT(train_errors.back(), train_errors.front() - 35.0);
  EXPECT_EQ(evals, 3);  // after each epoch; the final one is not repeated
  EXPECT_LT(summary["final"]["test_error"].get<double>(), 35.0);
  EXPECT_LT(summary["final"]["train_error"].get<double>(), 40.0);
  EXPECT_TRUE(summary["final"]["val_error"].is_null());
  EXPECT_TRUE(std::filesystem::exists(dir.file("model.pt")));
}

TEST_F(TrainerTest, SameSeedSameMetrics) {
  auto run = small_run("plain8");
  run.optim.epochs = 1;
  TempDir a;
  const std::string second = a.file("again");
  train_run(run, a.path(), data_, RunOptions{});
  train_run(run, second, data_, RunOptions{});
  run.seed = 2;
  const std::string third = a.file("other_seed");
  train_run(run, third, data_, RunOptions{});
  auto strip = [](std::vector<nlohmann::json> records) {
    for (auto& r : records) r.erase("img_per_s");
    return records;
  };
  const auto m1 = strip(read_jsonl_file(a.file("metrics.jsonl")));
  const auto m2 = strip(read_jsonl_file(second + "/metrics.jsonl"));
  const auto m3 = strip(read_jsonl_file(third + "/metrics.jsonl"));
  ASSERT_FALSE(m1.empty());
  EXPECT_EQ(m1, m2);
  EXPECT_NE(m1, m3);
}

TEST_F(TrainerTest, NonFiniteLossEndsTheRunAsDivergedAtItsIteration) {
  torch::manual_seed(0);
  auto model = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
  auto images = torch::randint(0, 256, {64, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  ImageDataset data(images, torch::randint(0, 10, {64}, torch::kInt64), 10);
  LoaderOptions o;
  o.batch = 8;  // 8 iterations an epoch: windows end at 5, then at the epoch end 8
  BatchLoader loader(data, torch::zeros({1, 8, 8}), o);
  auto optimizer = make_sgd(model->parameters(), SgdConfig{});
  TempDir dir;
  JsonlWriter metrics(dir.file("m.jsonl"));
  TrainContext ctx{*model, *optimizer, loader, &metrics, {}};
  Trainer trainer(ctx, /*total_iters=*/40, /*log_every=*/5);
  trainer.add(std::make_shared<TrainRecordCallback>());
  trainer.add(std::make_shared<testing::PoisonAt>(7));
  trainer.run();
  EXPECT_EQ(ctx.state.status, RunStatus::kDiverged);
  ASSERT_TRUE(ctx.state.diverged_at.has_value());
  EXPECT_EQ(*ctx.state.diverged_at, 7);
  EXPECT_EQ(ctx.state.iter, 6);
  EXPECT_TRUE(ctx.state.last_finite_loss.has_value());
  // The records stop at the last finite window: iterations 5 and the partial window 6.
  auto records = read_jsonl_file(dir.file("m.jsonl"));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records.back()["iter"], 6);
  EXPECT_TRUE(std::isfinite(records.back()["loss"].get<double>()));
}

TEST_F(TrainerTest, ClippingBoundsTheGradientOfEachStep) {
  // Plain SGD (no momentum, no weight decay): one step moves the weights by lr x the gradient, so with
  // clipping the whole move is at most lr x the clip norm, and without it far more.
  auto moved = [](double clip) {
    torch::manual_seed(0);
    auto model = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
    SgdConfig sgd;
    sgd.momentum = 0;
    sgd.weight_decay = 0;
    auto optimizer = make_sgd(model->parameters(), sgd);
    std::vector<torch::Tensor> before;
    for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
    const auto x = torch::randn({16, 1, 8, 8});
    const auto y = torch::randint(0, 10, {16}, torch::kInt64);
    train_step(*model, *optimizer, x, y, nullptr, {}, clip);
    double squares = 0;
    const auto params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i) squares += (params[i].detach() - before[i]).pow(2).sum().item<double>();
    return std::sqrt(squares);
  };
  const double free = moved(0.0);
  const double clipped = moved(1e-3);
  EXPECT_GT(free, 0.01);
  EXPECT_LE(clipped, 0.1 * 1e-3 * (1 + 1e-4));
  EXPECT_GT(clipped, 0.1 * 1e-3 * 0.99);  // the clipped gradient has exactly the clip norm
}

TEST_F(TrainerTest, Bf16AutocastComputesTheForwardPassInBfloat16AndKeepsFloat32Weights) {
  torch::manual_seed(0);
  auto model = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
  to_channels_last(*model);
  const auto x = torch::randn({16, 1, 8, 8}).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto y = torch::randint(0, 10, {16}, torch::kInt64);
  {
    const AutocastScope scope(Precision::kBf16, torch::kCPU);
    EXPECT_TRUE(compat::autocast_enabled(at::kCPU));
    EXPECT_EQ(compat::autocast_dtype(at::kCPU), at::kBFloat16);
    EXPECT_EQ(model->forward(x).scalar_type(), at::kBFloat16);
    {
      const AutocastScope off(Precision::kFloat32, torch::kCPU);  // float32 leaves autocast as it is
      EXPECT_TRUE(compat::autocast_enabled(at::kCPU));
    }
  }
  EXPECT_FALSE(compat::autocast_enabled(at::kCPU));  // as it was before the scope
  EXPECT_EQ(model->forward(x).scalar_type(), at::kFloat);
  // A step: the loss is float32, the weights and their gradients stay float32, and the step is close to the
  // float32 step (bfloat16 keeps 8 bits of mantissa) without being it.
  auto step = [&](Precision precision) {
    torch::manual_seed(0);
    auto net = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
    to_channels_last(*net);
    auto optimizer = make_sgd(net->parameters(), SgdConfig{});
    const auto out = train_step(*net, *optimizer, x, y, nullptr, {}, 0.0, precision);
    EXPECT_EQ(out.loss.scalar_type(), at::kFloat);
    for (const auto& p : net->parameters()) {
      EXPECT_EQ(p.scalar_type(), at::kFloat);
      EXPECT_EQ(p.grad().scalar_type(), at::kFloat);
    }
    return std::make_pair(out.loss.item<double>(), torch::cat({net->parameters()[0].detach().flatten()}));
  };
  const auto [loss32, weights32] = step(Precision::kFloat32);
  const auto [loss16, weights16] = step(Precision::kBf16);
  EXPECT_FALSE(compat::autocast_enabled(at::kCPU));
  EXPECT_NE(loss16, loss32);
  EXPECT_NEAR(loss16, loss32, 0.05 * loss32);
  EXPECT_FALSE(torch::equal(weights16, weights32));
  EXPECT_LT((weights16 - weights32).abs().max().item<double>(), 1e-2);
  // A float64 net (the data-parallel tests' reference) keeps its loss in float64: only reduced precision is widened.
  torch::manual_seed(0);
  auto wide = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
  wide->to(torch::kFloat64);
  auto wide_sgd = make_sgd(wide->parameters(), SgdConfig{});
  EXPECT_EQ(train_step(*wide, *wide_sgd, x.to(torch::kFloat64), y).loss.scalar_type(), at::kDouble);
  testing::expect_error<std::invalid_argument>([] { parse_precision("half"); },
                                               {"precision 'half'", "float32 or bf16"});
  EXPECT_EQ(parse_precision(to_string(Precision::kBf16)), Precision::kBf16);
}

TEST_F(TrainerTest, InterruptFinishesTheStepAndSummarisesTheRun) {
  clear_interrupt();
  // An interrupt requested during iteration 3 stops the loop once that step is done.
  auto model = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
  ImageDataset data(torch::randint(0, 256, {64, 1, 8, 8}, torch::kInt64).to(torch::kUInt8),
                    torch::randint(0, 10, {64}, torch::kInt64), 10);
  LoaderOptions o;
  o.batch = 8;
  BatchLoader loader(data, torch::zeros({1, 8, 8}), o);
  auto optimizer = make_sgd(model->parameters(), SgdConfig{});
  TrainContext ctx{*model, *optimizer, loader, nullptr, {}};
  Trainer trainer(ctx, /*total_iters=*/40, /*log_every=*/5);
  trainer.add(std::make_shared<testing::InterruptAt>(3));
  trainer.run();
  clear_interrupt();
  EXPECT_EQ(ctx.state.status, RunStatus::kInterrupted);
  EXPECT_EQ(ctx.state.iter, 3);
  // The open window is not flushed as a record: it goes into the checkpoint, so a resumed run writes the
  // records an uninterrupted run would have.
  EXPECT_FALSE(ctx.state.last_window.has_value());
  const auto state = trainer.save_state();
  EXPECT_EQ(state["iter"], 3);
  EXPECT_EQ(state["window"]["sizes"].size(), 3u);
  EXPECT_EQ(state["window"]["begin"], 0);
}

TEST_F(TrainerTest, EvaluationCountsEveryExampleOnce) {
  torch::manual_seed(0);
  auto model = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
  ImageDataset data(torch::randint(0, 256, {37, 1, 8, 8}, torch::kInt64).to(torch::kUInt8),
                    torch::randint(0, 10, {37}, torch::kInt64), 10);
  LoaderOptions o;
  o.batch = 10;
  o.shuffle = o.drop_last = false;
  BatchLoader loader(data, torch::zeros({1, 8, 8}), o);
  const EvalResult r = evaluate(*model, loader);
  EXPECT_EQ(r.examples, 37);
  EXPECT_TRUE(model->is_training());  // restored
  // The same count by hand, on all 37 images at once in eval mode.
  model->eval();
  torch::NoGradGuard no_grad;
  auto all = data.images().to(torch::kFloat32) / 255.0;
  auto logits = model->forward(all);
  const int64_t wrong = logits.argmax(1).ne(data.targets()).sum().item<int64_t>();
  EXPECT_NEAR(r.error, 100.0 * wrong / 37, 1e-9);
  EXPECT_NEAR(r.loss, torch::nn::functional::cross_entropy(logits, data.targets()).item<double>(), 1e-4);
}

TEST(Sgd, ForeachStepIsLibTorchsLoopBitForBitAndSharesItsCheckpoints) {
  for (bool nesterov : {false, true}) {
    torch::manual_seed(3);
    auto a = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
    auto b = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < a->parameters().size(); ++i) b->parameters()[i].copy_(a->parameters()[i]);
    }
    SgdConfig config{0.1, 0.9, 1e-3, nesterov};
    config.foreach = true;
    auto fast = make_sgd(a->parameters(), config);
    config.foreach = false;
    auto loop = make_sgd(b->parameters(), config);
    const auto x = torch::randn({6, 1, 8, 8});
    const auto y = torch::randint(0, 10, {6}, torch::kInt64);
    for (int step = 0; step < 4; ++step) {
      for (auto [model, opt] : {std::pair{a.get(), fast.get()}, std::pair{b.get(), loop.get()}}) {
        opt->zero_grad();
        torch::nn::functional::cross_entropy(model->forward(x), y).backward();
        opt->step();
      }
      if (step == 1) set_learning_rate(*fast, 0.05), set_learning_rate(*loop, 0.05);
    }
    for (size_t i = 0; i < a->parameters().size(); ++i) {
      EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i]))
          << "parameter " << i << " nesterov " << nesterov;
    }
    // The momentum buffers are where LibTorch's SGD keeps them: one's saved state loads into the other.
    TempDir dir;
    torch::save(*fast, dir.file("fast.pt"));
    config.foreach = false;
    auto restored = make_sgd(b->parameters(), config);
    torch::load(*restored, dir.file("fast.pt"));
    ASSERT_EQ(restored->state().size(), a->parameters().size());
    set_learning_rate(*restored, 0.05);
    for (auto [model, opt] : {std::pair{a.get(), fast.get()}, std::pair{b.get(), restored.get()}}) {
      opt->zero_grad();
      torch::nn::functional::cross_entropy(model->forward(x), y).backward();
      opt->step();
    }
    for (size_t i = 0; i < a->parameters().size(); ++i) {
      EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i])) << "after reload, parameter " << i;
    }
  }
}

TEST(Device, NamesAreCheckedAndCudaNeedsACudaBuild) {
  EXPECT_EQ(parse_device("cpu", "test"), torch::Device(torch::kCPU));
  for (const char* bad : {"gpu", "CPU", "cuda:", "cuda:-1", "cuda:1x", "cuda:12345", ""}) {
    testing::expect_error<std::invalid_argument>([&] { parse_device(bad, "--device"); },
                                                 {"--device", std::string("'") + bad + "'", "cpu, cuda or cuda:N"});
  }
  if (torch::cuda::is_available()) {
    EXPECT_TRUE(parse_device("cuda", "test").is_cuda());
    const auto n = std::to_string(torch::cuda::device_count());
    testing::expect_error<std::runtime_error>([&] { parse_device("cuda:" + n, "test"); }, {"has " + n});
  } else {
    // This LibTorch (Debian's, CPU-only) cannot run on a GPU: the error says so instead of crashing later.
    testing::expect_error<std::runtime_error>([&] { parse_device("cuda", "run 'r'"); },
                                              {"run 'r'", "'cuda'", "no CUDA device"});
  }
}

TEST(Device, RanksTakeTheirOwnGpuAndKeepExplicitChoices) {
  EXPECT_EQ(parse_rank_device("cpu", 1, "test"), torch::Device(torch::kCPU));
  testing::expect_error<std::invalid_argument>([] { parse_rank_device("gpu", 0, "bench --device"); },
                                               {"bench --device", "'gpu'"});
  if (torch::cuda::is_available()) {
    const auto last = static_cast<int64_t>(torch::cuda::device_count()) - 1;
    EXPECT_EQ(parse_rank_device("cuda", last, "test").index(), last);
    EXPECT_EQ(parse_rank_device("cuda", last + 1, "test").index(), 0);  // one visible GPU per rank
    EXPECT_FALSE(parse_rank_device("cuda", -1, "test").has_index());    // not data-parallel: LibTorch's current
    EXPECT_EQ(parse_rank_device("cuda:0", last, "test").index(), 0);    // explicit: as given
  } else {
    testing::expect_error<std::runtime_error>([] { parse_rank_device("cuda", 1, "run 'r'"); },
                                              {"run 'r'", "no CUDA device"});
  }
}

TEST(Device, BatchesAndModulesReportAndMoveToTheirDevice) {
  auto model = build_model("resnet8", ModelSpec{{1, 8, 8}, 10, Shortcut::A});
  EXPECT_EQ(device_of(*model), torch::Device(torch::kCPU));
  EXPECT_EQ(device_of(torch::nn::Module()), torch::Device(torch::kCPU));  // no parameters
  Batch b{torch::ones({2, 1, 8, 8}), torch::zeros({2}, torch::kInt64), 1};
  const Batch same = to_device(b, torch::kCPU);
  EXPECT_TRUE(same.inputs.is_same(b.inputs));  // no copy when already there
  EXPECT_TRUE(same.targets.is_same(b.targets));
  synchronize(torch::kCPU);  // a no-op on the CPU, not an error
}

}  // namespace
}  // namespace reslab
