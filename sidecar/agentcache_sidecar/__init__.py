"""AgentCache sidecar: a cache API over a Unix socket with memory, file and valkey backends."""
