// libFuzzer target: see entries.h and scripts/fuzz.
#include "entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return reslab::fuzz::idx_entry(data, size); }
