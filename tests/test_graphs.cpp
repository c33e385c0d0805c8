// CUDA graphs' step and evaluation (train/graphs.h), checked on the CPU with the CPU's stand-in for a graph (the
// recorded step called again): every step computes train_step's floats, and the step is captured again exactly
// when what a graph would have frozen moved (the learning rate, a weight's storage). The graphs themselves need a
// GPU: scripts/gpu-bench compares a graphed run with an eager one there.
#include "data/loader.h"
#include "models/registry.h"
#include "optim/sgd.h"
#include "test_util.h"
#include "train/graphs.h"
#include "train/trainer.h"

namespace reslab {
namespace {

const ModelSpec kSpec{{1, 8, 8}, 10, Shortcut::A};

std::shared_ptr<NetworkBase> seeded_model() {
  torch::manual_seed(0);
  auto model = build_model("resnet8", kSpec);
  to_channels_last(*model);
  return model;
}

torch::Tensor batch_of(int64_t n, int64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n, 1, 8, 8}).contiguous(torch::MemoryFormat::ChannelsLast);
}

torch::Tensor targets_of(int64_t n, int64_t seed) {
  torch::manual_seed(seed + 1000);
  return torch::randint(0, 10, {n}, torch::kInt64);
}

void expect_same_state(NetworkBase& a, NetworkBase& b, torch::optim::SGD& sa, torch::optim::SGD& sb) {
  const auto pa = a.parameters(), pb = b.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    EXPECT_TRUE(torch::equal(momentum_buffer(sa, pa[i]), momentum_buffer(sb, pb[i]))) << "momentum " << i;
  }
  const auto ba = a.buffers(), bb = b.buffers();
  for (size_t i = 0; i < ba.size(); ++i) EXPECT_TRUE(torch::equal(ba[i], bb[i])) << "buffer " << i;
}

TEST(Graphs, ClipGradientsIsLibTorchsClipToTheFloat) {
  for (const double max_norm : {1e-3, 1e3}) {  // clipped, and left as it is
    auto a = seeded_model();
    auto b = seeded_model();
    const auto x = batch_of(16, 1);
    const auto y = targets_of(16, 1);
    torch::nn::functional::cross_entropy(a->forward(x), y).backward();
    torch::nn::functional::cross_entropy(b->forward(x), y).backward();
    const double total = torch::nn::utils::clip_grad_norm_(a->parameters(), max_norm);
    clip_gradients(b->parameters(), max_norm);
    const auto pa = a->parameters(), pb = b->parameters();
    double squares = 0;
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_TRUE(torch::equal(pa[i].grad(), pb[i].grad())) << "max_norm " << max_norm << ", parameter " << i;
      squares += pb[i].grad().pow(2).sum().item<double>();
    }
    EXPECT_NEAR(std::sqrt(squares), std::min(total, max_norm), 1e-4 * std::min(total, max_norm));
  }
}

TEST(Graphs, TheCapturedStepComputesTrainStepsFloatsAndCapturesAgainWhenItMust) {
  auto eager_model = seeded_model();
  auto graph_model = seeded_model();
  SgdConfig sgd;  // momentum 0.9, weight decay 1e-4: a capture needs the momentum buffers in place
  auto eager_sgd = make_sgd(eager_model->parameters(), sgd);
  auto graph_sgd = make_sgd(graph_model->parameters(), sgd);
  const double clip = 2.0;
  CapturedStep captured(*graph_model, *graph_sgd, Precision::kFloat32, clip, /*warmup=*/3, make_recording(torch::kCPU));
  int hooks = 0;
  for (int64_t i = 0; i < 14; ++i) {
    const int64_t n = i == 9 ? 5 : 16;  // a partial batch: eager
    const bool watched = i == 10;       // a probe's step: eager, with its hook
    if (i == 5) {
      // A checkpoint saved before the first step, loaded (a retry): no momentum yet. One eager step creates it,
      // then a capture.
      eager_sgd->state().clear();
      graph_sgd->state().clear();
    }
    if (i == 7) {  // the schedule's drop: captured again
      set_learning_rate(*eager_sgd, 0.01);
      set_learning_rate(*graph_sgd, 0.01);
    }
    if (i == 12) {
      // A checkpoint loaded into the model (LibTorch's loader sets each tensor's storage): captured again.
      torch::NoGradGuard no_grad;
      eager_model->parameters()[0].set_(eager_model->parameters()[0].clone());
      graph_model->parameters()[0].set_(graph_model->parameters()[0].clone());
    }
    const auto x = batch_of(n, i);
    const auto y = targets_of(n, i);
    const auto want = train_step(*eager_model, *eager_sgd, x, y, nullptr, {}, clip);
    const auto got = captured.step(x, y, watched, [&] { ++hooks; });
    ASSERT_TRUE(torch::equal(want.loss, got.loss)) << "step " << i;
    ASSERT_TRUE(torch::equal(want.logits, got.logits)) << "step " << i;
    // Every parameter's .grad holds this step's gradient, whichever way the step ran.
    const auto pa = eager_model->parameters(), pb = graph_model->parameters();
    for (size_t k = 0; k < pa.size(); ++k) ASSERT_TRUE(torch::equal(pa[k].grad(), pb[k].grad())) << "step " << i;
  }
  expect_same_state(*eager_model, *graph_model, *eager_sgd, *graph_sgd);
  const auto& c = captured.counts();
  EXPECT_EQ(hooks, c.eager);  // every eager step runs the hook; a replay runs no host code
  // 3 warm-up steps, the step after the state was cleared, the partial batch and the watched step run eagerly;
  // captures at step 3, after the cleared state (6), at the drop (7) and after the load (12); the rest replay.
  EXPECT_EQ(c.eager, 3 + 1 + 1 + 1);
  EXPECT_EQ(c.captures, 4);
  EXPECT_EQ(c.replays, 14 - 6);
}

TEST(Graphs, ReplayedStepsKeepTheirOwnOutputs) {
  auto model = seeded_model();
  auto optimizer = make_sgd(model->parameters(), SgdConfig{});
  CapturedStep captured(*model, *optimizer, Precision::kFloat32, 0.0, /*warmup=*/1, make_recording(torch::kCPU));
  std::vector<StepOutput> outs;
  for (int64_t i = 0; i < 4; ++i) outs.push_back(captured.step(batch_of(8, i), targets_of(8, i)));
  EXPECT_EQ(captured.counts().replays, 3);
  // Each step's loss is its own tensor, not the static one the next replay writes.
  for (size_t i = 1; i < outs.size(); ++i) {
    EXPECT_NE(outs[i].loss.data_ptr(), outs[i - 1].loss.data_ptr());
    EXPECT_NE(outs[i].loss.item<double>(), outs[i - 1].loss.item<double>());
  }
}

TEST(Graphs, CapturedEvaluationSumsWhatEvaluateSums) {
  auto model = seeded_model();
  torch::manual_seed(3);
  ImageDataset data(torch::randint(0, 256, {37, 1, 8, 8}, torch::kInt64).to(torch::kUInt8),
                    torch::randint(0, 10, {37}, torch::kInt64), 10);
  LoaderOptions o;
  o.batch = 10;
  o.shuffle = o.drop_last = false;
  o.channels_last = true;
  BatchLoader loader(data, torch::zeros({1, 8, 8}), o);  // 10, 10, 10 and a partial 7
  const EvalResult want = evaluate(*model, loader);
  CapturedEval captured(*model, Precision::kFloat32, make_recording(torch::kCPU));
  const EvalResult first = evaluate(*model, loader, nullptr, Precision::kFloat32, &captured);
  EXPECT_EQ(first.loss, want.loss);
  EXPECT_EQ(first.error, want.error);
  EXPECT_EQ(first.examples, 37);
  EXPECT_TRUE(model->is_training());
  // One eager batch, a capture; the partial batch eagerly.
  EXPECT_EQ(captured.counts().eager, 2);
  EXPECT_EQ(captured.counts().captures, 1);
  EXPECT_EQ(captured.counts().replays, 2);
  const EvalResult again = evaluate(*model, loader, nullptr, Precision::kFloat32, &captured);
  EXPECT_EQ(again.loss, want.loss);
  EXPECT_EQ(captured.counts().captures, 1);  // nothing moved: replayed
  EXPECT_EQ(captured.counts().replays, 5);
  {
    torch::NoGradGuard no_grad;
    auto w = model->parameters()[0];
    w.set_(w.clone().mul_(1.5));  // new storage and new values
  }
  const EvalResult moved = evaluate(*model, loader, nullptr, Precision::kFloat32, &captured);
  EXPECT_EQ(captured.counts().captures, 2);
  EXPECT_EQ(moved.loss, evaluate(*model, loader).loss);
  EXPECT_NE(moved.loss, want.loss);
}

TEST(Graphs, AShortSplitEvaluatedFirstDoesNotFixTheCaptureSize) {
  auto model = seeded_model();
  model->eval();
  CapturedEval captured(*model, Precision::kFloat32, make_recording(torch::kCPU));
  // A validation split of 3 examples, then a test split in full batches of 8.
  const std::vector<int64_t> sizes{3, 8, 8, 8, 8, 3};
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto x = batch_of(sizes[i], static_cast<int64_t>(i));
    const auto t = targets_of(sizes[i], static_cast<int64_t>(i));
    const auto [loss, wrong] = captured.batch(x, t);
    const auto [want_loss, want_wrong] = eval_batch(*model, x, t, Precision::kFloat32);
    EXPECT_TRUE(torch::equal(loss, want_loss)) << "batch " << i;
    EXPECT_TRUE(torch::equal(wrong, want_wrong)) << "batch " << i;
  }
  // Eager: the short batch, one warm-up batch of 8 and the short batch again; the rest replayed from one capture.
  EXPECT_EQ(captured.counts().eager, 3);
  EXPECT_EQ(captured.counts().captures, 1);
  EXPECT_EQ(captured.counts().replays, 3);
}

TEST(Graphs, TheTrainerWritesTheSameWindowsWithAndWithoutGraphs) {
  torch::manual_seed(5);
  ImageDataset data(torch::randint(0, 256, {64, 1, 8, 8}, torch::kInt64).to(torch::kUInt8),
                    torch::randint(0, 10, {64}, torch::kInt64), 10);
  LoaderOptions o;
  o.batch = 8;
  o.channels_last = true;
  BatchLoader loader(data, torch::zeros({1, 8, 8}), o);

  /// Records the windows, and watches the step after iteration `watch` (as a probe with a tap does).
  class Watcher : public Callback {
   public:
    explicit Watcher(int64_t watch) : watch_(watch) {}
    void on_batch_begin(TrainContext& ctx) override { watching_ = ctx.state.iter == watch_; }
    bool watches_step() const override { return watching_; }
    void on_after_backward(TrainContext& ctx) override { seen.push_back(ctx.state.iter); }
    void on_log(TrainContext&, const WindowStats& w) override { windows.push_back({w.loss, w.error}); }
    std::vector<std::pair<double, double>> windows;
    std::vector<int64_t> seen;

   private:
    int64_t watch_;
    bool watching_ = false;
  };
  auto run = [&](bool graphs) {
    auto model = seeded_model();
    auto optimizer = make_sgd(model->parameters(), SgdConfig{});
    TrainContext ctx{*model, *optimizer, loader, nullptr, {}};
    std::unique_ptr<CapturedStep> captured;
    if (graphs) {
      captured = std::make_unique<CapturedStep>(*model, *optimizer, Precision::kFloat32, 0.0, kGraphWarmup,
                                                make_recording(torch::kCPU));
      ctx.captured_step = captured.get();
    }
    Trainer trainer(ctx, /*total_iters=*/20, /*log_every=*/4);
    auto watcher = std::make_shared<Watcher>(9);
    trainer.add(watcher);
    trainer.run();
    if (captured) {
      EXPECT_EQ(captured->counts().eager, kGraphWarmup + 1);
      EXPECT_EQ(captured->counts().captures, 1);
      EXPECT_EQ(captured->counts().replays, 20 - kGraphWarmup - 1);
    }
    // The hook runs in the watched step alone, eager or not: not in the graphs' eager warm-up steps.
    EXPECT_EQ(watcher->seen, std::vector<int64_t>{9}) << (graphs ? "graphs" : "eager");
    return std::make_pair(watcher->windows, model->parameters().back().detach().clone());
  };
  const auto [eager_windows, eager_weights] = run(false);
  const auto [graph_windows, graph_weights] = run(true);
  ASSERT_EQ(eager_windows.size(), 5u);
  EXPECT_EQ(graph_windows, eager_windows);
  EXPECT_TRUE(torch::equal(graph_weights, eager_weights));
}

TEST(Graphs, NoCudaGraphsWithoutACudaBuildAndDevice) {
  EXPECT_NE(make_recording(torch::kCPU), nullptr);
  if (!cuda_graphs_built()) {
    testing::expect_error<std::invalid_argument>([] { make_recording(torch::Device("cuda:0")); },
                                                 {"CUDA graphs on cuda:0", "built without CUDA"});
  }
}

}  // namespace
}  // namespace reslab
