// Same-machine peer for bench/index.bench.ts: overlaybd's segment record (16 bytes, bit fields as
// in its lsmt index) in one sorted array, looked up with plain binary search (std::upper_bound on
// the segment end), then a walk over the segments a 4 KiB read touches. Arguments: segment counts.
// Prints "<count> <lookups per second>" per count, best of 4 runs of 4M random lookups.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

struct Segment {
  uint64_t offset : 50, length : 14;
  uint64_t moffset : 55, zeroed : 1, tag : 8;
};

static uint32_t state;
static double rnd() {
  state += 0x6d2b79f5u;
  uint32_t t = state;
  t = (t ^ (t >> 15)) * (t | 1);
  t ^= t + ((t ^ (t >> 7)) * (t | 61));
  return (t ^ (t >> 14)) / 4294967296.0;
}

int main(int argc, char **argv) {
  for (int a = 1; a < argc; a++) {
    const long n = std::atol(argv[a]);
    std::vector<Segment> segs(n);
    state = 1000;
    uint64_t at = 0;
    for (long i = 0; i < n; i++) {
      const uint64_t gap = (uint64_t)(rnd() * 10), len = 1 + (uint64_t)(rnd() * 16);
      segs[i].offset = at + gap;
      segs[i].length = len;
      segs[i].moffset = 8 + i;
      segs[i].zeroed = 0;
      segs[i].tag = 0;
      at += gap + len;
    }
    std::vector<uint64_t> probes(1 << 20);
    state = 7;
    for (auto &p : probes) p = (uint64_t)(rnd() * (at - 8));
    volatile uint64_t sink = 0;
    const int lookups = 4000000;
    double best = 1e9;
    for (int rep = 0; rep < 4; rep++) {
      const auto t0 = std::chrono::steady_clock::now();
      uint64_t acc = 0;
      for (int i = 0; i < lookups; i++) {
        const uint64_t x = probes[i & ((1 << 20) - 1)], end = x + 8;
        auto it = std::upper_bound(segs.begin(), segs.end(), x,
                                   [](uint64_t v, const Segment &s) { return v < s.offset + s.length; });
        for (; it != segs.end() && it->offset < end; ++it)
          acc += std::min<uint64_t>(end, it->offset + it->length) - std::max<uint64_t>(x, it->offset) + it->moffset;
      }
      sink = acc;
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("%ld %.0f\n", n, lookups / best);
  }
  return 0;
}
