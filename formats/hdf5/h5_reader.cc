#include "formats/hdf5/h5_reader.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/hdf5/h5_internal.h"
#include "formats/hdf5/zstd_filter.h"

namespace ucp::formats::hdf5 {
namespace {

using internal_hdf5::DatasetHandle;
using internal_hdf5::ErrorFromStack;
using internal_hdf5::FileHandle;
using internal_hdf5::GroupHandle;
using internal_hdf5::Hdf5Scope;
using internal_hdf5::PropHandle;
using internal_hdf5::SpaceHandle;
using internal_hdf5::TypeHandle;

constexpr uint64_t kMaxChunkBytes = uint64_t{1} << 32;  // HDF5's own limit on one chunk

struct VisitState {
  std::vector<std::pair<std::string, H5O_type_t>> objects;
  bool too_many = false;
};

// H5Ovisit2 callback: visits each object reachable through hard links once, depth-first, each
// group's members in name order.
herr_t VisitOne(hid_t, const char* name, const H5O_info_t* info, void* data) {
  auto* state = static_cast<VisitState*>(data);
  if (static_cast<int64_t>(state->objects.size()) >= kMaxObjects) {
    state->too_many = true;
    return 1;  // stop
  }
  if (info->type == H5O_TYPE_GROUP || info->type == H5O_TYPE_DATASET) {
    state->objects.emplace_back(std::strcmp(name, ".") == 0 ? "" : name, info->type);
  }
  return 0;
}

absl::StatusOr<Shape> ShapeOf(hid_t space) {
  H5S_class_t cls = H5Sget_simple_extent_type(space);
  if (cls == H5S_SCALAR) return Shape();
  if (cls != H5S_SIMPLE) {
    return absl::UnimplementedError("dataset has a null dataspace (no elements)");
  }
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > kMaxRank) return absl::DataLossError(absl::StrCat("dataset rank ", rank));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading dims");
  }
  std::vector<int64_t> shape_dims;
  for (hsize_t dim : dims) {
    if (dim > static_cast<hsize_t>(kMaxTensorElements)) {
      return absl::DataLossError("dataset dim too large");
    }
    shape_dims.push_back(static_cast<int64_t>(dim));
  }
  Shape shape(std::move(shape_dims));
  UCP_RETURN_IF_ERROR(shape.NumElements().status());
  return shape;
}

// DType from the ucp_dtype attribute (removed from `attributes`) or from the HDF5 type.
absl::StatusOr<DType> DTypeOf(hid_t type, AttrList& attributes) {
  for (auto it = attributes.begin(); it != attributes.end(); ++it) {
    if (it->first != kDTypeAttribute) continue;
    const auto* name = std::get_if<std::string>(&it->second);
    std::optional<DType> dtype = name != nullptr ? DTypeFromName(*name) : std::nullopt;
    if (!dtype) return absl::DataLossError("attribute ucp_dtype does not name a ucp dtype");
    if (!internal_hdf5::TypeMatches(type, *dtype)) {
      return absl::DataLossError(
          absl::StrCat("ucp_dtype '", *name, "' does not match the stored HDF5 type"));
    }
    attributes.erase(it);
    return *dtype;
  }
  std::optional<DType> dtype = internal_hdf5::InferDType(type);
  if (!dtype) {
    return absl::UnimplementedError(absl::StrCat("HDF5 ", internal_hdf5::TypeClassName(type),
                                                 " type of ", H5Tget_size(type),
                                                 " bytes has no ucp dtype"));
  }
  return *dtype;
}

absl::StatusOr<DatasetInfo> Describe(hid_t file, const std::string& path) {
  DatasetHandle dataset(H5Dopen2(file, path.c_str(), H5P_DEFAULT));
  if (!dataset.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, "opening");
  TypeHandle type(H5Dget_type(dataset.get()));
  SpaceHandle space(H5Dget_space(dataset.get()));
  if (!type.valid() || !space.valid()) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading type");
  }
  DatasetInfo info;
  info.path = path;
  UCP_ASSIGN_OR_RETURN(info.shape, ShapeOf(space.get()));
  UCP_ASSIGN_OR_RETURN(info.attributes, internal_hdf5::ReadAttributes(dataset.get()));
  UCP_ASSIGN_OR_RETURN(info.dtype, DTypeOf(type.get(), info.attributes));
  return info;
}

// Checks the filter pipeline before reading. Returns the uncompressed chunk size zstd must
// produce (0 if the dataset has no zstd filter).
absl::StatusOr<size_t> CheckPipeline(hid_t dataset) {
  PropHandle dcpl(H5Dget_create_plist(dataset));
  TypeHandle type(H5Dget_type(dataset));
  int count = dcpl.valid() ? H5Pget_nfilters(dcpl.get()) : -1;
  if (count < 0 || !type.valid()) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading filters");
  }
  size_t expected = 0;
  bool only_shuffle_so_far = true;
  for (int i = 0; i < count; ++i) {
    unsigned flags = 0;
    size_t cd_count = 0;
    char name[80] = {};
    H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &cd_count,
                                     nullptr, sizeof(name) - 1, name, nullptr);
    if (id < 0) return ErrorFromStack(absl::StatusCode::kDataLoss, "reading filters");
    if (H5Zfilter_avail(id) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return absl::DataLossError(absl::StrCat("uses HDF5 filter ", id, " ('",
                                              name[0] ? name : "unnamed",
                                              "'), which is not available"));
    }
    if (id == internal_hdf5::kZstdFilterId) {
      if (!only_shuffle_so_far) {
        return absl::UnimplementedError("a filter other than shuffle precedes zstd");
      }
      hsize_t chunk[H5S_MAX_RANK];
      int rank = H5Pget_chunk(dcpl.get(), H5S_MAX_RANK, chunk);
      uint64_t bytes = H5Tget_size(type.get());
      for (int d = 0; d < rank; ++d) {
        if (__builtin_mul_overflow(bytes, chunk[d], &bytes) || bytes >= kMaxChunkBytes) {
          return absl::DataLossError("chunk is 4 GiB or larger");
        }
      }
      if (rank <= 0 || bytes == 0) {
        return absl::DataLossError("zstd filter on a dataset that is not chunked");
      }
      expected = static_cast<size_t>(bytes);
    } else if (id != H5Z_FILTER_SHUFFLE) {
      only_shuffle_so_far = false;
    }
  }
  return expected;
}

}  // namespace

struct H5Reader::State {
  std::string path;
  FileHandle file;
  std::vector<DatasetInfo> datasets;
  std::map<std::string, size_t> dataset_index;
  std::map<std::string, AttrList> group_attributes;  // "" is the root

  absl::Status ReadDataset(const DatasetInfo& info, absl::Span<std::byte> out) const;
};

absl::Status H5Reader::State::ReadDataset(const DatasetInfo& info,
                                          absl::Span<std::byte> out) const {
  DatasetHandle dataset(H5Dopen2(file.get(), info.path.c_str(), H5P_DEFAULT));
  if (!dataset.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, "opening");
  UCP_ASSIGN_OR_RETURN(size_t chunk_bytes, CheckPipeline(dataset.get()));
  TypeHandle file_type(H5Dget_type(dataset.get()));
  if (!file_type.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, "reading type");
  TypeHandle memory_type;
  if (H5Tget_class(file_type.get()) == H5T_ENUM) {  // h5py bool: one byte, read as stored
    memory_type = std::move(file_type);
  } else {
    UCP_ASSIGN_OR_RETURN(memory_type, internal_hdf5::StoredType(info.dtype));
  }
  if (out.empty()) return absl::OkStatus();
  std::optional<internal_hdf5::ScopedExpectedChunkBytes> expect;
  if (chunk_bytes > 0) expect.emplace(chunk_bytes);
  if (H5Dread(dataset.get(), memory_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading");
  }
  if (info.dtype == DType::kBool) {
    for (std::byte b : out) {
      if (b > std::byte{1}) {
        return absl::DataLossError(absl::StrCat("bool element holds ", static_cast<int>(b)));
      }
    }
  }
  return absl::OkStatus();
}

H5Reader::H5Reader(std::unique_ptr<State> state) : state_(std::move(state)) {}
H5Reader::H5Reader(H5Reader&&) noexcept = default;
H5Reader& H5Reader::operator=(H5Reader&&) noexcept = default;
H5Reader::~H5Reader() {
  if (state_ == nullptr) return;
  Hdf5Scope scope;
  state_.reset();
}

absl::StatusOr<H5Reader> H5Reader::Open(const std::string& path) {
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR(scope.status());
  const std::string context = absl::StrCat("file ", path);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": not a regular file"));
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": not an HDF5 file (no HDF5 signature)"));
  }
  auto state = std::make_unique<State>();
  state->path = path;
  UCP_ASSIGN_OR_RETURN(PropHandle fapl, internal_hdf5::FileAccessProperties(false));
  state->file = FileHandle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!state->file.valid()) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, absl::StrCat(context, ": opening"));
  }

  VisitState visit;
  if (H5Ovisit2(state->file.get(), H5_INDEX_NAME, H5_ITER_INC, VisitOne, &visit, H5O_INFO_BASIC) <
      0) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, absl::StrCat(context, ": listing objects"));
  }
  if (visit.too_many) {
    return absl::DataLossError(absl::StrCat(context, ": more than ", kMaxObjects, " objects"));
  }
  for (const auto& [name, type] : visit.objects) {
    const std::string object_context =
        absl::StrCat(context, ": ", type == H5O_TYPE_GROUP ? "group" : "dataset", " '",
                     name.empty() ? "/" : name, "'");
    if (type == H5O_TYPE_GROUP) {
      GroupHandle group(
          H5Gopen2(state->file.get(), name.empty() ? "/" : name.c_str(), H5P_DEFAULT));
      if (!group.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, object_context);
      absl::StatusOr<AttrList> attributes = internal_hdf5::ReadAttributes(group.get());
      if (!attributes.ok()) return WithContext(attributes.status(), object_context);
      state->group_attributes[name] = std::move(*attributes);
      continue;
    }
    absl::StatusOr<DatasetInfo> info = Describe(state->file.get(), name);
    if (!info.ok()) return WithContext(info.status(), object_context);
    state->dataset_index[name] = state->datasets.size();
    state->datasets.push_back(std::move(*info));
  }
  return H5Reader(std::move(state));
}

const std::string& H5Reader::path() const { return state_->path; }
const std::vector<DatasetInfo>& H5Reader::datasets() const { return state_->datasets; }

const DatasetInfo* H5Reader::Find(absl::string_view dataset_path) const {
  if (!dataset_path.empty() && dataset_path[0] == '/') dataset_path.remove_prefix(1);
  auto it = state_->dataset_index.find(std::string(dataset_path));
  return it == state_->dataset_index.end() ? nullptr : &state_->datasets[it->second];
}

absl::StatusOr<AttrList> H5Reader::Attributes(absl::string_view object_path) const {
  std::string name(object_path);
  if (!name.empty() && name[0] == '/') name.erase(0, 1);
  if (auto it = state_->group_attributes.find(name); it != state_->group_attributes.end()) {
    return it->second;
  }
  if (const DatasetInfo* info = Find(name)) return info->attributes;
  return absl::NotFoundError(
      absl::StrCat("file ", state_->path, ": no group or dataset '", object_path, "'"));
}

absl::StatusOr<SharedTensor> H5Reader::Read(absl::string_view dataset_path) const {
  const DatasetInfo* info = Find(dataset_path);
  const std::string context = absl::StrCat("file ", state_->path, ": dataset '", dataset_path, "'");
  if (info == nullptr) return absl::NotFoundError(absl::StrCat(context, ": not found"));
  UCP_ASSIGN_OR_RETURN(int64_t num_bytes, info->shape.NumBytes(info->dtype));
  if (num_bytes > kMaxDatasetBytes) {
    return absl::DataLossError(
        absl::StrCat(context, ": ", num_bytes, " bytes exceeds kMaxDatasetBytes"));
  }
  const size_t size = static_cast<size_t>(num_bytes);
  std::shared_ptr<std::byte[]> bytes(new (std::nothrow) std::byte[size == 0 ? 1 : size]);
  if (bytes == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(context, ": cannot allocate ", size, " bytes"));
  }
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR_CTX(state_->ReadDataset(*info, absl::MakeSpan(bytes.get(), size)), context);
  const std::byte* data = bytes.get();
  return SharedTensor::Contiguous(info->dtype, info->shape, Buffer(std::move(bytes), data, size));
}

absl::Status H5Reader::ReadInto(absl::string_view dataset_path, absl::Span<std::byte> out) const {
  const DatasetInfo* info = Find(dataset_path);
  const std::string context = absl::StrCat("file ", state_->path, ": dataset '", dataset_path, "'");
  if (info == nullptr) return absl::NotFoundError(absl::StrCat(context, ": not found"));
  UCP_ASSIGN_OR_RETURN(int64_t num_bytes, info->shape.NumBytes(info->dtype));
  if (out.size() != static_cast<size_t>(num_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": output holds ", out.size(), " bytes, dataset has ", num_bytes));
  }
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR_CTX(state_->ReadDataset(*info, out), context);
  return absl::OkStatus();
}

}  // namespace ucp::formats::hdf5
