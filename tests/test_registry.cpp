// The name table: every paper depth by name, any 6n+2 depth, clear errors for the rest.
#include "models/registry.h"
#include "test_util.h"

namespace reslab {
namespace {

TEST(Registry, ListsPlainAndResidualAtEveryPaperDepth) {
  const auto names = model_names();
  for (const char* n : {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202", "plain20",
                        "plain56", "plain110", "plain1202"}) {
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
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet21"); },
                                               {"resnet21", "6n+2", "20", "56"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("vgg16"); },
                                               {"unknown model 'vgg16'", "resnet<depth>", "plain<depth>"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet"); }, {"unknown model"});
  testing::expect_error<std::invalid_argument>([] { parse_model_name("resnet20x"); }, {"unknown model"});
}

}  // namespace
}  // namespace reslab
