"""Adapters that plug the sidecar into agent frameworks; each is imported only on request.

``agentcache.integrations.langchain`` (``pip install agentcache[langchain]``):
an LLM cache and a byte store for LangChain.
"""
