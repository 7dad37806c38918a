#!/usr/bin/env bash
# Run every test of the project. Installs what the tests need first (idempotent):
# the PostgreSQL client (psql) from Debian packages. Used by .ci/run and the README.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# One test binary for all integration tests (see Cargo.toml), unit tests per crate.
cargo test --workspace --locked -- --test-threads=2
