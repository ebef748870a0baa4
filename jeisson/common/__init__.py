"""What both sides of the home websocket share: the protocol, its constants and its errors."""
