// The log line format of every component: `<event>: key=value key=value ...`
// (docs/operations.md "Logs"). log_value() makes one value safe to put after
// `key=`, so text a client chose can neither add fields nor start a new line.
#pragma once

#include <exception>
#include <string>
#include <string_view>

namespace chat {

// `text` as one log field value. Printed as is when it is a non-empty run of
// printable ASCII other than `"`, `\` and `=`, or of well-formed UTF-8;
// otherwise double-quoted, with `"` and `\` escaped as `\"` and `\\`, tab,
// CR and LF as `\t`, `\r`, `\n`, other control characters (C0, DEL, C1,
// U+2028/U+2029) as `\xHH` or `\uHHHH`, and bytes that are not UTF-8 as
// `\xHH`. The empty string is `""`.
std::string log_value(std::string_view text);

// An exception's message for a log line. A JSON parser's message can quote
// the document it was reading (a message body, a token): for nlohmann::json
// exceptions only the exception's id is kept ("json error 101"). Not quoted:
// pass the result through log_value().
std::string log_error(const std::exception& e);

}  // namespace chat
