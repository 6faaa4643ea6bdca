#include "formats/registry.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace ucp::formats {
namespace {

FileFormat SniffBytes(absl::string_view bytes) {
  auto f = Sniff(*MemorySource(Buffer::CopyOf(bytes), "x"));
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : FileFormat::kTorchLegacy;
}

TEST(RegistryTest, SniffsByContent) {
  EXPECT_EQ(SniffBytes("PK\x03\x04rest"), FileFormat::kTorchZip);
  EXPECT_EQ(SniffBytes(absl::string_view("\x80\x02\x8a\x0a"
                                         "xx",
                                         6)),
            FileFormat::kTorchLegacy);
  EXPECT_EQ(SniffBytes(absl::string_view("\x89HDF\r\n\x1a\n....", 12)), FileFormat::kHdf5);
  std::string st = std::string("\x02\x00\x00\x00\x00\x00\x00\x00", 8) + "{}";
  EXPECT_EQ(SniffBytes(st), FileFormat::kSafetensors);
  auto bad = Sniff(*MemorySource(Buffer::CopyOf(absl::string_view("hello world")), "notes.txt"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("notes.txt"), std::string::npos);
  EXPECT_EQ(Sniff(*MemorySource(Buffer(), "empty")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RegistryTest, EveryFormatIsListedOnce) {
  EXPECT_EQ(Formats().size(), 4u);
  EXPECT_EQ(Info(FileFormat::kSafetensors).name, "safetensors");
}

}  // namespace
}  // namespace ucp::formats
