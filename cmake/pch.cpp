// Anchor for the precompiled LibTorch header (see CMakeLists.txt).
