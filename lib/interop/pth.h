#pragma once
// PyTorch state_dict files (torch.save(model.state_dict(), "f.pth")) read and written without Python.
//
// Reading runs a restricted unpickler: only what a state_dict is made of (dicts, tuples, numbers, strings,
// OrderedDict, tensors rebuilt from their storages) is accepted; any other class or function named in the
// file is an error naming it, so no file can make reslab construct arbitrary objects as Python's pickle would.

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "interop/zip_reader.h"

namespace reslab {

/// Tensors by name, in the file's order.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

/// The largest .pth file reslab reads (ResNet-152's torchvision weights are 230 MB).
constexpr uint64_t kMaxPthBytes = uint64_t{8} << 30;

/// Reads a state_dict saved by torch.save (zip format). Throws PthError naming the file and what is wrong:
/// missing, truncated, corrupt, the legacy format, a whole pickled module instead of its state_dict, a
/// training checkpoint holding one among other things (named by its keys), or anything that is not a dict of
/// tensors by name. Tensors come back contiguous, on the CPU.
StateDict read_state_dict(const std::string& path);
/// The same from the file's bytes; `source` names it in errors.
StateDict parse_state_dict(std::vector<char> bytes, const std::string& source);

/// Writes `tensors` as a file torch.load opens to a dict of tensors (torch.save's zip format), through a
/// temporary file and a rename. Throws std::runtime_error naming the file when it cannot be written.
void write_state_dict(const std::string& path, const StateDict& tensors);

}  // namespace reslab
