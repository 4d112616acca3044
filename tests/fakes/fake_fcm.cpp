// fake-fcm: a stand-in for Google's OAuth 2.0 token endpoint and the FCM
// HTTP v1 send API, for tests. HTTP/1.1 (cpp-httplib), plain or TLS.
//
// usage: fake-fcm --port N --service-account FILE [--record FILE] [--script FILE]
//                 [--tls-cert PEM --tls-key PEM] [--token-ttl SECONDS]
//
// POST <any path ending in /token>: the JWT bearer grant (RFC 7523). The
//   assertion must be an RS256 JWT signed by the service account's key with
//   iss = client_email, scope = firebase.messaging, aud = the URL posted to,
//   exp - iat <= 3600 and exp in the future. Answers
//   {"access_token":"fake-access-<n>","expires_in":<token-ttl>,"token_type":"Bearer"}.
//   Script key "@oauth" overrides the answers.
// POST /v1/projects/<project_id>/messages:send: needs "Authorization: Bearer
//   <a token it issued, not expired>" (else 401 UNAUTHENTICATED) and a body
//   {"message":{"token":...,"data":{string values}}} (else 400
//   INVALID_ARGUMENT); then the script for message.token, else 200
//   {"name":"projects/<id>/messages/<n>"}.
// Every request is recorded (fake_support.h). Prints "listening <port>"
// once it accepts connections.
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <set>
#include <thread>

#include "chat/common/jwt.h"
#include "fake_support.h"

namespace {

using chat::fakes::json;

struct State {
  std::string client_email;
  std::string project_id;
  EVP_PKEY* key = nullptr;  // the service account's (its public half verifies)
  int64_t token_ttl_s = 3600;
  bool tls = false;
  chat::fakes::Script script;
  chat::fakes::Recorder recorder;
  std::mutex mu;
  std::map<std::string, int64_t> issued;  // access token -> expiry (ms)
  std::atomic<int> counter{0};
};

bool verify_rs256(EVP_PKEY* key, const std::string& input, const std::string& sig) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok =
      ctx &&
      EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  ERR_clear_error();
  return ok;
}

// "" when the assertion is good, else why not.
std::string check_assertion(State& st, const std::string& assertion, const std::string& aud) {
  const size_t a = assertion.find('.');
  const size_t b = a == std::string::npos ? a : assertion.find('.', a + 1);
  if (b == std::string::npos) return "not a compact JWS";
  auto header = chat::jwt::base64url_decode(std::string_view(assertion).substr(0, a));
  auto claims = chat::jwt::base64url_decode(std::string_view(assertion).substr(a + 1, b - a - 1));
  auto sig = chat::jwt::base64url_decode(std::string_view(assertion).substr(b + 1));
  if (!header || !claims || !sig) return "bad base64url";
  json h = json::parse(*header, nullptr, false);
  json c = json::parse(*claims, nullptr, false);
  if (!h.is_object() || !c.is_object()) return "header or claims not JSON objects";
  if (h.value("alg", "") != "RS256") return "alg is not RS256";
  if (!verify_rs256(st.key, assertion.substr(0, b), *sig)) return "bad signature";
  if (c.value("iss", "") != st.client_email) return "iss is not the client_email";
  if (c.value("scope", "") != "https://www.googleapis.com/auth/firebase.messaging") {
    return "wrong scope";
  }
  if (c.value("aud", "") != aud) return "aud is not " + aud;
  if (!c.contains("iat") || !c["iat"].is_number_integer() || !c.contains("exp") ||
      !c["exp"].is_number_integer()) {
    return "iat/exp missing";
  }
  const int64_t iat = c["iat"].get<int64_t>();
  const int64_t exp = c["exp"].get<int64_t>();
  if (exp - iat > 3600 || exp <= iat) return "exp - iat not in (0, 3600]";
  if (exp * 1000 < chat::fakes::now_ms()) return "expired";
  return "";
}

json headers_of(const httplib::Request& req) {
  json h = json::object();
  for (const auto& [k, v] : req.headers) {
    std::string name = k;
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name == "authorization" || name == "content-type" || name == "accept" ||
        name == "user-agent") {
      h[name] = v;
    }
  }
  return h;
}

void answer(httplib::Response& res, int status, const std::string& body,
            const std::map<std::string, std::string>& headers = {}) {
  res.status = status;
  for (const auto& [k, v] : headers) res.set_header(k, v);
  res.set_content(body, "application/json; charset=UTF-8");
}

json google_error(int code, const std::string& status, const std::string& message,
                  const std::string& fcm_code = "") {
  json e = {{"code", code}, {"message", message}, {"status", status}};
  if (!fcm_code.empty()) {
    e["details"] = json::array({{{"@type", "type.googleapis.com/google.firebase.fcm.v1.FcmError"},
                                 {"errorCode", fcm_code}}});
  }
  return json{{"error", e}};
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  State st;
  std::map<std::string, std::string> args;
  std::unique_ptr<httplib::Server> server;
  int port = 0;
  try {
    args = chat::fakes::parse_args(argc, argv);
    if (!args.count("port") || !args.count("service-account")) {
      throw std::runtime_error("--port and --service-account are required");
    }
    port = std::stoi(args["port"]);
    json sa = json::parse(chat::fakes::read_file(args["service-account"]));
    st.client_email = sa.at("client_email").get<std::string>();
    st.project_id = sa.at("project_id").get<std::string>();
    const std::string pem = sa.at("private_key").get<std::string>();
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    st.key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (st.key == nullptr) throw std::runtime_error("service account: bad private_key");
    if (args.count("token-ttl")) st.token_ttl_s = std::stoll(args["token-ttl"]);
    st.script.load(args.count("script") ? args["script"] : "");
    st.recorder.open(args.count("record") ? args["record"] : "");
    if (args.count("tls-cert")) {
      server =
          std::make_unique<httplib::SSLServer>(args["tls-cert"].c_str(), args["tls-key"].c_str());
      if (!server->is_valid()) throw std::runtime_error("bad --tls-cert/--tls-key");
      st.tls = true;
    } else {
      server = std::make_unique<httplib::Server>();
    }
  } catch (const std::exception& e) {
    std::cerr << "fake-fcm: " << e.what() << "\n";
    return 2;
  }
  httplib::Server& svr = *server;
  const std::string scheme = st.tls ? "https" : "http";

  svr.Post(R"(.*/token)", [&](const httplib::Request& req, httplib::Response& res) {
    json rec = {{"kind", "oauth"},
                {"method", req.method},
                {"path", req.path},
                {"proto", req.version},
                {"tls", st.tls},
                {"headers", headers_of(req)},
                {"ts", chat::fakes::now_ms()}};
    httplib::Params form;
    httplib::detail::parse_query_text(req.body, form);
    auto field = [&](const char* name) {
      auto it = form.find(name);
      return it == form.end() ? std::string() : it->second;
    };
    rec["grant_type"] = field("grant_type");
    std::string error;
    if (field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer") {
      error = "unsupported grant_type";
    } else {
      error = check_assertion(st, field("assertion"),
                              scheme + "://" + req.get_header_value("Host") + req.path);
    }
    if (auto scripted = st.script.next("@oauth")) {
      rec["status"] = scripted->status;
      rec["scripted"] = true;
      st.recorder.record(rec);
      std::this_thread::sleep_for(std::chrono::milliseconds(scripted->delay_ms));
      answer(res, scripted->status, scripted->has_body ? scripted->body : "{}", scripted->headers);
      return;
    }
    if (!error.empty()) {
      rec["status"] = 400;
      rec["error"] = error;
      st.recorder.record(rec);
      answer(res, 400, json{{"error", "invalid_grant"}, {"error_description", error}}.dump());
      return;
    }
    const std::string token = "fake-access-" + std::to_string(++st.counter);
    {
      std::lock_guard<std::mutex> lock(st.mu);
      st.issued[token] = chat::fakes::now_ms() + st.token_ttl_s * 1000;
    }
    rec["status"] = 200;
    rec["issued"] = token;
    st.recorder.record(rec);
    answer(res, 200,
           json{{"access_token", token}, {"expires_in", st.token_ttl_s}, {"token_type", "Bearer"}}
               .dump());
  });

  svr.Post(R"(/v1/projects/([^/]+)/messages:send)", [&](const httplib::Request& req,
                                                        httplib::Response& res) {
    json rec = {{"kind", "send"},
                {"method", req.method},
                {"path", req.path},
                {"proto", req.version},
                {"tls", st.tls},
                {"headers", headers_of(req)},
                {"ts", chat::fakes::now_ms()}};
    json body = json::parse(req.body, nullptr, false);
    rec["body"] = body.is_discarded() ? json(req.body.substr(0, 4096)) : body;
    auto finish = [&](int status, const json& out, const std::string& error) {
      rec["status"] = status;
      if (!error.empty()) rec["error"] = error;
      st.recorder.record(rec);
      answer(res, status, out.dump());
    };
    // Authentication first, as Google does.
    const std::string auth = req.get_header_value("Authorization");
    bool authed = false;
    if (auth.rfind("Bearer ", 0) == 0) {
      std::lock_guard<std::mutex> lock(st.mu);
      auto it = st.issued.find(auth.substr(7));
      authed = it != st.issued.end() && it->second > chat::fakes::now_ms();
    }
    if (!authed) {
      finish(
          401,
          google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
          "bad bearer token");
      return;
    }
    if (req.matches[1] != st.project_id) {
      finish(403, google_error(403, "PERMISSION_DENIED", "wrong project", "SENDER_ID_MISMATCH"),
             "wrong project");
      return;
    }
    const json* message = nullptr;
    if (body.is_object() && body.contains("message") && body["message"].is_object()) {
      message = &body["message"];
    }
    std::string token;
    if (message != nullptr && message->contains("token") && (*message)["token"].is_string()) {
      token = (*message)["token"].get<std::string>();
    }
    bool data_ok = message != nullptr;
    if (data_ok && message->contains("data")) {
      const json& data = (*message)["data"];
      data_ok = data.is_object();
      if (data_ok) {
        for (const auto& [k, v] : data.items()) data_ok = data_ok && v.is_string();
      }
    }
    if (token.empty() || !data_ok) {
      finish(400, google_error(400, "INVALID_ARGUMENT", "Invalid message", "INVALID_ARGUMENT"),
             "invalid message");
      return;
    }
    rec["token"] = token;
    if (auto scripted = st.script.next(token)) {
      rec["status"] = scripted->status;
      rec["scripted"] = true;
      st.recorder.record(rec);
      std::this_thread::sleep_for(std::chrono::milliseconds(scripted->delay_ms));
      answer(res, scripted->status, scripted->has_body ? scripted->body : "{}", scripted->headers);
      return;
    }
    finish(
        200,
        json{{"name", "projects/" + st.project_id + "/messages/" + std::to_string(++st.counter)}},
        "");
  });

  auto other = [&](const httplib::Request& req, httplib::Response& res) {
    st.recorder.record({{"kind", "other"},
                        {"method", req.method},
                        {"path", req.path},
                        {"status", 404},
                        {"ts", chat::fakes::now_ms()}});
    answer(res, 404, google_error(404, "NOT_FOUND", "no such method").dump());
  };
  svr.Get(".*", other);
  svr.Post(".*", other);
  svr.Put(".*", other);
  svr.Delete(".*", other);

  svr.set_payload_max_length(1 << 20);
  if (!svr.bind_to_port("127.0.0.1", port)) {
    std::cerr << "fake-fcm: cannot bind 127.0.0.1:" << port << "\n";
    return 1;
  }
  std::cout << "listening " << port << std::endl;
  svr.listen_after_bind();
  EVP_PKEY_free(st.key);
  return 0;
}
