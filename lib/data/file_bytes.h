#pragma once
// Reading a whole data file, gzip-compressed or not.

#include <cstdint>
#include <string>
#include <vector>

namespace reslab {

/// The decompressed bytes of `path` (plain files are read as they are). Throws DataError naming the file
/// when it is missing, unreadable, or a corrupt or truncated gzip stream.
std::vector<uint8_t> read_file_bytes(const std::string& path);

/// The first of `candidates` that exists, or "" when none does.
std::string first_existing(const std::vector<std::string>& candidates);

}  // namespace reslab
