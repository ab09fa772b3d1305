#include "gonfalon/rules/bucketing.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <string>

#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"

// The low-level SHA1_Init/Update/Final calls are deprecated in OpenSSL 3, but they are ~6x
// faster than EVP or the one-shot SHA1() for short inputs (DESIGN §7), and they let us keep the
// state after the prefix.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

namespace gonfalon::rules {
namespace {
static_assert(sizeof(SHA_CTX) == 96, "BucketHasher::state_ must hold a SHA_CTX");
constexpr double kScale = static_cast<double>(0xFFFFFFFFFFFFFFFULL);
}  // namespace

BucketHasher::BucketHasher(std::string_view key, std::string_view salt) {
  Init(StrCat(key, ".", salt, "."));
}

BucketHasher::BucketHasher(int64_t seed) { Init(StrCat(seed, ".")); }

BucketHasher::BucketHasher(std::string_view prefix) { Init(prefix); }

void BucketHasher::Init(std::string_view prefix) {
  SHA_CTX ctx;
  SHA1_Init(&ctx);
  SHA1_Update(&ctx, prefix.data(), prefix.size());
  std::memcpy(state_.data(), &ctx, sizeof ctx);
}

double BucketHasher::Bucket(std::string_view value) const {
  SHA_CTX ctx;
  std::memcpy(&ctx, state_.data(), sizeof ctx);
  SHA1_Update(&ctx, value.data(), value.size());
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1_Final(digest, &ctx);
  // The first 15 hex digits are the top 60 bits of the digest read big-endian.
  uint64_t top = 0;
  for (int i = 0; i < 8; ++i) top = (top << 8) | digest[i];
  return static_cast<double>(top >> 4) / kScale;
}

bool BucketableString(const Value& v, char* buf, std::string_view& out) {
  if (v.is_string()) {
    out = v.as_string();
    return true;
  }
  if (v.is_number()) {
    double d = v.as_number();
    if (d != std::floor(d) || std::fabs(d) > 9007199254740992.0) return false;
    auto [end, ec] = std::to_chars(buf, buf + 24, static_cast<int64_t>(d));
    out = std::string_view(buf, end - buf);
    return true;
  }
  return false;
}

}  // namespace gonfalon::rules
