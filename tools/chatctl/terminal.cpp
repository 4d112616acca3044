#include "chatctl/terminal.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace chat::tools {
namespace {

// What the signal handler needs to put the terminal back. Only one prompt
// runs at a time (chatctl is single-threaded where it prompts).
volatile sig_atomic_t g_tty_fd = -1;
termios g_saved_termios;

constexpr int kRestoreSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
struct sigaction g_previous[sizeof kRestoreSignals / sizeof kRestoreSignals[0]];

extern "C" void restore_and_reraise(int sig) {
  if (g_tty_fd >= 0) {
    ::tcsetattr(g_tty_fd, TCSAFLUSH, &g_saved_termios);
    static const char kNewline = '\n';
    ssize_t ignored = ::write(g_tty_fd, &kNewline, 1);
    (void)ignored;
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

Result<std::string> prompt_password(std::string_view prompt) {
  int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return unavailable("no terminal to ask for a password on");
  termios saved{};
  if (::tcgetattr(fd, &saved) != 0) {
    ::close(fd);
    return unavailable("no terminal to ask for a password on");
  }

  g_saved_termios = saved;
  g_tty_fd = fd;
  for (size_t i = 0; i < sizeof kRestoreSignals / sizeof kRestoreSignals[0]; ++i) {
    struct sigaction sa {};
    sa.sa_handler = restore_and_reraise;
    sigemptyset(&sa.sa_mask);
    ::sigaction(kRestoreSignals[i], &sa, &g_previous[i]);
  }

  termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;  // the Enter key still moves to a new line
  ::tcsetattr(fd, TCSAFLUSH, &quiet);

  write_all(fd, prompt);
  std::string line;
  bool got_line = false;
  while (true) {
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (c == '\n' || c == '\r') {
      got_line = true;
      break;
    }
    line.push_back(c);
  }

  ::tcsetattr(fd, TCSAFLUSH, &saved);
  for (size_t i = 0; i < sizeof kRestoreSignals / sizeof kRestoreSignals[0]; ++i) {
    ::sigaction(kRestoreSignals[i], &g_previous[i], nullptr);
  }
  g_tty_fd = -1;
  if (!got_line) write_all(fd, "\n");
  ::close(fd);
  if (!got_line && line.empty()) return unavailable("no password given");
  return line;
}

}  // namespace chat::tools
