"""Promote and roll back adapters: the registry of what is deployed (store.py) and the
`harness promote` / `harness rollback` / `harness registry` commands over it (commands.py)."""
