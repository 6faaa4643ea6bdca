#include "formats/hdf5/h5_internal.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "formats/base/status.h"
#include "formats/hdf5/zstd_filter.h"

namespace ucp::internal_hdf5 {
namespace {

using formats::hdf5::AttrList;
using formats::hdf5::AttrValue;
using formats::hdf5::kMaxAttributeBytes;
using formats::hdf5::kMaxAttributesPerObject;
using Kind = NumericLayout::Kind;

// Longest fixed-length ucp_dtype value read: DType names are a few bytes.
constexpr size_t kMaxDTypeTagBytes = 64;

struct StackWalk {
  std::string innermost;
  std::string outermost;
};

herr_t WalkOne(unsigned n, const H5E_error2_t* error, void* data) {
  auto* walk = static_cast<StackWalk*>(data);
  std::string desc = error->desc != nullptr && error->desc[0] != '\0' ? error->desc : "";
  if (desc.empty() && error->func_name != nullptr) desc = error->func_name;
  if (n == 0) walk->innermost = desc;
  walk->outermost = desc;
  return 0;
}

absl::StatusOr<TypeHandle> IntegerType(int bytes, bool is_signed) {
  hid_t base = H5I_INVALID_HID;
  switch (bytes) {
    case 1: base = is_signed ? H5T_STD_I8LE : H5T_STD_U8LE; break;
    case 2: base = is_signed ? H5T_STD_I16LE : H5T_STD_U16LE; break;
    case 4: base = is_signed ? H5T_STD_I32LE : H5T_STD_U32LE; break;
    case 8: base = is_signed ? H5T_STD_I64LE : H5T_STD_U64LE; break;
    default: return absl::InternalError(absl::StrCat("no HDF5 integer of ", bytes, " bytes"));
  }
  TypeHandle type(H5Tcopy(base));
  if (!type.valid()) return ErrorFromStack(absl::StatusCode::kInternal, "copying an HDF5 type");
  return type;
}

// An IEEE-style little-endian float: sign in the top bit, then exponent, then mantissa, with
// bias 2^(e-1)-1 and an implied leading 1.
absl::StatusOr<TypeHandle> FloatType(const NumericLayout& layout) {
  const size_t bits = static_cast<size_t>(layout.bytes) * 8;
  const size_t mantissa = static_cast<size_t>(layout.mantissa_bits);
  const size_t exponent = static_cast<size_t>(layout.exponent_bits);
  TypeHandle type(H5Tcopy(layout.bytes == 8 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE));
  bool ok = type.valid() &&
            H5Tset_fields(type.get(), bits - 1, mantissa, exponent, 0, mantissa) >= 0 &&
            H5Tset_offset(type.get(), 0) >= 0 && H5Tset_precision(type.get(), bits) >= 0 &&
            H5Tset_size(type.get(), static_cast<size_t>(layout.bytes)) >= 0 &&
            H5Tset_ebias(type.get(), (size_t{1} << (exponent - 1)) - 1) >= 0;
  if (!ok) return ErrorFromStack(absl::StatusCode::kInternal, "building an HDF5 float type");
  return type;
}

// h5py stores numpy bools as an enum {FALSE = 0, TRUE = 1} over int8.
bool IsH5pyBool(hid_t type) {
  if (H5Tget_class(type) != H5T_ENUM || H5Tget_size(type) != 1 || H5Tget_nmembers(type) != 2) {
    return false;
  }
  const char* expected_names[2] = {"FALSE", "TRUE"};
  for (unsigned i = 0; i < 2; ++i) {
    int8_t value = -1;
    char* name = H5Tget_member_name(type, i);
    bool match = name != nullptr && std::strcmp(name, expected_names[i]) == 0 &&
                 H5Tget_member_value(type, i, &value) >= 0 && value == static_cast<int8_t>(i);
    H5free_memory(name);
    if (!match) return false;
  }
  return true;
}

absl::Status ReadInto(hid_t attr, hid_t memory_type, void* out) {
  if (H5Aread(attr, memory_type, out) < 0) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading attribute");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadString(hid_t attr, hid_t type) {
  // HDF5 decodes the character set from the file without checking it; a damaged one would make
  // building the memory type below fail. HDF5 defines ASCII and UTF-8 only.
  const H5T_cset_t cset = H5Tget_cset(type);
  if (cset != H5T_CSET_ASCII && cset != H5T_CSET_UTF8) {
    H5Eclear2(H5E_DEFAULT);
    return absl::DataLossError(
        absl::StrCat("string attribute has unknown character set ", static_cast<int>(cset)));
  }
  if (H5Tis_variable_str(type) > 0) {
    TypeHandle memory(H5Tcopy(H5T_C_S1));
    if (!memory.valid() || H5Tset_size(memory.get(), H5T_VARIABLE) < 0 ||
        H5Tset_cset(memory.get(), cset) < 0) {
      return ErrorFromStack(absl::StatusCode::kInternal, "building a string type");
    }
    char* text = nullptr;
    UCP_RETURN_IF_ERROR(ReadInto(attr, memory.get(), &text));
    std::string value = text != nullptr ? text : "";
    H5free_memory(text);
    if (static_cast<int64_t>(value.size()) > kMaxAttributeBytes) {
      return absl::DataLossError("string attribute is too long");
    }
    return value;
  }
  size_t size = H5Tget_size(type);
  if (size == 0 || size > static_cast<size_t>(kMaxAttributeBytes)) {
    return absl::DataLossError(absl::StrCat("string attribute of ", size, " bytes"));
  }
  std::vector<char> text(size + 1, '\0');
  UCP_RETURN_IF_ERROR(ReadInto(attr, type, text.data()));
  std::string value(text.data());  // stops at the first NUL (null-terminated or null-padded)
  if (H5Tget_strpad(type) == H5T_STR_SPACEPAD) value.erase(value.find_last_not_of(' ') + 1);
  return value;
}

// Reads `count` integers as int64; unsigned 64-bit values above INT64_MAX give nullopt.
absl::StatusOr<std::optional<std::vector<int64_t>>> ReadIntegers(hid_t attr, hid_t type,
                                                                 size_t count) {
  std::vector<int64_t> values(count);
  if (count == 0) return values;
  if (H5Tget_sign(type) == H5T_SGN_NONE && H5Tget_size(type) == 8) {
    std::vector<uint64_t> raw(count);
    UCP_RETURN_IF_ERROR(ReadInto(attr, H5T_NATIVE_UINT64, raw.data()));
    for (size_t i = 0; i < count; ++i) {
      if (raw[i] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      values[i] = static_cast<int64_t>(raw[i]);
    }
    return values;
  }
  UCP_RETURN_IF_ERROR(ReadInto(attr, H5T_NATIVE_INT64, values.data()));
  return values;
}

// One attribute's value into `out`; `out` stays empty when AttrValue cannot hold it. (An out
// parameter, because GCC 12 warns maybe-uninitialized on StatusOr<optional<variant>> under ASan.)
absl::Status ReadOne(hid_t attr, std::optional<AttrValue>& out) {
  TypeHandle type(H5Aget_type(attr));
  SpaceHandle space(H5Aget_space(attr));
  if (!type.valid() || !space.valid()) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading attribute type");
  }
  H5T_class_t cls = H5Tget_class(type.get());
  H5S_class_t shape = H5Sget_simple_extent_type(space.get());
  if (shape == H5S_SCALAR && cls == H5T_FLOAT) {
    double value = 0;
    UCP_RETURN_IF_ERROR(ReadInto(attr, H5T_NATIVE_DOUBLE, &value));
    out.emplace(std::in_place_type<double>, value);
  } else if (shape == H5S_SCALAR && cls == H5T_STRING) {
    UCP_ASSIGN_OR_RETURN(std::string value, ReadString(attr, type.get()));
    out.emplace(std::in_place_type<std::string>, std::move(value));
  } else if (shape == H5S_SCALAR && cls == H5T_INTEGER) {
    UCP_ASSIGN_OR_RETURN(auto values, ReadIntegers(attr, type.get(), 1));
    if (values) out.emplace(std::in_place_type<int64_t>, (*values)[0]);
  } else if (shape == H5S_SIMPLE && cls == H5T_INTEGER &&
             H5Sget_simple_extent_ndims(space.get()) == 1) {
    hssize_t count = H5Sget_simple_extent_npoints(space.get());
    if (count < 0 || count > kMaxAttributeBytes / 8) {
      return absl::DataLossError(absl::StrCat("integer attribute of ", count, " elements"));
    }
    UCP_ASSIGN_OR_RETURN(auto values, ReadIntegers(attr, type.get(), static_cast<size_t>(count)));
    if (values) out.emplace(std::in_place_type<std::vector<int64_t>>, std::move(*values));
  }
  return absl::OkStatus();
}

}  // namespace

Hdf5Scope::Hdf5Scope() {
  H5Eget_auto2(H5E_DEFAULT, &old_func_, &old_data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (!RegisterZstdFilter()) {
    status_ = ErrorFromStack(absl::StatusCode::kInternal, "registering the zstd HDF5 filter");
  }
}

Hdf5Scope::~Hdf5Scope() { H5Eset_auto2(H5E_DEFAULT, old_func_, old_data_); }

absl::StatusOr<PropHandle> FileAccessProperties(bool for_writing) {
  PropHandle fapl(H5Pcreate(H5P_FILE_ACCESS));
  bool ok =
      fapl.valid() && H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) >= 0 &&
      H5Pset_file_locking(fapl.get(), true, true) >= 0 &&
      (!for_writing || H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0);
  if (!ok) return ErrorFromStack(absl::StatusCode::kInternal, "building file access properties");
  return fapl;
}

absl::Status ErrorFromStack(absl::StatusCode code, absl::string_view what) {
  StackWalk walk;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, WalkOne, &walk);
  H5Eclear2(H5E_DEFAULT);
  std::string message(what);
  if (walk.outermost.empty()) {
    absl::StrAppend(&message, ": HDF5 call failed");
  } else {
    absl::StrAppend(&message, ": ", walk.outermost);
    if (walk.innermost != walk.outermost) absl::StrAppend(&message, ": ", walk.innermost);
  }
  return absl::Status(code, message);
}

absl::StatusOr<std::string> NormalizePath(absl::string_view path, bool allow_root) {
  if (!path.empty() && path[0] == '/') path.remove_prefix(1);
  if (path.empty()) {
    if (allow_root) return std::string();
    return absl::InvalidArgumentError("path names the root group, not a dataset");
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == ".." || part.find('\0') != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad HDF5 path '", path, "'"));
    }
  }
  return std::string(path);
}

bool StoredAsBits(DType dtype) { return dtype == DType::kF8E4M3; }

absl::StatusOr<TypeHandle> StoredType(DType dtype) {
  NumericLayout layout = DTypeLayout(dtype);
  if (layout.kind == Kind::kFloat && !StoredAsBits(dtype)) return FloatType(layout);
  return IntegerType(layout.bytes, layout.kind == Kind::kSignedInt);
}

bool TypeMatches(hid_t type, DType dtype) {
  NumericLayout layout = DTypeLayout(dtype);
  if (H5Tget_size(type) != static_cast<size_t>(layout.bytes)) return false;
  H5T_class_t cls = H5Tget_class(type);
  if (dtype == DType::kBool && cls == H5T_ENUM) return IsH5pyBool(type);
  if (layout.kind == Kind::kFloat && !StoredAsBits(dtype)) {
    size_t sign_pos, exponent_pos, exponent_bits, mantissa_pos, mantissa_bits;
    return cls == H5T_FLOAT &&
           H5Tget_fields(type, &sign_pos, &exponent_pos, &exponent_bits, &mantissa_pos,
                         &mantissa_bits) >= 0 &&
           exponent_bits == static_cast<size_t>(layout.exponent_bits) &&
           mantissa_bits == static_cast<size_t>(layout.mantissa_bits);
  }
  H5T_sign_t sign = layout.kind == Kind::kSignedInt ? H5T_SGN_2 : H5T_SGN_NONE;
  return cls == H5T_INTEGER && H5Tget_sign(type) == sign;
}

const char* TypeClassName(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
  }
}

std::optional<DType> InferDType(hid_t type) {
  for (int i = 0; i < kNumDTypes; ++i) {
    DType dtype = static_cast<DType>(i);
    if (!StoredAsBits(dtype) && TypeMatches(type, dtype)) return dtype;
  }
  return std::nullopt;
}

absl::Status WriteAttribute(hid_t object, absl::string_view name, const AttrValue& value) {
  std::string attr_name(name);
  if (attr_name.empty() || attr_name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("bad attribute name");
  }
  SpaceHandle space(H5Screate(H5S_SCALAR));
  TypeHandle string_type;
  hid_t file_type = H5T_STD_I64LE, memory_type = H5T_NATIVE_INT64;
  const void* data = nullptr;
  if (const auto* v = std::get_if<int64_t>(&value)) {
    data = v;
  } else if (const auto* d = std::get_if<double>(&value)) {
    file_type = H5T_IEEE_F64LE;
    memory_type = H5T_NATIVE_DOUBLE;
    data = d;
  } else if (const auto* s = std::get_if<std::string>(&value)) {
    if (s->find('\0') != std::string::npos ||
        static_cast<int64_t>(s->size()) > kMaxAttributeBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("attribute '", name, "': NUL byte or too long"));
    }
    // Fixed-length, so no variable-length data in the global heap, which has no checksum.
    string_type = TypeHandle(H5Tcopy(H5T_C_S1));
    if (!string_type.valid() || H5Tset_size(string_type.get(), s->size() + 1) < 0 ||
        H5Tset_strpad(string_type.get(), H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(string_type.get(), H5T_CSET_UTF8) < 0) {
      return ErrorFromStack(absl::StatusCode::kInternal, "building a string type");
    }
    file_type = memory_type = string_type.get();
    data = s->c_str();
  } else {
    const auto& ints = std::get<std::vector<int64_t>>(value);
    if (static_cast<int64_t>(ints.size()) > kMaxAttributeBytes / 8) {
      return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' is too long"));
    }
    hsize_t dims[1] = {ints.size()};
    space = SpaceHandle(H5Screate_simple(1, dims, nullptr));
    data = ints.empty() ? static_cast<const void*>(&ints)
                        : ints.data();  // HDF5 wants a non-null buffer
  }
  if (!space.valid()) return ErrorFromStack(absl::StatusCode::kInternal, "creating a dataspace");
  if (H5Aexists(object, attr_name.c_str()) > 0 && H5Adelete(object, attr_name.c_str()) < 0) {
    return ErrorFromStack(absl::StatusCode::kInternal,
                          absl::StrCat("replacing attribute '", name, "'"));
  }
  AttrHandle attr(
      H5Acreate2(object, attr_name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid() || H5Awrite(attr.get(), memory_type, data) < 0) {
    return ErrorFromStack(absl::StatusCode::kInternal,
                          absl::StrCat("writing attribute '", name, "'"));
  }
  return absl::OkStatus();
}

absl::Status ReadDTypeTag(hid_t object, std::optional<std::string>& tag) {
  tag.reset();
  const char* name = formats::hdf5::kDTypeAttribute;
  htri_t exists = H5Aexists(object, name);
  if (exists < 0)
    return ErrorFromStack(absl::StatusCode::kDataLoss, "looking up attribute ucp_dtype");
  if (exists == 0) return absl::OkStatus();
  AttrHandle attr(H5Aopen(object, name, H5P_DEFAULT));
  TypeHandle type(attr.valid() ? H5Aget_type(attr.get()) : H5I_INVALID_HID);
  SpaceHandle space(attr.valid() ? H5Aget_space(attr.get()) : H5I_INVALID_HID);
  if (!type.valid() || !space.valid()) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "opening attribute ucp_dtype");
  }
  const H5T_class_t cls = H5Tget_class(type.get());
  // A variable-length string lives in the global heap, which has no checksum: not read here.
  if (cls == H5T_STRING && H5Tis_variable_str(type.get()) > 0) return absl::OkStatus();
  if (cls != H5T_STRING || H5Sget_simple_extent_type(space.get()) != H5S_SCALAR) {
    H5Eclear2(H5E_DEFAULT);
    return absl::DataLossError("attribute ucp_dtype is not a scalar string");
  }
  if (H5Tget_size(type.get()) > kMaxDTypeTagBytes) {
    return absl::DataLossError(absl::StrCat("attribute ucp_dtype holds ", H5Tget_size(type.get()),
                                            " bytes, more than a dtype name"));
  }
  absl::StatusOr<std::string> value = ReadString(attr.get(), type.get());
  if (!value.ok()) return WithContext(value.status(), "attribute ucp_dtype");
  tag = std::move(*value);
  return absl::OkStatus();
}

absl::StatusOr<AttrList> ReadAttributes(hid_t object, absl::string_view skip) {
  H5O_info_t info;
  if (H5Oget_info2(object, &info, H5O_INFO_NUM_ATTRS) < 0) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "listing attributes");
  }
  if (info.num_attrs > static_cast<hsize_t>(kMaxAttributesPerObject)) {
    return absl::DataLossError(absl::StrCat(info.num_attrs, " attributes on one object"));
  }
  AttrList result;
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    AttrHandle attr(
        H5Aopen_by_idx(object, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT));
    ssize_t name_length = attr.valid() ? H5Aget_name(attr.get(), 0, nullptr) : -1;
    if (name_length < 0 || name_length > kMaxAttributeBytes) {
      return ErrorFromStack(absl::StatusCode::kDataLoss, "reading an attribute name");
    }
    std::string name(static_cast<size_t>(name_length) + 1, '\0');
    H5Aget_name(attr.get(), name.size(), name.data());
    name.resize(static_cast<size_t>(name_length));
    if (!skip.empty() && name == skip) continue;
    std::optional<AttrValue> value;
    absl::Status status = ReadOne(attr.get(), value);
    if (!status.ok()) return WithContext(status, absl::StrCat("attribute '", name, "'"));
    if (value.has_value()) result.emplace_back(std::move(name), std::move(*value));
  }
  return result;
}

}  // namespace ucp::internal_hdf5
