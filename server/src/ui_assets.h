#pragma once
// The web console's files, embedded at build time (ui/CMakeLists.txt, ui/embed.cmake).

#include <cstddef>

namespace gonfalon::server {

struct UiAsset {
  const char* path;          // "/ui/index.html", "/ui/app.5f049baab65d.js"
  const char* content_type;
  const char* etag;          // "\"<sha256>\""
  const unsigned char* data;
  size_t size;
  const unsigned char* gzip;  // the same bytes, gzipped
  size_t gzip_size;
  bool immutable;  // its name carries its content hash: cached for a year
};
extern const UiAsset kUiAssets[];
extern const size_t kUiAssetCount;

}  // namespace gonfalon::server
