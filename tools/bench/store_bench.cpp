// store-bench: the archive-ingest microbenchmark. Appends N one-to-one
// messages (~100-byte envelopes, round-robin over 100 conversations) with the
// store library (chat::store::Archive, as the broker plugin does: one
// WriteBatch per message), then runs two raw RocksDB loops on the same
// DB options with no library in between:
//   raw_put    one Put of the message per write (the floor: 1 key/write)
//   raw_batch  the same keys the archive writes (message, 2 inbox, 2 convs,
//              dedup, max_id) in one WriteBatch per message
// Prints one JSON line (or a summary without --json).
//
// usage: store-bench [--messages N] [--dir DIR] [--json] [--sync]
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/common/ids.h"
#include "chat/store/archive.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

double thread_cpu() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Timing {
  double seconds = 0;
  double cpu = 0;
};

template <typename F>
Timing timed(F&& f) {
  const double c0 = thread_cpu();
  auto t0 = std::chrono::steady_clock::now();
  f();
  Timing t;
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t.cpu = thread_cpu() - c0;
  return t;
}

// The message stream: ids, conversations, senders, ~100-byte envelopes.
struct Message {
  std::string id, conv, from, to, cid, envelope;
};

Message make_message(size_t i) {
  static const uint64_t kBase = 0x0190000000000000ULL;
  Message m;
  const size_t c = i % 100;
  std::string a = "user" + std::to_string(2 * c), b = "user" + std::to_string(2 * c + 1);
  if (b < a) std::swap(a, b);
  m.id = chat::IdGenerator::format(kBase + i + 1);
  m.conv = "dm:" + a + ":" + b;
  m.from = (i / 100) % 2 ? a : b;
  m.to = m.from == a ? b : a;
  m.cid = "c" + std::to_string(i);
  std::string head = R"({"v":1,"id":")" + m.id + R"(","conv":")" + m.conv + R"(","from":")" +
                     m.from + R"(","body":")";
  m.envelope = head + std::string(head.size() < 98 ? 98 - head.size() : 1, 'x') + "\"}";
  return m;
}

std::string key(const std::string& scope, const std::string& rest) {
  std::string k = scope;
  k.push_back('\0');
  k += rest;
  return k;
}

// The archive's DB and family options (store/src/archive.cpp: Archive::open
// and family_options), minus its custom memtable hints.
rocksdb::DBOptions db_options() {
  rocksdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  o.allow_concurrent_memtable_write = false;
  o.WAL_ttl_seconds = 3600;
  o.db_write_buffer_size = 32 << 20;
  o.max_total_wal_size = 64 << 20;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 4;
  o.max_log_file_size = 8 << 20;
  return o;
}

rocksdb::ColumnFamilyOptions family_options(const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions o;
  o.write_buffer_size = 4 << 20;
  o.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

struct RawDb {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*>
      handles;  // default, messages, inbox, convs, dedup, meta
  ~RawDb() {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    if (db) db->Close().PermitUncheckedError();
    delete db;
  }
};

bool open_raw(const std::string& dir, RawDb* out) {
  auto cache = rocksdb::NewLRUCache(32 << 20);
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : {"default", "messages", "inbox", "convs", "dedup", "meta"}) {
    families.emplace_back(name, family_options(cache));
  }
  rocksdb::Status s = rocksdb::DB::Open(db_options(), dir, families, &out->handles, &out->db);
  if (!s.ok())
    std::fprintf(stderr, "store-bench: open %s: %s\n", dir.c_str(), s.ToString().c_str());
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  size_t messages = 200000;
  std::string dir = (fs::temp_directory_path() / "chat-store-bench").string();
  bool as_json = false, sync = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--messages" && i + 1 < argc) {
      messages = std::strtoul(argv[++i], nullptr, 10);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--sync") {
      sync = true;
    } else {
      std::fprintf(stderr, "usage: store-bench [--messages N] [--dir DIR] [--json] [--sync]\n");
      return 2;
    }
  }
  if (messages == 0 || messages > 100000000) {
    std::fprintf(stderr, "store-bench: --messages must be 1..100000000\n");
    return 2;
  }
  std::vector<Message> stream;
  stream.reserve(messages);
  for (size_t i = 0; i < messages; ++i) stream.push_back(make_message(i));
  const std::string archive_dir = dir + "/archive", put_dir = dir + "/raw-put",
                    batch_dir = dir + "/raw-batch";
  fs::remove_all(dir);
  fs::create_directories(dir);

  // 1. The store library.
  Timing archive_t;
  {
    chat::store::ArchiveOptions options;
    options.path = archive_dir;
    options.sync_writes = sync;
    auto opened = chat::store::Archive::open(options);
    if (!opened) {
      std::fprintf(stderr, "store-bench: %s\n", opened.status().to_string().c_str());
      return 1;
    }
    auto archive = std::move(opened).value();
    bool failed = false;
    archive_t = timed([&] {
      chat::store::AppendRequest r;
      for (const Message& m : stream) {
        r.id = m.id;
        r.conv = m.conv;
        r.from = m.from;
        r.client_id = m.from + ":phone";
        r.cid = m.cid;
        r.envelope = m.envelope;
        r.participants = {m.from, m.to};
        if (!archive->append(r).is_ok()) {
          failed = true;
          return;
        }
      }
    });
    if (failed) {
      std::fprintf(stderr, "store-bench: append failed\n");
      return 1;
    }
  }

  rocksdb::WriteOptions wo;
  wo.sync = sync;
  // 2. Raw Put loop: one key per write.
  Timing put_t;
  {
    RawDb raw;
    if (!open_raw(put_dir, &raw)) return 1;
    bool failed = false;
    put_t = timed([&] {
      std::string k;
      for (const Message& m : stream) {
        k = key(m.conv, m.id);
        if (!raw.db->Put(wo, raw.handles[1], k, m.envelope).ok()) {
          failed = true;
          return;
        }
      }
    });
    if (failed) return 1;
  }

  // 3. Raw WriteBatch with the archive's keys.
  Timing batch_t;
  {
    RawDb raw;
    if (!open_raw(batch_dir, &raw)) return 1;
    bool failed = false;
    batch_t = timed([&] {
      rocksdb::WriteBatch b;
      std::string summary;
      for (const Message& m : stream) {
        b.Clear();
        std::string mk = key(m.conv, m.id);
        b.Put(raw.handles[1], mk, m.envelope);
        for (const std::string* u : {&m.from, &m.to}) {
          b.Put(raw.handles[2], key(*u, m.id), m.conv);
          summary = R"({"last":")" + m.id + R"(","unread":1})";
          b.Put(raw.handles[3], key(*u, m.conv), summary);
        }
        b.Put(raw.handles[4], key(m.from + ":phone", m.cid), mk);
        b.Put(raw.handles[5], "max_id", m.id);
        if (!raw.db->Write(wo, &b).ok()) {
          failed = true;
          return;
        }
      }
    });
    if (failed) return 1;
  }
  fs::remove_all(dir);

  const double n = static_cast<double>(messages);
  json out = {{"tool", "store-bench"},
              {"messages", messages},
              {"sync", sync},
              {"archive_appends_per_s", n / archive_t.seconds},
              {"archive_cpu_appends_per_s", n / archive_t.cpu},
              {"raw_put_per_s", n / put_t.seconds},
              {"raw_put_cpu_per_s", n / put_t.cpu},
              {"raw_batch_per_s", n / batch_t.seconds},
              {"raw_batch_cpu_per_s", n / batch_t.cpu},
              {"fraction_of_raw_put", put_t.seconds / archive_t.seconds},
              {"fraction_of_raw_batch", batch_t.seconds / archive_t.seconds}};
  if (as_json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf(
        "store-bench: %zu messages%s\n"
        "  archive append  %9.0f /s  (%9.0f /s on its CPU time)\n"
        "  raw Put         %9.0f /s  (%9.0f /s)\n"
        "  raw WriteBatch  %9.0f /s  (%9.0f /s), the archive's 7 keys per message\n"
        "  archive = %.2f x raw Put, %.2f x raw WriteBatch\n",
        messages, sync ? " (sync writes)" : "", n / archive_t.seconds, n / archive_t.cpu,
        n / put_t.seconds, n / put_t.cpu, n / batch_t.seconds, n / batch_t.cpu,
        put_t.seconds / archive_t.seconds, batch_t.seconds / archive_t.seconds);
  }
  return 0;
}
