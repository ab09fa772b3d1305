#include "gonfalon/rules/split_json.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"
#include "json_convert.h"
#include "simdjson.h"

namespace gonfalon::rules {

// The text is walked once with simdjson's On-Demand API, which indexes it but builds no tape:
// each member's raw text is located, and converted (by the DOM parser, which validates it) only
// when it is needed. A split member's items are never held as a tree all at once.
struct SplitJson::Impl {
  struct Split {
    std::string_view name;
    std::vector<std::string_view> keys;   // unescaped, in the parser's string buffer
    std::vector<std::string_view> items;  // raw JSON text, in the parsed text
  };
  simdjson::padded_string padded;  // the text's padded copy, unless it came padded
  simdjson::ondemand::parser parser;  // its string buffer holds the unescaped keys
  Value rest;
  std::vector<Split> splits;

  const Split* Find(std::string_view name) const {
    for (const Split& s : splits) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }
  void Drop(std::string_view name) {
    splits.erase(std::remove_if(splits.begin(), splits.end(), [&](const Split& s) { return s.name == name; }),
                 splits.end());
  }
};

namespace {

absl::Status Invalid(simdjson::error_code err) {
  return absl::InvalidArgumentError(StrCat("invalid JSON: ", simdjson::error_message(err)));
}

// The raw text of a value of any type, which the iteration then steps over.
simdjson::error_code RawJson(simdjson::ondemand::value& v, std::string_view& raw) {
  simdjson::ondemand::json_type type;
  if (auto err = v.type().get(type)) return err;
  if (type == simdjson::ondemand::json_type::object) {
    simdjson::ondemand::object o;
    if (auto err = v.get_object().get(o)) return err;
    return o.raw_json().get(raw);
  }
  if (type == simdjson::ondemand::json_type::array) {
    simdjson::ondemand::array a;
    if (auto err = v.get_array().get(a)) return err;
    return a.raw_json().get(raw);
  }
  raw = v.raw_json_token();
  return simdjson::SUCCESS;
}

// An object's members by name, the last of duplicate names winning at the first one's place
// (as ConvertJson does), through a map so that an object of many members stays linear.
class MemberIndex {
 public:
  explicit MemberIndex(size_t expected = 0) { index_.reserve(expected); }
  template <typename Slot>
  void Place(std::string_view name, std::vector<Slot>& slots, Slot fresh) {
    auto [it, inserted] = index_.emplace(absl::string_view(name.data(), name.size()), slots.size());
    if (inserted) {
      slots.push_back(std::move(fresh));
    } else {
      slots[it->second] = std::move(fresh);
    }
  }

 private:
  absl::flat_hash_map<absl::string_view, size_t> index_;
};

}  // namespace

static_assert(kJsonPadding >= simdjson::SIMDJSON_PADDING);

absl::StatusOr<SplitJson> SplitJson::Parse(std::string_view text, std::initializer_list<std::string_view> split) {
  auto impl = std::make_unique<Impl>();
  impl->padded = simdjson::padded_string(text);
  std::string_view copy(impl->padded.data(), impl->padded.size());
  return ParseInto(std::move(impl), copy, split);
}

absl::StatusOr<SplitJson> SplitJson::Parse(PaddedJson text, std::initializer_list<std::string_view> split) {
  return ParseInto(std::make_unique<Impl>(), text.text, split);
}

absl::StatusOr<SplitJson> SplitJson::ParseInto(std::unique_ptr<Impl> impl, std::string_view text,
                                               std::initializer_list<std::string_view> split) {
  simdjson::ondemand::document doc;
  if (auto err = impl->parser.iterate(text.data(), text.size(), text.size() + kJsonPadding).get(doc)) return Invalid(err);
  simdjson::ondemand::json_type type;
  if (auto err = doc.type().get(type)) return Invalid(err);
  if (type != simdjson::ondemand::json_type::object) {
    ASSIGN_OR_RETURN(impl->rest, ParseJson(text));  // not an object: nothing to split
    return SplitJson(std::move(impl));
  }
  simdjson::ondemand::object object;
  {
    // Only whitespace may follow the root object (On-Demand stops reading where it ends).
    std::string_view whole;
    if (auto err = doc.get_object().get(object)) return Invalid(err);
    if (auto err = object.raw_json().get(whole)) return Invalid(err);
    size_t end = static_cast<size_t>(whole.data() - text.data()) + whole.size();
    if (text.find_first_not_of(" \t\n\r", end) != std::string_view::npos) return Invalid(simdjson::TRAILING_CONTENT);
    doc.rewind();
    if (auto err = doc.get_object().get(object)) return Invalid(err);
  }
  std::vector<std::pair<std::string_view, std::string_view>> members;  // name, raw text
  MemberIndex member_index;
  for (auto field_or : object) {
    simdjson::ondemand::field field;
    std::string_view name;
    if (auto err = std::move(field_or).get(field)) return Invalid(err);
    if (auto err = field.unescaped_key().get(name)) return Invalid(err);
    simdjson::ondemand::json_type member_type;
    if (auto err = field.value().type().get(member_type)) return Invalid(err);
    bool wanted = std::find(split.begin(), split.end(), name) != split.end();
    if (wanted) impl->Drop(name);  // a repeated member: the last one wins
    if (wanted && member_type == simdjson::ondemand::json_type::object) {
      member_index.Place(name, members, {name, std::string_view()});  // holds its place; dropped below
      simdjson::ondemand::object items;
      if (auto err = field.value().get_object().get(items)) return Invalid(err);
      Impl::Split s{name, {}, {}};
      MemberIndex item_index;
      for (auto item_or : items) {
        simdjson::ondemand::field item;
        std::string_view key, raw;
        if (auto err = std::move(item_or).get(item)) return Invalid(err);
        if (auto err = item.unescaped_key().get(key)) return Invalid(err);
        if (auto err = RawJson(item.value(), raw)) return Invalid(err);
        size_t before = s.items.size();
        item_index.Place(key, s.items, raw);
        if (s.items.size() > before) s.keys.push_back(key);
      }
      impl->splits.push_back(std::move(s));
      continue;
    }
    std::string_view raw;
    if (auto err = RawJson(field.value(), raw)) return Invalid(err);
    member_index.Place(name, members, {name, raw});
  }
  Object rest;
  for (const auto& [name, raw] : members) {
    if (impl->Find(name) != nullptr) continue;  // split: not part of rest
    ASSIGN_OR_RETURN(Value v, internal::ParseJsonAt(raw, 1));
    rest.emplace_back(std::string(name), std::move(v));
  }
  impl->rest = Value(std::move(rest));
  return SplitJson(std::move(impl));
}

SplitJson::SplitJson(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SplitJson::SplitJson(SplitJson&&) noexcept = default;
SplitJson& SplitJson::operator=(SplitJson&&) noexcept = default;
SplitJson::~SplitJson() = default;

const Value& SplitJson::rest() const { return impl_->rest; }

bool SplitJson::IsSplit(std::string_view name) const { return impl_->Find(name) != nullptr; }

size_t SplitJson::ItemCount(std::string_view name) const {
  const Impl::Split* s = impl_->Find(name);
  return s == nullptr ? 0 : s->items.size();
}

std::string_view SplitJson::ItemKey(std::string_view name, size_t i) const { return impl_->Find(name)->keys.at(i); }

absl::StatusOr<Value> SplitJson::Item(std::string_view name, size_t i) const {
  return internal::ParseJsonAt(impl_->Find(name)->items.at(i), 2);
}

}  // namespace gonfalon::rules
