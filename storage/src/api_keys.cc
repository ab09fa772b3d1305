#include "rocks_store.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

namespace gonfalon::storage::internal {

namespace {

std::string Sha256Hex(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return Hex(d, sizeof d);
}

}  // namespace

absl::StatusOr<NewApiKey> RocksStore::CreateApiKey(const ApiKey& spec) {
  RETURN_IF_ERROR(CheckWritable());
  if (spec.kind != KeyKind::kAdmin || !spec.project.empty()) {
    RETURN_IF_ERROR(rules::WithFieldPrefix(GetProject(spec.project).status(), "project"));
  }
  if (spec.kind != KeyKind::kAdmin) {
    RETURN_IF_ERROR(rules::WithFieldPrefix(GetEnvironment(spec.project, spec.environment).status(), "environment"));
  }
  std::lock_guard<std::mutex> l(keys_mu_);
  return WriteNewKey(spec, {});
}

absl::StatusOr<NewApiKey> RocksStore::ImportApiKey(const ApiKey& spec, std::string_view secret) {
  RETURN_IF_ERROR(CheckWritable());
  if (secret.size() < 16) return rules::InvalidField("secret", "at least 16 characters");
  std::lock_guard<std::mutex> l(keys_mu_);
  ASSIGN_OR_RETURN(auto existing, Get(kKeys, StrCat("hash/", Sha256Hex(secret))));
  if (existing.has_value()) return rules::FieldError(absl::StatusCode::kAlreadyExists, "secret", "already in use");
  return WriteNewKey(spec, {}, std::string(secret));
}

absl::StatusOr<std::vector<ApiKey>> RocksStore::ListApiKeys() {
  return ScanDecoded<ApiKey>(kKeys, "id/", ApiKeyFromJson);
}

absl::StatusOr<ApiKey> RocksStore::GetApiKey(std::string_view id) {
  ASSIGN_OR_RETURN(auto v, GetJson(kKeys, StrCat("id/", id)));
  if (!v.has_value()) return absl::NotFoundError(StrCat("API key \"", id, "\" does not exist"));
  return Decoded(ApiKeyFromJson(*v), kKeys, StrCat("id/", id));
}

absl::Status RocksStore::RevokeApiKey(std::string_view id) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(keys_mu_);
  ASSIGN_OR_RETURN(auto v, GetJson(kKeys, StrCat("id/", id)));
  if (!v.has_value()) return absl::NotFoundError(StrCat("API key \"", id, "\" does not exist"));
  v->Set("revoked", Value(true));
  return WriteNow({Put(kKeys, StrCat("id/", id), ToJson(*v))});
}

absl::StatusOr<NewApiKey> RocksStore::RotateApiKey(std::string_view id, int64_t overlap_ms) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> l(keys_mu_);
  ASSIGN_OR_RETURN(auto v, GetJson(kKeys, StrCat("id/", id)));
  if (!v.has_value()) return absl::NotFoundError(StrCat("API key \"", id, "\" does not exist"));
  ASSIGN_OR_RETURN(ApiKey old, Decoded(ApiKeyFromJson(*v), kKeys, StrCat("id/", id)));
  if (old.revoked) return absl::FailedPreconditionError(StrCat("API key \"", id, "\" is revoked"));
  int64_t expires = Now() + std::max<int64_t>(overlap_ms, 0);
  if (old.expires_ms == 0 || expires < old.expires_ms) v->Set("expiresMs", Value(expires));
  if (overlap_ms <= 0) v->Set("revoked", Value(true));
  return WriteNewKey(old, {Put(kKeys, StrCat("id/", id), ToJson(*v))});
}

absl::StatusOr<ApiKey> RocksStore::Authenticate(std::string_view secret) {
  ASSIGN_OR_RETURN(auto id, Get(kKeys, StrCat("hash/", Sha256Hex(secret))));
  if (!id.has_value()) return absl::NotFoundError("unknown API key");
  ASSIGN_OR_RETURN(ApiKey key, GetApiKey(*id));
  if (key.revoked) return absl::NotFoundError("API key revoked");
  if (key.expires_ms != 0 && Now() >= key.expires_ms) return absl::NotFoundError("API key expired");
  return key;
}

std::string RocksStore::StreamToken(std::string_view key_id) {
  return StrCat(kStreamTokenPrefix, key_id, ".", StreamMac(key_id));
}

absl::StatusOr<ApiKey> RocksStore::AuthenticateStreamToken(std::string_view token) {
  std::string_view rest = token;
  if (rest.rfind(kStreamTokenPrefix, 0) != 0) return absl::NotFoundError("not a stream token");
  rest.remove_prefix(std::string_view(kStreamTokenPrefix).size());
  size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return absl::NotFoundError("malformed stream token");
  std::string id(rest.substr(0, dot));
  std::string mac = StreamMac(id);
  std::string_view given = rest.substr(dot + 1);
  // Constant time: how much of a guess matched must not show in the response time.
  unsigned char diff = given.size() == mac.size() ? 0 : 1;
  for (size_t i = 0; i < mac.size() && i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ mac[i]);
  if (diff != 0) return absl::NotFoundError("unknown stream token");
  auto key = GetApiKey(id);
  if (!key.ok()) return absl::NotFoundError("unknown stream token");
  if (key->revoked) return absl::NotFoundError("API key revoked");
  if (key->expires_ms != 0 && Now() >= key->expires_ms) return absl::NotFoundError("API key expired");
  return key;
}

std::string RocksStore::StreamMac(std::string_view key_id) const {
  std::string message = StrCat("ofrep-stream:", key_id);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), stream_secret_.data(), static_cast<int>(stream_secret_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
  return Hex(out, std::min<unsigned int>(len, 16));
}

absl::StatusOr<NewApiKey> RocksStore::WriteNewKey(const ApiKey& spec, std::vector<WriteOp> ops, std::string secret) {
  NewApiKey out;
  out.key = spec;
  ASSIGN_OR_RETURN(out.key.id, RandomHex(8));
  out.key.created_ms = Now();
  out.key.expires_ms = 0;
  out.key.revoked = false;
  static constexpr const char* kPrefixes[] = {"gfa_", "gfs_", "gfc_"};
  if (secret.empty()) {
    ASSIGN_OR_RETURN(std::string random, RandomHex(20));
    secret = StrCat(kPrefixes[static_cast<int>(spec.kind)], random);
  }
  out.secret = secret;
  out.key.prefix = out.secret.substr(0, 10);
  Value json = ApiKeyToJson(out.key);
  ops.push_back(Put(kKeys, StrCat("id/", out.key.id), ToJson(json)));
  ops.push_back(Put(kKeys, StrCat("hash/", Sha256Hex(out.secret)), out.key.id));
  RETURN_IF_ERROR(WriteNow(std::move(ops)));
  return out;
}

absl::Status RocksStore::AppendKeyDeletions(std::string_view project, std::optional<std::string> env, std::vector<WriteOp>& ops) {
  std::lock_guard<std::mutex> l(keys_mu_);
  ASSIGN_OR_RETURN(std::vector<ApiKey> keys, ListApiKeys());
  for (const ApiKey& k : keys) {
    if (k.project != project || (env.has_value() && k.environment != *env)) continue;
    ApiKey revoked = k;
    revoked.revoked = true;
    ops.push_back(Put(kKeys, StrCat("id/", k.id), ToJson(ApiKeyToJson(revoked))));
  }
  return absl::OkStatus();
}

}  // namespace gonfalon::storage::internal
