#pragma once
// TensorBoard event files written by reslab itself: the TFRecord framing (length, masked CRC-32C of the length,
// the bytes, masked CRC-32C of the bytes) around protobuf `Event` messages holding scalar summaries. Every
// scalar comes from a metrics.jsonl record (scalars_of_record), so a run's event file is a function of its
// metrics.jsonl and is rebuilt from it wherever metrics.jsonl is cut back (resume, retry).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace reslab {

/// The file name TensorBoard finds in a run's folder (its reader takes any name containing "tfevents").
inline constexpr const char* kEventFileName = "events.out.tfevents.reslab";

/// CRC-32C (Castagnoli), as TFRecord uses it, and TFRecord's masked form of it.
uint32_t crc32c(const uint8_t* data, size_t size);
uint32_t masked_crc32c(const uint8_t* data, size_t size);

/// One named scalar at a step.
struct Scalar {
  std::string tag;
  float value;
};

/// The protobuf bytes of an Event: wall time, step and the scalars as a Summary of simple values.
std::string encode_scalar_event(double wall_time, int64_t step, const std::vector<Scalar>& scalars);
/// The protobuf bytes of the first Event of a file: its file_version, "brain.Event:2".
std::string encode_file_version_event(double wall_time);
/// `payload` in TFRecord framing.
std::string frame_record(const std::string& payload);

/// The scalars a metrics.jsonl record stands for, and its step ("iter"); empty for records without scalars.
/// train: train/loss, train/error, train/lr, train/img_per_s; eval: SPLIT/loss, SPLIT/error; probe grad_norms:
/// grad_norms/weight/LAYER and grad_norms/input/LAYER; probe grad_snr: grad_snr/LAYER (the debiased SNR).
std::vector<Scalar> scalars_of_record(const nlohmann::json& record);

/// Appends events to a run's event file, flushing each, so a crash loses at most the event being written.
/// Throws std::runtime_error naming the file when it cannot be opened or written.
class EventWriter {
 public:
  /// Opens `path` for appending; a new or empty file gets the file_version event first.
  explicit EventWriter(const std::string& path);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  /// Writes the scalars of one metrics.jsonl record (nothing for a record without scalars).
  void write_record(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  void append(const std::string& payload);
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// Writes `run_dir`/events.out.tfevents.reslab afresh from `run_dir`/metrics.jsonl (through a temporary file
/// and a rename): after metrics.jsonl is cut back, the curves hold each step once.
void rebuild_event_file(const std::string& run_dir);

}  // namespace reslab
