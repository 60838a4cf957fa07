"""The seed's module path, kept as a contract: ``execr.executor.core``."""
