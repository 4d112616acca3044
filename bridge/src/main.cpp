// chat-bridge: MQTT over WebSocket for browsers. Everything lives in chat_bridge.
#include "chat/bridge/app.h"

int main(int argc, char** argv) { return chat::bridge::run(argc, argv); }
