#pragma once
// The CIFAR-10 and CIFAR-100 binary formats (the "binary version" archives), read from the user's own copy.

#include <string>
#include <vector>

#include "data/dataset.h"

namespace reslab {

/// Reads CIFAR-10 (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`; records of 1 label byte and
/// 3072 pixel bytes) from `dir` or `dir/cifar-10-batches-bin`. Throws DataError naming the file when a file is
/// missing, not a whole number of records, or holds a label outside 0..9.
ImageDataset read_cifar10(const std::string& dir, Mode mode);

/// Reads CIFAR-100 (`train.bin`, `test.bin`; records of a coarse and a fine label byte and 3072 pixel bytes)
/// from `dir` or `dir/cifar-100-binary`, with the 100 fine labels as targets.
ImageDataset read_cifar100(const std::string& dir, Mode mode);

/// Decodes the records of one CIFAR-10 (or, with `cifar100`, CIFAR-100) binary file already in memory; `name`
/// stands for the file in error messages.
ImageDataset parse_cifar(const std::vector<uint8_t>& bytes, const std::string& name, bool cifar100);

}  // namespace reslab
