// chat-api: the REST service. Everything lives in the chat_api library.
#include "chat/api/app.h"

int main(int argc, char** argv) { return chat::api::run(argc, argv); }
