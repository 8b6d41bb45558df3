#pragma once
// Runs one coroutine to completion on an io_context from blocking code (cascadectl,
// tests, the bench). Only run_one until *this* coroutine is done: a Connection keeps a
// reader coroutine pending forever, so io.run() would never return.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <optional>

namespace cascade::redis {

template <class T>
T run_sync(boost::asio::io_context& io, boost::asio::awaitable<T> aw) {
  std::optional<T> result;
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(io, std::move(aw), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) result = std::move(v);
    done = true;
  });
  io.restart();
  while (!done && io.run_one() > 0) {
  }
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

inline void run_sync(boost::asio::io_context& io, boost::asio::awaitable<void> aw) {
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(io, std::move(aw), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  io.restart();
  while (!done && io.run_one() > 0) {
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace cascade::redis
