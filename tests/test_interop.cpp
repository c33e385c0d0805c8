// PyTorch interop: state_dict files read by the restricted unpickler and written for torch.load, the reference
// implementations' names, strict loading, and export and import of run folders. Python's side (torch.load,
// torchvision's own modules, scripts/reslab_torch.py) is tested in test_interop.sh.
#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "experiment/config.h"
#include "interop/convert.h"
#include "models/registry.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace reslab {
namespace {

using testing::expect_error;
using testing::TempDir;
using namespace std::string_literals;

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// A torch.save-style archive holding `pickle` as data.pkl and `records` beside it (names under data/).
std::vector<char> archive_with(const std::string& pickle,
                               const std::vector<std::pair<std::string, std::string>>& records = {}) {
  std::vector<char> out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
    const auto* p = static_cast<const char*>(data);
    out.insert(out.end(), p, p + size);
    return size;
  });
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [name, bytes] : records) writer.writeRecord(name, bytes.data(), bytes.size());
  writer.writeEndOfFile();
  return out;
}

std::string unicode(const std::string& s) {
  std::string out = "X";
  const auto n = static_cast<uint32_t>(s.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + s;
}

/// The pickle of {"w": tensor of `numel` floats from storage "0"} with the given size and stride, as torch.save
/// writes one (protocol 2).
std::string tensor_pickle(const std::vector<int64_t>& size, const std::vector<int64_t>& stride, int64_t offset,
                          int64_t numel) {
  auto int1 = [](int64_t v) { return std::string("K") + static_cast<char>(v); };
  auto ints = [&](const std::vector<int64_t>& v) {
    std::string out = "(";
    for (int64_t x : v) out += int1(x);
    return out + "t";
  };
  return std::string("\x80\x02") + "ccollections\nOrderedDict\n)R(" + unicode("w") +
         "ctorch._utils\n_rebuild_tensor_v2\n((" + unicode("storage") + "ctorch\nFloatStorage\n" + unicode("0") +
         unicode("cpu") + int1(numel) + "tQ" + int1(offset) + ints(size) + ints(stride) + "\x89" +
         "ccollections\nOrderedDict\n)RtRu.";
}
std::string tensor_pickle(int64_t size, int64_t stride, int64_t offset, int64_t numel) {
  return tensor_pickle(std::vector<int64_t>{size}, std::vector<int64_t>{stride}, offset, numel);
}

std::string floats(std::vector<float> v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

TEST(Pth, RoundTripKeepsNamesOrderValuesAndTypes) {
  TempDir dir;
  const auto w = torch::randn({3, 4});
  const StateDict sd = {{"z.weight", w},
                        {"a.bias", torch::arange(5, torch::kDouble)},
                        {"bn.num_batches_tracked", torch::tensor(7, torch::kLong)},
                        {"half", torch::randn({2, 2}).to(torch::kHalf)},
                        {"mask", torch::tensor({true, false, true})},
                        {"transposed", w.t()},
                        {"empty", torch::empty({0, 3})}};
  write_state_dict(dir.file("x.pth"), sd);
  EXPECT_FALSE(fs::exists(dir.file("x.pth.tmp")));
  const StateDict back = read_state_dict(dir.file("x.pth"));
  ASSERT_EQ(back.size(), sd.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_EQ(back[i].first, sd[i].first);
    EXPECT_EQ(back[i].second.scalar_type(), sd[i].second.scalar_type()) << sd[i].first;
    EXPECT_EQ(back[i].second.sizes(), sd[i].second.sizes()) << sd[i].first;
    EXPECT_TRUE(back[i].second.is_contiguous());
    EXPECT_TRUE(torch::equal(back[i].second, sd[i].second)) << sd[i].first;
  }
}

TEST(Pth, ReadsTheOpcodesTorchSaveWritesAndViewsIntoAStorage) {
  // A view with an offset and a stride, read from a storage of 6 values, as a slice of a bigger tensor saves.
  const auto sd =
      parse_state_dict(archive_with(tensor_pickle(3, 2, 1, 6), {{"data/0", floats({0, 1, 2, 3, 4, 5})}}), "v.pth");
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_EQ(sd[0].first, "w");
  EXPECT_TRUE(torch::equal(sd[0].second, torch::tensor({1.0f, 3.0f, 5.0f})));
}

TEST(Pth, ReadsFilesPyTorchWrote) {
  // fuzz/seeds/pth: torch.save of an nn.Sequential's state_dict (an OrderedDict with _metadata), and of a dict
  // holding a view into a bigger storage (x[1:] of a float64 tensor) and an int64 scalar.
  const std::string seeds = std::string(RESLAB_SOURCE_DIR) + "/fuzz/seeds/pth/";
  const StateDict seq = read_state_dict(seeds + "torch_sequential.pth");
  std::vector<std::string> names;
  for (const auto& [k, t] : seq) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                             "1.num_batches_tracked"}));
  EXPECT_EQ(seq[0].second.sizes(), (std::vector<int64_t>{2, 1, 3, 3}));
  EXPECT_TRUE(torch::equal(seq[1].second, torch::ones({2})));
  EXPECT_EQ(seq[5].second.scalar_type(), torch::kLong);
  const StateDict views = read_state_dict(seeds + "views_and_types.pth");
  ASSERT_EQ(views.size(), 3u);
  EXPECT_EQ(views[1].first, "linear.bias");
  EXPECT_EQ(views[1].second.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(views[1].second, torch::zeros({2}, torch::kDouble)));
  EXPECT_EQ(views[2].second.item<int64_t>(), 3);
  expect_error<PthError>([&] { read_state_dict(seeds + "truncated.pth"); },
                         {"truncated.pth: truncated or not a ZIP archive"});
}

TEST(Pth, HostileFilesAreErrorsNamingTheFile) {
  TempDir dir;
  write_state_dict(dir.file("ok.pth"), {{"a", torch::randn({4, 4})}, {"b", torch::arange(3)}});
  const auto good = file_bytes(dir.file("ok.pth"));
  // Every truncation, and every byte changed, is a PthError (or, for bytes no reader looks at, the same dict).
  for (size_t cut = 0; cut < good.size(); cut += 7) {
    expect_error<PthError>([&] { parse_state_dict(std::vector<char>(good.begin(), good.begin() + cut), "cut.pth"); },
                           {"cut.pth: "});
  }
  for (size_t at = 0; at < good.size(); at += 3) {
    auto bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    try {
      const auto sd = parse_state_dict(bad, "flip.pth");
      ASSERT_EQ(sd.size(), 2u) << "byte " << at;
    } catch (const PthError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("flip.pth: ", 0), 0u) << e.what();
    }
  }
  expect_error<PthError>([&] { read_state_dict(dir.file("missing.pth")); }, {dir.file("missing.pth"), "no such file"});
  expect_error<PthError>(
      [&] {
        parse_state_dict({'\x80', '\x02', '\x8a', '\x0a'}, "old.pth");
      },
      {"old.pth", "legacy format"});
  expect_error<PthError>(
      [&] {
        parse_state_dict({'h', 'e', 'l', 'l', 'o'}, "text.pth");
      },
      {"text.pth", "not a ZIP archive"});
  // What Python's pickle would run: refused by name, never constructed.
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with(std::string("\x80\x02") + "cos\nsystem\n" + unicode("ls") + "\x85R."),
                         "evil.pth");
      },
      {"evil.pth: data.pkl", "os.system", "does not construct"});
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with(std::string("\x80\x02") + "ctorchvision.models.resnet\nResNet\n)R."), "net.pth");
      },
      {"torchvision.models.resnet.ResNet", "save model.state_dict() instead"});
  // A training checkpoint: named by its keys, and what to save instead.
  {
    c10::impl::GenericDict ckpt(c10::StringType::get(), c10::AnyType::get());
    ckpt.insert("epoch", int64_t{3});
    ckpt.insert("state_dict", torch::randn({2}));
    const auto bytes = torch::pickle_save(ckpt);
    expect_error<PthError>([&] { parse_state_dict(bytes, "ckpt.pth"); },
                           {"ckpt.pth", "epoch, state_dict", "ckpt['state_dict']"});
  }
  // A storage shorter than it says, a view past its storage, a record that is not there.
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with(tensor_pickle(3, 1, 0, 6), {{"data/0", floats({0, 1})}}), "s.pth");
      },
      {"s.pth", "record 'data/0' holds 8 bytes, not 6 values of 4"});
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with(tensor_pickle(4, 2, 0, 6), {{"data/0", floats({0, 1, 2, 3, 4, 5})}}), "p.pth");
      },
      {"p.pth", "reads past its storage"});
  expect_error<PthError>([&] { parse_state_dict(archive_with(tensor_pickle(3, 1, 0, 6)), "r.pth"); },
                         {"r.pth", "no record 'data/0'"});
  // A view of stride 0 asking for 17 GB out of one value of storage.
  expect_error<PthError>(
      [&] {
        parse_state_dict(
            archive_with(tensor_pickle({255, 255, 255, 255}, {0, 0, 0, 0}, 0, 1), {{"data/0", floats({1})}}), "z.pth");
      },
      {"z.pth", "more bytes than twice the file"});
  // Malformed pickles: an unknown opcode, a memo never stored, nesting past the limit, no STOP.
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with("\x80\x02"
                                      "c"),
                         "g.pth");
      },
      {"g.pth", "GLOBAL"});
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with("\x80\x02"
                                      "h\x05."),
                         "m.pth");
      },
      {"memo index 5 was never stored"});
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with("\x80\x02"
                                      "I1\n."),
                         "o.pth");
      },
      {"pickle opcode 0x49"});
  expect_error<PthError>(
      [&] { parse_state_dict(archive_with("\x80\x02" + std::string(100, ']') + std::string(99, 'a') + "."), "d.pth"); },
      {"nested more than 64"});
  expect_error<PthError>([&] { parse_state_dict(archive_with("\x80\x02}"), "t.pth"); }, {"truncated pickle"});
  // Nesting built top-down (a list put inside another, then given a child through the memo) is refused, so no
  // chain deeper than the limit can be made; and no container inside itself.
  {
    std::string chain = "\x80\x02]q\x00"s;
    for (int i = 0; i < 100; ++i)
      chain +=
          "]q\x01"
          "a0h\x01";
    expect_error<PthError>([&] { parse_state_dict(archive_with(chain + "0h\x00."s), "chain.pth"); },
                           {"APPEND on a container already inside another"});
    expect_error<PthError>(
        [&] {
          parse_state_dict(archive_with("\x80\x02]q\x00h\x00"
                                        "a."s),
                           "self.pth");
        },
        {"a container inside itself"});
  }
  // Values without end: refused past the budget, long before memory runs out.
  expect_error<PthError>(
      [&] { parse_state_dict(archive_with("\x80\x02](" + std::string(3000000, 'N') + "e."), "n.pth"); },
      {"values (a state_dict has far fewer)"});
  // Untrusted names reach a message escaped and cut short.
  expect_error<PthError>(
      [&] { parse_state_dict(archive_with(std::string("\x80\x02") + "cos\nsys\x1b[31mtem\n)R."), "esc.pth"); },
      {"os.sys\\u001b[31mtem"});
  expect_error<PthError>(
      [&] {
        parse_state_dict(archive_with("\x80\x02"
                                      "K\x01."),
                         "i.pth");
      },
      {"holds an int, not a dict"});
}

TEST(Pth, RecordsThatShareBytesAreRefused) {
  // Two directory entries onto one stored block would be read as two storages: a small file asking for much.
  TempDir dir;
  write_state_dict(dir.file("ok.pth"), {{"a", torch::randn({64})}, {"b", torch::randn({64})}});
  auto bytes = file_bytes(dir.file("ok.pth"));
  // Point the directory entry of data/1 at data/0's local header.
  auto find_entry = [&](const std::string& name) -> size_t {
    for (size_t at = 0; at + 46 < bytes.size(); ++at) {
      if (bytes[at] == 'P' && bytes[at + 1] == 'K' && bytes[at + 2] == 1 && bytes[at + 3] == 2 &&
          std::string(bytes.data() + at + 46, name.size()) == name) {
        return at;
      }
    }
    return std::string::npos;
  };
  const size_t e0 = find_entry("archive/data/0"), e1 = find_entry("archive/data/1");
  ASSERT_NE(e0, std::string::npos);
  ASSERT_NE(e1, std::string::npos);
  std::memcpy(bytes.data() + e1 + 42, bytes.data() + e0 + 42, 4);  // the local header offset
  std::memcpy(bytes.data() + e1 + 16, bytes.data() + e0 + 16, 4);  // and its CRC, so only the overlap is wrong
  expect_error<PthError>([&] { parse_state_dict(bytes, "overlap.pth"); }, {"overlap.pth", "two records overlap"});
}

TEST(TorchNames, ReferenceNamesFollowTorchvisionAndTheCifarModule) {
  EXPECT_EQ(reference_name("stage2.0.projection.0.weight", NameStyle::kTorchvision), "layer2.0.downsample.0.weight");
  EXPECT_EQ(reference_name("stage2.0.projection.1.running_var", NameStyle::kCifar), "layer2.0.shortcut.1.running_var");
  EXPECT_EQ(reference_name("fc.weight", NameStyle::kTorchvision), "fc.weight");
  EXPECT_EQ(reference_name("fc.bias", NameStyle::kCifar), "linear.bias");
  EXPECT_EQ(reference_name("stage3.8.bias2b", NameStyle::kCifar), "layer3.8.bias2b");
  EXPECT_EQ(reference_name("bn1.num_batches_tracked", NameStyle::kCifar), "bn1.num_batches_tracked");

  // torchvision's resnet18 state_dict has 122 entries: the same here, BN buffers included.
  auto r18 =
      std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet18", ModelSpec{{3, 224, 224}, 1000, Shortcut::B}));
  ASSERT_TRUE(r18);
  const auto sd = reference_state_dict(*r18);
  EXPECT_EQ(sd.size(), 122u);
  EXPECT_EQ(torchvision_equivalent(*r18), "resnet18");
  std::set<std::string> names;
  for (const auto& [k, t] : sd) names.insert(k);
  for (const char* k : {"conv1.weight", "bn1.running_mean", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight",
                        "layer2.0.downsample.1.num_batches_tracked", "layer4.1.bn2.bias", "fc.weight", "fc.bias"}) {
    EXPECT_TRUE(names.count(k)) << k;
  }
  // The paper's ResNet-50 strides on its first 1x1: not torchvision's, whose names it shares.
  auto paper50 =
      std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet50", ModelSpec{{3, 224, 224}, 1000, Shortcut::B}));
  auto tv50 = std::dynamic_pointer_cast<ResNetImpl>(
      build_model("resnet50-torchvision", ModelSpec{{3, 224, 224}, 1000, Shortcut::B}));
  EXPECT_EQ(torchvision_equivalent(*paper50), "");
  EXPECT_EQ(torchvision_equivalent(*tv50), "resnet50");
  EXPECT_EQ(reference_state_dict(*tv50).size(), 320u);
  auto noaffine =
      std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet20-noaffine", ModelSpec{{1, 28, 28}, 10, Shortcut::A}));
  for (const auto& [k, t] : reference_state_dict(*noaffine)) EXPECT_EQ(k.find("bn1.weight"), std::string::npos) << k;
}

TEST(TorchNames, StrictLoadNamesTheFirstMissingMisshapenAndUnexpectedKey) {
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  auto source = std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet8", spec));
  auto target = std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet8", spec));
  {
    torch::NoGradGuard no_grad;
    for (auto& b : source->named_buffers()) {
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
    }
  }
  StateDict sd = reference_state_dict(*source);
  EXPECT_EQ(load_reference_state_dict(*target, sd, "f.pth"), static_cast<int64_t>(sd.size()));
  for (const auto& p : source->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), target->named_parameters()[p.key()]));
  for (const auto& b : source->named_buffers()) EXPECT_TRUE(torch::equal(b.value(), target->named_buffers()[b.key()]));

  // Files from before PyTorch 0.4.1 have no BN batch counts: set to 0, as PyTorch does, and counted.
  StateDict no_counts;
  for (const auto& [k, t] : sd) {
    if (k.find("num_batches_tracked") == std::string::npos) no_counts.emplace_back(k, t);
  }
  int64_t defaulted = 0;
  EXPECT_EQ(load_reference_state_dict(*target, no_counts, "old.pth", &defaulted),
            static_cast<int64_t>(no_counts.size()));
  EXPECT_EQ(defaulted, static_cast<int64_t>(sd.size() - no_counts.size()));
  EXPECT_GT(defaulted, 0);
  EXPECT_EQ(target->named_buffers()["bn1.num_batches_tracked"].item<int64_t>(), 0);
  StateDict missing(sd.begin() + 1, sd.end());
  expect_error<PthError>([&] { load_reference_state_dict(*target, missing, "f.pth"); },
                         {"f.pth: no key 'conv1.weight'", "1 of the net's"});
  StateDict misshapen = sd;
  for (auto& [k, t] : misshapen) {
    if (k == "layer2.0.conv1.weight") t = torch::zeros({16, 16, 3, 3});
  }
  expect_error<PthError>([&] { load_reference_state_dict(*target, misshapen, "f.pth"); },
                         {"key 'layer2.0.conv1.weight' has shape [16, 16, 3, 3]", "this model's is [32, 16, 3, 3]"});
  StateDict extra = sd;
  extra.emplace_back("layer4.0.conv1.weight", torch::zeros({1}));
  expect_error<PthError>([&] { load_reference_state_dict(*target, extra, "f.pth"); },
                         {"key 'layer4.0.conv1.weight' has no place in this model", "another architecture"});
}

/// A run folder as reslab train leaves it (config.json, model.pt), for a net with BN statistics set.
RunConfig write_run(const std::string& dir, const std::string& model) {
  RunConfig run;
  run.name = fs::path(dir).filename().string();
  run.model.name = model;
  run.optim.epochs = 1.0;
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  auto net = build_model(model, spec);
  {
    torch::NoGradGuard no_grad;
    for (auto& b : net->named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.5, 0.5);
    }
    for (auto& p : net->named_parameters()) p.value().add_(torch::randn_like(p.value()) * 0.01);
  }
  fs::create_directories(dir);
  write_json_file(dir + "/config.json", to_json(run));
  save_model_file(dir + "/model.pt", *net,
                  {{"model", model},
                   {"shortcut", "A"},
                   {"dataset", run.data.dataset},
                   {"input", {1, 28, 28}},
                   {"classes", 10},
                   {"iterations", 1},
                   {"config", checkpoint_identity(run)}});
  return run;
}

TEST(Interop, ExportThenImportGivesTheSameNetAndAFolderTheProbesRead) {
  TempDir dir;
  write_run(dir.file("resnet8-run"), "resnet8-fixup");
  const ExportResult e = export_run(dir.file("resnet8-run"), dir.file("out/resnet8.pth"));
  EXPECT_EQ(e.style, NameStyle::kCifar);
  EXPECT_EQ(e.torchvision, "");
  const auto arch = read_json_file(dir.file("out/resnet8.json"));
  EXPECT_EQ(arch["format"], "reslab-export");
  EXPECT_EQ(arch["architecture"]["fixup"], true);
  EXPECT_EQ(arch["architecture"]["stage_blocks"], nlohmann::json({1, 1, 1}));
  const StateDict check = read_state_dict(dir.file("out/resnet8.check.pth"));
  ASSERT_EQ(check.size(), 2u);
  EXPECT_EQ(check[0].first, "input");
  EXPECT_EQ(check[1].second.sizes(), (std::vector<int64_t>{2, 10}));

  ImportOptions o;
  o.file = e.state_dict;
  o.model = "resnet8-fixup";
  o.out = dir.file("imported");
  const ImportResult r = import_state_dict(o);
  EXPECT_EQ(r.model, "resnet8-fixup");
  const RunConfig imported = load_run_config(dir.file("imported/config.json"));
  EXPECT_EQ(imported.data.dataset, "fashion-mnist");  // from the export's FILE.json
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  auto a = build_model("resnet8-fixup", spec), b = build_model("resnet8-fixup", spec);
  load_model_file(dir.file("resnet8-run/model.pt"), *a);
  const auto meta = load_model_file(dir.file("imported/model.pt"), *b);
  EXPECT_EQ(meta["imported_from"], e.state_dict);
  for (const auto& p : a->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), b->named_parameters()[p.key()])) << p.key();
  for (const auto& p : a->named_buffers()) EXPECT_TRUE(torch::equal(p.value(), b->named_buffers()[p.key()])) << p.key();
  // The check batch's logits are the net's.
  a->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(a->forward(check[0].second), check[1].second, 1e-5, 1e-5));
  EXPECT_TRUE(read_json_file(dir.file("imported/import.json"))["trained"].get<std::string>().find("not by reslab") ==
              0);

  // The folder is not replaced silently; names and the model are checked before anything is written.
  expect_error<ConfigError>([&] { import_state_dict(o); }, {"holds an imported run already", "--overwrite"});
  o.overwrite = true;
  EXPECT_NO_THROW(import_state_dict(o));
  ImportOptions other = o;
  other.model = "resnet8";
  expect_error<ConfigError>([&] { import_state_dict(other); },
                            {"--model resnet8", "resnet8.json", "\"resnet8-fixup\""});
  ImportOptions bad_name = o;
  bad_name.out = dir.file("bad name");
  expect_error<ConfigError>([&] { import_state_dict(bad_name); }, {"--out"});
  EXPECT_FALSE(fs::exists(dir.file("bad name")));
  expect_error<ConfigError>([&] { export_run(dir.file("resnet8-run"), dir.file("x.json")); }, {"ending in .pth"});
  // Never over the run's own files, and never into a trained run's folder.
  expect_error<ConfigError>([&] { export_run(dir.file("resnet8-run"), dir.file("resnet8-run/model.pt")); },
                            {"inside the run folder"});
  EXPECT_TRUE(fs::exists(dir.file("resnet8-run/model.pt")));
  std::ofstream(dir.file("resnet8-run/summary.json")) << "{}";
  ImportOptions onto_run = o;
  onto_run.out = dir.file("resnet8-run");
  expect_error<ConfigError>([&] { import_state_dict(onto_run); }, {"holds a trained run (summary.json)"});
  expect_error<ConfigError>([&] { export_run(dir.file("nowhere"), dir.file("x.pth")); }, {"config.json: missing"});
}

TEST(Interop, ImportOfATorchvisionFileTakesItsLayoutAndTheDataItNeeds) {
  TempDir dir;
  // A torchvision ResNet-50's file, as reslab writes the same names: --model resnet50 becomes torchvision's v1.5.
  auto tv50 = std::dynamic_pointer_cast<ResNetImpl>(
      build_model("resnet50-torchvision", ModelSpec{{3, 224, 224}, 1000, Shortcut::B}));
  write_state_dict(dir.file("r50.pth"), reference_state_dict(*tv50));
  fs::create_directories(dir.file("idx"));
  std::ofstream(dir.file("idx/classes.json")) << R"({"n01440764": 0, "n03888605": 701})";
  ImportOptions o;
  o.file = dir.file("r50.pth");
  o.model = "resnet50";
  o.out = dir.file("r50");
  o.class_index = dir.file("idx/classes.json");
  const ImportResult r = import_state_dict(o);
  EXPECT_EQ(r.model, "resnet50-torchvision");
  EXPECT_NE(r.note.find("v1.5"), std::string::npos);
  EXPECT_EQ(r.classes, 1000);
  const RunConfig run = load_run_config(dir.file("r50/config.json"));
  EXPECT_EQ(run.data.dataset, "image-folder");
  EXPECT_EQ(run.model.shortcut, "B");
  EXPECT_EQ(run.data.folder.mean, kTorchvisionMean);
  EXPECT_EQ(run.data.folder.classes, 1000);
  EXPECT_EQ(run.data.folder.class_index.at("n03888605"), 701);
  // A class index with a folder name that leaves its folder, or an output past the net's, is refused.
  std::ofstream(dir.file("idx/bad.json")) << R"({"../n01440764": 0})";
  o.class_index = dir.file("idx/bad.json");
  o.overwrite = true;
  expect_error<ConfigError>([&] { import_state_dict(o); }, {"bad.json", "class_index", "one path component"});
  std::ofstream(dir.file("idx/big.json")) << R"({"n01440764": 1000})";
  o.class_index = dir.file("idx/big.json");
  expect_error<ConfigError>([&] { import_state_dict(o); }, {"class_index", "0 to 999"});
  // The classifier decides the classes; a file without one is not a ResNet's.
  write_state_dict(dir.file("nofc.pth"), {{"conv1.weight", torch::zeros({64, 3, 7, 7})}});
  ImportOptions nofc = o;
  nofc.file = dir.file("nofc.pth");
  nofc.class_index.clear();
  expect_error<PthError>([&] { import_state_dict(nofc); }, {"nofc.pth", "'fc.weight'"});
}

}  // namespace
}  // namespace reslab
