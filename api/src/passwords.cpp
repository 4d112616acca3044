#include "chat/api/passwords.h"

#include <argon2.h>

#include <algorithm>
#include <semaphore>
#include <thread>

#include "chat/api/secrets.h"

namespace chat::api {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;

}  // namespace

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

Status check_password_rules(std::string_view password) {
  size_t n = utf8_length(password);
  if (n < kMinPasswordChars) {
    return invalid_argument("password must have at least " + std::to_string(kMinPasswordChars) +
                            " characters");
  }
  if (n > kMaxPasswordChars) {
    return invalid_argument("password must have at most " + std::to_string(kMaxPasswordChars) +
                            " characters");
  }
  return Status::ok();
}

// Bounds the memory Argon2 may hold at once: 64 HTTP threads hashing together
// would otherwise need 64 x 19 MiB.
struct PasswordHasher::Gate {
  explicit Gate(unsigned n) : sem(static_cast<std::ptrdiff_t>(n)) {}
  std::counting_semaphore<4096> sem;
};

namespace {

class GateHold {
 public:
  explicit GateHold(std::counting_semaphore<4096>& sem) : sem_(sem) { sem_.acquire(); }
  ~GateHold() { sem_.release(); }
  GateHold(const GateHold&) = delete;
  GateHold& operator=(const GateHold&) = delete;

 private:
  std::counting_semaphore<4096>& sem_;
};

}  // namespace

PasswordHasher::PasswordHasher(HasherParams params) : params_(params) {
  unsigned n = params_.max_concurrent;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  if (n > 4096) n = 4096;
  gate_ = std::make_unique<Gate>(n);
  // A real hash of a random password: verifying against it costs what a real
  // verification costs.
  auto dummy = hash(random_token(16));
  if (dummy) dummy_hash_ = *dummy;
}

PasswordHasher::~PasswordHasher() = default;

Result<std::string> PasswordHasher::hash(std::string_view password) const {
  std::string salt = random_bytes(kSaltBytes);
  size_t len = argon2_encodedlen(params_.time_cost, params_.memory_kib, params_.parallelism,
                                 kSaltBytes, kHashBytes, Argon2_id);
  std::string encoded(len, '\0');
  int rc;
  {
    GateHold hold(gate_->sem);
    rc = argon2id_hash_encoded(params_.time_cost, params_.memory_kib, params_.parallelism,
                               password.data(), password.size(), salt.data(), salt.size(),
                               kHashBytes, encoded.data(), encoded.size());
  }
  if (rc != ARGON2_OK) {
    return internal_error(std::string("argon2id_hash_encoded: ") + argon2_error_message(rc));
  }
  encoded.resize(encoded.find('\0') == std::string::npos ? encoded.size() : encoded.find('\0'));
  return encoded;
}

bool PasswordHasher::verify(std::string_view encoded, std::string_view password) const {
  std::string enc(encoded);  // argon2 wants a NUL-terminated string
  GateHold hold(gate_->sem);
  return argon2id_verify(enc.c_str(), password.data(), password.size()) == ARGON2_OK;
}

void PasswordHasher::verify_dummy(std::string_view password) const {
  if (!dummy_hash_.empty()) (void)verify(dummy_hash_, password);
}

}  // namespace chat::api
