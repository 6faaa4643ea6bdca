// Byte counts for people: HumanBytes ("512 B", "1.5 KiB", "3.0 GiB") lives with ParseByteSize in
// formats/base/byte_size.h, so that plan summaries and the CLI print sizes alike.
#pragma once

#include "formats/base/byte_size.h"
