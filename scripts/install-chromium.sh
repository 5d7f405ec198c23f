#!/usr/bin/env bash
# Headless Chromium for the HTML report checks (tests/browser.py): Debian's `chromium` package.
# Idempotent: does nothing when a chromium binary is already on PATH. Installs only as root
# (CI runs as root); otherwise it says what to run and leaves the browser tests to skip, or to
# fail when LINEAGE_REQUIRE_SERVICES=1.
set -euo pipefail

for candidate in chromium chromium-browser; do
    if command -v "$candidate" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "install-chromium: chromium is missing; run as root: apt-get install -y chromium" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: no apt-get here; install a chromium build by hand" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Other jobs on the machine may hold the dpkg lock for a while: wait instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium
command -v chromium >/dev/null
