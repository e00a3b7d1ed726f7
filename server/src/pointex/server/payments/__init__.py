"""Payment providers: the port, callback verification, the sandbox provider and its adapter."""
