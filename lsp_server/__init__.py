"""LSP server for local fill-in-the-middle completion: documents, settings, context windows,
stop rules, caching and the LSP handlers. It reaches the model only through
``lsp_server.engine_adapter``."""

__version__ = "0.1.0"
