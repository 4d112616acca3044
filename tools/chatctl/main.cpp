// chatctl: the command-line chat client. Everything lives in chat_tools.
#include "chatctl/commands.h"

int main(int argc, char** argv) { return chat::tools::run_chatctl(argc, argv); }
