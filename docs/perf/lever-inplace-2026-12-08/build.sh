#!/bin/bash
# Builds ab.cpp against build/'s static libraries (scripts/build first). Usage: build.sh OUTPUT
set -e
root=$(cd "$(dirname "$0")/../../.." && pwd)
b=$root/build/lib
c++ -O2 -std=gnu++17 -DUSE_C10D_GLOO -DUSE_DISTRIBUTED -I"$root/lib" -isystem /usr/include/torch/csrc/api/include \
  "$(dirname "$0")/ab.cpp" -o "$1" $b/app/libreslab_app.a $b/interop/libreslab_interop.a \
  $b/experiment/libreslab_experiment.a $b/probes/libreslab_probes.a $b/train/libreslab_train.a \
  $b/optim/libreslab_optim.a $b/distributed/libreslab_distributed.a $b/models/libreslab_models.a \
  $b/ops/libreslab_ops.a -lgomp $b/data/libreslab_data.a -lopencv_imgcodecs -lopencv_imgproc -lopencv_core -lz \
  -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed -lpthread
