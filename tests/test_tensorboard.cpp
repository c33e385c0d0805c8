// reslab's TensorBoard event files: CRC-32C, the record framing, the mapping from metrics.jsonl records to
// scalars, appending and rebuilding. test_tensorboard.sh reads real runs' files with TensorBoard's own reader.
#include <filesystem>
#include <string>

#include "event_reader.h"
#include "test_util.h"
#include "train/metrics.h"
#include "train/tensorboard.h"

namespace reslab {
namespace {

using testing::TempDir;

uint32_t crc_of(const std::string& s) { return crc32c(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

TEST(TensorBoard, Crc32cMatchesTheCastagnoliCheckValues) {
  EXPECT_EQ(crc_of("123456789"), 0xE3069283u);            // the standard check value
  EXPECT_EQ(crc_of(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720, B.4
  EXPECT_EQ(crc_of(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(crc_of(""), 0u);
  // TFRecord's mask: rotate right by 15 and add a constant, so a CRC of data holding CRCs is not degenerate.
  const std::string s = "123456789";
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c(reinterpret_cast<const uint8_t*>(s.data()), s.size()), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, EachMetricsRecordBecomesItsScalars) {
  auto tags = [](const nlohmann::json& record) {
    std::map<std::string, float> out;
    for (const auto& s : scalars_of_record(record)) out[s.tag] = s.value;
    return out;
  };
  const auto train = tags({{"kind", "train"},
                           {"iter", 50},
                           {"epoch", 0.2},
                           {"lr", 0.1},
                           {"loss", 1.5},
                           {"error", 40.0},
                           {"img_per_s", 300.0}});
  EXPECT_EQ(train, (std::map<std::string, float>{
                       {"train/loss", 1.5f}, {"train/error", 40.0f}, {"train/lr", 0.1f}, {"train/img_per_s", 300.0f}}));
  const auto eval = tags({{"kind", "eval"}, {"iter", 250}, {"split", "test"}, {"loss", 0.5}, {"error", 17.25}});
  EXPECT_EQ(eval, (std::map<std::string, float>{{"test/loss", 0.5f}, {"test/error", 17.25f}}));
  const auto norms = tags({{"kind", "probe"},
                           {"name", "grad_norms"},
                           {"iter", 0},
                           {"layers", {{{"name", "conv1"}, {"weight_grad_norm", 2.0}, {"input_grad_norm", 3.0}}}}});
  EXPECT_EQ(norms, (std::map<std::string, float>{{"grad_norms/weight/conv1", 2.0f}, {"grad_norms/input/conv1", 3.0f}}));
  const auto snr = tags({{"kind", "probe"},
                         {"name", "grad_snr"},
                         {"iter", 25},
                         {"layers", {{{"name", "stage1.0.conv1"}, {"snr", 0.125}, {"snr_plugin", 0.2}}}}});
  EXPECT_EQ(snr, (std::map<std::string, float>{{"grad_snr/stage1.0.conv1", 0.125f}}));
  // Records without scalars, or without a step, give none.
  EXPECT_TRUE(scalars_of_record({{"kind", "retry"}, {"iter", 7}, {"lr_scale", 0.1}}).empty());
  EXPECT_TRUE(scalars_of_record({{"kind", "train"}, {"loss", 1.0}}).empty());
  EXPECT_TRUE(scalars_of_record(nlohmann::json::array()).empty());
  EXPECT_TRUE(scalars_of_record({{"kind", 3}, {"iter", 1}, {"loss", 1.0}}).empty());  // odd records: no scalars
  EXPECT_TRUE(
      scalars_of_record({{"kind", "probe"}, {"name", {1}}, {"iter", 1}, {"layers", {{{"name", "x"}}}}}).empty());
}

TEST(TensorBoard, AnEventFileStartsWithItsVersionAndAppendsOneEventPerRecord) {
  TempDir dir;
  const std::string path = dir.file(kEventFileName);
  {
    EventWriter w(path);
    w.write_record({{"kind", "train"}, {"iter", 4}, {"loss", 2.0}, {"error", 80.0}, {"lr", 0.1}, {"img_per_s", 9.0}});
    w.write_record({{"kind", "retry"}, {"iter", 5}});  // nothing to plot
  }
  {
    EventWriter again(path);  // appends, no second version event
    again.write_record({{"kind", "eval"}, {"iter", 8}, {"split", "val"}, {"loss", 1.0}, {"error", 30.0}});
  }
  const auto events = testing::read_event_file(path);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_GT(events[0].wall_time, 1.6e9);
  EXPECT_EQ(events[1].step, 4);
  ASSERT_EQ(events[1].scalars.size(), 4u);
  EXPECT_EQ(events[1].scalars[0].tag, "train/loss");
  EXPECT_EQ(events[1].scalars[0].value, 2.0f);
  EXPECT_EQ(events[2].step, 8);
  EXPECT_EQ(events[2].scalars[1].tag, "val/error");
  EXPECT_EQ(events[2].scalars[1].value, 30.0f);
  // A flipped byte is caught by the record's checksum.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-6, std::ios::end);
    f.put('\x7f');
  }
  EXPECT_THROW(testing::read_event_file(path), std::runtime_error);
}

TEST(TensorBoard, RebuildingFromMetricsKeepsEachStepOnce) {
  TempDir dir;
  {
    JsonlWriter metrics(dir.file("metrics.jsonl"));
    for (int64_t iter : {10, 20, 30}) {
      metrics.write(
          {{"kind", "train"}, {"iter", iter}, {"loss", 1.0 / iter}, {"error", 50.0}, {"lr", 0.1}, {"img_per_s", 1.0}});
    }
  }
  // An event file that ran ahead of metrics.jsonl (a crash after a checkpoint, then metrics cut back).
  {
    EventWriter w(dir.file(kEventFileName));
    for (int64_t iter : {10, 20, 30, 40, 50}) w.write_record({{"kind", "train"}, {"iter", iter}, {"loss", 9.0}});
  }
  rebuild_event_file(dir.path());
  const auto events = testing::read_event_file(dir.file(kEventFileName));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].step, static_cast<int64_t>(10 * i));
    EXPECT_FLOAT_EQ(events[i].scalars[0].value, static_cast<float>(1.0 / (10.0 * static_cast<double>(i))));
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {  // no second file for TensorBoard
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == kEventFileName || name.find("tfevents") == std::string::npos) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file(".events.rebuild.tmp")));
}

}  // namespace
}  // namespace reslab
