#include "ucp/topology.h"

#include <set>

#include "gtest/gtest.h"

namespace ucp {
namespace {

Topology Make(int dp, int tp, int pp, int ep, int sp, bool data_first = false) {
  Topology t;
  t.dp = dp;
  t.tp = tp;
  t.pp = pp;
  t.ep = ep;
  t.sp = sp;
  t.use_data_before_expert_parallelism = data_first;
  return t;
}

// deepspeed-runtime.md §1.6's example: W = 8, ep = 4, default order ("E + D"): EP groups are
// consecutive blocks, expert-DP groups the same position in every block.
TEST(TopologyTest, DefaultExpertOrderMatchesDeepSpeedExample) {
  const Topology t = Make(8, 1, 1, 4, 1);
  ASSERT_TRUE(t.Validate().ok());
  EXPECT_EQ(t.edp(), 2);
  EXPECT_EQ(t.EpGroup(0), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(t.EpGroup(6), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(t.ExpertDpGroup(0), (std::vector<int>{0, 4}));
  EXPECT_EQ(t.ExpertDpGroup(3), (std::vector<int>{3, 7}));
  EXPECT_EQ(t.PlaceOnEp(5), (EpPlace{1, 1}));
}

// use_data_before_expert_parallelism ("D + E"): EP rank e owns DP ranks [e*edp, (e+1)*edp).
TEST(TopologyTest, DataFirstExpertOrder) {
  const Topology t = Make(8, 1, 1, 4, 1, /*data_first=*/true);
  EXPECT_EQ(t.ExpertDpGroup(1), (std::vector<int>{2, 3}));
  EXPECT_EQ(t.EpGroup(0), (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(t.PlaceOnEp(5), (EpPlace{2, 1}));
}

// Every DP rank is in exactly one expert-DP group, at the place PlaceOnEp says, in both orders.
TEST(TopologyTest, PlacementIsABijection) {
  for (bool data_first : {false, true}) {
    for (int dp : {1, 2, 4, 6, 8, 12}) {
      for (int ep = 1; ep <= dp; ++ep) {
        if (dp % ep != 0) continue;
        const Topology t = Make(dp, 1, 1, ep, 1, data_first);
        std::set<int> seen;
        for (int e = 0; e < ep; ++e) {
          const std::vector<int> group = t.ExpertDpGroup(e);
          for (int i = 0; i < static_cast<int>(group.size()); ++i) {
            EXPECT_EQ(t.PlaceOnEp(group[i]), (EpPlace{e, i}));
            EXPECT_EQ(t.DpRank(EpPlace{e, i}), group[i]);
            seen.insert(group[i]);
          }
        }
        EXPECT_EQ(static_cast<int>(seen.size()), dp);
      }
    }
  }
}

// AutoTP (§2.1): TP groups are consecutive global ranks, DP groups {lane, lane+tp, ...}; pipeline
// stages are consecutive blocks; the checkpoint's mp rank is pp_rank * tp + tp_rank (§1.2).
TEST(TopologyTest, GlobalRanksAsDeepSpeedLaysThemOut) {
  const Topology t = Make(2, 2, 2, 1, 1);
  ASSERT_TRUE(t.Validate(8).ok());
  EXPECT_EQ(t.Coords(1), (RankCoords{0, 0, 1, 0, EpPlace{0, 0}}));
  EXPECT_EQ(t.Coords(2), (RankCoords{0, 1, 0, 0, EpPlace{0, 1}}));
  EXPECT_EQ(t.Coords(7).pp, 1);
  EXPECT_EQ(t.MpRank(t.Coords(7)), 3);
  for (int r = 0; r < t.world(); ++r) {
    const RankCoords c = t.Coords(r);
    EXPECT_EQ(t.GlobalRank(c.pp, c.dp, c.tp), r);
  }
  const Topology s = Make(4, 1, 1, 1, 2);  // Ulysses: SP groups are consecutive DP ranks
  EXPECT_EQ(s.Coords(3).sp, 1);
  EXPECT_EQ(s.Coords(2).sp, 0);
}

TEST(TopologyTest, ValidateNamesTheNumbers) {
  auto message = [](const Topology& t, int64_t world = 0) {
    return std::string(t.Validate(world).message());
  };
  EXPECT_EQ(message(Make(6, 1, 1, 4, 1)),
            "dp 6 is not a multiple of ep 4 (the expert-data-parallel size dp / ep must be whole)");
  EXPECT_EQ(message(Make(0, 1, 1, 1, 1)), "dp 0 is not in [1, 1048576]");
  EXPECT_EQ(message(Make(4, 1, 1, 1, 3)),
            "dp 4 is not a multiple of sp 3 (SP ranks are data-parallel ranks for ZeRO)");
  EXPECT_EQ(message(Make(4, 2, 1, 1, 1), 6), "dp 4 * tp 2 * pp 1 = 8 != world size 6");
  EXPECT_EQ(message(Make(1 << 20, 2, 1, 1, 1)),
            "dp 1048576 * tp 2 * pp 1 = 2097152 ranks, more than 1048576");
  EXPECT_EQ(Make(4, 2, 1, 2, 1).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Make(1000000, 1, 1, 1, 1).Validate().ok());
  EXPECT_EQ(Make(8, 1, 1, 4, 1, true).ToString(), "dp 8, tp 1, pp 1, ep 4 (edp 2, data first)");
}

}  // namespace
}  // namespace ucp
