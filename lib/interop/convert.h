#pragma once
// A run's final model out to PyTorch (a state_dict in the reference implementations' names, the architecture
// beside it, and a batch with reslab's logits to check the Python side against), and a PyTorch state_dict in
// as a run folder that reslab's probes read.

#include <nlohmann/json.hpp>

#include <string>

#include "interop/torch_names.h"

namespace reslab {

/// What `reslab export` wrote.
struct ExportResult {
  std::string state_dict;    ///< FILE.pth: torch.load gives the state_dict
  std::string architecture;  ///< FILE.json: what scripts/reslab_torch.py builds the module from
  std::string check;         ///< FILE.check.pth: {"input": a batch, "logits": reslab's outputs on it}
  int64_t tensors = 0;
  NameStyle style = NameStyle::kCifar;
  std::string torchvision;  ///< the torchvision.models function the state_dict loads into, or ""
  std::string model;
};

/// Exports RUN_DIR's model.pt to `to` (a name ending in .pth or .pt) and its two companions. Throws ConfigError
/// or CheckpointError naming the file when the run folder has no final model, or one of another run.
ExportResult export_run(const std::string& run_dir, const std::string& to);

struct ImportOptions {
  std::string file;     ///< a state_dict written by torch.save
  std::string model;    ///< a registry name, e.g. resnet50
  std::string out;      ///< the run folder to write
  std::string dataset;  ///< the data the run is probed on (default: image-folder for ImageNet nets, else the
                        ///< dataset named by a reslab export's FILE.json)
  std::string data_dir;
  std::string class_index;  ///< a JSON file {class folder: output index} (image folders)
  bool overwrite = false;
};

/// What `reslab import` wrote.
struct ImportResult {
  std::string run_dir;
  std::string model;  ///< the model name the run records (resnet50 becomes resnet50-torchvision)
  std::string note;   ///< why the name changed, or ""
  int64_t tensors = 0;
  int64_t classes = 0;
};

/// Turns a state_dict in reference names (torchvision's, or a reslab export's) into a run folder: config.json,
/// model.pt (BN running statistics included) and import.json (where it came from). Throws PthError naming the
/// file and the first missing, misshapen or unexpected key; ConfigError for a bad name, dataset or folder.
ImportResult import_state_dict(const ImportOptions& options);

/// torchvision's normalisation, which its pretrained weights expect.
extern const std::vector<double> kTorchvisionMean, kTorchvisionStd;

}  // namespace reslab
