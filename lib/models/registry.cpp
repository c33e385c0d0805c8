#include "models/registry.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace reslab {

namespace {

ResNetOptions with_tags(ResNetOptions o, const ModelTags& t, bool residual) {
  if (!residual && (t.zero_init_last || t.scale != BranchScale::kNone || t.fixup)) {
    throw std::invalid_argument(
        "-zerogamma, -skipinit, -bnskipinit, -scalar and -fixup act on a residual branch; a "
        "plain net would lose its signal");
  }
  // The one place a name's tags become block options.
  o.block()
      .residual(residual)
      .norm(t.norm)
      .zero_init_last(t.zero_init_last)
      .branch_scale(t.scale)
      .fixup(t.fixup)
      .stride_on_3x3(t.stride_on_3x3);
  return o;
}

ModelFamily imagenet_family(const std::string& prefix, bool residual, bool preact) {
  ModelFamily f;
  f.prefix = prefix;
  f.imagenet = true;
  f.description = preact
                      ? "ImageNet pre-activation ResNet (He et al. 2016): Table 1's layouts, BN-ReLU before each conv"
                  : residual ? "ImageNet ResNet (Table 1): 7x7 stem, basic blocks (18, 34) or bottlenecks (50+)"
                             : "ImageNet plain net: Table 1's layout without shortcuts (the paper's plain-18, -34)";
  f.paper_depths = preact || residual ? std::vector<int64_t>{18, 34, 50, 101, 152} : std::vector<int64_t>{18, 34};
  f.options = [residual, preact](int64_t depth, const ModelTags& t) {
    if (t.bottleneck || t.branch_layers != 0) {
      throw std::invalid_argument("-bottleneck and -k<layers> are for CIFAR-style nets; Table 1 fixes the blocks");
    }
    ResNetOptions o = imagenet_options(depth);
    o.block().preact(preact);
    return with_tags(o, t, residual);
  };
  return f;
}

ModelFamily cifar_family(const std::string& prefix, bool residual, bool preact) {
  ModelFamily f;
  f.prefix = prefix;
  f.description = preact     ? "CIFAR pre-activation ResNet (He et al. 2016): basic blocks (6n+2) below 164 layers, "
                               "bottlenecks (9n+2) from 164"
                  : residual ? "CIFAR-style ResNet (paper Sec. 4.2): 6n+2 layers, basic blocks with shortcuts"
                             : "CIFAR-style plain net: the ResNet of the same depth without shortcuts";
  f.paper_depths = preact ? std::vector<int64_t>{110, 164, 1001} : std::vector<int64_t>{20, 32, 44, 56, 110, 1202};
  f.options = [residual, preact](int64_t depth, const ModelTags& t) {
    if (t.bottleneck && t.branch_layers != 0)
      throw std::invalid_argument("-bottleneck and -k<layers> exclude each other");
    const bool bottleneck = t.bottleneck || (preact && t.branch_layers == 0 && depth >= 164);
    ResNetOptions o(depth);
    o.block().preact(preact);
    if (bottleneck) {
      // He et al. 2016's CIFAR bottlenecks: 16, 32, 64 wide branches expanded to 64, 128, 256.
      o.block().kind(BlockKind::kBottleneck);
    } else if (t.branch_layers != 0) {
      o.block().branch_layers(t.branch_layers);
    }
    cifar_blocks_per_stage(depth, o.layers_per_block());  // throws for a depth the blocks cannot make
    return with_tags(o, t, residual);
  };
  return f;
}

ModelTags parse_tags(const std::string& text, const std::string& name) {
  ModelTags t;
  std::string norm_tag;  // the tag that chose the normalisation: two would contradict each other
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t next = text.find('-', pos + 1);
    const std::string tag = text.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    const auto& table = model_tag_table();
    const auto row = std::find_if(table.begin(), table.end(), [&](const ModelTag& r) { return r.name == tag; });
    if (row == table.end()) {
      std::string known;
      for (const auto& r : table) known += (known.empty() ? "" : ", ") + r.name;
      throw std::invalid_argument("model '" + name + "': unknown tag '" + tag + "'; expected " + known);
    }
    if (row->norm) {
      if (!norm_tag.empty()) {
        throw std::invalid_argument("model '" + name + "': " + norm_tag + " and " + tag +
                                    " each choose the normalisation; use one");
      }
      norm_tag = tag;
      t.norm = *row->norm;
    }
    if (row->apply) row->apply(t);
    if (next == std::string::npos) break;
    pos = next;
  }
  return t;
}

}  // namespace

const std::vector<ModelFamily>& model_families() {
  static const std::vector<ModelFamily> families = {
      imagenet_family("resnet", true, false), imagenet_family("plain", false, false),
      imagenet_family("preact", true, true),  cifar_family("resnet", true, false),
      cifar_family("plain", false, false),    cifar_family("preact", true, true)};
  return families;
}

const std::vector<ModelTag>& model_tag_table() {
  static const std::vector<ModelTag> table = {
      {"-bottleneck",
       "CIFAR nets of bottleneck blocks (1x1, 3x3, 1x1), 9n+2 layers: resnet164-bottleneck",
       {},
       [](ModelTags& t) { t.bottleneck = true; }},
      {"-k1", "one 3x3 layer per block (3n+2 layers): resnet20-k1", {}, [](ModelTags& t) { t.branch_layers = 1; }},
      {"-k2", "two 3x3 layers per block, the paper's (6n+2)", {}, [](ModelTags& t) { t.branch_layers = 2; }},
      {"-k3", "three 3x3 layers per block (9n+2): resnet20-k3", {}, [](ModelTags& t) { t.branch_layers = 3; }},
      {"-noaffine",
       "BN without learned gamma and beta (Caffe's BatchNorm without its Scale layer)",
       Norm::kBatchNormNoAffine,
       {}},
      {"-zerogamma",
       "the last BN gamma of each branch starts at 0 (Goyal et al. 2017)",
       {},
       [](ModelTags& t) { t.zero_init_last = true; }},
      // De & Smith 2020: normalisation removed, a learnable scalar at 0 at the end of each branch.
      {"-skipinit", "no normalisation, a learnable scalar on each branch starting at 0 (SkipInit, De & Smith 2020)",
       Norm::kNone, [](ModelTags& t) { t.scale = BranchScale::kZero; }},
      {"-bnskipinit",
       "BN kept, and a learnable scalar on each branch starting at 0 (ReZero's CIFAR ResNets keep BN)",
       {},
       [](ModelTags& t) { t.scale = BranchScale::kZero; }},
      {"-scalar",
       "a learnable scalar on each branch, starting at 1",
       {},
       [](ModelTags& t) { t.scale = BranchScale::kOne; }},
      {"-nonorm", "no normalisation, He initialisation", Norm::kNone, {}},
      {"-fixup", "no normalisation, Fixup initialisation and scalar biases (Zhang et al. 2019)", Norm::kNone,
       [](ModelTags& t) { t.fixup = true; }},
      {"-torchvision",
       "bottleneck stride on the 3x3 conv, as the common PyTorch reference (the paper: first 1x1)",
       {},
       [](ModelTags& t) { t.stride_on_3x3 = true; }}};
  return table;
}

ParsedModelName parse_model_name(const std::string& name) {
  std::string rest = name;
  bool cifar_only = false;
  if (rest.rfind("cifar-", 0) == 0) {
    cifar_only = true;
    rest = rest.substr(6);
  }
  size_t letters = 0;
  while (letters < rest.size() && std::isalpha(static_cast<unsigned char>(rest[letters]))) ++letters;
  size_t digits = letters;
  while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits]))) ++digits;
  const std::string prefix = rest.substr(0, letters);
  const std::string depth_text = rest.substr(letters, digits - letters);
  const std::string tag_text = rest.substr(digits);
  const bool well_formed = !depth_text.empty() && depth_text.size() <= 6 && (tag_text.empty() || tag_text[0] == '-');
  std::string error;
  bool prefix_known = false;
  if (well_formed) {
    const int64_t depth = std::stoll(depth_text);
    const ModelTags tags = parse_tags(tag_text, name);
    for (const auto& family : model_families()) {
      if (family.prefix != prefix || (cifar_only && family.imagenet)) continue;
      prefix_known = true;
      // An ImageNet family only claims its own depths; every other depth goes on to the CIFAR family.
      if (family.imagenet && !std::count(imagenet_depths().begin(), imagenet_depths().end(), depth)) continue;
      try {
        ParsedModelName parsed{&family, depth, tags, family.options(depth, tags)};
        return parsed;
      } catch (const std::invalid_argument& e) {
        if (error.empty()) error = e.what();
      }
    }
  }
  if (prefix_known) throw std::invalid_argument("model '" + name + "': " + error);
  std::string forms;
  for (const auto& family : model_families()) {
    if (forms.find(family.prefix + "<depth>") == std::string::npos) {
      forms += (forms.empty() ? "" : ", ") + family.prefix + "<depth>";
    }
  }
  throw std::invalid_argument("unknown model '" + name + "': expected one of " + forms +
                              " with optional -tags (e.g. resnet56, plain20, resnet50, preact164, resnet20-k1); "
                              "`reslab models` lists them");
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& family : model_families()) {
    for (int64_t d : family.paper_depths) {
      const bool claimed_by_imagenet =
          !family.imagenet && std::count(imagenet_depths().begin(), imagenet_depths().end(), d);
      names.push_back((claimed_by_imagenet ? "cifar-" : "") + family.prefix + std::to_string(d));
    }
  }
  return names;
}

std::shared_ptr<NetworkBase> build_model(const std::string& name, const ModelSpec& spec) {
  // Checked before anything is allocated: a wild number of classes is an error, not an allocator failure.
  if (spec.classes < 2 || spec.classes > kMaxClasses) {
    throw std::invalid_argument("model '" + name + "': " + std::to_string(spec.classes) + " classes; expected 2 to " +
                                std::to_string(kMaxClasses));
  }
  const ImageShape& in = spec.input;
  if (in.channels < 1 || in.channels > kMaxInputChannels || in.height < 1 || in.height > kMaxInputSide ||
      in.width < 1 || in.width > kMaxInputSide) {
    throw std::invalid_argument("model '" + name + "': input " + std::to_string(in.channels) + "x" +
                                std::to_string(in.height) + "x" + std::to_string(in.width) + "; expected 1 to " +
                                std::to_string(kMaxInputChannels) + " channels and sides of 1 to " +
                                std::to_string(kMaxInputSide) + " pixels");
  }
  auto options = parse_model_name(name).options;
  return std::make_shared<ResNetImpl>(options.spec(spec));
}

}  // namespace reslab
