#pragma once
// Which probes exist and the settings they share.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace reslab {

class NetworkBase;
class BatchSource;
struct ProbeSettings;

/// What a probe runs on besides the net: training batches (gradients, paths; the first batch) and the test set.
struct ProbeInputs {
  const BatchSource& train;
  const BatchSource& test;
};

/// One probe of the table that the CLI, the experiment files and the summaries over seeds read.
struct ProbeInfo {
  std::string name;
  std::string help;              ///< what it measures, in a line (`reslab analyze --help`)
  bool during_training = false;  ///< can run during training, at chosen iterations
  /// The probe's headline figure, summarised over seeds: its key in "over_seeds" entries (empty: none), a JSON
  /// pointer to it in a subject's result, and what it is, in words.
  std::string figure;
  std::string pointer;
  std::string description;
  /// The probe on a net (trained or fresh, its BN statistics set), as `reslab analyze` runs it.
  std::function<nlohmann::json(NetworkBase&, const ProbeInputs&, const ProbeSettings&)> run;
};

/// The probes, in the order `reslab analyze all` runs them.
const std::vector<ProbeInfo>& probe_table();
/// The probes by name, in the table's order.
const std::vector<std::string>& probe_names();
/// Throws std::invalid_argument naming `name` and the valid probes unless it is one.
void check_probe_name(const std::string& name);
/// The table's row for `name`; throws as check_probe_name does.
const ProbeInfo& probe_info(const std::string& name);
/// Probes that can run during training, at chosen iterations ("grad_norms", "grad_snr").
bool probe_runs_during_training(const std::string& name);
/// Those probes' names, "grad_norms, grad_snr", for messages.
std::string probes_during_training();

/// Settings of the probes; every field has a default a researcher can start from.
struct ProbeSettings {
  /// Training examples for the gradient probes and the path-length probe; test examples per forward pass of the
  /// refinement probe.
  int64_t batch = 64;
  /// Lesions: numbers of random blocks deleted together (values above the removable blocks are skipped), and
  /// draws for each number; path lengths: draws for each length.
  std::vector<int64_t> lesion_k = {1, 2, 3, 4, 6, 8, 12, 16, 24};
  int64_t samples = 6;
  /// Path lengths sampled at most this many distinct lengths (evenly spaced) in deep nets.
  int64_t max_lengths = 40;
  /// Gradient correlation along lines between test images (Balduzzi et al.): points per line, lines, lags.
  int64_t points = 96;
  int64_t lines = 4;
  int64_t max_lag = 24;
  /// Training batches that set BN's statistics of a freshly initialised net before a probe evaluates it.
  int64_t calibration_batches = 8;
  uint64_t seed = 1;
};

nlohmann::json to_json(const ProbeSettings& settings);

/// A probe setting out of its range: `key` is its name in an experiment's probes.settings.
class ProbeSettingsError : public std::invalid_argument {
 public:
  ProbeSettingsError(std::string key, const std::string& expected)
      : std::invalid_argument(key + ": expected " + expected), key_(std::move(key)), expected_(expected) {}
  const std::string& key() const { return key_; }
  const std::string& expected() const { return expected_; }

 private:
  std::string key_, expected_;
};

/// Checks every setting against its range (positive, and small enough that a probe ends); throws
/// ProbeSettingsError for the first one out of it.
void check_probe_settings(const ProbeSettings& settings);

}  // namespace reslab
