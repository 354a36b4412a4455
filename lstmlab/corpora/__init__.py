"""Corpora: one module per corpus and the registry that names them (filled in by the corpora work)."""
