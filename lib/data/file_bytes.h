#pragma once
// Reading a whole data file, gzip-compressed or not.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace reslab {

/// The whole length a file's decompressed start (`head`, up to the bytes asked for; fewer when the file is
/// shorter) declares, or 0 when it declares none (a header too short or foreign: the parser will say so).
using DeclaredSize = std::function<uint64_t(const std::vector<uint8_t>& head)>;

/// The most a data file may expand to here: half the memory available now (/proc/meminfo), at most 64 GiB.
uint64_t data_file_limit();

/// The decompressed bytes of `path` (plain files are read as they are). Decompression is bounded: by `limit`
/// (0: data_file_limit()) and, where `declared` is given, by the length that the first `head` bytes declare; a
/// file that declares more than the limit, or expands past what it declares (a gzip bomb), is an error naming
/// it, found before the excess is held in memory. Throws DataError naming the file when it is missing,
/// unreadable, or a corrupt or truncated gzip stream.
std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t limit = 0, size_t head = 0,
                                     const DeclaredSize& declared = {});

/// The first of `candidates` that exists, or "" when none does.
std::string first_existing(const std::vector<std::string>& candidates);

}  // namespace reslab
