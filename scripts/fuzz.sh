#!/usr/bin/env bash
# Coverage-guided fuzzing of pgwire's frontend message decoding, the path
# unauthenticated bytes take: cargo fuzz (libFuzzer) runs the `wire_messages` target of
# tests/fuzz under the nightly toolchain for SECONDS (default 60). Not part of
# scripts/test.sh or CI. Installs cargo-fuzz first if it is missing.
#
# Usage: scripts/fuzz.sh [seconds] [libFuzzer options...]
# The corpus grows in tests/fuzz/corpus/wire_messages, crashes land in
# tests/fuzz/artifacts/wire_messages (both ignored by git); replay one with
#   cargo +nightly fuzz run --fuzz-dir tests/fuzz wire_messages tests/fuzz/artifacts/wire_messages/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [seconds] [libFuzzer options...]" >&2
  exit 2
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "cargo fuzz needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

exec cargo +nightly fuzz run --fuzz-dir tests/fuzz wire_messages -- \
  -max_total_time="$seconds" "$@"
