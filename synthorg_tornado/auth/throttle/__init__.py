"""Login throttling: per-address limits, per-(account, address) lockout, and their audit."""
