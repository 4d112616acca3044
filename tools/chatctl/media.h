// chatctl's media side (docs/media.md): uploading a file for `send --file`,
// and `fetch` (media_command.cpp).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "chat/common/status.h"
#include "chatctl/context.h"

namespace chat::tools {

// POST /v1/media with the file's bytes (streamed), then the body of the
// media message that names the upload: {"media","content_type","size",
// "sha256","url","thumbnail","caption"?}. The server's refusal (413, 415)
// comes back as its Status.
Result<nlohmann::json> upload_media(Context& ctx, Credentials& credentials, const std::string& path,
                                    const std::string& caption);

// "1.5 MiB", "812 B": sizes for people.
std::string human_size(uint64_t bytes);

// The file name extension (with the dot) chatctl gives a content type, "" when none.
std::string extension_for(const std::string& content_type);

}  // namespace chat::tools
