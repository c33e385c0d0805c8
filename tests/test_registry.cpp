// The name table: every paper depth by name, any 6n+2 depth, clear errors for the rest.
#include <algorithm>

#include "models/registry.h"
#include "test_util.h"

namespace reslab {
namespace {

TEST(Registry, ListsPlainAndResidualAtEveryPaperDepth) {
  const auto names = model_names();
  for (const char* n : {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202", "plain20", "plain56",
                        "plain110", "plain1202"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
}

TEST(Registry, BuildsAnyValidDepthByName) {
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  auto net = build_model("resnet14", spec);
  EXPECT_EQ(net->depth(), 14);
  EXPECT_TRUE(net->residual());
  auto plain = build_model("plain8", spec);
  EXPECT_FALSE(plain->residual());
  EXPECT_EQ(plain->forward(torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 10}));
}

TEST(Registry, RejectsUnknownNamesAndInvalidDepths) {
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet21"); }, {"resnet21", "6n+2", "20", "56"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("vgg16"); },
                                               {"unknown model 'vgg16'", "resnet<depth>", "plain<depth>"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet"); }, {"unknown model"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet20x"); }, {"unknown model"});
}

TEST(Registry, NamesEveryFamilyAndVariant) {
  const ModelSpec cifar{{3, 32, 32}, 10, Shortcut::A};
  const ModelSpec imagenet{{3, 224, 224}, 1000, Shortcut::B};
  // Table 1's names are the ImageNet nets; cifar- reaches the CIFAR-style net of the same depth.
  EXPECT_EQ(count_parameters(*build_model("resnet50", imagenet)), 25557032);
  EXPECT_EQ(parse_model_name("resnet50").options.block().kind(), BlockKind::kBottleneck);
  EXPECT_EQ(parse_model_name("resnet18").options.stem(), Stem::kImageNet);
  EXPECT_EQ(parse_model_name("cifar-resnet50").options.stem(), Stem::kCifar);
  EXPECT_EQ(parse_model_name("cifar-resnet50").depth, 50);
  EXPECT_FALSE(parse_model_name("plain34").options.block().residual());
  // He et al. 2016's pre-activation nets: basic at 110, bottleneck at 164 and 1001 (1.7M and 10.2M parameters).
  EXPECT_EQ(parse_model_name("preact110").options.block().kind(), BlockKind::kBasic);
  EXPECT_TRUE(parse_model_name("preact110").options.block().preact());
  EXPECT_EQ(parse_model_name("preact164").options.block().kind(), BlockKind::kBottleneck);
  EXPECT_NEAR(count_parameters(*build_model("preact164", cifar)) / 1e6, 1.7, 0.05);
  // (10.29M with option A shortcuts; the paper rounds to 10.2M.)
  EXPECT_NEAR(count_parameters(*build_model("preact1001", cifar)) / 1e6, 10.2, 0.1);
  EXPECT_EQ(parse_model_name("resnet164-bottleneck").options.block().kind(), BlockKind::kBottleneck);
  EXPECT_EQ(parse_model_name("resnet164").options.block().kind(), BlockKind::kBasic);
  // Branch depth at matched total depth, and the branch-scale tags.
  const auto k1 = parse_model_name("resnet20-k1").options;
  EXPECT_EQ(k1.block().branch_layers(), 1);
  EXPECT_EQ(build_model("resnet20-k1", cifar)->depth(), 20);
  EXPECT_EQ(std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet20-k1", cifar))->num_blocks(), 18);
  EXPECT_EQ(std::dynamic_pointer_cast<ResNetImpl>(build_model("resnet20-k3", cifar))->num_blocks(), 6);
  const auto tagged = parse_model_name("resnet56-noaffine-zerogamma").options;
  EXPECT_EQ(tagged.block().norm(), Norm::kBatchNormNoAffine);
  EXPECT_TRUE(tagged.block().zero_init_last());
  // SkipInit as De & Smith 2020 define it: no normalisation, a scalar at 0 on each branch; -bnskipinit keeps BN.
  EXPECT_EQ(parse_model_name("resnet56-skipinit").options.block().branch_scale(), BranchScale::kZero);
  EXPECT_EQ(parse_model_name("resnet56-skipinit").options.block().norm(), Norm::kNone);
  EXPECT_EQ(parse_model_name("resnet56-bnskipinit").options.block().branch_scale(), BranchScale::kZero);
  EXPECT_EQ(parse_model_name("resnet56-bnskipinit").options.block().norm(), Norm::kBatchNorm);
  EXPECT_EQ(parse_model_name("resnet56-noaffine-bnskipinit").options.block().norm(), Norm::kBatchNormNoAffine);
  EXPECT_EQ(parse_model_name("resnet56-scalar").options.block().branch_scale(), BranchScale::kOne);
  EXPECT_TRUE(parse_model_name("resnet56-fixup").options.block().fixup());
  EXPECT_EQ(parse_model_name("resnet56-fixup").options.block().norm(), Norm::kNone);
  EXPECT_TRUE(parse_model_name("resnet50-torchvision").options.block().stride_on_3x3());
  const auto names = model_names();
  for (const char* n : {"resnet18", "resnet152", "plain34", "preact164", "preact1001", "resnet1202"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
}

TEST(Registry, PlainNetsOfEveryBranchDepthAreOneNet) {
  // Without shortcuts, grouping 18 convs into blocks of 1, 2 or 3 changes nothing: same layers, same draws.
  const ModelSpec spec{{1, 28, 28}, 10, Shortcut::A};
  const auto x = torch::randn({2, 1, 28, 28});
  std::vector<torch::Tensor> outputs;
  for (const char* name : {"plain20-k1", "plain20", "plain20-k3", "resnet20-k1"}) {
    torch::manual_seed(7);
    auto net = build_model(name, spec);
    net->eval();
    outputs.push_back(net->forward(x));
  }
  EXPECT_TRUE(torch::equal(outputs[0], outputs[1]));
  EXPECT_TRUE(torch::equal(outputs[1], outputs[2]));
  EXPECT_FALSE(torch::allclose(outputs[0], outputs[3]));  // the shortcuts make the residual twin another net
}

TEST(Registry, RejectsVariantsThatCannotExist) {
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet20-wide"); },
                                               {"resnet20-wide", "unknown tag '-wide'", "-k1", "-fixup"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet21-k1"); }, {"21", "3n+2"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet21-bottleneck"); }, {"9n+2"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("plain20-skipinit"); }, {"plain20", "residual"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("plain20-bnskipinit"); }, {"residual"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet20-noaffine-skipinit"); },
                                               {"resnet20-noaffine-skipinit", "-noaffine and -skipinit", "use one"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet20-fixup-nonorm"); },
                                               {"-fixup and -nonorm"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet18-k1"); }, {"Table 1"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("preact100"); }, {"preact100", "6n+2"});
}

}  // namespace
}  // namespace reslab
