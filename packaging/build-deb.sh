#!/usr/bin/env bash
# Builds claude-failover_<version>-1_amd64.deb from the static musl binary with
# plain dpkg-deb: the layout, control fields and maintainer scripts are all in
# this folder, so nothing beyond dpkg and coreutils is needed (no cargo-deb).
#
# Usage: packaging/build-deb.sh [OUT_DIR]        (default target/deb)
# Environment: BIN     the static binary (default target/x86_64-unknown-linux-musl/release/claude-failover)
#              CONFIG  the file installed as /etc/claude-failover/config.toml
#                      (default etc/config.example.toml)
#              DEB_REVISION  the Debian revision (default 1): the version is
#                      <Cargo.toml version>-<DEB_REVISION>; make systemd-test
#                      builds a -2 to install over a -1 (an upgrade)
# Prints the path of the .deb on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

out=${1:-target/deb}
bin=${BIN:-target/x86_64-unknown-linux-musl/release/claude-failover}
config=${CONFIG:-etc/config.example.toml}

die() { echo "build-deb: $*" >&2; exit 1; }

[ -x "$bin" ] || die "no binary at $bin: run 'make musl' first"
[ -f "$config" ] || die "no example config at $config"
# The package promises a binary that runs with no libc around it.
case "$(LC_ALL=C ldd "$bin" 2>&1 || true)" in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) die "$bin is dynamically linked; build it with 'make musl'" ;;
esac

upstream=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$upstream" ] || die "no version in Cargo.toml"
revision=${DEB_REVISION:-1}
case $revision in '' | *[!0-9a-z.+~]*) die "DEB_REVISION '$revision' is not a Debian revision" ;; esac
version="$upstream-$revision"
# Reproducible: every timestamp is the last commit's (or now outside git).
: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
doc="$root/usr/share/doc/claude-failover"

install -D -m 0755 "$bin" "$root/usr/bin/claude-failover"
install -D -m 0644 "$config" "$root/etc/claude-failover/config.toml"
for unit in claude-failover.service claude-failover@.service claude-failover-tmux@.service; do
    install -D -m 0644 "packaging/$unit" "$root/lib/systemd/system/$unit"
done
install -d -m 0755 "$doc" "$root/usr/share/man/man1" "$root/usr/share/lintian/overrides"
# Not documentation (a file to import into Grafana), so beside the package's
# other data rather than under /usr/share/doc, which may be excluded (dpkg path-exclude).
install -D -m 0644 packaging/grafana-dashboard.json "$root/usr/share/claude-failover/grafana-dashboard.json"
gzip -9n < packaging/claude-failover.1 > "$root/usr/share/man/man1/claude-failover.1.gz"
install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/claude-failover"

# The statically linked crates and their licences, from Cargo.lock (no build).
crates=$(cargo tree --locked --offline --target x86_64-unknown-linux-musl -e normal,no-proc-macro \
            --prefix none --format '{p} {l}' 2>/dev/null \
        | sed -e 's/ (\*)$//' -e 's/ (proxy)$//' | grep -v '^claude-failover ' | sort -u \
        | sed 's/^/ /') || die "cargo tree failed: cannot list the linked crates for copyright"
awk -v crates="$crates" '{ if ($0 == "@CRATES@") print crates; else print }' \
    packaging/debian/copyright.in > "$doc/copyright"
chmod 0644 "$doc/copyright"
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")/" \
    packaging/debian/changelog.in | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

install -d -m 0755 "$root/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
echo /etc/claude-failover/config.toml > "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
# Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, plus one
# per directory.
installed_size=$(cd "$root" && find . -path ./DEBIAN -prune -o \( -type f -printf '%s\n' \) \
    -o \( -type d -printf 'd\n' \) | awk '$1 == "d" { n += 1; next } { n += int(($1 + 1023) / 1024) } END { print n }')
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    packaging/debian/control.in > "$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/claude-failover_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
