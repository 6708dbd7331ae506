"""HTTP routers: parse, call one service function, shape the response."""
