# Interface targets that carry the project's build policy. Each component links
# them PRIVATE; nothing here touches global flags.
option(CHAT_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)

add_library(chat_options INTERFACE)
target_compile_features(chat_options INTERFACE cxx_std_20)

add_library(chat_warnings INTERFACE)
target_compile_options(chat_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wno-unused-parameter)

add_library(chat_sanitizers INTERFACE)
if(CHAT_SANITIZE)
  target_compile_options(chat_sanitizers INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(chat_sanitizers INTERFACE -fsanitize=address,undefined)
endif()

# The fuzz preset (fuzz/README.md, clang only): libFuzzer's coverage
# instrumentation in every library, so the harnesses that link them can steer.
# The harnesses themselves add -fsanitize=fuzzer (fuzz/CMakeLists.txt).
option(CHAT_FUZZ "Build the libFuzzer harnesses and the broker protocol fuzzer (clang)" OFF)
if(CHAT_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR NOT CHAT_SANITIZE)
    message(FATAL_ERROR "CHAT_FUZZ: needs clang and CHAT_SANITIZE=ON (cmake --preset fuzz)")
  endif()
  target_compile_options(chat_sanitizers INTERFACE -fsanitize=fuzzer-no-link)
endif()

# chat_defaults: what every target of ours links (PRIVATE).
add_library(chat_defaults INTERFACE)
target_link_libraries(chat_defaults INTERFACE chat_options chat_warnings chat_sanitizers)
