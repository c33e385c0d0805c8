#pragma once
// IDX files (MNIST, Fashion-MNIST), gzipped or not.

#include <string>
#include <vector>

#include "data/dataset.h"

namespace reslab {

/// Decodes an unsigned-byte IDX file with `expected_dims` dimensions into a uint8 tensor of the stored shape.
/// Throws DataError naming the file for a wrong magic number, element type or dimension count, a file shorter
/// (truncated) or longer than its header says.
torch::Tensor read_idx_ubyte(const std::string& path, int64_t expected_dims);
/// The same on bytes already in memory; `name` stands for the file in error messages.
torch::Tensor parse_idx_ubyte(const std::vector<uint8_t>& bytes, const std::string& name, int64_t expected_dims);

/// Reads an MNIST-layout folder: `train-images-idx3-ubyte[.gz]` and `train-labels-idx1-ubyte[.gz]`, or the
/// `t10k-` pair for Mode::kTest. Labels must be below `classes`; images become N x 1 x H x W.
ImageDataset read_idx_dataset(const std::string& dir, Mode mode, int64_t classes);

}  // namespace reslab
