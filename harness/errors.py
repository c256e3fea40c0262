class HarnessError(Exception):
    """An error the user can fix; the CLI prints it without a traceback and exits 2."""
