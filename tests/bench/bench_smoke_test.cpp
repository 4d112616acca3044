// A short smoke run of the real chat-bench against the real stack (mosquitto
// with our plugin, chat-api) and against a bare mosquitto: a few hundred
// messages, then the accounting from --json must add up exactly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "stack.h"

namespace chat::testing {
namespace {

struct BenchRun {
  int status = -1;  // exit status of chat-bench
  std::string output;
  json report;  // the --json line (null when there was none)
};

BenchRun run_bench(const std::string& args) {
  BenchRun r;
  std::string cmd = std::string(CHAT_BENCH_EXE) + " " + args + " --json 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  int st = ::pclose(f);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  // The report is the last line that parses as a JSON object.
  size_t end = r.output.size();
  while (end > 0) {
    size_t start = r.output.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    auto j = json::parse(r.output.substr(start, end - start), nullptr, false);
    if (j.is_object()) {
      r.report = j;
      break;
    }
    if (start == 0) break;
    end = start - 1;
  }
  return r;
}

uint64_t num(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<uint64_t>() : ~0ull;
}

// sent == acked == expected == received, nothing lost, duplicated or stray.
void expect_exact(const BenchRun& r, uint64_t messages, uint64_t recipients = 1) {
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(r.report.is_object()) << r.output;
  const json& j = r.report;
  EXPECT_EQ(num(j, "sent"), messages) << r.output;
  EXPECT_EQ(num(j, "acked"), messages) << r.output;
  EXPECT_EQ(num(j, "expected"), messages * recipients) << r.output;
  EXPECT_EQ(num(j, "received"), messages * recipients) << r.output;
  EXPECT_EQ(num(j, "lost"), 0u) << r.output;
  EXPECT_EQ(num(j, "duplicated"), 0u) << r.output;
  EXPECT_EQ(num(j, "stray"), 0u) << r.output;
  EXPECT_EQ(num(j, "refused"), 0u) << r.output;
  EXPECT_EQ(num(j, "unacked"), 0u) << r.output;
  EXPECT_EQ(j["latency_ms"]["samples"].get<uint64_t>(), messages * recipients) << r.output;
  EXPECT_GT(j["latency_ms"]["max"].get<double>(), 0.0) << r.output;
}

class BenchSmokeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { stack_ = new Stack(); }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  static std::string chat_target() {
    return "--target chat --port " + std::to_string(stack_->mqtt_port()) +
           " --api http://127.0.0.1:" + std::to_string(stack_->http_port()) +
           " --duration 30 --drain-timeout 10 --expect-no-loss";
  }
  static Stack* stack_;
};
Stack* BenchSmokeTest::stack_ = nullptr;

TEST_F(BenchSmokeTest, ChatPairsAccountingIsExact) {
  BenchRun r = run_bench(chat_target() + " --pairs 2 --count 300 --user-prefix smokep");
  expect_exact(r, 300);
  EXPECT_EQ(r.report["target"], "chat");
  EXPECT_EQ(r.report["connections"], 4);
  // The messages are in the archive: a recipient's sync returns them.
  std::string token = stack_->login("smokepr0", "bench-password");
  EXPECT_EQ(sync_all(*stack_, token).size(), 150u);
}

TEST_F(BenchSmokeTest, ChatPairsWithThePahoEngine) {
  BenchRun r =
      run_bench(chat_target() + " --client paho --pairs 2 --count 300 --user-prefix smokeq");
  expect_exact(r, 300);
  EXPECT_EQ(r.report["client"], "paho");
}

TEST_F(BenchSmokeTest, ChatFanInWithMqtt311AndARate) {
  BenchRun r = run_bench(chat_target() +
                         " --fan-in 3 --count 300 --rate 2000 --mqtt 3.1.1 --user-prefix smokef");
  expect_exact(r, 300);
}

TEST_F(BenchSmokeTest, ChatOfflineDrainDeliversTheQueue) {
  BenchRun r = run_bench(chat_target() + " --offline-drain 200 --user-prefix smoked");
  expect_exact(r, 200);
  EXPECT_EQ(r.report["session_present"], true) << r.output;
  EXPECT_EQ(num(r.report, "received_while_offline"), 0u) << r.output;
}

TEST_F(BenchSmokeTest, SecondRunReusesTheAccounts) {
  BenchRun r = run_bench(chat_target() + " --pairs 1 --count 100 --user-prefix smokep");
  expect_exact(r, 100);
}

TEST_F(BenchSmokeTest, ChatGroupFanOutOrSkip) {
  BenchRun r = run_bench(chat_target() + " --group 4 --count 100 --user-prefix smokeg");
  ASSERT_EQ(r.status, 0) << r.output;
  if (r.report.contains("skipped")) GTEST_SKIP() << r.report["skipped"];
  expect_exact(r, 100, 3);
}

// The pid of the stack's mosquitto: the process whose command line names
// the stack's data dir.
int broker_pid(const Stack& s) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find("mosquitto") != std::string::npos &&
        cmd.find(s.data_dir() + "/mosquitto.conf") != std::string::npos) {
      return std::atoi(e.path().filename().c_str());
    }
  }
  return 0;
}

TEST_F(BenchSmokeTest, IdleConnectionsReportBrokerMemory) {
  int pid = broker_pid(*stack_);
  ASSERT_GT(pid, 0);
  BenchRun r = run_bench(chat_target() + " --idle 50 --devices-per-user 25 --idle-hold 0.2" +
                         " --user-prefix smokei --broker-pid " + std::to_string(pid));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(num(r.report, "connected"), 50u) << r.output;
  EXPECT_EQ(num(r.report, "still_connected"), 50u) << r.output;
  EXPECT_TRUE(r.report.contains("rss_per_conn_bytes")) << r.output;
}

TEST_F(BenchSmokeTest, WrongPasswordForAnExistingUserFailsSetup) {
  // Create the users first (this test must not depend on others running before it).
  BenchRun first = run_bench(chat_target() + " --pairs 1 --count 10 --user-prefix smokep");
  ASSERT_EQ(first.status, 0) << first.output;
  BenchRun r = run_bench(chat_target() + " --pairs 1 --count 10 --user-prefix smokep" +
                         " --password not-the-same-one");
  EXPECT_EQ(r.status, 3) << r.output;
}

TEST(BenchSmokeBare, BareBrokerPairsAndGroup) {
  char tmpl[] = "/tmp/chat-bench-bare-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  int port = free_port();
  {
    std::ofstream conf(dir + "/mosquitto.conf");
    conf << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence false\n";
  }
  Process broker;
  broker.start({MOSQUITTO_EXECUTABLE, "-c", dir + "/mosquitto.conf"}, {}, dir + "/mosquitto.log");
  ASSERT_TRUE(eventually([&] { return port_open(port); }, 10s));
  std::string target = "--target bare --port " + std::to_string(port) + " --duration 30";
  expect_exact(run_bench(target + " --pairs 2 --count 300 --expect-no-loss"), 300);
  expect_exact(run_bench(target + " --group 5 --count 100 --expect-no-loss"), 100, 4);
  // The Paho engine (the one that also speaks WebSocket) over TCP, both versions.
  expect_exact(run_bench(target + " --client paho --pairs 2 --count 300 --expect-no-loss"), 300);
  expect_exact(run_bench(target + " --client paho --fan-in 3 --count 300 --mqtt 3.1.1" +
                         " --rate 3000 --expect-no-loss"),
               300);
  BenchRun q0 = run_bench(target + " --pairs 1 --count 200 --qos 0 --quiet 1");
  ASSERT_EQ(q0.status, 0) << q0.output;
  EXPECT_EQ(num(q0.report, "sent"), 200u) << q0.output;
  broker.kill(SIGTERM);
  broker.wait();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace chat::testing
