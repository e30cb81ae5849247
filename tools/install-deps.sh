#!/usr/bin/env bash
# tools/install-deps.sh - install what tierckpt needs to build, test and run its demo.
#
# Called by `make deps` (and so by `make test` and `make demo`).  Idempotent and fast: it asks
# dpkg what is already installed and runs apt-get only when something is missing (then
# `apt-get update` once and one `apt-get install`).  Node.js from another source (nodesource,
# nvm...) is accepted when `node` >= 18 and `npm` are on PATH; Debian's are installed otherwise.
# Finally it runs `npm ci` in tools/s3rver (the test S3 server) when that folder has a
# package-lock.json but no node_modules yet.
#
# Prints one line per action; exits non-zero with a clear message when it cannot install.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian 12 packages (see DESIGN.md section 2).  nodejs and npm are handled apart, below.
PACKAGES=(
    build-essential pkg-config
    libcurl4-openssl-dev libssl-dev uthash-dev libglib2.0-dev libcriterion-dev
    python3 python3-pytest python3-torch
    awscli sqlite3 strace util-linux
)
NODE_MIN_MAJOR=18

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# pkg_installed PKG: true when dpkg has PKG fully installed ("ii").
pkg_installed() {
    local st
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
    [[ $st == ii* ]]
}

# node_ok: true when a node >= NODE_MIN_MAJOR and an npm are on PATH, whatever their source.
# Sets NODE_VERSION (e.g. v20.11.1) as a side effect.
NODE_VERSION=
node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || return 1
    local major
    NODE_VERSION=$(node --version 2>/dev/null) || return 1
    major=${NODE_VERSION#v}; major=${major%%.*}
    [[ $major =~ ^[0-9]+$ ]] && (( major >= NODE_MIN_MAJOR ))
}

command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script needs Debian 12 (or a derivative) with apt-get"

# One dpkg-query for the whole list (unknown names are just absent from its output).
declare -A INSTALLED=()
while read -r name status; do
    [[ $status == ii* ]] && INSTALLED[${name%%:*}]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
    [[ -n ${INSTALLED[$p]:-} ]] || missing+=("$p")
done
if node_ok; then
    node_note="node $NODE_VERSION on PATH"
else
    for p in nodejs npm; do
        pkg_installed "$p" || missing+=("$p")
    done
    node_note="node >= $NODE_MIN_MAJOR not on PATH"
fi

if (( ${#missing[@]} == 0 )); then
    say "all ${#PACKAGES[@]} Debian packages present, $node_note: nothing to install"
else
    say "missing: ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found: install these packages by hand: ${missing[*]}"
    SUDO=()
    if (( $(id -u) != 0 )); then
        command -v sudo >/dev/null 2>&1 ||
            die "not root and no sudo: run as root, or install by hand: ${missing[*]}"
        SUDO=(sudo)
    fi
    # apt's chatter goes to a log that is shown only when it fails.
    log=$(mktemp "${TMPDIR:-/tmp}/tierckpt-deps.XXXXXX")
    trap 'rm -f "$log"' EXIT
    say "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1 || {
        cat "$log" >&2
        die "apt-get update failed (network? apt sources? another apt running?)"
    }
    say "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1 || {
        cat "$log" >&2
        die "apt-get install failed for: ${missing[*]}"
    }
    still=()
    for p in "${missing[@]}"; do
        pkg_installed "$p" || still+=("$p")
    done
    (( ${#still[@]} == 0 )) || die "still not installed after apt-get: ${still[*]}"
    say "installed: ${missing[*]}"
fi
node_ok || die "the node on PATH ($(command -v node || echo none)) is older than $NODE_MIN_MAJOR or has no npm: put node >= $NODE_MIN_MAJOR first on PATH"

# The local S3 server used by the tests (tools/s3rver, an npm project), when it exists.
if [[ -f tools/s3rver/package-lock.json ]]; then
    if [[ -d tools/s3rver/node_modules ]]; then
        say "tools/s3rver/node_modules present: nothing to install"
    else
        say "npm ci in tools/s3rver"
        (cd tools/s3rver && npm ci --no-audit --no-fund --loglevel=error) ||
            die "npm ci failed in tools/s3rver (network? registry?)"
    fi
fi
