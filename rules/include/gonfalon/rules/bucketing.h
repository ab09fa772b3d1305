#pragma once
// Percentage bucketing, compatible with LaunchDarkly (DESIGN §2).
//
// bucket = first 60 bits of sha1(prefix + value) / 0xFFFFFFFFFFFFFFF, in [0, 1], where the
// prefix is `flagKey + "." + salt + "."` or, for an experiment with a seed, `seed + "."`.
//
// BucketHasher hashes the prefix once (at snapshot build) and reuses that state for every
// context, so a bucket costs one SHA-1 block of work and no heap allocation.
//
// Thread safety: a const BucketHasher may be used from any number of threads.
//
//   BucketHasher h("hashKey", "saltyA");
//   double b = h.Bucket("userKeyA");  // 0.42157587...

#include <array>
#include <cstdint>
#include <string_view>

namespace gonfalon::rules {

class BucketHasher {
 public:
  BucketHasher() : BucketHasher(std::string_view()) {}
  // Prefix `key + "." + salt + "."`.
  BucketHasher(std::string_view key, std::string_view salt);
  // Prefix `seed + "."`.
  explicit BucketHasher(int64_t seed);

  double Bucket(std::string_view value) const;

 private:
  explicit BucketHasher(std::string_view prefix);
  void Init(std::string_view prefix);
  // The SHA-1 state after the prefix, stored as opaque bytes so that this public header
  // does not pull in OpenSSL. sizeof(SHA_CTX) is 96 on every platform OpenSSL supports.
  alignas(8) std::array<unsigned char, 96> state_{};
};

// Bucket value of a context attribute: strings as they are, integral numbers as their decimal
// string; any other type has no bucket (returns false, and rollouts then use bucket 0).
// `buf` must hold at least 24 bytes; `out` may point into it.
bool BucketableString(const class Value& v, char* buf, std::string_view& out);

}  // namespace gonfalon::rules
