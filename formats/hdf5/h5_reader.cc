#include "formats/hdf5/h5_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <set>
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

// DType from the ucp_dtype attribute when it is a fixed-length string (internal_hdf5::
// ReadDTypeTag), otherwise from the HDF5 type. Reads no other attribute value: attribute values
// are read only by H5Reader::Attributes.
absl::StatusOr<DType> DTypeOf(hid_t dataset, hid_t type) {
  std::optional<std::string> tag;
  UCP_RETURN_IF_ERROR(internal_hdf5::ReadDTypeTag(dataset, tag));
  if (tag.has_value()) {
    std::optional<DType> dtype = DTypeFromName(*tag);
    if (!dtype) return absl::DataLossError("attribute ucp_dtype does not name a ucp dtype");
    if (!internal_hdf5::TypeMatches(type, *dtype)) {
      return absl::DataLossError(
          absl::StrCat("ucp_dtype '", *tag, "' does not match the stored HDF5 type"));
    }
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
  UCP_ASSIGN_OR_RETURN(info.dtype, DTypeOf(dataset.get(), type.get()));
  return info;
}

// The most bytes one stored byte can decode to through filter `id`; 0 when unknown. zstd: its
// densest encoding is an RLE block, 4 bytes (3-byte block header + the byte) for a whole
// 128 KiB block, so 32768. deflate: 1032 (zlib's documented maximum ratio). Shuffle and
// Fletcher32 do not expand.
uint64_t MaxExpansion(H5Z_filter_t id) {
  switch (id) {
    case H5Z_FILTER_SHUFFLE:
    case H5Z_FILTER_FLETCHER32: return 1;
    case H5Z_FILTER_DEFLATE: return 1032;
    case internal_hdf5::kZstdFilterId: return 32768;
    default: return 0;
  }
}

struct Pipeline {
  size_t zstd_chunk_bytes = 0;  // the uncompressed chunk size zstd must produce; 0: no zstd
  uint64_t max_expansion = 1;   // product of MaxExpansion over the filters; 0: unbounded
};

// Checks the filter pipeline before reading.
absl::StatusOr<Pipeline> CheckPipeline(hid_t dataset, hid_t dcpl) {
  TypeHandle type(H5Dget_type(dataset));
  int count = H5Pget_nfilters(dcpl);
  if (count < 0 || !type.valid()) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading filters");
  }
  Pipeline pipeline;
  bool only_shuffle_so_far = true;
  for (int i = 0; i < count; ++i) {
    unsigned flags = 0;
    size_t cd_count = 0;
    char name[80] = {};
    H5Z_filter_t id = H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &cd_count, nullptr,
                                     sizeof(name) - 1, name, nullptr);
    if (id < 0) return ErrorFromStack(absl::StatusCode::kDataLoss, "reading filters");
    if (H5Zfilter_avail(id) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return absl::DataLossError(absl::StrCat("uses HDF5 filter ", id, " ('",
                                              name[0] ? name : "unnamed",
                                              "'), which is not available"));
    }
    const uint64_t expansion = MaxExpansion(id);
    if (expansion == 0 ||
        __builtin_mul_overflow(pipeline.max_expansion, expansion, &pipeline.max_expansion)) {
      pipeline.max_expansion = 0;
    }
    if (id == internal_hdf5::kZstdFilterId) {
      if (!only_shuffle_so_far) {
        return absl::UnimplementedError("a filter other than shuffle precedes zstd");
      }
      hsize_t chunk[H5S_MAX_RANK];
      int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk);
      uint64_t bytes = H5Tget_size(type.get());
      for (int d = 0; d < rank; ++d) {
        if (__builtin_mul_overflow(bytes, chunk[d], &bytes) || bytes >= kMaxChunkBytes) {
          return absl::DataLossError("chunk is 4 GiB or larger");
        }
      }
      if (rank <= 0 || bytes == 0) {
        return absl::DataLossError("zstd filter on a dataset that is not chunked");
      }
      pipeline.zstd_chunk_bytes = static_cast<size_t>(bytes);
    } else if (id != H5Z_FILTER_SHUFFLE) {
      only_shuffle_so_far = false;
    }
  }
  return pipeline;
}

// Checks, before a buffer of the declared size is allocated, that the storage the file holds for
// `dataset` can account for its `declared` bytes:
// - Chunked: the n allocated chunks decode to n x (chunk bytes). With a pipeline whose expansion
//   is bounded (`max_expansion` > 0; 1 without filters), that must not exceed the stored bytes
//   (H5Dget_storage_size, the sum of the stored chunks) x `max_expansion`.
// - Bytes that no allocated chunk, contiguous block or compact data backs would be HDF5's fill
//   value: more than kMaxFillBytes of them is DataLoss.
// Also: chunks must have the dataspace's rank. Virtual datasets and external storage would read
// other files: Unimplemented.
absl::Status CheckStorage(hid_t dataset, hid_t dcpl, uint64_t declared, uint64_t max_expansion) {
  const H5D_layout_t layout = H5Pget_layout(dcpl);
  if (layout == H5D_VIRTUAL) {
    return absl::UnimplementedError("is a virtual dataset (its data would come from elsewhere)");
  }
  const int external = H5Pget_external_count(dcpl);
  if (external != 0) {
    if (external < 0) return ErrorFromStack(absl::StatusCode::kDataLoss, "reading the layout");
    return absl::UnimplementedError("keeps its data in external files");
  }
  hsize_t chunk[H5S_MAX_RANK];
  SpaceHandle space(H5Dget_space(dataset));
  if (!space.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, "reading the dataspace");
  if (layout == H5D_CHUNKED) {
    // HDF5 1.10.8 does not check this when it opens a dataset, and reading one whose chunks have
    // another rank than its dataspace (a scalar one, in our mutation survey) never returns.
    const int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk);
    const int space_rank = H5Sget_simple_extent_type(space.get()) == H5S_SIMPLE
                               ? H5Sget_simple_extent_ndims(space.get())
                               : 0;
    if (rank <= 0 || rank != space_rank) {
      H5Eclear2(H5E_DEFAULT);
      return absl::DataLossError(
          absl::StrCat("has chunks of rank ", rank, " but a dataspace of rank ", space_rank));
    }
    for (int d = 0; d < rank; ++d) {
      if (chunk[d] == 0) return absl::DataLossError("has a chunk dim of 0");
    }
  }
  if (declared == 0) return absl::OkStatus();
  const hsize_t stored = H5Dget_storage_size(dataset);  // 0 also when it fails
  H5Eclear2(H5E_DEFAULT);
  uint64_t backed = 0;
  if (layout == H5D_CHUNKED) {
    const int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk);
    TypeHandle type(H5Dget_type(dataset));
    hsize_t allocated = 0;
    if (!type.valid() || H5Dget_num_chunks(dataset, space.get(), &allocated) < 0) {
      return ErrorFromStack(absl::StatusCode::kDataLoss, "reading the chunk index");
    }
    uint64_t chunk_bytes = H5Tget_size(type.get());
    for (int d = 0; d < rank; ++d) {
      if (__builtin_mul_overflow(chunk_bytes, chunk[d], &chunk_bytes)) chunk_bytes = UINT64_MAX;
    }
    if (__builtin_mul_overflow(allocated, chunk_bytes, &backed)) backed = UINT64_MAX;
    uint64_t bound = 0;
    if (__builtin_mul_overflow(stored, max_expansion, &bound)) bound = UINT64_MAX;
    if (max_expansion > 0 && backed > bound) {
      return absl::DataLossError(
          absl::StrCat(allocated, " stored chunks of ", chunk_bytes, " bytes cannot decode from ",
                       stored, " stored bytes (at most ", max_expansion, "x through its filters)"));
    }
  } else if (layout == H5D_CONTIGUOUS || layout == H5D_COMPACT) {
    backed = stored;
  } else {
    return ErrorFromStack(absl::StatusCode::kDataLoss, "reading the layout");
  }
  const uint64_t fill = declared - std::min(declared, backed);
  if (fill > static_cast<uint64_t>(kMaxFillBytes)) {
    return absl::DataLossError(
        absl::StrCat("declares ", declared, " bytes, of which ", fill,
                     " have no stored data (they would be fill value): more than kMaxFillBytes (",
                     kMaxFillBytes, ")"));
  }
  return absl::OkStatus();
}

// A dataset opened and checked for reading (CheckPipeline, CheckStorage).
struct OpenedDataset {
  DatasetHandle dataset;
  TypeHandle memory_type;
  size_t zstd_chunk_bytes = 0;
};

}  // namespace

struct H5Reader::State {
  std::string path;
  FileHandle file;
  std::vector<DatasetInfo> datasets;
  std::map<std::string, size_t> dataset_index;
  std::set<std::string> groups;  // "" is the root

  // Opens the dataset and checks it before anything of its size is allocated.
  absl::StatusOr<OpenedDataset> Prepare(const DatasetInfo& info, uint64_t num_bytes) const;
  absl::Status ReadDataset(const DatasetInfo& info, OpenedDataset& opened,
                           absl::Span<std::byte> out) const;
};

absl::StatusOr<OpenedDataset> H5Reader::State::Prepare(const DatasetInfo& info,
                                                       uint64_t num_bytes) const {
  OpenedDataset opened;
  opened.dataset = DatasetHandle(H5Dopen2(file.get(), info.path.c_str(), H5P_DEFAULT));
  if (!opened.dataset.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, "opening");
  const hid_t dataset = opened.dataset.get();
  PropHandle dcpl(H5Dget_create_plist(dataset));
  if (!dcpl.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, "reading filters");
  UCP_ASSIGN_OR_RETURN(Pipeline pipeline, CheckPipeline(dataset, dcpl.get()));
  UCP_RETURN_IF_ERROR(CheckStorage(dataset, dcpl.get(), num_bytes, pipeline.max_expansion));
  opened.zstd_chunk_bytes = pipeline.zstd_chunk_bytes;
  TypeHandle file_type(H5Dget_type(dataset));
  if (!file_type.valid()) return ErrorFromStack(absl::StatusCode::kDataLoss, "reading type");
  if (H5Tget_class(file_type.get()) == H5T_ENUM) {  // h5py bool: one byte, read as stored
    opened.memory_type = std::move(file_type);
  } else {
    UCP_ASSIGN_OR_RETURN(opened.memory_type, internal_hdf5::StoredType(info.dtype));
  }
  return opened;
}

absl::Status H5Reader::State::ReadDataset(const DatasetInfo& info, OpenedDataset& opened,
                                          absl::Span<std::byte> out) const {
  if (out.empty()) return absl::OkStatus();
  std::optional<internal_hdf5::ScopedExpectedChunkBytes> expect;
  if (opened.zstd_chunk_bytes > 0) expect.emplace(opened.zstd_chunk_bytes);
  if (H5Dread(opened.dataset.get(), opened.memory_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT,
              out.data()) < 0) {
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
      state->groups.insert(name);
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
  const bool is_group = state_->groups.count(name) > 0;
  if (!is_group && state_->dataset_index.count(name) == 0) {
    return absl::NotFoundError(
        absl::StrCat("file ", state_->path, ": no group or dataset '", object_path, "'"));
  }
  const std::string context =
      absl::StrCat("file ", state_->path, ": ", is_group ? "group" : "dataset", " '",
                   name.empty() ? "/" : name, "'");
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR(scope.status());
  internal_hdf5::ObjectHandle object(
      H5Oopen(state_->file.get(), name.empty() ? "/" : name.c_str(), H5P_DEFAULT));
  if (!object.valid()) {
    return ErrorFromStack(absl::StatusCode::kDataLoss, absl::StrCat(context, ": opening"));
  }
  // A dataset's ucp_dtype is its DType, not a user attribute: its value is not read again.
  absl::StatusOr<AttrList> attributes =
      internal_hdf5::ReadAttributes(object.get(), is_group ? "" : kDTypeAttribute);
  if (!attributes.ok()) return WithContext(attributes.status(), context);
  return attributes;
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
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR(scope.status());
  absl::StatusOr<OpenedDataset> opened = state_->Prepare(*info, size);
  if (!opened.ok()) return WithContext(opened.status(), context);
  std::shared_ptr<std::byte[]> bytes(new (std::nothrow) std::byte[size == 0 ? 1 : size]);
  if (bytes == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(context, ": cannot allocate ", size, " bytes"));
  }
  UCP_RETURN_IF_ERROR_CTX(state_->ReadDataset(*info, *opened, absl::MakeSpan(bytes.get(), size)),
                          context);
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
  UCP_RETURN_IF_ERROR(scope.status());
  absl::StatusOr<OpenedDataset> opened = state_->Prepare(*info, out.size());
  if (!opened.ok()) return WithContext(opened.status(), context);
  UCP_RETURN_IF_ERROR_CTX(state_->ReadDataset(*info, *opened, out), context);
  return absl::OkStatus();
}

}  // namespace ucp::formats::hdf5
