"""What both servers share at the gRPC edge: server construction, status mapping, auth."""
