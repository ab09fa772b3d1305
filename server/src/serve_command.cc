#include "serve_command.h"

#include <malloc.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "api.h"
#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/str_cat.h"
#include "gonfalon/storage/store.h"
#include "history_pruner.h"
#include "http_server.h"
#include "log.h"
#include "hub.h"
#include "metrics.h"
#include "wall_clock.h"

namespace gonfalon::server {
namespace {

using rules::Value;

constexpr char kUsage[] =
    "usage: gonfalon serve [options]\n"
    "  --listen HOST:PORT        address to listen on (default 127.0.0.1:8070; port 0 picks one)\n"
    "  --data-dir DIR            RocksDB data directory (default ./data)\n"
    "  --config FILE             JSON file with any of the settings below (flags win over it)\n"
    "  --heartbeat-seconds N     SSE heartbeat interval (default 15)\n"
    "  --max-body-bytes N        request body limit (default 1048576)\n"
    "  --max-header-bytes N      request header limit (default 8192)\n"
    "  --read-timeout-seconds N  deadline to receive a request (default 30)\n"
    "  --max-connections N       open plain (non-stream) connections (default 10000)\n"
    "  --max-streams N           open SSE streams, counted apart (default 10000)\n"
    "  --min-free-disk-mb N      refuse writes (507) while the data directory's filesystem has\n"
    "                            less free space than this (default 256)\n"
    "  --threads N               I/O threads (default: cores)\n"
    "  --log-level LEVEL         info or debug (debug logs every request)\n"
    "  --public-base-url URL     how clients reach this server (https://flags.example.com), used\n"
    "                            in URLs it hands out (OFREP eventStreams)\n"
    "  --trust-forwarded-headers true|false  take those URLs' scheme and host from\n"
    "                            X-Forwarded-Proto/-Host (only behind a proxy that sets them)\n"
    "  --cors-origins LIST       comma-separated origins (or *) that browsers may call OFREP from\n"
    "  --history-changes N       change-log and audit entries kept per environment (default 10000);\n"
    "                            a stream resuming from before them gets a whole put\n"
    "  --history-days N          and their age (default 30)\n"
    "  --prune-interval-seconds N  how often entries older than that are pruned (default 3600)\n"
    "  --webhook-retry-ms N      wait before a failed webhook delivery's first retry, doubled\n"
    "                            after each (default 1000; 5 attempts)\n"
    "  --no-sync                 do not fsync change sets (tests and benchmarks only)\n"
    "  --demo                    create the demo project on an empty data directory\n"
    "environment: GONFALON_<SETTING> for each setting above (GONFALON_PUBLIC_BASE_URL, ...),\n"
    "  and GONFALON_ADMIN_TOKEN (an admin token to accept; see docs/operations.md)\n";

struct Config {
  std::string listen = "127.0.0.1:8070";
  std::string data_dir = "./data";
  int64_t heartbeat_seconds = 15;
  int64_t max_body_bytes = 1024 * 1024;
  int64_t max_header_bytes = 8 * 1024;
  int64_t read_timeout_seconds = 30;
  int64_t max_connections = 10000;
  int64_t max_streams = 10000;
  int64_t min_free_disk_mb = 256;
  int64_t history_changes = 10000;
  int64_t history_days = 30;
  int64_t prune_interval_seconds = 3600;
  int64_t threads = 0;
  std::string log_level = "info";
  bool sync = true;
  bool demo = false;
  ApiOptions api;
};


// Applies one setting by name; returns an error message or "".
std::string Set(Config& c, const std::string& name, const std::string& value) {
  auto number = [&](int64_t& out, int64_t min, int64_t max = INT64_MAX) -> std::string {
    char* end = nullptr;
    long long n = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || n < min) return StrCat(name, ": expected an integer >= ", min, ", got \"", value, "\"");
    if (n > max) return StrCat(name, ": expected at most ", max, ", got \"", value, "\"");
    out = n;
    return "";
  };
  if (name == "listen") {
    if (value.rfind(':') == std::string::npos) return StrCat("listen: expected HOST:PORT, got \"", value, "\"");
    c.listen = value;
    return "";
  }
  if (name == "data-dir") {
    if (value.empty()) return "data-dir: must not be empty";
    c.data_dir = value;
    return "";
  }
  if (name == "heartbeat-seconds") return number(c.heartbeat_seconds, 1);
  if (name == "max-body-bytes") return number(c.max_body_bytes, 1024);
  if (name == "max-header-bytes") return number(c.max_header_bytes, 1024);
  if (name == "read-timeout-seconds") return number(c.read_timeout_seconds, 1);
  if (name == "max-connections") return number(c.max_connections, 1);
  if (name == "max-streams") return number(c.max_streams, 0);
  if (name == "min-free-disk-mb") return number(c.min_free_disk_mb, 0);
  if (name == "threads") return number(c.threads, 0);
  if (name == "history-changes") return number(c.history_changes, 1);
  if (name == "history-days") return number(c.history_days, 1, 36500);
  if (name == "prune-interval-seconds") return number(c.prune_interval_seconds, 1, 365 * 24 * 3600);  // a year
  if (name == "webhook-retry-ms") return number(c.api.webhook_retry_ms, 1);
  if (name == "public-base-url") {
    std::string_view v = value;
    if (!(v.rfind("http://", 0) == 0 || v.rfind("https://", 0) == 0) || v.find_first_of(" \r\n\"") != std::string_view::npos) {
      return StrCat("public-base-url: expected http://HOST[:PORT] or https://..., got \"", value, "\"");
    }
    while (v.size() > 8 && v.back() == '/') v.remove_suffix(1);
    c.api.public_base_url = std::string(v);
    return "";
  }
  if (name == "trust-forwarded-headers") {
    if (value != "true" && value != "false") return StrCat("trust-forwarded-headers: expected true or false, got \"", value, "\"");
    c.api.trust_forwarded_headers = value == "true";
    return "";
  }
  if (name == "cors-origins") {
    c.api.cors_origins.clear();
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view o = rest.substr(0, comma);
      while (!o.empty() && o.front() == ' ') o.remove_prefix(1);
      while (!o.empty() && o.back() == ' ') o.remove_suffix(1);
      if (!o.empty()) {
        if (o != "*" && o.rfind("http://", 0) != 0 && o.rfind("https://", 0) != 0) {
          return StrCat("cors-origins: expected origins such as https://app.example.com (or *), got \"", o, "\"");
        }
        c.api.cors_origins.emplace_back(o);
      }
      if (comma == std::string_view::npos) break;
      rest = rest.substr(comma + 1);
    }
    return "";
  }
  if (name == "log-level") {
    if (value != "info" && value != "debug") return StrCat("log-level: expected info or debug, got \"", value, "\"");
    c.log_level = value;
    return "";
  }
  return StrCat("unknown setting \"", name, "\"");
}

std::string LoadConfig(const std::vector<std::string>& args, Config& c) {
  // Precedence: defaults < file < environment < flags.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      std::ifstream in(args[i + 1]);
      if (!in) return StrCat("--config: cannot open ", args[i + 1]);
      std::stringstream ss;
      ss << in.rdbuf();
      auto json = rules::ParseJson(ss.str());
      if (!json.ok() || !json->is_object()) return StrCat(args[i + 1], ": expected a JSON object of settings");
      for (const auto& [k, v] : json->as_object()) {
        std::string value = v.is_string() ? v.as_string() : rules::ToJson(v);
        std::string err = Set(c, k, value);
        if (!err.empty()) return StrCat(args[i + 1], ": ", err);
      }
    }
  }
  for (const char* name : {"listen", "data-dir", "heartbeat-seconds", "max-body-bytes", "max-header-bytes",
                           "read-timeout-seconds", "max-connections", "max-streams", "min-free-disk-mb", "threads", "log-level", "public-base-url",
                           "trust-forwarded-headers", "cors-origins", "webhook-retry-ms", "history-changes", "history-days",
                           "prune-interval-seconds"}) {
    std::string env = StrCat("GONFALON_", name);
    for (char& ch : env) ch = ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (const char* v = std::getenv(env.c_str())) {
      std::string err = Set(c, name, v);
      if (!err.empty()) return StrCat(env, ": ", err);
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--demo") {
      c.demo = true;
    } else if (a == "--no-sync") {
      c.sync = false;
    } else if (a == "--config") {
      ++i;
    } else if (a.rfind("--", 0) == 0 && i + 1 < args.size()) {
      std::string err = Set(c, a.substr(2), args[++i]);
      if (!err.empty()) return err;
    } else {
      return StrCat("unknown or incomplete argument \"", a, "\"");
    }
  }
  return "";
}

// Admin access at start (docs/operations.md, "Admin access"):
// - GONFALON_ADMIN_TOKEN set: that token is an admin key from now on; if it is already one, nothing
//   changes; if it was revoked, it stays revoked (revocation is never undone by a restart): the
//   server says so and starts without it.
// - otherwise, on a data directory with no keys at all (the first start), a bootstrap admin token
//   is made and printed once; a data directory that has keys but no usable admin key gets none
//   (whoever can restart the server must not thereby become admin): recover with
//   `gonfalon admin-token --data-dir DIR` while the server is stopped.
absl::Status Bootstrap(storage::Store& store, const std::string& data_dir, std::string* minted) {
  auto keys = store.ListApiKeys();
  if (!keys.ok()) return keys.status();
  int64_t now_ms = NowMs();
  bool usable_admin = false;
  for (const auto& k : *keys) {
    if (k.kind == storage::KeyKind::kAdmin && k.write && k.UsableAt(now_ms)) {
      usable_admin = true;
    }
  }
  storage::ApiKey spec;
  spec.kind = storage::KeyKind::kAdmin;
  spec.name = "bootstrap";
  spec.write = true;
  if (const char* given = std::getenv("GONFALON_ADMIN_TOKEN"); given != nullptr && *given != '\0') {
    if (store.Authenticate(given).ok()) return absl::OkStatus();  // already a working key
    auto made = store.ImportApiKey(spec, given);
    if (absl::IsAlreadyExists(made.status())) {
      Log(LogLevel::kWarn, "GONFALON_ADMIN_TOKEN names a revoked or expired key; it stays revoked. Set a new token, or run "
                  "`gonfalon admin-token` with the server stopped");
      return absl::OkStatus();
    }
    if (!made.ok()) return made.status();
    std::cout << "gonfalon: admin token taken from GONFALON_ADMIN_TOKEN" << std::endl;
    return absl::OkStatus();
  }
  if (usable_admin) return absl::OkStatus();
  if (!keys->empty()) {
    Log(LogLevel::kWarn, StrCat("no usable admin key: run `gonfalon admin-token --data-dir ", data_dir,
                       "` with the server stopped to make one"));
    return absl::OkStatus();
  }
  auto made = store.CreateApiKey(spec);
  if (!made.ok()) return made.status();
  *minted = made->secret;
  std::cout << "gonfalon: bootstrap admin token (shown once, keep it): " << made->secret << std::endl;
  std::ofstream(data_dir + "/ADMIN_TOKEN_SHOWN_ONCE") << "The bootstrap admin token was printed on first start; "
                                                         "create more with POST /api/v1/keys, or, with the server "
                                                         "stopped, `gonfalon admin-token --data-dir DIR`.\n";
  return absl::OkStatus();
}

// The demo project: flags from demo/flags.json (or built in), two environments, keys.
absl::Status CreateDemo(storage::Store& store, const std::string& data_dir, const std::string& admin_token) {
  auto projects = store.ListProjects();
  if (!projects.ok()) return projects.status();
  std::string creds_path = data_dir + "/demo-credentials.txt";
  if (!projects->empty()) {
    std::ifstream in(creds_path);
    if (in) std::cout << in.rdbuf() << std::flush;
    return absl::OkStatus();
  }
  storage::Actor actor{"demo"};
  auto p = store.CreateProject({.key = "demo", .name = "Demo shop", .description = "Created by gonfalon serve --demo"}, actor);
  if (!p.ok()) return p.status();
  for (const char* e : {"production", "staging"}) {
    auto env = store.CreateEnvironment("demo", {.key = e}, actor);
    if (!env.ok()) return env.status();
  }
  std::ifstream in("demo/flags.json");
  std::stringstream ss;
  ss << in.rdbuf();
  auto data = rules::ParseEnvironment(in ? ss.str() : R"({"flags":{"new-checkout":{"key":"new-checkout","on":true,"variations":[false,true],"offVariation":0,"fallthrough":{"variation":1}}}})");
  if (!data.ok()) return data.status();
  for (const auto& [key, f] : data->flags) {
    storage::FlagMeta meta;
    meta.key = key;
    const rules::FlagManagement& m = f.Management();
    meta.name = m.name;
    meta.description = m.description;
    meta.tags = m.tags;
    meta.temporary = m.temporary;
    meta.maintainer = m.maintainer;
    meta.variations = f.variations;
    meta.client_side_availability = f.client_side_availability;
    auto made = store.CreateFlag("demo", meta, actor, "demo flag");
    if (!made.ok()) return made.status();
  }
  for (const char* env : {"production", "staging"}) {
    storage::ChangeSet cs;
    cs.project = "demo";
    cs.environment = env;
    cs.actor = actor;
    cs.comment = "demo targeting";
    for (const auto& [key, s] : data->segments) {
      cs.items.push_back({storage::ItemKind::kSegment, key, std::nullopt, rules::EncodeSegment(s), false});
    }
    for (const auto& [key, f] : data->flags) {
      cs.items.push_back({storage::ItemKind::kFlag, key, std::nullopt, rules::EncodeFlag(f), false});
    }
    auto applied = store.Apply(cs);
    if (!applied.ok()) return applied.status();
  }
  // A demo's admin token stays recoverable: it is in this file (mode 0600), printed at every
  // start. A real deployment's is shown once.
  std::string creds = "gonfalon: demo project \"demo\" (environments production, staging)\n";
  if (!admin_token.empty()) creds += StrCat("gonfalon:   admin token: ", admin_token, "\n");
  for (const char* env : {"production", "staging"}) {
    for (auto kind : {storage::KeyKind::kServer, storage::KeyKind::kClient}) {
      storage::ApiKey spec;
      spec.kind = kind;
      spec.project = "demo";
      spec.environment = env;
      spec.name = StrCat("demo ", env, " ", storage::KeyKindName(kind));
      auto made = store.CreateApiKey(spec);
      if (!made.ok()) return made.status();
      creds += StrCat("gonfalon:   ", env, " ", storage::KeyKindName(kind), "-side SDK key: ", made->secret, "\n");
    }
  }
  // 0600 before the secrets go in.
  std::ofstream(creds_path).close();
  std::filesystem::permissions(creds_path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::ofstream out(creds_path);
  out << creds;
  out.close();
  std::cout << creds << std::flush;
  return absl::OkStatus();
}

}  // namespace

int RunAdminTokenCommand(const std::vector<std::string>& args) {
  std::string data_dir = "./data";
  std::string name = "recovered";
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--data-dir" || args[i] == "--name") && i + 1 < args.size()) {
      (args[i] == "--data-dir" ? data_dir : name) = args[i + 1];
      ++i;
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "usage: gonfalon admin-token [--data-dir DIR] [--name NAME]\n"
                   "  makes a new read-write admin key in a stopped server's data directory and prints its\n"
                   "  token once (recovery of admin access).\n";
      return 0;
    } else {
      std::cerr << "gonfalon admin-token: unknown or incomplete argument \"" << args[i] << "\"\n";
      return 2;
    }
  }
  if (!std::filesystem::exists(data_dir + "/db")) {
    std::cerr << "gonfalon admin-token: no database in " << data_dir << "/db\n";
    return 1;
  }
  auto store = storage::Store::Open({.path = data_dir + "/db"});
  if (!store.ok()) {
    std::cerr << "gonfalon admin-token: " << store.status().message()
              << " (is the server still running? stop it first)\n";
    return 1;
  }
  storage::ApiKey spec;
  spec.kind = storage::KeyKind::kAdmin;
  spec.name = name;
  spec.write = true;
  auto made = (*store)->CreateApiKey(spec);
  if (!made.ok()) {
    std::cerr << "gonfalon admin-token: " << made.status().message() << "\n";
    return 1;
  }
  std::cout << made->secret << std::endl;
  std::cerr << "gonfalon: new admin key " << made->key.id << " (\"" << name << "\"); the token above is shown once\n";
  return 0;
}

int RunServeCommand(const std::vector<std::string>& args) {
  // Dozens of threads (I/O, 32 blocking workers, RocksDB) would each get a malloc arena of
  // their own and keep its free memory: a few arenas hold the server's RSS down.
  mallopt(M_ARENA_MAX, 4);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  Config config;
  std::string err = LoadConfig(args, config);
  if (!err.empty()) {
    std::cerr << "gonfalon serve: " << err << "\n" << kUsage;
    return 2;
  }
  size_t colon = config.listen.rfind(':');
  std::string host = config.listen.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  int port = std::atoi(config.listen.c_str() + colon + 1);

  auto started = std::chrono::steady_clock::now();
  auto store_or = storage::Store::Open(
      {.path = config.data_dir + "/db",
       .sync = config.sync,
       .retain_changes = config.history_changes,
       .retain_ms = config.history_days * 24 * 3600 * 1000,
       .min_free_bytes = config.min_free_disk_mb << 20});
  if (!store_or.ok()) {
    std::cerr << "gonfalon serve: " << store_or.status().message() << "\n";
    return 1;
  }
  storage::Store& store = **store_or;
  std::string minted_admin_token;
  if (absl::Status s = Bootstrap(store, config.data_dir, &minted_admin_token); !s.ok()) {
    std::cerr << "gonfalon serve: bootstrap: " << s.message() << "\n";
    return 1;
  }
  if (config.demo) {
    if (absl::Status s = CreateDemo(store, config.data_dir, minted_admin_token); !s.ok()) {
      std::cerr << "gonfalon serve: demo: " << s.message() << "\n";
      return 1;
    }
  }
  auto opened = std::chrono::steady_clock::now();
  (void)store.PruneHistory();
  auto pruned = std::chrono::steady_clock::now();
  auto ms_between = [](auto a, auto b) { return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count()); };
  Log(LogLevel::kInfo, "store opened", {{"open_ms", ms_between(started, opened)}, {"prune_ms", ms_between(opened, pruned)}});

  Metrics metrics;
  metrics.SetGaugeSource([&store] { return store.Stats(); });
  HistoryPruner pruner(store, std::chrono::seconds(config.prune_interval_seconds), metrics.history_prunes,
                       metrics.history_prune_failures);
  Hubs hubs(store, metrics);
  Api api(store, hubs, metrics, config.api);
  store.SetChangeListener([&hubs, &api](const storage::AppliedChangeSet& a) {
    hubs.Changed(a);
    api.ChangeApplied(a);
  });
  ServerLimits limits;
  limits.max_body_bytes = static_cast<size_t>(config.max_body_bytes);
  limits.max_header_bytes = static_cast<size_t>(config.max_header_bytes);
  limits.read_timeout = std::chrono::seconds(config.read_timeout_seconds);
  limits.max_connections = static_cast<size_t>(config.max_connections);
  limits.max_streams = static_cast<size_t>(config.max_streams);
  limits.heartbeat = std::chrono::seconds(config.heartbeat_seconds);
  limits.io_threads = config.threads > 0 ? static_cast<int>(config.threads)
                                         : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  limits.log_requests = config.log_level == "debug";
  // Leave room for the connection limit (one descriptor each) plus RocksDB's files.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  HttpServer server(api, hubs, metrics, limits);
  auto bound = server.Listen(host, port);
  if (!bound.ok()) {
    std::cerr << "gonfalon serve: " << bound.status().message() << "\n";
    return 1;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  std::cout << "gonfalon: listening on http://" << host << ":" << *bound << " (data in " << config.data_dir
            << ", open in " << ms << " ms)" << std::endl;
  std::cout << "gonfalon: console at http://" << host << ":" << *bound << "/ui/ (sign in with an admin token)" << std::endl;
  Log(LogLevel::kInfo, "listening", {{"address", StrCat(host, ":", *bound)}, {"dataDir", config.data_dir}});
  // Every environment is loaded and compiled before /readyz says ready (requests that come
  // earlier are served too: an environment not loaded yet loads on first use).
  std::atomic<bool> stopping{false};
  std::thread loader([&] {
    absl::StatusOr<size_t> loaded = hubs.LoadAll(stopping);
    auto ready_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    if (!loaded.ok()) {
      Log(LogLevel::kError, "loading environments failed; /readyz stays not ready",
          {{"error", std::string(loaded.status().message())}});
      return;
    }
    if (stopping.load()) return;
    // Loading leaves freed parse buffers in the allocator; give them back to the system.
    malloc_trim(0);
    api.set_ready(true);
    std::cout << "gonfalon: ready: " << *loaded << " environments loaded in " << ready_ms << " ms" << std::endl;
    Log(LogLevel::kInfo, "ready", {{"environments", std::to_string(*loaded)}, {"ms", std::to_string(ready_ms)}});
  });
  server.Run();
  stopping = true;
  loader.join();
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace gonfalon::server
