// A minimal parallel-for over an index range: the kernels split rows or planes over threads.
#pragma once

#include <algorithm>
#include <thread>
#include <vector>

namespace flipnet::detail {

// Worker count for `threads` (0 = all hardware threads), never more than `work` items.
inline int worker_count(int threads, long work) {
    int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
    n = std::max(1, n);
    return static_cast<int>(std::min<long>(n, std::max(1L, work)));
}

// Calls fn(lo, hi) on contiguous chunks of [0, count) from `workers` threads (the caller's
// thread takes the first chunk). Items are independent: no two chunks touch the same output.
template <typename Fn>
void parallel_for(long count, int threads, Fn&& fn) {
    const int workers = worker_count(threads, count);
    if (workers <= 1) {
        fn(0L, count);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(workers - 1));
    const long chunk = (count + workers - 1) / workers;
    for (int w = 1; w < workers; ++w) {
        const long lo = std::min(count, w * chunk), hi = std::min(count, lo + chunk);
        if (lo < hi) pool.emplace_back([&fn, lo, hi] { fn(lo, hi); });
    }
    fn(0L, std::min(count, chunk));
    for (auto& t : pool) t.join();
}

}  // namespace flipnet::detail

namespace flipnet::detail {

// A scratch area of at least `n` floats owned by the calling thread and reused by its later calls:
// large per-call allocations would cost a page fault per 4 KB every call. Contents are undefined.
inline float* workspace(size_t n) {
    thread_local std::vector<float> area;
    if (area.size() < n) area.resize(n);
    return area.data();
}

}  // namespace flipnet::detail
