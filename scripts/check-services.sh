#!/usr/bin/env bash
# Checks that PostgreSQL and Redis answer on 127.0.0.1, as the tests expect.
set -euo pipefail

status=0
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "PostgreSQL does not answer on 127.0.0.1:5432 (start it, or run .ci/run which installs and starts it)" >&2
  status=1
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Redis does not answer on 127.0.0.1:6379 (start it, or run .ci/run which installs and starts it)" >&2
  status=1
fi
exit $status
