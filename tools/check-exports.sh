#!/usr/bin/env bash
# check-exports.sh LIB SYMS - the shim must export exactly the libc names it interposes (the
# IP_SYM list), nothing of its own: a stray export could replace a symbol of the host program.
set -euo pipefail
lib=$1 syms=$2
want=$(sed -n 's/^IP_SYM([^,]*, *\([A-Za-z0-9_]*\),.*/\1/p' "$syms" | sort -u)
have=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWwDdBbVvi]$/ {print $3}' | sed 's/@.*//' | sort -u)
extra=$(comm -13 <(echo "$want") <(echo "$have"))
missing=$(comm -23 <(echo "$want") <(echo "$have"))
if [ -n "$extra$missing" ]; then
	[ -z "$extra" ] || printf 'exported but not in %s:\n%s\n' "$syms" "$extra" >&2
	[ -z "$missing" ] || printf 'listed in %s but not exported:\n%s\n' "$syms" "$missing" >&2
	exit 1
fi
echo "check-exports: $(echo "$have" | wc -l) symbols, exactly the interposed list"
