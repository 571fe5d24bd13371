#!/usr/bin/env bash
# Install what a fresh Debian/Ubuntu machine lacks to run and test Estate Dispatch:
# Mosquitto, InfluxDB 1.x, PostgreSQL (the registry's tests), Chromium (browser tests),
# docker-compose (compose file check), promtool (package prometheus: alert rules) and
# Python's venv. Installs nothing that is already there; needs root or sudo otherwise.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || missing+=(mosquitto)
have mosquitto_pub || missing+=(mosquitto-clients)
have influxd || missing+=(influxdb)
# The registry's tests run a throwaway PostgreSQL cluster of their own (initdb + pg_ctl).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
have chromium || missing+=(chromium)
have docker-compose || missing+=(docker-compose)
have promtool || missing+=(prometheus)
have make || missing+=(make)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts the packaged services; Estate Dispatch runs its own instances on other
# ports with its own data, so the system ones are not needed (and may not exist without
# systemd). Leave them as the administrator set them.
