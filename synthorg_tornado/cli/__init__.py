"""The command line: `synthorg-tornado serve`, `db`, `user`, `token`, `sessions`, `audit`, `config`.

Each module holds one command group; `main` parses and dispatches, `support` holds what they
share (exit codes, the command-line actor, running a coroutine against the database).
"""
