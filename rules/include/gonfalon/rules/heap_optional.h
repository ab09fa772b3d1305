#pragma once
// HeapOptional<T>: std::optional's interface with the value on the heap, so that an absent value
// costs one pointer. For large, usually absent members of the data model (a rule's rollout:
// 100,000 flags carry hundreds of thousands of rules, most serving a fixed variation).
// A value type: copies copy the value, == compares values.
//
//   HeapOptional<Rollout> r;      // empty, 8 bytes
//   r = Rollout{...};
//   if (r.has_value()) Use(r->variations);

#include <memory>
#include <optional>
#include <utility>

namespace gonfalon::rules {

template <typename T>
class HeapOptional {
 public:
  HeapOptional() = default;
  HeapOptional(std::nullopt_t) {}
  HeapOptional(T value) : p_(std::make_unique<T>(std::move(value))) {}
  HeapOptional(const HeapOptional& o) : p_(o.p_ ? std::make_unique<T>(*o.p_) : nullptr) {}
  HeapOptional(HeapOptional&&) noexcept = default;
  HeapOptional& operator=(const HeapOptional& o) {
    if (this != &o) p_ = o.p_ ? std::make_unique<T>(*o.p_) : nullptr;
    return *this;
  }
  HeapOptional& operator=(HeapOptional&&) noexcept = default;
  HeapOptional& operator=(std::nullopt_t) {
    p_.reset();
    return *this;
  }

  bool has_value() const { return p_ != nullptr; }
  explicit operator bool() const { return has_value(); }
  const T& operator*() const { return *p_; }
  T& operator*() { return *p_; }
  const T* operator->() const { return p_.get(); }
  T* operator->() { return p_.get(); }
  template <typename... Args>
  T& emplace(Args&&... args) {
    p_ = std::make_unique<T>(std::forward<Args>(args)...);
    return *p_;
  }
  void reset() { p_.reset(); }

  friend bool operator==(const HeapOptional& a, const HeapOptional& b) {
    if (a.has_value() != b.has_value()) return false;
    return !a.has_value() || *a == *b;
  }

 private:
  std::unique_ptr<T> p_;
};

}  // namespace gonfalon::rules
