"""The process: worker processes, their runtime files, and systemd notification.

This package decides how many processes serve, how they are supervised and restarted, and
what each leaves on disk for `server list` and `db restore` to find.
"""
