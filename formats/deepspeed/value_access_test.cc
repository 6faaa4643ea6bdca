#include "formats/deepspeed/value_access.h"

#include "gtest/gtest.h"

namespace ucp::formats::deepspeed {
namespace {

using formats::torch::ValueArena;

class ValueAccessTest : public ::testing::Test {
 protected:
  const Value* Enum() { return arena_.Global("deepspeed.runtime.zero.config", "ZeroStageEnum"); }
  ValueArena arena_;
};

TEST_F(ValueAccessTest, ZeroStageByValueByNameAndPlain) {
  // Python 3.10/3.12: ZeroStageEnum(2); early 3.11: getattr(ZeroStageEnum, 'gradients') (§2.6).
  const Value* by_value =
      arena_.Object(Enum(), arena_.Tuple({arena_.Int(2)}), Value::Construction::kReduce);
  EXPECT_EQ(AsZeroStage(by_value, "z").value(), 2);
  for (const char* module : {"__builtin__", "builtins"}) {
    const Value* by_name = arena_.Object(arena_.Global(module, "getattr"),
                                         arena_.Tuple({Enum(), arena_.Str("optimizer_states")}),
                                         Value::Construction::kReduce);
    EXPECT_EQ(AsZeroStage(by_name, "z").value(), 1);
  }
  const Value* alias =
      arena_.Object(arena_.Global("builtins", "getattr"),
                    arena_.Tuple({Enum(), arena_.Str("max_stage")}), Value::Construction::kReduce);
  EXPECT_EQ(AsZeroStage(alias, "z").value(), 3);
  EXPECT_EQ(AsZeroStage(arena_.Int(3), "z").value(), 3);

  const Value* unknown =
      arena_.Object(arena_.Global("builtins", "getattr"),
                    arena_.Tuple({Enum(), arena_.Str("stage9")}), Value::Construction::kReduce);
  EXPECT_EQ(AsZeroStage(unknown, "z").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(AsZeroStage(arena_.Int(7), "z").status().code(), absl::StatusCode::kDataLoss);
  const Value* other_enum = arena_.Object(
      arena_.Global("enum", "Other"), arena_.Tuple({arena_.Int(1)}), Value::Construction::kReduce);
  EXPECT_EQ(AsZeroStage(other_enum, "z").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(AsZeroStage(nullptr, "z").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ValueAccessTest, Shapes) {
  const Value* size = arena_.Object(arena_.Global("torch", "Size"),
                                    arena_.Tuple({arena_.Tuple({arena_.Int(3), arena_.Int(4)})}),
                                    Value::Construction::kReduce);
  EXPECT_EQ(AsShape(size, "s").value(), Shape({3, 4}));
  EXPECT_EQ(AsShape(arena_.Tuple({arena_.Int(2), arena_.Int(6), arena_.Int(16)}), "s").value(),
            Shape({2, 6, 16}));
  EXPECT_EQ(AsShape(arena_.Tuple({arena_.Int(-1)}), "s").status().code(),
            absl::StatusCode::kDataLoss);
  const int64_t big = int64_t{1} << 40;
  EXPECT_EQ(AsShape(arena_.Tuple({arena_.Int(big), arena_.Int(big)}), "s").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(AsShape(arena_.Str("3x4"), "s").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ValueAccessTest, FragmentAddress) {
  Value* dataclass =
      arena_.Object(arena_.Global("deepspeed.utils.tensor_fragment", "fragment_address"),
                    arena_.Tuple(), Value::Construction::kNewObj);
  Value* state = arena_.Dict();
  arena_.SetItem(state, "numel", arena_.Int(5));
  arena_.SetItem(state, "start", arena_.Int(7));
  ValueArena::SetState(dataclass, state);
  FragmentAddress a = AsFragmentAddress(dataclass, "f").value();
  EXPECT_EQ(a.numel, 5);
  EXPECT_EQ(a.start, 7);
  const Value* args_form =
      arena_.Object(arena_.Global("deepspeed.utils.tensor_fragment", "fragment_address"),
                    arena_.Tuple({arena_.Int(6), arena_.Int(0)}), Value::Construction::kReduce);
  EXPECT_EQ(AsFragmentAddress(args_form, "f").value().numel, 6);
  Value* negative =
      arena_.Object(arena_.Global("deepspeed.utils.tensor_fragment", "fragment_address"),
                    arena_.Tuple(), Value::Construction::kNewObj);
  Value* bad = arena_.Dict();
  arena_.SetItem(bad, "numel", arena_.Int(-5));
  arena_.SetItem(bad, "start", arena_.Int(0));
  ValueArena::SetState(negative, bad);
  EXPECT_EQ(AsFragmentAddress(negative, "f").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(AsFragmentAddress(arena_.Dict(), "f").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ValueAccessTest, IntKeysAndKinds) {
  Value* state = arena_.Dict();
  ValueArena::SetItem(state, arena_.Int(1), arena_.Str("one"));
  EXPECT_EQ(GetByInt(*state, 1)->str(), "one");
  EXPECT_EQ(GetByInt(*state, 0), nullptr);
  EXPECT_EQ(AsInt(arena_.Str("1"), "k").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(
      AsInt(arena_.Str("1"), "a.b[2]").status().message().find("a.b[2]: expected int, found str"),
      std::string::npos);
  EXPECT_FALSE(IsSet(arena_.None()));
  EXPECT_FALSE(IsSet(arena_.Dict()));
  EXPECT_TRUE(IsSet(arena_.Int(0)));
}

}  // namespace
}  // namespace ucp::formats::deepspeed
