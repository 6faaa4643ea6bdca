#include "formats/base/thread_pool.h"

#include <atomic>

#include "gtest/gtest.h"

namespace ucp {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskAndWaits) {
  ThreadPool pool(3);
  std::atomic<int> sum{0};
  for (int i = 1; i <= 1000; ++i) pool.Schedule([&sum, i] { sum += i; });
  pool.Wait();
  EXPECT_EQ(sum.load(), 500500);
  pool.Schedule([&sum] { sum = -1; });
  pool.Wait();
  EXPECT_EQ(sum.load(), -1);
}

}  // namespace
}  // namespace ucp
