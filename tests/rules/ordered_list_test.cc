// OrderedList (rules/src/ordered_list.h): the chunked key-ordered lists that snapshots share.
// Lists of several chunks, changed at chunk boundaries, checked against a plain sorted vector.
#include "ordered_list.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
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
  static List Changed(const List& list, const std::vector<std::string>& keys, const ItemIndex<Node>& index,
                      bool (*keep)(const Node&)) {
    return list.Changed(keys, index, keep);
  }
  static void ExpectSame(const List& list, const std::vector<const Node*>& want) { ExpectSameFor(list, want); }

 public:
  static void ExpectSameFor(const List& list, const std::vector<const Node*>& want) {
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

 protected:
  static constexpr size_t kItems = 3 * List::kChunk + 17;  // three whole chunks and a partial one
  std::vector<const Node*> nodes_;
  ItemIndex<Node> index_;
  List list_;
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
  EXPECT_EQ(changed.SharedChunks(list_), 0u);  // every chunk held one of the keys
  ExpectSame(changed, want);
  List one = Changed(list_, {Key(List::kChunk + 3)}, next, All);
  EXPECT_EQ(one.SharedChunks(list_), list_.chunk_count() - 1);
  ExpectSame(list_, nodes_);  // the list it came from still lists the old nodes
}

TEST_F(OrderedListTest, InsertingOrRemovingClonesOnlyTheChunksConcerned) {
  ItemIndex<Node> next = index_;
  auto added = std::make_shared<const Node>(Node{Key(1500) + "a"});  // between two existing keys
  const Node* added_ptr = added.get();
  next.Put(std::move(added));
  next.Erase(Key(7));
  List changed = Changed(list_, {Key(7), Key(1500) + "a"}, next, All);
  EXPECT_EQ(changed.SharedChunks(list_), list_.chunk_count() - 1);  // both in the first chunk
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
  EXPECT_EQ(live.SharedChunks(list_), list_.chunk_count() - 1);
  EXPECT_EQ(live.size(), kItems - 1);
  for (const Node* n : live) EXPECT_NE(n->key(), Key(2048));
  // Live again: back in its place.
  ItemIndex<Node> again = next;
  auto restored = std::make_shared<const Node>(Node{Key(2048), true});
  const Node* restored_ptr = restored.get();
  again.Put(std::move(restored));
  List back = Changed(live, {Key(2048)}, again, Live);
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


// A long random run of change sets (replacements, insertions anywhere, removals, items that stop
// or start being kept; some change sets large enough to split chunks or empty them), each
// applied to the previous list and checked against a sorted map; every earlier list stays as it
// was.
TEST(OrderedListRandomTest, MatchesASortedMapAfterEveryChangeSet) {
  std::mt19937_64 rng(20261203);
  ItemIndex<Node> index;
  std::map<std::string, const Node*> kept;  // what the list must hold
  std::vector<std::shared_ptr<const Node>> all_nodes;
  List list;
  std::vector<std::pair<List, std::vector<const Node*>>> history;
  size_t max_chunks = 0;
  for (int step = 0; step < 400; ++step) {
    size_t n = rng() % 8 == 0 ? 3000 + rng() % 20000 : 1 + rng() % 20;  // now and then a bulk change
    bool removing_phase = step >= 200 && step < 300;                     // shrinks the list a lot
    std::set<std::string> keys;
    while (keys.size() < n) keys.insert(StrCat("k", rng() % 60000));
    for (const std::string& k : keys) {
      uint64_t roll = rng() % 10;
      if (removing_phase ? roll < 8 : roll < 2) {
        index.Erase(k);
        kept.erase(k);
        continue;
      }
      auto node = std::make_shared<const Node>(Node{k, roll != 2});
      all_nodes.push_back(node);
      if (node->live) {
        kept[k] = node.get();
      } else {
        kept.erase(k);
      }
      index.Put(node);
    }
    list = list.Changed(std::vector<std::string>(keys.begin(), keys.end()), index, Live);
    std::vector<const Node*> want;
    for (const auto& [k, node] : kept) want.push_back(node);
    ASSERT_NO_FATAL_FAILURE(OrderedListTest::ExpectSameFor(list, want)) << "step " << step;
    max_chunks = std::max(max_chunks, list.chunk_count());
    EXPECT_LE(list.chunk_count(), 2 * (list.size() / List::kChunk) + 4) << "step " << step;
    if (step % 50 == 0) history.emplace_back(list, want);
  }
  for (const auto& [old, want] : history) ASSERT_NO_FATAL_FAILURE(OrderedListTest::ExpectSameFor(old, want));
  EXPECT_GE(max_chunks, 5u);  // the run did reach several chunks
}

}  // namespace
}  // namespace gonfalon::rules::internal
