#include "support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace cascade::test {

Process::Process(std::vector<std::string> argv, std::vector<std::string> env,
                 std::string stderr_path) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> envs;
  // An entry of `env` replaces an inherited one of the same name (getenv finds the first).
  auto overridden = [&](std::string_view inherited) {
    for (const auto& kv : env)
      if (auto eq = kv.find('='); eq != std::string::npos &&
                                  inherited.substr(0, eq + 1) == std::string_view(kv).substr(0, eq + 1))
        return true;
    return false;
  };
  for (char** e = environ; *e; ++e)
    if (!overridden(*e)) envs.emplace_back(*e);
  for (auto& kv : env)
    envs.push_back(kv);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv)
    cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : envs)
    cenv.push_back(e.data());
  cenv.push_back(nullptr);
  int err_fd = -1;
  if (!stderr_path.empty()) {
    err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err_fd < 0) throw std::runtime_error("cannot open " + stderr_path);
  }
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(fds[1], 1);
    if (err_fd >= 0) dup2(err_fd, 2);
    setpgid(0, 0);
    // A test that crashes must not leave its redis-server or mock behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  if (err_fd >= 0) ::close(err_fd);
  ::close(fds[1]);
  out_fd_ = fds[0];
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::optional<std::string> Process::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[4096];
    auto n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    buffer_.append(buf, static_cast<std::size_t>(n));
  }
}

std::optional<std::string> Process::wait_for_line(const std::string& needle,
                                                  std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto line = read_line(left);
    if (!line) return std::nullopt;
    if (line->find(needle) != std::string::npos) return line;
  }
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return r == 0;
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // Polling waitpid is fine here: this only ends a test, it synchronises nothing.
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return status_;
}

ToolRun run_tool(std::vector<std::string> argv, std::vector<std::string> env,
                 std::chrono::milliseconds timeout) {
  TempDir dir;
  auto err_path = dir.path() + "/stderr";
  ToolRun r;
  {
    Process p(std::move(argv), std::move(env), err_path);
    while (auto line = p.read_line(timeout))
      r.out += *line + "\n";
    r.status = p.wait(timeout).value_or(-1);
  }
  std::ifstream f(err_path);
  std::stringstream text;
  text << f.rdbuf();
  r.err = text.str();
  return r;
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("bind failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

const char* const kTestMasterKey =
    "6d61737465722d6b65792d666f722d74657374732d6f6e6c792d2d2d2d2d2d21";

const std::string& master_key_file() {
  struct File {
    std::string path = std::filesystem::temp_directory_path().string() +
                       "/cascade-test-master-" + std::to_string(getpid()) + ".key";
    File() {
      std::ofstream(path) << kTestMasterKey << "\n";
      ::chmod(path.c_str(), 0600);
    }
    ~File() { ::unlink(path.c_str()); }
  };
  static File file;
  return file.path;
}

namespace {
// Before any test runs: the tools started by tests inherit it.
[[maybe_unused]] const bool master_key_in_env = [] {
  return ::setenv("CASCADE_MASTER_KEY_FILE", master_key_file().c_str(), 0) == 0;
}();
}  // namespace

std::string tool_path(const std::string& name) {
  std::string dir = CASCADE_BIN_DIR;
  for (auto sub : {"/cascaded/", "/cascadectl/", "/mock_provider/"}) {
    auto p = dir + sub + name;
    if (std::filesystem::exists(p)) return p;
  }
  throw std::runtime_error("tool not built: " + name);
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/cascade-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace cascade::test
