"""AgentCache operator: kopf handlers, pure renderers of child objects, and the injector webhook."""
