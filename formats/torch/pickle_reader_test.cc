#include "formats/torch/pickle_reader.h"

#include <string>

#include "formats/torch/pickle_writer.h"
#include "formats/torch/value_json.h"
#include "gtest/gtest.h"

namespace ucp::formats::torch {
namespace {

absl::StatusOr<PickleTree> Parse(const std::string& bytes, const PickleLimits& limits = {}) {
  return ParsePickle({reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()}, limits);
}

// A string from a literal, keeping embedded NULs.
template <size_t N>
std::string B(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}
std::string P(const std::string& body) { return std::string("\x80\x02", 2) + body + "."; }

TEST(PickleReaderTest, Scalars) {
  // [None, True, False, 7, 300, -2 (BININT), LONG1 2**63, 1.5]
  std::string body = B("](N\x88\x89K\x07M\x2c\x01J\xfe\xff\xff\xff");
  body += std::string("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00", 11);
  body += std::string("G\x3f\xf8\x00\x00\x00\x00\x00\x00", 9);
  body += B("e");
  auto tree = Parse(P(body));
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto items = tree->root->items();
  ASSERT_EQ(items.size(), 8u);
  EXPECT_TRUE(items[0]->is_none());
  EXPECT_TRUE(items[1]->bool_value());
  EXPECT_FALSE(items[2]->bool_value());
  EXPECT_EQ(items[3]->int_value(), 7);
  EXPECT_EQ(items[4]->int_value(), 300);
  EXPECT_EQ(items[5]->int_value(), -2);
  EXPECT_EQ(items[6]->kind(), ValueKind::kBigInt);
  EXPECT_EQ(items[7]->float_value(), 1.5);
}

TEST(PickleReaderTest, DictKeepsOrderAndReplacesDuplicateKeys) {
  // {'b': 1, 'a': 2, 'b': 3} → {'b': 3, 'a': 2}
  std::string body =
      B("}(X\x01\x00\x00\x00"
        "bK\x01X\x01\x00\x00\x00"
        "aK\x02X\x01\x00\x00\x00"
        "bK\x03u");
  auto tree = Parse(P(body));
  ASSERT_TRUE(tree.ok()) << tree.status();
  ASSERT_EQ(tree->root->entries().size(), 2u);
  EXPECT_EQ(tree->root->entries()[0].first->str(), "b");
  EXPECT_EQ(tree->root->Get("b")->int_value(), 3);
  EXPECT_EQ(tree->root->Get("a")->int_value(), 2);
}

TEST(PickleReaderTest, MemoSharesNodes) {
  // l = []; [l, l]
  std::string body =
      B("](]q\x00h\x00"
        "e");
  auto tree = Parse(P(body));
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_EQ(tree->root->items()[0], tree->root->items()[1]);
}

TEST(PickleReaderTest, OrderedDictWithStateAndSet) {
  std::string body =
      B("(ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00xK\x01u}X\x09\x00\x00\x00_metadataNsb"
        "c__builtin__\nset\n](K\x01K\x02"
        "e\x85Rt");
  auto tree = Parse(P(body));
  ASSERT_TRUE(tree.ok()) << tree.status();
  const Value* od = tree->root->items()[0];
  EXPECT_EQ(od->kind(), ValueKind::kOrderedDict);
  EXPECT_EQ(od->Get("x")->int_value(), 1);
  ASSERT_NE(od->state(), nullptr);
  EXPECT_TRUE(od->state()->Get("_metadata")->is_none());
  EXPECT_EQ(tree->root->items()[1]->kind(), ValueKind::kSet);
  EXPECT_EQ(tree->root->items()[1]->items().size(), 2u);
}

TEST(PickleReaderTest, TensorRebuild) {
  // _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 6), 1, (2, 2), (2, 1), False,
  // OrderedDict())
  std::string body =
      B("ctorch._utils\n_rebuild_tensor_v2\n(("
        "X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
        "0X\x03\x00\x00\x00"
        "cpuK\x06tQK\x01K\x02K\x02\x86K\x02K\x01\x86\x89"
        "ccollections\nOrderedDict\n)RtR");
  auto tree = Parse(P(body));
  ASSERT_TRUE(tree.ok()) << tree.status();
  ASSERT_EQ(tree->root->kind(), ValueKind::kTensor);
  const TensorRef& t = tree->root->tensor();
  EXPECT_EQ(t.dtype, DType::kF32);
  EXPECT_EQ(t.shape, (Shape{2, 2}));
  EXPECT_EQ(t.storage_offset, 1);
  EXPECT_EQ(t.storage->numel, 6);
  EXPECT_TRUE(t.IsContiguous());

  // The same view reaching past the storage (offset 3 + 3 = element 6 of 6) is refused.
  std::string bad = body;
  bad.replace(bad.find("tQK\x01"), 4, "tQK\x03");
  auto refused = Parse(P(bad));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find("reaches element 6"), std::string::npos)
      << refused.status();
}

TEST(PickleReaderTest, ForbiddenGlobalsNameThemselves) {
  for (const char* g :
       {"cos\nsystem\n", "c__builtin__\neval\n", "csubprocess\nPopen\n", "cbuiltins\nexec\n"}) {
    auto tree = Parse(P(std::string(g) + B("(X\x02\x00\x00\x00lstR")));
    ASSERT_FALSE(tree.ok());
    EXPECT_EQ(tree.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(tree.status().message().find("is not on ucp's allow-list"), std::string::npos);
  }
  auto tree = Parse(P(B("cos\nsystem\n(X\x02\x00\x00\x00lstR")));
  EXPECT_NE(tree.status().message().find("os.system"), std::string::npos) << tree.status();
}

TEST(PickleReaderTest, ReduceOnNonCallableIsRefused) {
  auto tree = Parse(P(B("ctorch\nFloatStorage\n)R")));
  EXPECT_EQ(tree.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(tree.status().message().find("not callable"), std::string::npos) << tree.status();
  tree = Parse(P(B("K\x01)R")));
  EXPECT_EQ(tree.status().code(), absl::StatusCode::kDataLoss);
  // getattr on something other than an allowed class
  tree = Parse(P(B("c__builtin__\ngetattr\nK\x01X\x01\x00\x00\x00x\x86R")));
  EXPECT_EQ(tree.status().code(), absl::StatusCode::kDataLoss);
}

TEST(PickleReaderTest, DeepNestingIsRefusedWithoutRecursion) {
  std::string deep(100000, ']');
  deep += std::string(99999, 'a');
  auto tree = Parse(P(deep));
  EXPECT_EQ(tree.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(tree.status().message().find("deeper"), std::string::npos) << tree.status();
  std::string marks(100000, '(');
  EXPECT_EQ(Parse(P(marks)).status().code(), absl::StatusCode::kDataLoss);
}

TEST(PickleReaderTest, CyclesAndExponentialSharingAreRefused) {
  // l = []; l.append(l)
  auto tree =
      Parse(P(B("]q\x00h\x00"
                "a")));
  EXPECT_EQ(tree.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(tree.status().message().find("cycle"), std::string::npos);
  // x0 = []; x(i+1) = [x(i), x(i)]: 2^60 nodes when expanded.
  std::string laughs = B("]q\x00");
  for (int i = 0; i < 60; ++i) {
    laughs += B("0h\x00h\x00\x86q\x00");
  }
  PickleLimits limits;
  limits.max_expanded_values = 1 << 20;
  tree = Parse(P(laughs), limits);
  EXPECT_EQ(tree.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(tree.status().message().find("expands"), std::string::npos) << tree.status();
}

TEST(PickleReaderTest, MalformedStreams) {
  EXPECT_EQ(Parse(B("")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Parse(B("\x80\x02X\xff\xff\xff\x7f")).status().code(),
            absl::StatusCode::kDataLoss);                                             // huge string
  EXPECT_EQ(Parse(P(B("h\x05"))).status().code(), absl::StatusCode::kDataLoss);       // memo miss
  EXPECT_EQ(Parse(P(B("a"))).status().code(), absl::StatusCode::kDataLoss);           // underflow
  EXPECT_EQ(Parse(P(B("K\x01K\x02"))).status().code(), absl::StatusCode::kDataLoss);  // 2 on stack
  EXPECT_EQ(Parse(P(B("X\x02\x00\x00\x00\xff\xfe"))).status().code(),
            absl::StatusCode::kDataLoss);                                          // bad UTF-8
  EXPECT_EQ(Parse(P(B("i"))).status().code(), absl::StatusCode::kUnimplemented);   // INST
  EXPECT_EQ(Parse(P(B("N")) + "N").status().code(), absl::StatusCode::kDataLoss);  // trailing bytes
}

TEST(PickleWriterTest, WriteThenReadIsIdentity) {
  std::string body =
      B("}(X\x01\x00\x00\x00"
        "a](K\x01J\xfe\xff\xff\xff"
        "eX\x01\x00\x00\x00"
        "b"
        "(ccollections\nOrderedDict\n)RX\x01\x00\x00\x00"
        "c\x88"
        "c__builtin__\nset\n](K\x01"
        "e\x85R"
        "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00tu");
  auto tree = Parse(P(body));
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto written = WritePickle(*tree->root);
  ASSERT_TRUE(written.ok()) << written.status();
  auto again = Parse(written->bytes);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ValueToJson(*tree->root).dump(), ValueToJson(*again->root).dump());
}

}  // namespace
}  // namespace ucp::formats::torch
