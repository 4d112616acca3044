// chat-bench's pieces: command line, payload stamps, percentiles, receipts.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/engine.h"
#include "bench/options.h"
#include "bench/payload.h"
#include "bench/stats.h"

namespace chat::bench {
namespace {

std::string parse(std::vector<std::string> args, Config* c) {
  bool help = false;
  return parse_args(args, c, &help);
}

TEST(BenchOptions, DefaultsAreOneBarePairAtQos1) {
  Config c;
  EXPECT_EQ(parse({}, &c), "");
  EXPECT_EQ(c.target, Target::kBare);
  EXPECT_EQ(c.scenario, Scenario::kPairs);
  EXPECT_EQ(c.scale, 1);
  EXPECT_EQ(c.qos, 1);
  EXPECT_EQ(c.payload, 100);
  EXPECT_EQ(c.mqtt_version, 5);
}

TEST(BenchOptions, ParsesScenarioAndLoad) {
  Config c;
  EXPECT_EQ(parse({"--target",     "chat",  "--fan-in",  "10",
                   "--qos",        "1",     "--payload", "200",
                   "--rate",       "5000",  "--window",  "50",
                   "--duration",   "2.5",   "--count",   "1000",
                   "--mqtt",       "3.1.1", "--json",    "--expect-no-loss",
                   "--broker-pid", "42",    "--threads", "2"},
                  &c),
            "");
  EXPECT_EQ(c.target, Target::kChat);
  EXPECT_EQ(c.scenario, Scenario::kFanIn);
  EXPECT_EQ(c.scale, 10);
  EXPECT_EQ(c.payload, 200);
  EXPECT_DOUBLE_EQ(c.rate, 5000);
  EXPECT_EQ(c.window, 50);
  EXPECT_DOUBLE_EQ(c.duration, 2.5);
  EXPECT_EQ(c.count, 1000);
  EXPECT_EQ(c.mqtt_version, 4);
  EXPECT_TRUE(c.json);
  EXPECT_TRUE(c.expect_no_loss);
  EXPECT_EQ(c.broker_pid, 42);
  EXPECT_EQ(c.threads, 2);
}

TEST(BenchOptions, RefusesBadInput) {
  Config c;
  EXPECT_NE(parse({"--qos", "3"}, &c), "");
  EXPECT_NE(parse({"--pairs"}, &c), "");
  EXPECT_NE(parse({"--pairs", "0"}, &c), "");
  EXPECT_NE(parse({"--pairs", "2", "--fan-in", "3"}, &c), "");
  EXPECT_NE(parse({"--group", "1"}, &c), "");
  EXPECT_NE(parse({"--publishers", "2", "--pairs", "2"}, &c), "");
  EXPECT_NE(parse({"--target", "nats"}, &c), "");
  EXPECT_NE(parse({"--user-prefix", "Bad"}, &c), "");
  EXPECT_NE(parse({"--duration", "abc"}, &c), "");
  EXPECT_NE(parse({"--frobnicate"}, &c), "");
  Config chat;
  EXPECT_NE(parse({"--target", "chat", "--qos", "0"}, &chat), "");
}

TEST(BenchOptions, ClientAndTransport) {
  Config c;
  EXPECT_EQ(parse({"--transport", "ws", "--port", "8083"}, &c), "");
  EXPECT_EQ(c.client, Client::kPaho);  // implied by ws
  EXPECT_EQ(c.transport, Transport::kWs);
  EXPECT_EQ(c.ws_path, "/mqtt");
  Config p;
  EXPECT_EQ(parse({"--client", "paho", "--fan-in", "3", "--ws-path", "/x"}, &p), "");
  EXPECT_EQ(p.transport, Transport::kTcp);
  EXPECT_EQ(p.ws_path, "/x");
  Config bad;
  EXPECT_NE(parse({"--client", "mosquitto", "--transport", "ws"}, &bad), "");
  EXPECT_NE(parse({"--client", "paho", "--group", "3"}, &bad), "");
  EXPECT_NE(parse({"--client", "hivemq"}, &bad), "");
  EXPECT_NE(parse({"--transport", "quic"}, &bad), "");
  EXPECT_NE(parse({"--ws-path", "mqtt"}, &bad), "");
}

TEST(BenchOptions, CustomTopology) {
  Config c;
  EXPECT_EQ(parse({"--publishers", "4", "--subscribers", "2"}, &c), "");
  EXPECT_EQ(c.scenario, Scenario::kCustom);
  EXPECT_EQ(c.publishers, 4);
  EXPECT_EQ(c.subscribers, 2);
}

TEST(BenchPayload, BarePayloadHasTheSizeAndRoundTrips) {
  std::string p;
  build_bare_payload(&p, Stamp{7, 123456, 9876543210}, 100);
  EXPECT_EQ(p.size(), 100u);
  Stamp s;
  ASSERT_TRUE(parse_stamp(p.data(), p.size(), &s));
  EXPECT_EQ(s.pub, 7u);
  EXPECT_EQ(s.seq, 123456u);
  EXPECT_EQ(s.sent_us, 9876543210u);
  // Never truncated below the stamp.
  build_bare_payload(&p, Stamp{1, 2, 3}, 1);
  EXPECT_EQ(p, "B|1|2|3|");
}

TEST(BenchPayload, ChatPayloadIsAContractMessage) {
  std::string p;
  build_chat_payload(&p, Stamp{3, 42, 1000}, "cabc-", 100);
  EXPECT_EQ(p.size(), 100u);
  auto j = nlohmann::json::parse(p);
  EXPECT_EQ(j["cid"], "cabc-3-42");
  EXPECT_EQ(j["type"], "text");
  ASSERT_TRUE(j["body"].is_string());
  // The stamp survives inside the envelope the broker delivers.
  nlohmann::json envelope = {
      {"v", 1},         {"id", "0633a1b2c4d5e000"}, {"ts", 1},   {"conv", "dm:a:b"},
      {"from", "a"},    {"dev", "bench"},           {"to", "b"}, {"cid", j["cid"]},
      {"type", "text"}, {"body", j["body"]}};
  std::string text = envelope.dump();
  Stamp s;
  ASSERT_TRUE(parse_stamp(text.data(), text.size(), &s));
  EXPECT_EQ(s.pub, 3u);
  EXPECT_EQ(s.seq, 42u);
  EXPECT_EQ(s.sent_us, 1000u);
}

TEST(BenchPayload, NoStampIsRefused) {
  Stamp s;
  std::string a = R"({"v":1,"type":"group"})";
  EXPECT_FALSE(parse_stamp(a.data(), a.size(), &s));
  std::string b = "B|1|x|";
  EXPECT_FALSE(parse_stamp(b.data(), b.size(), &s));
  std::string c = "B|1|2";
  EXPECT_FALSE(parse_stamp(c.data(), c.size(), &s));
}

TEST(BenchStats, NearestRankPercentiles) {
  std::vector<uint32_t> us;
  for (uint32_t i = 1; i <= 1000; ++i) us.push_back(i * 1000);  // 1..1000 ms, shuffled below
  std::swap(us[0], us[999]);
  Percentiles p = percentiles(&us);
  EXPECT_EQ(p.samples, 1000u);
  EXPECT_DOUBLE_EQ(p.p50_ms, 500);
  EXPECT_DOUBLE_EQ(p.p90_ms, 900);
  EXPECT_DOUBLE_EQ(p.p99_ms, 990);
  EXPECT_DOUBLE_EQ(p.max_ms, 1000);
  std::vector<uint32_t> none;
  EXPECT_EQ(percentiles(&none).samples, 0u);
}

TEST(BenchStats, ReceiptLogCountsDuplicates) {
  ReceiptLog log;
  EXPECT_EQ(log.record(5), 1);
  EXPECT_EQ(log.record(5), 2);
  EXPECT_EQ(log.record(0), 1);
  EXPECT_EQ(log.count(5), 2);
  EXPECT_EQ(log.count(4), 0);
  EXPECT_EQ(log.count(1000), 0);
}

TEST(BenchReport, LossDetection) {
  nlohmann::json ok = {{"sent", 10}, {"acked", 10}, {"lost", 0}, {"refused", 0}, {"unacked", 0}};
  EXPECT_FALSE(report_has_loss(ok));
  auto lost = ok;
  lost["lost"] = 1;
  EXPECT_TRUE(report_has_loss(lost));
  auto unacked = ok;
  unacked["unacked"] = 2;
  EXPECT_TRUE(report_has_loss(unacked));
  EXPECT_NE(format_report(ok).find("lost 0"), std::string::npos);
}

}  // namespace
}  // namespace chat::bench
