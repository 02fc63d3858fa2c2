#!/usr/bin/env bash
# Installs and starts what `make test` needs on a Debian machine: Python's venv, gcc, Debian's Chromium (the browser
# tests), Redis, PostgreSQL and RabbitMQ on loopback. Shared by `make test` and .ci/run. Installs only what is
# missing, and only as root (or with sudo); otherwise it stops with one line that says what to install.
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

can_root() { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_packages=()
command -v python3 >/dev/null || need_packages+=(python3 python3-venv python3-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_packages+=(python3-venv)
command -v make >/dev/null || need_packages+=(make)
command -v gcc >/dev/null || need_packages+=(gcc)
# The browser tests drive Debian's Chromium through Playwright (Playwright's own browser download is not used).
command -v chromium >/dev/null || need_packages+=(chromium)
answers 6379 || command -v redis-server >/dev/null || need_packages+=(redis-server)
answers 5432 || command -v pg_ctlcluster >/dev/null || need_packages+=(postgresql)
answers 5672 || command -v rabbitmq-server >/dev/null || need_packages+=(rabbitmq-server)
command -v promtool >/dev/null || need_packages+=(prometheus)  # promtool checks and tests the shipped alert rules
if [ ${#need_packages[@]} -gt 0 ]; then
  if ! can_root || ! command -v apt-get >/dev/null; then
    log "missing: ${need_packages[*]}; install them (Debian: apt-get install ${need_packages[*]}), then run this again"
    exit 1
  fi
  log "installing Debian packages: ${need_packages[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if ! answers 6379; then
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/setup.log
fi
if ! answers 5432; then
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
fi
if ! answers 5672; then
  log "starting RabbitMQ"
  as_root service rabbitmq-server start >/dev/null || as_root rabbitmq-server -detached
fi

for _ in $(seq 1 60); do
  answers 6379 && answers 5432 && answers 5672 && break
  sleep 1
done
answers 6379 || { log "Redis does not answer on 127.0.0.1:6379"; exit 1; }
answers 5432 || { log "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1; }
answers 5672 || { log "RabbitMQ does not answer on 127.0.0.1:5672"; exit 1; }
if command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1 \
    || { log "PostgreSQL refuses user postgres on 127.0.0.1 (trust auth expected)"; exit 1; }
fi
