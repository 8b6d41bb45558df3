#pragma once
// Child processes for integration tests: spawn, read stdout lines, signal, wait.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cascade::test {

class Process {
 public:
  // Starts argv[0] (a path) with argv. env entries "K=V" are added to the environment
  // (replacing an inherited K).
  // stdout is a pipe readable with read_line(); stderr goes to `stderr_path` when set,
  // else it is inherited.
  Process(std::vector<std::string> argv, std::vector<std::string> env = {},
          std::string stderr_path = {});
  ~Process();  // SIGKILLs and reaps if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Next stdout line (without '\n'), or nullopt at EOF or when the timeout passes.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Reads stdout lines until one contains `needle`; returns that line.
  std::optional<std::string> wait_for_line(const std::string& needle,
                                           std::chrono::milliseconds timeout);
  void signal(int sig);
  // Waits for exit; returns the exit status (WEXITSTATUS, or 128+signal), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  std::optional<int> status_;
};

// A tool run to completion: its stdout (lines joined with '\n'), stderr and exit status.
struct ToolRun {
  int status = -1;  // exit status, 128+signal, or -1 when it did not finish in time
  std::string out;
  std::string err;
};
ToolRun run_tool(std::vector<std::string> argv, std::vector<std::string> env = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
std::uint16_t free_port();

// Path of a built tool (cascaded, cascadectl, cascade-mock-provider).
std::string tool_path(const std::string& name);

// The tests' master key file (auth/secrets.hpp): a fixed test key written once per test
// process to a temporary file. Every tool a test starts finds it through
// CASCADE_MASTER_KEY_FILE, set for the test process as an operator would set it; a test
// that wants none passes "CASCADE_MASTER_KEY_FILE=" in the tool's environment.
const std::string& master_key_file();
// The test master key, as the file holds it (64 hex characters).
extern const char* const kTestMasterKey;

// A fresh temporary directory, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cascade::test
