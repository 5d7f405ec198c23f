#!/usr/bin/env bash
# `docker-compose config` validates docker-compose.yml in the tests (no daemon needed): Debian's
# `docker-compose` package. Idempotent: nothing to do when it is on PATH. Installs only as root
# (CI runs as root); otherwise it says what to run and the compose test skips.
set -euo pipefail

if command -v docker-compose >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-docker-compose: missing; run as root: apt-get install -y docker-compose" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-docker-compose: no apt-get here; install docker-compose by hand" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Other jobs on the machine may hold the dpkg lock for a while: wait instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends docker-compose
command -v docker-compose >/dev/null
