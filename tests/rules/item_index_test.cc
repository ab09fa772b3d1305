// ItemIndex (rules/src/item_index.h): the key -> node map snapshots share, in shards.
// Copies changed independently are checked against plain std::maps, at sizes that fill every
// shard (20,000 keys) and that leave most of them empty (3 keys).
#include "item_index.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>

#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules::internal {
namespace {

struct Node {
  std::string k;
  int version = 0;
  const std::string& key() const { return k; }
};
using Index = ItemIndex<Node>;
using Model = std::map<std::string, int>;  // key -> version

std::shared_ptr<const Node> Make(const std::string& k, int version) {
  return std::make_shared<const Node>(Node{k, version});
}

void ExpectSame(const Index& index, const Model& model, size_t key_space) {
  ASSERT_EQ(index.size(), model.size());
  for (size_t i = 0; i < key_space; ++i) {
    std::string k = StrCat("flag-", i);
    auto it = model.find(k);
    const Node* n = index.Find(k);
    if (it == model.end()) {
      EXPECT_EQ(n, nullptr) << k;
    } else {
      ASSERT_NE(n, nullptr) << k;
      EXPECT_EQ(n->version, it->second) << k;
      EXPECT_EQ(n->key(), k);
    }
  }
}

TEST(ItemIndexTest, CopiesChangeIndependentlyAndShareWhatTheyDoNotChange) {
  for (size_t keys : {size_t{3}, size_t{20000}}) {
    SCOPED_TRACE(StrCat(keys, " keys"));
    Index base;
    Model base_model;
    for (size_t i = 0; i < keys; ++i) {
      base.Put(Make(StrCat("flag-", i), 1));
      base_model[StrCat("flag-", i)] = 1;
    }
    ExpectSame(base, base_model, keys + 10);

    // Generations of copies, each changing a few keys (replace, insert, erase, erase of a
    // missing key) of the previous one; every generation kept and checked at the end.
    std::mt19937 rng(static_cast<unsigned>(keys));
    std::vector<Index> generations{base};
    std::vector<Model> models{base_model};
    for (int g = 1; g <= 30; ++g) {
      Index next = generations.back();
      Model model = models.back();
      for (int c = 0; c < 5; ++c) {
        std::string k = StrCat("flag-", rng() % (keys + 10));
        switch (rng() % 3) {
          case 0:
          case 1:
            next.Put(Make(k, g + 1));  // base nodes are version 1
            model[k] = g + 1;
            break;
          case 2:
            next.Erase(k);
            model.erase(k);
            break;
        }
      }
      generations.push_back(next);
      models.push_back(model);
    }
    for (size_t g = 0; g < generations.size(); ++g) {
      SCOPED_TRACE(StrCat("generation ", g));
      ExpectSame(generations[g], models[g], keys + 10);
    }
    // An unchanged key's node is the same object in every generation.
    const Node* first = base.Find("flag-0");
    for (size_t g = 0; g < generations.size(); ++g) {
      if (models[g].count("flag-0") && models[g].at("flag-0") == 1) {
        EXPECT_EQ(generations[g].Find("flag-0"), first);
      }
    }
  }
}

TEST(ItemIndexTest, AssignedIndexClonesBeforeChanging) {
  Index a;
  a.Put(Make("x", 1));
  Index b;
  b.Put(Make("y", 1));
  b = a;  // b owns nothing now: changing it must not change a
  b.Put(Make("x", 2));
  b.Erase("x");
  b.Put(Make("z", 3));
  ASSERT_NE(a.Find("x"), nullptr);
  EXPECT_EQ(a.Find("x")->version, 1);
  EXPECT_EQ(a.Find("z"), nullptr);
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(b.Find("x"), nullptr);
  EXPECT_EQ(b.Find("y"), nullptr);
  EXPECT_EQ(b.size(), 1u);
}

}  // namespace
}  // namespace gonfalon::rules::internal
