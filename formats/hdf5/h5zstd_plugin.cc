// The HDF5 dynamic-plugin entry points for the zstd filter (id 32015), built as libh5zstd.so.
// HDF5 (in h5py, h5dump, ...) loads it from a directory named by HDF5_PLUGIN_PATH when it meets
// a dataset using filter 32015. The filter itself is zstd_filter.cc, shared with ucp_hdf5.
#include <H5PLextern.h>

#include "formats/hdf5/zstd_filter.h"

extern "C" {

H5PL_type_t H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }

const void* H5PLget_plugin_info(void) { return ucp::internal_hdf5::ZstdFilterClass(); }

}  // extern "C"
