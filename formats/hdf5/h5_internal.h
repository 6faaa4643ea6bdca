// Internals shared by H5Reader and H5Writer: an RAII handle for hid_t, HDF5 error stacks turned
// into Status, the mapping between ucp DTypes and HDF5 datatypes (built from DTypeLayout), and
// attribute I/O. Not part of the public API.
#pragma once

#include <hdf5.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/dtype.h"
#include "formats/hdf5/h5_types.h"

namespace ucp::internal_hdf5 {

// Owns one HDF5 identifier and closes it with `Close` (H5Fclose, H5Dclose, ...).
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      Reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  ~Handle() { Reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; returns Close's result (0 when there was nothing to close).
  herr_t Reset() {
    herr_t result = id_ >= 0 ? Close(id_) : 0;
    id_ = H5I_INVALID_HID;
    return result;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using FileHandle = Handle<H5Fclose>;
using GroupHandle = Handle<H5Gclose>;
using DatasetHandle = Handle<H5Dclose>;
using SpaceHandle = Handle<H5Sclose>;
using TypeHandle = Handle<H5Tclose>;
using PropHandle = Handle<H5Pclose>;
using AttrHandle = Handle<H5Aclose>;
using ObjectHandle = Handle<H5Oclose>;

// For its lifetime, HDF5 prints no error stacks on this thread (the previous setting is restored).
// Also registers the zstd filter on first use. Every public entry point holds one.
class Hdf5Scope {
 public:
  Hdf5Scope();
  ~Hdf5Scope();
  Hdf5Scope(const Hdf5Scope&) = delete;
  Hdf5Scope& operator=(const Hdf5Scope&) = delete;
  // Internal if the zstd filter could not be registered.
  absl::Status status() const { return status_; }

 private:
  H5E_auto2_t old_func_ = nullptr;
  void* old_data_ = nullptr;
  absl::Status status_;
};

// File access properties for ucp's reader and writer: objects close with the file
// (H5F_CLOSE_STRONG), and file locking is used where the file system supports it but does not
// fail where it does not (NFS, Lustre). Writers use the HDF5 1.10 format, whose metadata
// structures all carry checksums, so damaged metadata is detected instead of parsed.
absl::StatusOr<PropHandle> FileAccessProperties(bool for_writing);

// A Status of `code` saying "<what>: <outermost HDF5 message>: <innermost message>", taken from
// this thread's HDF5 error stack, which is then cleared.
absl::Status ErrorFromStack(absl::StatusCode code, absl::string_view what);

// "/a//b" style paths: strips one leading '/', rejects empty, "." and ".." components and NULs.
// Returns "" for the root ("/" or "") when `allow_root`. InvalidArgument otherwise.
absl::StatusOr<std::string> NormalizePath(absl::string_view path, bool allow_root);

// The HDF5 datatype ucp stores `dtype` as (little-endian; also the memory type for reads and
// writes): IEEE-style floats built from DTypeLayout, except those StoredAsBits; integers; bool
// and bit-stored floats as unsigned integers of their width.
absl::StatusOr<TypeHandle> StoredType(DType dtype);
// True for float types whose encoding HDF5's float model cannot express (f8e4m3fn has no
// infinities: its all-ones exponent is a normal binade), kept as raw unsigned-integer bits.
bool StoredAsBits(DType dtype);
// Whether a dataset of HDF5 type `type` can be read as `dtype` (class, width and, for floats,
// exponent/mantissa widths agree; byte order may differ). Also accepts h5py's bool enum for kBool.
bool TypeMatches(hid_t type, DType dtype);
// "integer", "float", "compound", ... for messages.
const char* TypeClassName(hid_t type);
// The first DType (in enum order) whose stored type matches `type`; nullopt if none.
std::optional<DType> InferDType(hid_t type);

// Creates or replaces attribute `name` on object `object`.
absl::Status WriteAttribute(hid_t object, absl::string_view name,
                            const formats::hdf5::AttrValue& value);
// Every attribute of `object` that AttrValue can hold, sorted by name; others are skipped, and so
// is the one named `skip` (its value is not read). DataLoss on unreadable or oversized attributes
// and on damaged string types.
absl::StatusOr<formats::hdf5::AttrList> ReadAttributes(hid_t object, absl::string_view skip = {});
// `object`'s kDTypeAttribute, read without touching the global heap: `tag` gets its value when it
// is a scalar fixed-length string (as H5Writer writes it), and stays empty when there is none or
// it is a variable-length string (whose value would come from the unchecksummed global heap).
// DataLoss for any other type or shape, or a value longer than a dtype name.
absl::Status ReadDTypeTag(hid_t object, std::optional<std::string>& tag);

}  // namespace ucp::internal_hdf5
