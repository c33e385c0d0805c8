#!/bin/bash
DEFS="-DGFLAGS_IS_A_DLL=0 -DGLOG_CUSTOM_PREFIX_SUPPORT -DUSE_C10D_GLOO -DUSE_DISTRIBUTED -DUSE_RPC -DUSE_TENSORPIPE -isystem /usr/include/torch/csrc/api/include"
for O in -O1 -O0; do
  d=/tmp/otest/s$O; mkdir -p $d; cp /work/main/build-sanitize/CMakeFiles/reslab_pch.dir/cmake_pch.hxx $d/
  F="$O -g1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -D_GLIBCXX_USE_CXX11_ABI=1 -Wall -Wextra -std=gnu++17"
  s=$(date +%s.%N)
  /usr/bin/clang++ $DEFS $F -fpch-instantiate-templates -Xclang -emit-pch -Xclang -include -Xclang $d/cmake_pch.hxx -x c++-header -o $d/cmake_pch.hxx.pch -c /work/main/build-sanitize/CMakeFiles/reslab_pch.dir/cmake_pch.hxx.cxx
  e=$(date +%s.%N); echo "pch $O $(echo "$e - $s" | bc)"
  s=$(date +%s.%N)
  (cd /work/main/build-sanitize/lib/experiment && /usr/bin/clang++ -DRESLAB_VERSION=\"0.1.0\" $DEFS -I/work/main/lib -isystem /usr/include/opencv4 $F -Xclang -include-pch -Xclang $d/cmake_pch.hxx.pch -Xclang -include -Xclang $d/cmake_pch.hxx -o $d/exp.o -c /work/main/build-sanitize/lib/experiment/CMakeFiles/reslab_experiment.dir/Unity/unity_0_cxx.cxx)
  e=$(date +%s.%N); echo "experiment $O $(echo "$e - $s" | bc)"
done
