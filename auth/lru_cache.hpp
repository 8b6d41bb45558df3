#pragma once
// A bounded map that evicts its least recently used entry: the verifier's caches. No I/O,
// no clock: what is fresh is the caller's business. Single-threaded.
#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace cascade::auth {

template <class Value>
class LruCache {
 public:
  explicit LruCache(std::size_t capacity) : capacity_(capacity) {}
  LruCache(const LruCache&) = delete;
  LruCache& operator=(const LruCache&) = delete;

  // The entry, now the most recently used; nullptr when absent.
  Value* find(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }

  // Inserts or replaces; the entry becomes the most recently used. Returns how many
  // entries were evicted to make room (a capacity of 0 keeps nothing).
  std::size_t put(std::string key, Value value) {
    if (auto it = index_.find(key); it != index_.end()) {
      it->second->second = std::move(value);
      order_.splice(order_.begin(), order_, it->second);
      return 0;
    }
    if (capacity_ == 0) return 0;
    std::size_t evicted = 0;
    while (order_.size() >= capacity_) {
      index_.erase(std::string_view(order_.back().first));
      order_.pop_back();
      ++evicted;
    }
    order_.emplace_front(std::move(key), std::move(value));
    // The index's keys view the list's strings: list nodes never move.
    index_.emplace(std::string_view(order_.front().first), order_.begin());
    return evicted;
  }

  bool erase(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    auto node = it->second;
    index_.erase(it);
    order_.erase(node);
    return true;
  }

  // Erases every entry whose value satisfies `pred`; returns how many.
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    std::size_t n = 0;
    for (auto it = order_.begin(); it != order_.end();) {
      if (pred(it->second)) {
        index_.erase(std::string_view(it->first));
        it = order_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }

  void clear() {
    index_.clear();
    order_.clear();
  }
  std::size_t size() const { return order_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  using List = std::list<std::pair<std::string, Value>>;
  std::size_t capacity_;
  List order_;  // most recently used first
  std::unordered_map<std::string_view, typename List::iterator> index_;
};

}  // namespace cascade::auth
