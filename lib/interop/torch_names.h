#pragma once
// reslab's parameter names against those of the reference PyTorch implementations: torchvision's ResNets for
// the ImageNet family (layer1.0.conv1.weight, layer2.0.downsample.0.weight, fc.weight), and the usual CIFAR
// ResNet module's for the CIFAR nets (layer1.0.conv1.weight, layer2.0.shortcut.0.weight, linear.weight).
// Everything else (BN, Fixup's biases and scale, a pre-activation net's final_bn) keeps reslab's name.

#include <nlohmann/json.hpp>

#include <string>

#include "interop/pth.h"
#include "models/resnet.h"

namespace reslab {

enum class NameStyle {
  kTorchvision,  ///< the ImageNet stem's nets
  kCifar,        ///< the CIFAR stem's nets
};

std::string to_string(NameStyle style);
/// The style a net's weights are named in outside reslab: torchvision's for the ImageNet stem, else the CIFAR one.
NameStyle name_style(const ResNetOptions& options);

/// "stage2.0.projection.0.weight" -> "layer2.0.downsample.0.weight" (torchvision) or "layer2.0.shortcut.0.weight"
/// (CIFAR); "fc.bias" -> "linear.bias" (CIFAR).
std::string reference_name(const std::string& reslab_name, NameStyle style);

/// Every parameter and buffer of `net` (BN running statistics and batch counts included) under its reference
/// name, in the module's order.
StateDict reference_state_dict(const ResNetImpl& net);

/// Copies `file`'s tensors (a state_dict in reference names, read from `source`) into `net`. Strict: throws
/// PthError naming the first key the net has and the file lacks, the first key whose shape differs (both
/// shapes), and the first key of the file the net has no place for. The one exception is BN's batch counts
/// (num_batches_tracked), which files from before PyTorch 0.4.1 lack and PyTorch itself sets to 0: so does this,
/// counting them in `defaulted`. Returns the number of tensors copied.
int64_t load_reference_state_dict(ResNetImpl& net, const StateDict& file, const std::string& source,
                                  int64_t* defaulted = nullptr);

/// What an exported file holds, for scripts/reslab_torch.py to build the matching nn.Module: the net's options
/// (every stage's blocks resolved), its input and classes, and the name style.
nlohmann::json architecture_json(const ResNetImpl& net);

/// The torchvision.models function whose module this net's state_dict loads into exactly ("resnet18", ...), or
/// "" when torchvision has none (the paper's stride placement in bottlenecks, plain nets, other variants).
std::string torchvision_equivalent(const ResNetImpl& net);

}  // namespace reslab
