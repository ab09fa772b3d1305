#pragma once
// SplitJson: a large JSON document read without building one Value tree of it.
//
// A `put` of 100,000 flags is one 60 MB object, {"flags":{key:flag,...},"segments":{...}}. As one
// Value tree it takes several times its size and most of its decoding time. SplitJson parses
// the text once, converts everything except the named members ("split" members, objects of
// items) to a Value, and converts each item only when asked, so a decoder can turn one item at
// a time into its model and free it, from several threads at once.
//
//   ASSIGN_OR_RETURN(SplitJson doc, SplitJson::Parse(text, {"flags", "segments"}));
//   doc.rest().Find("sequence");                  // the other members, as ParseJson gives them
//   for (size_t i = 0; i < doc.ItemCount("flags"); ++i) {
//     absl::StatusOr<Value> flag = doc.Item("flags", i);  // key: doc.ItemKey("flags", i)
//   }
//
// Same answers as ParseJson: invalid JSON is an error, "invalid JSON: ...", from Parse or, for
// what is inside an item, from Item (each item is validated when it is converted); the same
// depth limit; and of duplicate names the last wins (for the root's members and for a split
// member's items).
//
// Thread safety: after Parse, const methods may be called from any number of threads.

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

// JSON text followed by at least kJsonPadding readable bytes (of any value), which the parser
// may read past its end: such text is parsed where it is instead of in a padded copy.
inline constexpr size_t kJsonPadding = 64;
struct PaddedJson {
  std::string_view text;
};

class SplitJson {
 public:
  // Parses `text`. A member named in `split` is split when it is an object in a root object;
  // anything else (an absent member, a member of another type, a root that is not an object)
  // stays in rest(), so that decoders report it as they would for ParseJson's tree.
  static absl::StatusOr<SplitJson> Parse(std::string_view text, std::initializer_list<std::string_view> split);
  // The same without a copy; the text must outlive the SplitJson.
  static absl::StatusOr<SplitJson> Parse(PaddedJson text, std::initializer_list<std::string_view> split);

  SplitJson(SplitJson&&) noexcept;
  SplitJson& operator=(SplitJson&&) noexcept;
  ~SplitJson();

  // The document without its split members.
  const Value& rest() const;
  // Whether the member `name` was split. If not, rest() holds it, or it is absent.
  bool IsSplit(std::string_view name) const;
  // A split member's items, in the text's order (a repeated key counts once, at its first
  // place, with its last value). 0 for a member that was not split.
  size_t ItemCount(std::string_view name) const;
  std::string_view ItemKey(std::string_view name, size_t i) const;
  // The i-th item converted; fails if its text is not valid JSON or nests too deeply.
  absl::StatusOr<Value> Item(std::string_view name, size_t i) const;

 private:
  struct Impl;
  explicit SplitJson(std::unique_ptr<Impl> impl);
  static absl::StatusOr<SplitJson> ParseInto(std::unique_ptr<Impl> impl, std::string_view text,
                                             std::initializer_list<std::string_view> split);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gonfalon::rules
