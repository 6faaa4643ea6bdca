#include "tests/interop/torch_sample.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace ucp::formats::torch {
namespace {

// A storage of `n` elements whose byte i is (i * 7 + seed) & 0xff, except that floats and bools
// get valid values (bool bytes 0/1).
StorageRef* MakeStorage(ValueArena& arena, DType dtype, int64_t n, int seed) {
  std::vector<std::byte> bytes(static_cast<size_t>(n * DTypeSize(dtype)));
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] =
        static_cast<std::byte>(dtype == DType::kBool ? (i + seed) % 2 : (i * 7 + seed) & 0xff);
  }
  if (dtype == DType::kF32) {
    for (int64_t i = 0; i < n; ++i) {
      float f = static_cast<float>(i) * 0.5f - 3.0f + seed;
      std::memcpy(bytes.data() + i * 4, &f, 4);
    }
  }
  return arena.NewStorage(
      StorageRef{std::to_string(seed), dtype, "cpu", n, false, Buffer::FromVector(bytes)});
}

const Value* Tensor(ValueArena& arena, const StorageRef* s, Shape shape,
                    std::vector<int64_t> stride, int64_t offset = 0, bool requires_grad = false) {
  TensorRef t;
  t.storage = s;
  t.dtype = s->dtype;
  t.shape = std::move(shape);
  t.stride = std::move(stride);
  t.storage_offset = offset;
  t.requires_grad = requires_grad;
  return arena.Tensor(std::move(t));
}

}  // namespace

const Value* BuildSampleTree(ValueArena& a) {
  Value* root = a.Dict();
  a.SetItem(root, "none", a.None());
  a.SetItem(root, "true", a.Bool(true));
  a.SetItem(root, "false", a.Bool(false));
  Value* ints = a.List();
  for (int64_t v : {int64_t{0}, int64_t{255}, int64_t{256}, int64_t{65535}, int64_t{65536},
                    int64_t{-1}, int64_t{2147483647}, int64_t{2147483648}, int64_t{-2147483649},
                    int64_t{1} << 62, std::numeric_limits<int64_t>::min()}) {
    ValueArena::Append(ints, a.Int(v));
  }
  ValueArena::Append(ints,
                     a.BigInt(std::string("\x00\x00\x00\x00\x00\x00\x00\x00\x40", 9)));  // 2**70
  a.SetItem(root, "ints", ints);
  Value* floats = a.List();
  for (double d : {1.5, -0.0, 1e-300, std::numeric_limits<double>::infinity(), std::nan("")}) {
    ValueArena::Append(floats, a.Float(d));
  }
  a.SetItem(root, "floats", floats);
  a.SetItem(root, "unicode", a.Str("h\xC3\xA9llo \xE2\x88\x91"));
  a.SetItem(root, "bytes", a.Bytes(std::string("\x00\xff abc\x80", 7)));
  a.SetItem(root, "empty_bytes", a.Bytes(""));
  a.SetItem(root, "tuples",
            a.List({a.Tuple(), a.Tuple({a.Int(1)}), a.Tuple({a.Int(1), a.Int(2), a.Int(3)}),
                    a.Tuple({a.Int(1), a.Int(2), a.Int(3), a.Int(4), a.Int(5)})}));
  Value* long_list = a.List();
  for (int i = 0; i < 1500; ++i) ValueArena::Append(long_list, a.Int(i));
  a.SetItem(root, "long_list", long_list);
  Value* int_keys = a.Dict();
  a.SetItem(int_keys, a.Int(0), a.Str("zero"));
  a.SetItem(int_keys, a.Int(7), a.Str("seven"));
  a.SetItem(root, "int_keys", int_keys);
  Value* od = a.OrderedDict();
  a.SetItem(od, "b", a.Int(2));
  a.SetItem(od, "a", a.Int(1));
  Value* meta = a.Dict();
  Value* inner = a.OrderedDict();
  Value* version = a.Dict();
  a.SetItem(version, "version", a.Int(1));
  a.SetItem(inner, "", version);
  a.SetItem(meta, "_metadata", inner);
  ValueArena::SetState(od, meta);
  a.SetItem(root, "odict", od);
  Value* set = a.Set();
  ValueArena::Append(set, a.Str("x"));
  a.SetItem(root, "set", set);
  Value* fset = a.Set(ValueKind::kFrozenSet);
  ValueArena::Append(fset, a.Int(3));
  a.SetItem(root, "frozenset", fset);
  a.SetItem(root, "dtype", a.Global("torch", "bfloat16"));
  a.SetItem(root, "size",
            a.Object(a.Global("torch", "Size"), a.Tuple({a.Tuple({a.Int(2), a.Int(3)})}),
                     Value::Construction::kReduce));
  a.SetItem(root, "stage",
            a.Object(a.Global("deepspeed.runtime.zero.config", "ZeroStageEnum"),
                     a.Tuple({a.Int(2)}), Value::Construction::kReduce));
  Value* scaler = a.Object(a.Global("deepspeed.runtime.fp16.loss_scaler", "LossScaler"), a.Tuple(),
                           Value::Construction::kNewObj);
  Value* scaler_state = a.Dict();
  a.SetItem(scaler_state, "cur_scale", a.Float(1.0));
  a.SetItem(scaler_state, "dynamic", a.Bool(false));
  ValueArena::SetState(scaler, scaler_state);
  a.SetItem(root, "loss_scaler", scaler);

  // Tensors: one per dtype, a view with an offset, a transposed (non-contiguous) view, a shared
  // tensor referenced twice, a 0-d tensor, an empty tensor, requires_grad.
  Value* tensors = a.Dict();
  int seed = 0;
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32,
                  DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    a.SetItem(tensors, std::string(DTypeName(d)),
              Tensor(a, MakeStorage(a, d, 6, seed++), Shape{2, 3}, {3, 1}));
  }
  StorageRef* big = MakeStorage(a, DType::kF32, 24, 100);
  a.SetItem(tensors, "view", Tensor(a, big, Shape{2, 5}, {5, 1}, 7));
  a.SetItem(tensors, "transposed", Tensor(a, big, Shape{4, 3}, {1, 4}, 0));
  const Value* shared = Tensor(a, MakeStorage(a, DType::kF32, 4, 200), Shape{4}, {1}, 0, true);
  a.SetItem(tensors, "shared_a", shared);
  a.SetItem(tensors, "shared_b", shared);
  a.SetItem(tensors, "scalar", Tensor(a, MakeStorage(a, DType::kF32, 1, 300), Shape{}, {}));
  a.SetItem(tensors, "empty", Tensor(a, MakeStorage(a, DType::kF32, 0, 400), Shape{0, 3}, {3, 1}));
  a.SetItem(root, "tensors", tensors);
  return root;
}

}  // namespace ucp::formats::torch
