#include "unit_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace gonfalon::storage::internal {

namespace {

constexpr char kUnitVersion1 = 1;
constexpr char kUnitVersion = 2;

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }
bool GetVarint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    auto byte = static_cast<unsigned char>(in[0]);
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}
// An integer a double holds exactly, small enough for a varint's sign-folded range.
bool Integral(double x) { return x == std::floor(x) && std::fabs(x) < 9007199254740992.0; }

}  // namespace

std::string EncodeUnit(const UnitState& u) {
  std::string out;
  size_t n = u.totals.size();
  out.reserve(12 + (n + 7) / 8 + 6 * n);
  out.push_back(kUnitVersion);
  PutVarint(out, ZigZag(u.variation));
  PutVarint(out, ZigZag(u.first_ms));
  PutVarint(out, u.multiple ? 1 : 0);
  PutVarint(out, n);
  size_t bitmap = out.size();
  out.append((n + 7) / 8, '\0');
  for (size_t i = 0; i < n; ++i) {
    const auto& [count, sum] = u.totals[i];
    if (count == 0 && sum == 0) continue;
    out[bitmap + i / 8] = static_cast<char>(out[bitmap + i / 8] | (1 << (i % 8)));
    bool count_double = !Integral(count), sum_double = !Integral(sum);
    out.push_back(static_cast<char>((count_double ? 1 : 0) | (sum_double ? 2 : 0)));
    for (auto [x, as_double] : {std::pair{count, count_double}, std::pair{sum, sum_double}}) {
      if (as_double) {
        out.append(reinterpret_cast<const char*>(&x), 8);
      } else {
        PutVarint(out, ZigZag(static_cast<int64_t>(x)));
      }
    }
  }
  return out;
}

std::optional<UnitState> DecodeUnit(std::string_view b, size_t metrics) {
  auto bad = [] { return std::optional<UnitState>(); };
  UnitState u;
  if (!b.empty() && b[0] == kUnitVersion1) {
    if (b.size() < 15) return bad();
    int32_t v;
    std::memcpy(&v, b.data() + 1, 4);
    u.variation = v;
    std::memcpy(&u.first_ms, b.data() + 5, 8);
    u.multiple = b[13] != 0;
    size_t n = static_cast<unsigned char>(b[14]);
    if (b.size() != 15 + 16 * n) return bad();
    u.totals.resize(std::max(n, metrics));
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(&u.totals[i].first, b.data() + 15 + 16 * i, 8);
      std::memcpy(&u.totals[i].second, b.data() + 23 + 16 * i, 8);
    }
    return u;
  }
  if (b.empty() || b[0] != kUnitVersion) return bad();
  std::string_view in = b.substr(1);
  uint64_t variation, first, flags, n;
  if (!GetVarint(in, variation) || !GetVarint(in, first) || !GetVarint(in, flags) || !GetVarint(in, n) || n > 255 ||
      in.size() < (n + 7) / 8) {
    return bad();
  }
  u.variation = static_cast<int>(UnZigZag(variation));
  u.first_ms = UnZigZag(first);
  u.multiple = (flags & 1) != 0;
  std::string_view bitmap = in.substr(0, (n + 7) / 8);
  in.remove_prefix(bitmap.size());
  u.totals.resize(std::max<size_t>(n, metrics));
  for (size_t i = 0; i < n; ++i) {
    if ((static_cast<unsigned char>(bitmap[i / 8]) & (1 << (i % 8))) == 0) continue;
    if (in.empty()) return bad();
    auto tag = static_cast<unsigned char>(in[0]);
    in.remove_prefix(1);
    double* fields[2] = {&u.totals[i].first, &u.totals[i].second};
    for (int f = 0; f < 2; ++f) {
      if ((tag & (1 << f)) != 0) {
        if (in.size() < 8) return bad();
        std::memcpy(fields[f], in.data(), 8);
        in.remove_prefix(8);
      } else {
        uint64_t v;
        if (!GetVarint(in, v)) return bad();
        *fields[f] = static_cast<double>(UnZigZag(v));
      }
    }
  }
  if (!in.empty()) return bad();
  return u;
}

}  // namespace gonfalon::storage::internal
