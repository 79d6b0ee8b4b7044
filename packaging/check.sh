#!/usr/bin/env bash
# The packaging checks `make test` runs after `cargo test`: builds the .deb from
# the static musl binary and checks its control fields, contents, lintian,
# `systemd-analyze verify` of the units, and the static binary validating the
# example config in an empty chroot. Installing, removing and purging the .deb
# is `make systemd-test`'s, in a throw-away container, never this host's root.
#
# Needs `make musl` first. The chroot step needs root: without root it is
# skipped with a loud message, except under CI=true, where that is a failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

bin=${BIN:-target/x86_64-unknown-linux-musl/release/claude-failover}
config=${CONFIG:-etc/config.example.toml}
max_bytes=$((6 * 1024 * 1024))
units=(claude-failover.service claude-failover@.service claude-failover-tmux@.service)

step() { printf '\n=== packaging: %s\n' "$*"; }
fail() { printf '\nPACKAGING CHECK FAILED: %s\n' "$*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "static binary"
[ -x "$bin" ] || fail "no binary at $bin (run 'make musl')"
size=$(stat -c %s "$bin")
echo "$bin: $size bytes ($(( (size + 1023) / 1024 )) KiB)"
[ "$size" -le "$max_bytes" ] || fail "$bin is $size bytes, over the 6 MiB target"

step "build the .deb"
deb=$(BIN="$bin" CONFIG="$config" packaging/build-deb.sh "$work/out" | tail -n 1)
[ -f "$deb" ] || fail "build-deb.sh did not produce a .deb"
echo "$deb"

step "control fields"
field() { dpkg-deb -f "$deb" "$1"; }
expect_field() {
    local got
    got=$(field "$1")
    [ "$got" = "$2" ] || fail "control field $1 is '$got', expected '$2'"
    echo "$1: $got"
}
expect_field Package claude-failover
expect_field Version "$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)-1"
expect_field Architecture amd64
expect_field Depends 'tmux (>= 3.2)'
case "$(field Maintainer)" in *'<'*'@'*'>') ;; *) fail "Maintainer has no address" ;; esac
[ -n "$(field Description)" ] || fail "no Description"
# Installed-Size must match the payload: recompute it from the extracted tree.
dpkg-deb -x "$deb" "$work/tree"
expected_size=$(cd "$work/tree" && find . \( -type f -printf '%s\n' \) -o \( -type d -printf 'd\n' \) \
    | awk '$1 == "d" { n += 1; next } { n += int(($1 + 1023) / 1024) } END { print n }')
expect_field Installed-Size "$expected_size"

step "contents"
dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' | sed 's#^\(.\{10\}\) \([^ ]*\) \./#\1 \2 /#' > "$work/contents"
cat "$work/contents"
expect_entry() {
    grep -qxF -- "$1" "$work/contents" || fail "the .deb lacks '$1'"
}
expect_entry '-rwxr-xr-x root/root /usr/bin/claude-failover'
expect_entry '-rw-r--r-- root/root /etc/claude-failover/config.toml'
for unit in "${units[@]}"; do
    expect_entry "-rw-r--r-- root/root /lib/systemd/system/$unit"
done
expect_entry '-rw-r--r-- root/root /usr/share/doc/claude-failover/copyright'
expect_entry '-rw-r--r-- root/root /usr/share/doc/claude-failover/changelog.Debian.gz'
expect_entry '-rw-r--r-- root/root /usr/share/man/man1/claude-failover.1.gz'
expect_entry '-rw-r--r-- root/root /usr/share/claude-failover/grafana-dashboard.json'
files=$(grep -c '^-' "$work/contents")
[ "$files" -eq 10 ] || fail "the .deb holds $files files, expected 10: update this check or the layout"
cmp -s "$config" "$work/tree/etc/claude-failover/config.toml" || fail "config.toml is not $config"
cmp -s packaging/grafana-dashboard.json "$work/tree/usr/share/claude-failover/grafana-dashboard.json" \
    || fail "the installed Grafana dashboard is not packaging/grafana-dashboard.json"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles > "$work/conffiles"
[ "$(cat "$work/conffiles")" = /etc/claude-failover/config.toml ] \
    || fail "conffiles is '$(cat "$work/conffiles")'"

step "lintian (errors and warnings fail; overrides are justified in packaging/lintian-overrides)"
command -v lintian >/dev/null || fail "lintian is not installed (apt-get install lintian)"
status=0
out=$(lintian --fail-on error,warning --info "$deb" 2>&1) || status=$?
printf '%s\n' "$out" | grep -v 'running with root privileges' || true
[ "$status" -eq 0 ] || fail "lintian reports errors or warnings (exit $status)"

step "systemd-analyze verify (units as shipped, ExecStart pointing at the staged binary)"
mkdir "$work/units"
for unit in "${units[@]}"; do
    sed "s#/usr/bin/claude-failover#$work/tree/usr/bin/claude-failover#" \
        "$work/tree/lib/systemd/system/$unit" > "$work/units/$unit"
done
# verify exits 0 on unknown keys; any message at all is a failure here.
if ! out=$(systemd-analyze verify --man=no "${units[@]/#/$work/units/}" 2>&1) || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    fail "systemd-analyze verify is not clean"
fi
echo "clean: ${units[*]}"

if [ "$(id -u)" -ne 0 ]; then
    [ "${CI:-}" != true ] || fail "CI=true but not root: the chroot check must run in CI"
    cat >&2 <<'EOF'

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!! SKIPPED (not root): check-config in an empty chroot. Run as root (CI does).
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
EOF
    exit 0
fi

# dpkg -i, -r and -P (installed files, the installed units verified, the
# conffile kept by -r and removed by -P) run in `make systemd-test`, inside a
# throw-away container: never on this host's root.

step "static binary in an empty chroot: check-config of the example config"
jail="$work/jail"
install -D -m 0755 "$bin" "$jail/claude-failover"
install -D -m 0644 "$config" "$jail/etc/claude-failover/config.toml"
find "$jail" | sort
chroot "$jail" /claude-failover --version || fail "--version does not run in an empty root"
status=0
chroot "$jail" /claude-failover check-config --config /etc/claude-failover/config.toml || status=$?
[ "$status" -eq 0 ] || fail "check-config of $config in an empty root exited $status, expected 0"
# The default path, and an invalid file (unknown key) must be refused with 78.
status=0
chroot "$jail" /claude-failover check-config || status=$?
[ "$status" -eq 0 ] || fail "check-config with the default path exited $status, expected 0"
printf '\nno_such_key_typo = 1\n' >> "$jail/etc/claude-failover/config.toml"
status=0
chroot "$jail" /claude-failover check-config --config /etc/claude-failover/config.toml || status=$?
[ "$status" -eq 78 ] || fail "check-config of an invalid config exited $status, expected 78"

step "all packaging checks passed"
