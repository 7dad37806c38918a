# Sourced by the side-by-side benchmark scripts: installs what they need (Debian
# postgresql, .venv with psycopg) and builds tessera in release; sets $venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
venv=${TESSERA_VENV:-.venv}
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q -r tests/clients/requirements.txt; }
[ -n "${TESSERA_BIN:-}" ] || cargo build --release --locked --bin tessera
