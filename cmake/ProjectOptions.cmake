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

# chat_defaults: what every target of ours links (PRIVATE).
add_library(chat_defaults INTERFACE)
target_link_libraries(chat_defaults INTERFACE chat_options chat_warnings chat_sanitizers)
