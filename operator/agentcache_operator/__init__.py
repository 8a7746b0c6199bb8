"""AgentCache operator: kopf handlers, pure renderers of child objects, and the injector webhook."""

__version__ = "0.1.0"
