#!/usr/bin/env bash
# The Debian packages the test suite drives for real: nginx, PostgreSQL, openssl and Chromium, and
# the DejaVu fonts the page tests measure with (what Chromium draws with on a bare Debian).
# As root, missing ones are installed; otherwise this stops at once, before any test runs, with one
# line naming them and the command that installs them.
# SYNTHORG_SYSTEM_ROOT (tests only) looks for them below another root instead of /.
set -euo pipefail

root="${SYNTHORG_SYSTEM_ROOT:-}"
missing=()
command -v nginx >/dev/null 2>&1 || [ -x "$root/usr/sbin/nginx" ] || missing+=(nginx)
compgen -G "$root/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x "$root/usr/bin/chromium" ] || missing+=(chromium)
[ -f "$root/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "make test needs the Debian packages ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
