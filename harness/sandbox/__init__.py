"""Running untrusted generated code: a fork server inside bubblewrap or user namespaces with a
minimal filesystem view, no network, resource limits, a timeout and a scrubbed environment.
Imports nothing from the tasks that use it."""
