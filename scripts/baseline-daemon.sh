#!/usr/bin/env bash
# Builds claude-failover at a given revision (release) for `make bench` to
# measure beside the working tree's build, and prints the binary's path.
# The build lives in target/baseline/<rev>/ (its own target folder, kept
# between runs, so a second bench of the same revision builds nothing).
# Usage: scripts/baseline-daemon.sh REV
set -euo pipefail
rev_name=${1:?usage: baseline-daemon.sh REV}
root=$(git rev-parse --show-toplevel)
rev=$(git -C "$root" rev-parse --verify --quiet "$rev_name^{commit}") || {
  echo "baseline-daemon.sh: $rev_name is not a commit in $root" >&2
  exit 1
}
out="$root/target/baseline/${rev:0:12}"
bin="$out/claude-failover"
if [ ! -x "$bin" ]; then
  src="$out/src"
  rm -rf "$src"
  git -C "$root" worktree prune
  git -C "$root" worktree add --detach --quiet "$src" "$rev"
  trap 'git -C "$root" worktree remove --force "$src" >/dev/null 2>&1 || true' EXIT
  echo "baseline-daemon.sh: building $rev_name (${rev:0:12}) in $out" >&2
  CARGO_TARGET_DIR="$out/target" cargo build --locked --release --quiet \
    --manifest-path "$src/Cargo.toml" --bin claude-failover >&2
  cp "$out/target/release/claude-failover" "$bin"
fi
echo "$bin"
