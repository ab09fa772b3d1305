// OrderedList (rules/src/ordered_list.h): the chunked key-ordered lists that snapshots share.
// Lists of several chunks, changed at chunk boundaries, checked against a plain sorted vector.
#include "ordered_list.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gonfalon/rules/str_cat.h"
#include "item_index.h"

namespace gonfalon::rules::internal {
namespace {

struct Node {
  std::string k;
  bool live = true;
  const std::string& key() const { return k; }
};
using List = OrderedList<Node>;

std::string Key(size_t i) { return StrCat("k", 100000 + i); }

// Independent of the list: every key of `before` and `keys`, in order, whose node in `index`
// exists and is kept.
std::vector<const Node*> Rebuilt(const std::vector<const Node*>& before, const std::vector<std::string>& keys,
                                 const ItemIndex<Node>& index, bool (*keep)(const Node&)) {
  std::set<std::string> all(keys.begin(), keys.end());
  for (const Node* n : before) all.insert(n->key());
  std::vector<const Node*> out;
  for (const std::string& k : all) {
    if (const Node* n = index.Find(k); n != nullptr && keep(*n)) out.push_back(n);
  }
  return out;
}

bool All(const Node&) { return true; }
bool Live(const Node& n) { return n.live; }

class OrderedListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (size_t i = 0; i < kItems; ++i) {
      auto n = std::make_shared<const Node>(Node{Key(i)});
      nodes_.push_back(n.get());
      index_.Put(std::move(n));
    }
    list_ = List(nodes_);
  }
  List Changed(const List& list, const std::vector<std::string>& keys, const ItemIndex<Node>& index,
               bool (*keep)(const Node&)) {
    int fallbacks_before = fallbacks_;
    List out = list.Changed(keys, index, keep, [&](const std::vector<const Node*>& before, const std::vector<std::string>& k,
                                                   const ItemIndex<Node>& i, bool (*kp)(const Node&)) {
      ++fallbacks_;
      return Rebuilt(before, k, i, kp);
    });
    rebuilt_ = fallbacks_ > fallbacks_before;
    return out;
  }
  static void ExpectSame(const List& list, const std::vector<const Node*>& want) {
    ASSERT_EQ(list.size(), want.size());
    EXPECT_EQ(list.Flat(), want);
    size_t i = 0;
    for (const Node* n : list) {
      ASSERT_LT(i, want.size());
      EXPECT_EQ(n, want[i]) << i;
      EXPECT_EQ(list[i], want[i]) << i;
      ++i;
    }
    EXPECT_EQ(i, want.size());
  }

  static constexpr size_t kItems = 3 * List::kChunk + 17;  // three whole chunks and a partial one
  std::vector<const Node*> nodes_;
  ItemIndex<Node> index_;
  List list_;
  int fallbacks_ = 0;
  bool rebuilt_ = false;
};

TEST_F(OrderedListTest, HoldsTheNodesInOrderAcrossChunks) { ExpectSame(list_, nodes_); }

TEST_F(OrderedListTest, ReplacingItemsAtChunkEdgesChangesOnlyThemAndLeavesTheOldListAsItWas) {
  ItemIndex<Node> next = index_;
  std::vector<const Node*> want = nodes_;
  std::vector<std::string> keys;
  for (size_t i : {size_t{0}, List::kChunk - 1, List::kChunk, 2 * List::kChunk + 5, kItems - 1}) {
    auto n = std::make_shared<const Node>(Node{Key(i)});
    want[i] = n.get();
    keys.push_back(Key(i));
    next.Put(std::move(n));
  }
  List changed = Changed(list_, keys, next, All);
  EXPECT_FALSE(rebuilt_);  // replacements only: no rebuild
  ExpectSame(changed, want);
  ExpectSame(list_, nodes_);  // the list it came from still lists the old nodes
}

TEST_F(OrderedListTest, InsertingOrRemovingRebuildsInOrder) {
  ItemIndex<Node> next = index_;
  auto added = std::make_shared<const Node>(Node{Key(1500) + "a"});  // between two existing keys
  const Node* added_ptr = added.get();
  next.Put(std::move(added));
  next.Erase(Key(7));
  List changed = Changed(list_, {Key(7), Key(1500) + "a"}, next, All);
  EXPECT_TRUE(rebuilt_);
  std::vector<const Node*> want;
  for (size_t i = 0; i < kItems; ++i) {
    if (i != 7) want.push_back(nodes_[i]);
    if (i == 1500) want.push_back(added_ptr);
  }
  ExpectSame(changed, want);
  ExpectSame(list_, nodes_);
}

TEST_F(OrderedListTest, AnItemThatStopsBeingKeptLeavesTheListAndComesBack) {
  ItemIndex<Node> next = index_;
  auto archived = std::make_shared<const Node>(Node{Key(2048), false});
  next.Put(std::move(archived));
  List live = Changed(list_, {Key(2048)}, next, Live);
  EXPECT_TRUE(rebuilt_);
  EXPECT_EQ(live.size(), kItems - 1);
  for (const Node* n : live) EXPECT_NE(n->key(), Key(2048));
  // Live again: back in its place.
  ItemIndex<Node> again = next;
  auto restored = std::make_shared<const Node>(Node{Key(2048), true});
  const Node* restored_ptr = restored.get();
  again.Put(std::move(restored));
  List back = Changed(live, {Key(2048)}, again, Live);
  EXPECT_TRUE(rebuilt_);
  std::vector<const Node*> want = nodes_;
  want[2048] = restored_ptr;
  ExpectSame(back, want);
}

TEST_F(OrderedListTest, AnEmptyListTakesItsFirstItem) {
  List empty;
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_TRUE(empty.begin() == empty.end());
  ItemIndex<Node> index;
  auto n = std::make_shared<const Node>(Node{"only"});
  const Node* p = n.get();
  index.Put(std::move(n));
  ExpectSame(Changed(empty, {"only"}, index, All), {p});
}

}  // namespace
}  // namespace gonfalon::rules::internal
