// Data-parallel training: the launch variables, the sharded batches, and two real ranks on loopback (Gloo)
// against one process trained on the same global batches.

#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>

#include "dist_setup.h"
#include "distributed/env.h"
#include "distributed/process_group.h"
#include "distributed/sharded_source.h"
#include "models/batch_norm.h"
#include "test_util.h"

extern char** environ;

namespace reslab {
namespace {

using testing::expect_error;

std::function<std::optional<std::string>(const std::string&)> vars(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

TEST(DistEnvTest, NoVariablesIsOneProcess) {
  const auto env = read_dist_env(vars({}));
  EXPECT_FALSE(env.distributed());
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.source, "");
}

TEST(DistEnvTest, TorchrunVariables) {
  const auto env = read_dist_env(vars({{"RANK", "3"},
                                       {"WORLD_SIZE", "4"},
                                       {"LOCAL_RANK", "1"},
                                       {"LOCAL_WORLD_SIZE", "2"},
                                       {"MASTER_ADDR", "10.0.0.5"},
                                       {"MASTER_PORT", "29501"}}));
  EXPECT_TRUE(env.distributed());
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "10.0.0.5");
  EXPECT_EQ(env.master_port, 29501);
  EXPECT_EQ(env.source, "torchrun");
  EXPECT_EQ(env.describe(), "rank 3 of 4");
}

TEST(DistEnvTest, BadTorchrunVariablesNameTheVariable) {
  const std::map<std::string, std::string> ok = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto m = ok;
    m[k] = v;
    return vars(m);
  };
  expect_error<DistError>([&] { read_dist_env(with("RANK", "2")); }, {"RANK is '2'", "0 to 1"});
  expect_error<DistError>([&] { read_dist_env(with("WORLD_SIZE", "two")); }, {"WORLD_SIZE is 'two'"});
  expect_error<DistError>([&] { read_dist_env(with("MASTER_PORT", "70000")); },
                          {"MASTER_PORT is '70000'", "1 to 65535"});
  expect_error<DistError>([&] { read_dist_env(with("LOCAL_RANK", "-1")); }, {"LOCAL_RANK is '-1'"});
  auto missing = ok;
  missing.erase("MASTER_ADDR");
  expect_error<DistError>([&] { read_dist_env(vars(missing)); }, {"MASTER_ADDR", "not set"});
  missing = ok;
  missing.erase("RANK");
  expect_error<DistError>([&] { read_dist_env(vars(missing)); }, {"RANK is not set"});
}

TEST(DistEnvTest, SlurmStepVariables) {
  const auto env = read_dist_env(vars({{"SLURM_STEP_ID", "0"},
                                       {"SLURM_PROCID", "1"},
                                       {"SLURM_STEP_NUM_TASKS", "4"},
                                       {"SLURM_NTASKS", "4"},
                                       {"SLURM_LOCALID", "1"},
                                       {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"},
                                       {"SLURM_JOB_NODELIST", "gpu[07-08]"},
                                       {"SLURM_JOB_ID", "123456"}}));
  EXPECT_EQ(env.source, "slurm");
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "gpu07");
  EXPECT_EQ(env.master_port, 20000 + 123456 % 20000);
}

TEST(DistEnvTest, SlurmBatchScriptIsOneProcess) {
  // The batch script itself (no srun step) runs once, whatever the job's task count.
  const auto env = read_dist_env(vars({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_JOB_NODELIST", "n1"}}));
  EXPECT_FALSE(env.distributed());
}

TEST(DistEnvTest, TorchrunWinsOverSlurm) {
  const auto env =
      read_dist_env(vars({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"WORLD_SIZE", "1"}}));
  EXPECT_FALSE(env.distributed());
  EXPECT_EQ(env.source, "torchrun");
}

TEST(DistEnvTest, FirstSlurmHost) {
  EXPECT_EQ(first_slurm_host("node1"), "node1");
  EXPECT_EQ(first_slurm_host("node1,node2"), "node1");
  EXPECT_EQ(first_slurm_host("node[07-09,12],gpu1"), "node07");
  EXPECT_EQ(first_slurm_host("rack[3,5]-ib"), "rack3-ib");
  expect_error<DistError>([] { first_slurm_host("node[07-09"); }, {"SLURM_JOB_NODELIST is 'node[07-09'"});
  expect_error<DistError>([] { first_slurm_host("[1-2]"); }, {"SLURM_JOB_NODELIST"});
  expect_error<DistError>([] { first_slurm_host(""); }, {"SLURM_JOB_NODELIST"});
}

TEST(DistBackendTest, AutoPicksNcclForGpusWhereBuiltAndAnImpossibleChoiceIsNamed) {
  EXPECT_EQ(parse_dist_backend("gloo"), DistBackend::kGloo);
  EXPECT_EQ(to_string(DistBackend::kNccl), "nccl");
  expect_error<std::invalid_argument>([] { parse_dist_backend("mpi"); }, {"'mpi'", "auto, gloo or nccl"});
  EXPECT_EQ(resolve_backend(DistBackend::kAuto, torch::kCPU, "run"), DistBackend::kGloo);
  EXPECT_EQ(resolve_backend(DistBackend::kGloo, torch::Device("cuda:1"), "run"), DistBackend::kGloo);
  EXPECT_EQ(resolve_backend(DistBackend::kAuto, torch::Device("cuda:0"), "run"),
            nccl_available() ? DistBackend::kNccl : DistBackend::kGloo);
  expect_error<std::invalid_argument>([] { resolve_backend(DistBackend::kNccl, torch::kCPU, "run 'x'"); },
                                      {"run 'x'", "'nccl'", "'cpu'", "--device cuda"});
  if (nccl_available()) {
    EXPECT_EQ(resolve_backend(DistBackend::kNccl, torch::Device("cuda:0"), "run"), DistBackend::kNccl);
  } else {
    expect_error<std::invalid_argument>([] { resolve_backend(DistBackend::kNccl, torch::Device("cuda:0"), "run"); },
                                        {"'nccl'", "without NCCL", "gloo"});
  }
}

TEST(ShardedSourceTest, RanksSplitEachGlobalBatchExactly) {
  auto global = testing::dist_test_loader();
  global->set_epoch(1);
  ShardedSource r0(*global, 0, 2), r1(*global, 1, 2);
  EXPECT_EQ(r0.batch_size(), testing::kDistBatch);
  EXPECT_EQ(r0.local_batch(), testing::kDistBatch / 2);
  for (int64_t b : {0, 5}) {
    const Batch whole = global->batch(b);
    const Batch a = r0.batch(b), c = r1.batch(b);
    EXPECT_TRUE(torch::equal(torch::cat({a.inputs, c.inputs}), whole.inputs));  // augmentation included
    EXPECT_TRUE(torch::equal(torch::cat({a.targets, c.targets}), whole.targets));
  }
  expect_error<std::invalid_argument>([&] { ShardedSource(*global, 0, 3); },
                                      {"batch of 32 does not split evenly across 3 ranks"});
}

TEST(SyncBatchNormTest, OneProcessReducerMatchesBatchNormEvenWithLargeMeans) {
  // A reducer that sums over one rank is the identity: synchronised BN must then be BatchNorm2d (computed here in
  // float64), also in float32 on inputs whose mean dwarfs their spread, where E[x^2] - E[x]^2 in float32 would
  // cancel to noise (1000^2 has an ulp of 0.06, the variance is 0.01).
  torch::manual_seed(4);
  SyncableBatchNorm2d sync(torch::nn::BatchNorm2dOptions(3));
  torch::nn::BatchNorm2d plain(torch::nn::BatchNorm2dOptions(3));
  plain->to(torch::kFloat64);
  sync->set_stat_reduce([](const torch::Tensor& t) { return t * 1.0; });
  for (double mean : {0.0, 1000.0}) {
    auto x = (torch::randn({8, 3, 5, 5}) * 0.1 + mean).requires_grad_(true);
    auto y = x.detach().to(torch::kFloat64).requires_grad_(true);
    auto a = sync->forward(x), b = plain->forward(y);
    EXPECT_LT((a.to(torch::kFloat64) - b).abs().max().item<double>(), 5e-3) << "mean " << mean;
    const auto w = torch::arange(a.numel()).view(a.sizes()) / static_cast<double>(a.numel());
    (a * w).sum().backward();
    (b * w.to(torch::kFloat64)).sum().backward();
    EXPECT_LT(((x.grad().to(torch::kFloat64) - y.grad()).abs().max() / y.grad().abs().max()).item<double>(), 5e-3)
        << "mean " << mean;
  }
  EXPECT_LT((sync->running_mean.to(torch::kFloat64) - plain->running_mean).abs().max().item<double>(), 1e-3);
  EXPECT_LT(
      ((sync->running_var.to(torch::kFloat64) - plain->running_var).abs() / plain->running_var).max().item<double>(),
      1e-2);
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

/// Starts the two ranks of dist_worker and waits for both; their outputs are out0.pt and out1.pt in `dir`.
void run_two_ranks(const testing::TempDir& dir, const std::string& mode, int64_t bucket_bytes) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    for (const std::string& v : {"RANK=" + std::to_string(rank), std::string("WORLD_SIZE=2"),
                                 std::string("MASTER_ADDR=127.0.0.1"), "MASTER_PORT=" + std::to_string(port)}) {
      env_strings.push_back(v);
    }
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = {RESLAB_DIST_WORKER, dir.file("out" + std::to_string(rank) + ".pt"), mode,
                                     std::to_string(bucket_bytes)};
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, RESLAB_DIST_WORKER, nullptr, nullptr, argv.data(), envp.data()), 0);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a rank failed (status " << status << ")";
  }
}

/// One process on the same global batches: per-rank BN is BN over each half (the loss the mean of the halves'),
/// synchronised BN is BN over the whole batch.
std::vector<torch::Tensor> one_process(bool sync_bn, std::vector<double>& losses) {
  auto loader = testing::dist_test_loader();
  auto model = testing::dist_test_model();
  auto sgd = testing::dist_test_sgd(*model);
  model->train();
  const int64_t per_epoch = loader->batches_per_epoch();
  for (int64_t it = 0; it < testing::kDistSteps; ++it) {
    if (it % per_epoch == 0) loader->set_epoch(it / per_epoch);
    const Batch b = loader->batch(it % per_epoch);
    sgd->zero_grad();
    torch::Tensor loss;
    if (sync_bn) {
      loss = torch::nn::functional::cross_entropy(model->forward(b.inputs), b.targets);
    } else {
      const int64_t h = b.targets.size(0) / 2;
      loss =
          (torch::nn::functional::cross_entropy(model->forward(b.inputs.narrow(0, 0, h)), b.targets.narrow(0, 0, h)) +
           torch::nn::functional::cross_entropy(model->forward(b.inputs.narrow(0, h, h)), b.targets.narrow(0, h, h))) /
          2;
    }
    loss.backward();
    sgd->step();
    losses.push_back(loss.item<double>());
  }
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().contiguous());
  for (const auto& b : model->buffers()) out.push_back(b.detach().contiguous());
  return out;
}

void expect_two_ranks_match_one_process(const std::string& mode, int64_t bucket_bytes) {
  testing::TempDir dir;
  run_two_ranks(dir, mode, bucket_bytes);
  if (::testing::Test::HasFatalFailure()) return;
  std::vector<torch::Tensor> r0, r1;
  torch::load(r0, dir.file("out0.pt"));
  torch::load(r1, dir.file("out1.pt"));
  std::vector<double> ref_losses;
  const auto ref = one_process(mode == "sync-bn", ref_losses);
  const size_t params = testing::dist_test_model()->parameters().size();
  ASSERT_EQ(r0.size(), ref.size() + 2);
  ASSERT_EQ(r1.size(), r0.size());
  for (size_t i = 0; i < params; ++i) {
    // The ranks hold one net, bit for bit ...
    EXPECT_TRUE(torch::equal(r0[i], r1[i])) << "parameter " << i << " differs between the ranks";
    // ... and it is the one-process net, to float64 rounding after 10 steps.
    const double diff = (r0[i] - ref[i]).abs().max().item<double>();
    EXPECT_LT(diff, 1e-9) << "parameter " << i << " differs from one process by " << diff;
    // Training moved it: the comparison is not of two untouched initialisations.
  }
  EXPECT_GT((r0[0] - testing::dist_test_model()->parameters()[0]).abs().max().item<double>(), 1e-3);
  if (mode == "sync-bn") {
    // Synchronised statistics are the whole batch's, on both ranks.
    for (size_t i = params; i < ref.size(); ++i) {
      EXPECT_LT((r0[i].to(torch::kFloat64) - ref[i].to(torch::kFloat64)).abs().max().item<double>(), 1e-9)
          << "buffer " << i;
      EXPECT_TRUE(torch::equal(r0[i], r1[i])) << "buffer " << i;
    }
  }
  // The logged loss of each step is the global batch's mean, the same on both ranks.
  const auto& losses = r0[ref.size()];
  ASSERT_EQ(losses.numel(), testing::kDistSteps);
  EXPECT_TRUE(torch::equal(losses, r1[ref.size()]));
  for (int64_t i = 0; i < testing::kDistSteps; ++i) {
    EXPECT_NEAR(losses[i].item<double>(), ref_losses[static_cast<size_t>(i)], 1e-9) << "step " << i;
  }
  const auto& buckets = r0[ref.size() + 1];
  if (bucket_bytes < 10000) {
    // Small buckets: several all-reduces, some started before the backward pass ended.
    EXPECT_GT(buckets[0].item<int64_t>(), 3);
    EXPECT_GT(buckets[1].item<int64_t>(), 0);
  }
}

TEST(DistTrainingTest, TwoRanksMatchOneProcessWithPerRankBatchNorm) {
  expect_two_ranks_match_one_process("rank-bn", 8 * 1024);
}

TEST(DistTrainingTest, TwoRanksMatchOneProcessWithSynchronisedBatchNorm) {
  expect_two_ranks_match_one_process("sync-bn", 8 * 1024);
}

TEST(DistTrainingTest, OneBucketGivesTheSameNet) { expect_two_ranks_match_one_process("rank-bn", 64 * 1024 * 1024); }

}  // namespace
}  // namespace reslab
