#!/bin/bash
# CUDA build's PCH and experiment unity TU at -O1 and -O0, one at a time.
T=/root/.cache/reslab/venv-torch2/lib/python3.11/site-packages/torch/include
DEFS="-DUSE_C10D_GLOO -DUSE_C10D_NCCL -DUSE_DISTRIBUTED -DUSE_NVSHMEM -DUSE_RPC -DUSE_TENSORPIPE -isystem $T -isystem $T/torch/csrc/api/include -isystem /usr/local/cuda/include"
for O in -O1 -O0; do
  d=/tmp/otest/p$O; mkdir -p $d; cp /work/main/build-cuda/CMakeFiles/reslab_pch.dir/cmake_pch.hxx $d/
  s=$(date +%s.%N)
  /usr/bin/c++ $DEFS $O -Wall -Wextra -std=gnu++20 -Winvalid-pch -x c++-header -include $d/cmake_pch.hxx -o $d/cmake_pch.hxx.gch -c /work/main/build-cuda/CMakeFiles/reslab_pch.dir/cmake_pch.hxx.cxx
  e=$(date +%s.%N); echo "pch $O $(echo "$e - $s" | bc)"
  s=$(date +%s.%N)
  (cd /work/main/build-cuda/lib/experiment && /usr/bin/c++ -DRESLAB_VERSION=\"0.1.0\" $DEFS -I/work/main/lib -isystem /usr/include/opencv4 $O -Wall -Wextra -std=gnu++20 -Winvalid-pch -include $d/cmake_pch.hxx -o $d/exp.o -c /work/main/build-cuda/lib/experiment/CMakeFiles/reslab_experiment.dir/Unity/unity_0_cxx.cxx)
  e=$(date +%s.%N); echo "experiment $O $(echo "$e - $s" | bc)"
done
