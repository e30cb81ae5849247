#!/bin/sh
# s3rver.sh - start the local S3 server for tests and the demo (see tools/s3rver/start.js).
#
#   tools/s3rver.sh [--port N] <datadir> <bucket>...
#
# Installs the pinned server from tools/s3rver/package-lock.json (`npm ci`) on first use, then
# execs it in the foreground: it prints "READY <port>" on stdout once listening on 127.0.0.1
# (port 0 / unset = a free port; or --port N, or S3RVER_PORT) and exits on SIGTERM/SIGINT.
# Credentials: AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER, path-style requests,
# endpoint http://127.0.0.1:<port>.
set -eu

dir=$(cd "$(dirname "$0")/s3rver" && pwd)

if [ ! -d "$dir/node_modules/@20minutes/s3rver" ]; then
	# npm's output goes to stderr: stdout carries only the READY line
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error 1>&2)
fi

# Node < 24 has DES (used for listing continuation tokens) only in OpenSSL's legacy provider.
exec node --openssl-legacy-provider "$dir/start.js" "$@"
