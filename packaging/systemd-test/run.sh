#!/usr/bin/env bash
# make systemd-test: the .deb under a real systemd, as an operator meets it.
#
# Boots systemd 252 (the host's own /lib/systemd/systemd) as PID 1 of a throw-away
# container made with util-linux alone (unshare, nsenter, pivot_root, setpriv; see
# boot.sh for the root it gets: an overlay of the host's / on a tmpfs, read-only
# /proc/sys and /sys, its own network namespace). Inside it: `dpkg -i` of the .deb
# built from the static binary, the packaged units driven with systemctl, the real
# Claude Code (build/claude-code) in the sessions, the test suite's fake Anthropic
# API on the container's loopback, and journalctl to read what happened. Each
# check prints PASS or FAIL with the reason; the last line is
# `systemd-test: N passed, M failed`.
#
# The units run as shipped. The only drop-in added is the test fault switch's
# environment (CLAUDE_FAILOVER_TEST_FAULTS, CLAUDE_FAILOVER_TEST_STALE_SECS) and a
# shorter WatchdogSec=, on claude-failover.service.
#
# Needs root with CAP_SYS_ADMIN and a cgroup2 hierarchy; without them it says why
# and exits 0, except under CI=true, where that is a failure (exit 1).
#
# Environment (all optional):
#   BIN           static binary packaged (default target/x86_64-unknown-linux-musl/release/claude-failover)
#   FAKE_API_BIN  the fake API program (default target/debug/examples/fake_api; its
#                 command line `--port N --port-file PATH` is all this script uses)
#   CLAUDE_BIN    Claude Code (default build/claude-code/node_modules/.bin/claude)
#   KEEP_WORK=1   keep the work folder (target/systemd-test.*) even when all passed
#   SYSTEMD_TEST_HOLD=1  after the checks, leave the container running (for a
#                 look inside with nsenter) until WORK/hold is removed
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

BIN=$(realpath -m "${BIN:-target/x86_64-unknown-linux-musl/release/claude-failover}")
FAKE_API_BIN=$(realpath -m "${FAKE_API_BIN:-target/debug/examples/fake_api}")
CLAUDE_BIN=$(realpath -m "${CLAUDE_BIN:-build/claude-code/node_modules/.bin/claude}")
KEEP_WORK=${KEEP_WORK:-0}

START=$SECONDS
say() { printf '[%3ds] %s\n' $((SECONDS - START)) "$*"; }

# ---------------------------------------------------------------- can it run here?

skip() {
    if [ "${CI:-}" = true ]; then
        printf '\nsystemd-test: FAILED: %s (CI=true: this test must run in CI)\n' "$*" >&2
        exit 1
    fi
    cat >&2 <<EOF

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!! systemd-test SKIPPED: $*
!!! Nothing about the .deb under systemd was checked. It needs root with
!!! CAP_SYS_ADMIN and cgroup2 (CI has them; under CI=true this is a failure).
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
EOF
    echo "systemd-test: SKIPPED, nothing checked: $*"
    exit 0
}
die() { printf '\nsystemd-test: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "not root (it mounts an overlay root and unshares namespaces)"
cap_eff=$((16#$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)))
(( (cap_eff >> 21) & 1 )) || skip "no CAP_SYS_ADMIN in this process (a container without privileges?)"
# Where a cgroup2 hierarchy is mounted: the hybrid layout's /sys/fs/cgroup/unified,
# or /sys/fs/cgroup itself on a unified host.
cgroot=
for dir in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    if [ "$(stat -f -c %T "$dir" 2>/dev/null)" = cgroup2fs ]; then cgroot=$dir; break; fi
done
[ -n "$cgroot" ] || skip "no cgroup2 hierarchy mounted (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)"
# (The overlay mount loads the module itself when it is a module.)
grep -qw overlay /proc/filesystems || [ -d "/lib/modules/$(uname -r)/kernel/fs/overlayfs" ] ||
    skip "the kernel has no overlay file system"
for tool in unshare nsenter pivot_root setpriv dpkg-deb jq tmux curl; do
    command -v $tool >/dev/null || die "$tool is not installed (make systemd-test installs what it needs)"
done
# The container's root is an overlay of the root file system alone: what it
# needs from the host must not sit on another mount (the repository is
# bind-mounted in by boot.sh, wherever it is).
for dir in /usr /etc /var/lib/dpkg /lib; do
    [ "$(stat -c %d "$(realpath "$dir")")" = "$(stat -c %d /)" ] ||
        die "$dir is a separate mount: the container's overlay root would not show it (only / is overlaid)"
done
[ -x /lib/systemd/systemd ] || die "no /lib/systemd/systemd: apt-get install systemd"
[ -x "$BIN" ] || die "no static binary at $BIN: run 'make musl'"
[ -x "$FAKE_API_BIN" ] || die "no fake API at $FAKE_API_BIN: run 'cargo build --example fake_api'"
[ -x "$CLAUDE_BIN" ] || die "no Claude Code at $CLAUDE_BIN: run 'make claude-code'"

# ---------------------------------------------------------------- work folder, teardown

mkdir -p target
work=$(mktemp -d "$repo/target/systemd-test.XXXXXX")
share=$work/share # the one folder shared with the container, read-write
mkdir "$share"
# The host's /tmp must come out of this untouched (a systemd booted on the host's
# root once emptied it): a folder of ours in it must still be there at the end.
sentinel=$(mktemp -d /tmp/cf-systemd-test-sentinel.XXXXXX)
echo "systemd-test $$" >"$sentinel/still-here"
cg=$cgroot/cf-systemd-test-$$
home_cg=$(sed -n 's/^0:://p' /proc/self/cgroup)
UNSHARE_PID=
PID1=
passed=0
failed=0
failures=()

# Ends the container and everything in it: poweroff, then SIGKILL to its PID 1
# (the kernel kills the rest of the PID namespace with it), then removes our
# cgroup folders. Only PIDs this script started are signalled. Prints what, if
# anything, it left on the host; returns 1 if it left something.
torn_down=0
teardown() {
    [ $torn_down = 0 ] || return 0
    torn_down=1
    local left=0 deadline mounts
    if [ -n "$PID1" ] && [ -d "/proc/$PID1" ]; then
        if [ $failed -gt 0 ]; then
            ct journalctl --no-pager -o short-precise >"$work/journal.txt" 2>&1 || true
            say "the container's whole journal: $work/journal.txt"
        fi
        timeout 10 nsenter -t "$PID1" -m -p -C -u -i -n -r -w systemctl poweroff --no-block >/dev/null 2>&1 || true
        deadline=$((SECONDS + 15))
        while [ -d "/proc/$PID1" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if [ -d "/proc/$PID1" ]; then
            say "teardown: the container did not power off within 15 s; killing its PID 1 ($PID1)"
            kill -KILL "$PID1" 2>/dev/null || true
        fi
    fi
    # Whatever still runs in our cgroup was started by this script (the
    # container's PID 1 if it was never found, say): killed by PID.
    if [ -d "$cg" ]; then
        local pid
        for pid in $(find "$cg" -name cgroup.procs -exec cat {} +); do
            say "teardown: killing $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)), left in $cg"
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    if [ -n "$UNSHARE_PID" ]; then
        deadline=$((SECONDS + 5))
        while [ -d "/proc/$UNSHARE_PID" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        kill -KILL "$UNSHARE_PID" 2>/dev/null || true
        wait "$UNSHARE_PID" 2>/dev/null || true
    fi
    if [ -d "$cg" ]; then
        deadline=$((SECONDS + 10))
        while [ -d "$cg" ] && [ $SECONDS -lt $deadline ]; do
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.2
        done
        if [ -d "$cg" ]; then
            say "teardown: cgroup $cg could not be removed: $(find "$cg" -name cgroup.procs -exec cat {} + | xargs)"
            left=1
        fi
    fi
    mounts=$(findmnt -rn -o TARGET | grep -F "$work" || true)
    if [ -n "$mounts" ]; then
        say "teardown: mounts left on the host: $mounts"
        left=1
    fi
    if [ -f "$sentinel/still-here" ]; then
        rm -rf "$sentinel"
    else
        say "teardown: the host's /tmp was touched: $sentinel/still-here is gone"
        left=1
    fi
    return $left
}
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    teardown || rc=1
    say "work folder kept: $work"
    exit $rc
}
trap on_exit EXIT
trap 'echo; say "interrupted"; exit 130' INT TERM

# ct CMD...: runs CMD inside the container as root, with a clean environment.
ct() {
    nsenter -t "$PID1" -m -p -C -u -i -n -r -w \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER=cat \
        SYSTEMD_COLORS=0 "$@"
}
# ct_write PATH [MODE [OWNER]] < CONTENT: writes a file inside the container.
ct_write() {
    ct sh -c 'cat > "$1" && chmod "$2" "$1" && chown "$3" "$1"' sh "$1" "${2:-0644}" "${3:-root:root}"
}
prop() { ct systemctl show -P "$2" "$1"; } # UNIT PROPERTY
# A point in the journal: the time now (the container shares the host's clock).
# Not a cursor: journalctl 252 with --after-cursor and -p leaves out entries that
# match (seen here: the 78 exit's config error, PRIORITY=3, missing from
# `--after-cursor=C -p err` and present with `--since`).
cursor() { date +@%s.%6N; }
journal_since() { # CURSOR UNIT [journalctl args]: that unit's lines since CURSOR
    local c=$1 unit=$2
    shift 2
    ct journalctl --no-pager -q -o cat --since="$c" -u "$unit" "$@"
}

# has GREP-ARGS: grep that reads its whole input (grep -q stops at the first
# match, and under pipefail the writer's SIGPIPE would fail the pipeline).
has() { grep "$@" >/dev/null; }
journal_has() { # CURSOR UNIT TEXT [journalctl args]
    local c=$1 unit=$2 text=$3
    shift 3
    journal_since "$c" "$unit" "$@" | has -F -- "$text"
}
status_shows() { ct systemctl status "$1" --no-pager 2>/dev/null | has -F -- "$2"; } # UNIT TEXT
prop_has() { prop "$1" "$2" | has -F -- "$3"; }                                      # UNIT PROPERTY TEXT
restarted_since() { # UNIT N: NRestarts went past N and the unit is active again
    [ "$(prop "$1" NRestarts)" -gt "$2" ] && [ "$(prop "$1" ActiveState)" = active ]
}

# wait_for SECS CMD...: true once CMD succeeds (every 0.2 s), false after SECS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

# ---------------------------------------------------------------- checks

# check NAME FUNCTION: runs FUNCTION in a subshell with errexit; it fails by
# calling `fail REASON` or by any command failing (reported with its line).
check() {
    local name=$1 fn=$2 t0=$SECONDS rc
    : >"$work/why"
    set +e
    (
        set -eE
        trap 'echo "unexpected failure (exit $?) at run.sh line $LINENO: $BASH_COMMAND" >>"$work/why"' ERR
        "$fn"
    )
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        printf 'PASS %-62s (%ds)\n' "$name" $((SECONDS - t0))
    else
        failed=$((failed + 1))
        failures+=("$name")
        printf 'FAIL %s (%ds)\n' "$name" $((SECONDS - t0))
        sed 's/^/     /' "$work/why"
    fi
}
fail() {
    printf '%s\n' "$*" >>"$work/why"
    exit 1
}
note() { printf '     %s\n' "$*"; }

# ---------------------------------------------------------------- what the checks share

API_PORT=9100
API=http://127.0.0.1:$API_PORT
ROOT_CONFIG=/etc/claude-failover/config.toml
ROOT_PORT=8787
ROOT_STATE=/var/lib/claude-failover
ROOT_QUEUE=/srv/cf-test/web/.agent-queue
AGENT_CONFIG=/etc/claude-failover/agent.toml
AGENT_PORT=8788
AGENT_STATE=/var/lib/claude-failover/agent
AGENT_QUEUE=/home/agent/site/.agent-queue
upstream=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
V1=$upstream-1
V2=$upstream-2

# config_text HOME STATE_DIR PORT PROJECT_NAME PROJECT_PATH SESSION... : the
# config an operator would write, for accounts alpha and beta under HOME.
config_text() {
    local home=$1 state=$2 port=$3 project=$4 path=$5
    shift 5
    cat <<EOF
# Written by packaging/systemd-test/run.sh.
state_dir = "$state"

[claude]
binary = "$CLAUDE_BIN"
shared_projects_dir = "$state/transcripts"
startup_timeout_secs = 30
stop_timeout_secs = 10

[claude.env]
ANTHROPIC_BASE_URL = "$API"
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"
DISABLE_TELEMETRY = "1"
DISABLE_AUTOUPDATER = "1"

[quota]
usage_url = "$API/api/oauth/usage"
poll_interval_secs = 2
request_timeout_secs = 5

[dispatch]
settle_secs = 1

[http]
listen = "127.0.0.1:$port"

[[accounts]]
name = "alpha"
config_dir = "$home/.claude-alpha"

[[accounts]]
name = "beta"
config_dir = "$home/.claude-beta"

[[projects]]
name = "$project"
path = "$path"
EOF
    local s
    for s in "$@"; do
        printf '\n[[sessions]]\nname = "%s"\nproject = "%s"\n' "$s" "$project"
    done
}

# root_config SESSION...: writes the system unit's config with those sessions
# (stdin, if not a terminal, is appended: the broken variants).
root_config() {
    { config_text /root "$ROOT_STATE" "$ROOT_PORT" web /srv/cf-test/web "$@"; cat; } | ct_write "$ROOT_CONFIG"
}
GOOD_SESSIONS=(s1 s2 s3) # from the reload check on

# make_accounts USER HOME PROJECT_PATH: two logged-in Claude Code config folders
# (what /login leaves), each with its own token, the project trusted.
make_accounts() {
    local user=$1 home=$2 path=$3 account token expires_ms
    expires_ms=$((($(date +%s) + 8 * 3600) * 1000))
    for account in alpha beta; do
        token="sk-ant-oat01-SYSTEMD-TEST-$user-$account"
        ct install -d -m 0700 -o "$user" -g "$user" "$home/.claude-$account"
        printf '{"claudeAiOauth":{"accessToken":"%s","refreshToken":"sk-ant-ort01-SYSTEMD-TEST-%s","expiresAt":%s,"scopes":["user:inference","user:profile"],"subscriptionType":"max"}}\n' \
            "$token" "$user-$account" "$expires_ms" | ct_write "$home/.claude-$account/.credentials.json" 0600 "$user:$user"
        printf '{"hasCompletedOnboarding":true,"theme":"dark","projects":{"%s":{"hasTrustDialogAccepted":true}}}\n' \
            "$path" | ct_write "$home/.claude-$account/.claude.json" 0600 "$user:$user"
        ct curl -fsS -X POST --data "{\"token\":\"$token\",\"five_hour\":20,\"seven_day\":10}" \
            "$API/_control/usage" >/dev/null
    done
    ct install -d -o "$user" -g "$user" "$path" "$path/.agent-queue" "$path/.agent-queue/inbox"
}

# The control plane's /status (not `claude-failover status`, which reads the
# config file first and so cannot answer while the file is broken).
status_json() { ct curl -fsS --max-time 5 "http://127.0.0.1:$1/status" 2>/dev/null; } # PORT
# all_idle PORT N: the daemon answers and its N sessions sit at their prompt.
all_idle() {
    local s
    s=$(status_json "$1") || return 1
    [ "$(jq '[.sessions[] | select(.state == "idle")] | length' <<<"$s")" = "$2" ] &&
        [ "$(jq '.sessions | length' <<<"$s")" = "$2" ]
}
session_states() { status_json "$1" | jq -r '[.sessions[] | "\(.name) \(.state)"] | join(", ")' || echo "(no answer)"; }

# panes USER: "session=pid" for every pane of USER's default tmux server.
panes() {
    ct runuser -u "$1" -- tmux -N -L default list-panes -a -F '#{session_name}=#{pane_pid}' 2>/dev/null | sort
}
# panes_alive_in UNIT PANES: every pane PID still runs Claude Code inside UNIT's cgroup.
panes_alive_in() {
    local unit=$1 entry pid comm cgroup
    for entry in $2; do
        pid=${entry#*=}
        comm=$(ct cat "/proc/$pid/comm" 2>/dev/null) || fail "pane ${entry%%=*}: process $pid is gone"
        cgroup=$(ct cat "/proc/$pid/cgroup" 2>/dev/null) || fail "pane ${entry%%=*}: process $pid is gone"
        case $comm in claude*) ;; *) fail "pane ${entry%%=*}: process $pid is '$comm', not Claude Code" ;; esac
        case $cgroup in
            *"/$unit") ;;
            *) fail "pane ${entry%%=*}: process $pid is in cgroup '${cgroup#0::}', not $unit's" ;;
        esac
    done
}

drop_task() { # QUEUE NAME TEXT [OWNER]: written aside and renamed in, as the README says
    printf '%s\n' "$3" | ct_write "$1/inbox/.$2.tmp" 0644 "${4:-root}:${4:-root}"
    ct mv "$1/inbox/.$2.tmp" "$1/inbox/$2.md"
}
in_active_at_least() { [ "$(ct find "$1/active" -name '*.md' | wc -l)" -ge "$2" ]; } # QUEUE N
in_done() { ct test -f "$1/done/$2.md" && ct test -f "$1/done/$2.result.json"; }
# times_sent TEXT: how many user turns carrying TEXT the fake API served.
times_sent() { ct curl -fsS "$API/_control/requests" | jq --arg t "$1" '[.[] | select(.text | contains($t))] | length'; }

# ---------------------------------------------------------------- build the two packages

say "building the .deb twice from $BIN: $V1, and $V2 for the upgrade"
# Side by side: each is mostly xz compressing the binary on one core.
BIN="$BIN" packaging/build-deb.sh "$share/v1" >"$work/build-v1.txt" 2>&1 &
build1=$!
BIN="$BIN" DEB_REVISION=2 packaging/build-deb.sh "$share/v2" >"$work/build-v2.txt" 2>&1 ||
    die "build-deb.sh (DEB_REVISION=2) failed: $(cat "$work/build-v2.txt")"
wait $build1 || die "build-deb.sh failed: $(cat "$work/build-v1.txt")"
deb1=$(tail -n 1 "$work/build-v1.txt")
deb2=$(tail -n 1 "$work/build-v2.txt")
[ "$(dpkg-deb -f "$deb2" Version)" = "$V2" ] || die "$deb2 has version $(dpkg-deb -f "$deb2" Version), not $V2"

# ---------------------------------------------------------------- boot

say "booting systemd as PID 1 of a throw-away container (cgroup $cg)"
mkdir "$cg"
(
    echo "$BASHPID" >"$cg/cgroup.procs"
    exec unshare --cgroup --pid --fork --mount --uts --ipc --net "$here/boot.sh" "$work" "$share" "$repo"
) >"$work/console.log" 2>&1 &
UNSHARE_PID=$!
container_pid1() { # the container's PID 1: the child unshare forked
    local children
    children=$(cat "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null) || return 1
    [ -n "$children" ] && echo "${children%% *}"
}
wait_for 10 container_pid1 >/dev/null || die "the container did not start: $(cat "$work/console.log")"
PID1=$(container_pid1)
# unshare itself waits in our cgroup: give it back to its own, so the
# container's cgroup tree holds nothing but what its systemd runs.
echo "$UNSHARE_PID" >"$cgroot$home_cg/cgroup.procs"
system_running() { [ "$(ct systemctl is-system-running 2>/dev/null)" = running ]; }
wait_for 20 system_running ||
    die "systemd in the container did not reach 'running' within 20 s: $(ct systemctl is-system-running 2>&1); $(cat "$work/console.log")"

check_pid1() {
    local exe comm
    exe=$(ct readlink /proc/1/exe)
    comm=$(ct cat /proc/1/comm)
    [ "$comm" = systemd ] || fail "PID 1 of the container is '$comm' ($exe), not systemd"
    case $exe in */systemd/systemd) ;; *) fail "PID 1 runs $exe" ;; esac
    ct test -e /run/systemd/private || fail "no /run/systemd/private: not a system manager"
    note "PID 1: $exe, $(ct systemctl --version | head -n 1), $(ct systemctl is-system-running), virtualization $(ct systemd-detect-virt || true)"
}
check "systemd is PID 1 of the container" check_pid1

ct_write /etc/systemd/system/cf-fake-api.service <<EOF
# The test suite's fake Anthropic API, on the container's loopback.
[Unit]
Description=fake Anthropic API (claude-failover test suite)

[Service]
ExecStart=$FAKE_API_BIN --port $API_PORT --port-file /run/cf-fake-api.url
EOF
ct systemctl daemon-reload
ct systemctl start cf-fake-api.service
wait_for 10 ct test -s /run/cf-fake-api.url || die "the fake API did not start: $(ct journalctl -u cf-fake-api --no-pager -q)"

# ---------------------------------------------------------------- install

check_install() {
    local out unit
    out=$(ct dpkg -i "$deb1" 2>&1) || fail "dpkg -i $deb1 failed: $out"
    ct dpkg-query -W -f '${Status} ${Version}\n' claude-failover | has -x "install ok installed $V1" ||
        fail "dpkg says: $(ct dpkg-query -W -f '${Status} ${Version}' claude-failover)"
    for unit in claude-failover.service claude-failover@.service claude-failover-tmux@.service; do
        ct test -f "/lib/systemd/system/$unit" || fail "/lib/systemd/system/$unit missing"
    done
    for path in /usr/bin/claude-failover /etc/claude-failover/config.toml /usr/share/claude-failover/grafana-dashboard.json; do
        ct test -e "$path" || fail "$path missing after dpkg -i"
    done
    ct /usr/bin/claude-failover --version >/dev/null || fail "the installed binary does not run"
    out=$(ct systemd-analyze verify /lib/systemd/system/claude-failover.service /lib/systemd/system/claude-failover@.service \
        /lib/systemd/system/claude-failover-tmux@.service 2>&1) || fail "systemd-analyze verify of the installed units: $out"
    [ -z "$out" ] || fail "systemd-analyze verify of the installed units is not clean: $out"
    [ "$(prop claude-failover.service LoadState)" = loaded ] || fail "systemd does not know claude-failover.service after dpkg -i (no daemon-reload?)"
    for unit in claude-failover.service claude-failover-tmux@root.service; do
        [ "$(prop $unit ActiveState)" = inactive ] || fail "dpkg -i started $unit: an unconfigured daemon must not start"
    done
    [ "$(ct systemctl is-enabled claude-failover.service || true)" = disabled ] || fail "dpkg -i enabled claude-failover.service"
}
check "dpkg -i installs the units and starts nothing" check_install

# ---------------------------------------------------------------- the system unit, as root

say "operator: accounts under /root, a project in /srv/cf-test/web, $ROOT_CONFIG, claude-failover setup"
make_accounts root /root /srv/cf-test/web
root_config s1 s2 </dev/null
ct /usr/bin/claude-failover check-config >/dev/null || die "the test's config does not validate: $(ct /usr/bin/claude-failover check-config 2>&1)"
ct /usr/bin/claude-failover setup >"$work/setup-root.txt" 2>&1 || die "claude-failover setup failed: $(cat "$work/setup-root.txt")"
# The one drop-in: the test fault switch and a shorter watchdog (30 s shipped).
ct mkdir -p /etc/systemd/system/claude-failover.service.d
ct_write /etc/systemd/system/claude-failover.service.d/50-systemd-test.conf <<'EOF'
# packaging/systemd-test/run.sh: the test fault switch and a shorter watchdog.
[Service]
Environment=CLAUDE_FAILOVER_TEST_FAULTS=1 CLAUDE_FAILOVER_TEST_STALE_SECS=5
WatchdogSec=6
EOF
ct systemctl daemon-reload

check_start() {
    local c out t0 line
    c=$(cursor)
    t0=$SECONDS
    out=$(ct systemctl enable --now claude-failover.service 2>&1) || fail "systemctl enable --now failed: $out"
    # Type=notify: start returns only once READY=1 came, so the daemon is
    # active and answering the moment systemctl returns.
    [ "$(prop claude-failover.service Type)" = notify ] || fail "Type is $(prop claude-failover.service Type)"
    [ "$(prop claude-failover.service ActiveState)" = active ] ||
        fail "systemctl start returned but the unit is $(prop claude-failover.service ActiveState) (READY=1 not waited for?)"
    ct curl -fsS http://127.0.0.1:8787/healthz >/dev/null || fail "/healthz does not answer right after start returned"
    note "systemctl enable --now returned after $((SECONDS - t0)) s, unit active, /healthz 200"
    [ "$(prop claude-failover-tmux@root.service ActiveState)" = active ] || fail "claude-failover-tmux@root.service was not started with the daemon"
    wait_for 90 all_idle "$ROOT_PORT" 2 || fail "the sessions did not reach their prompt within 90 s: $(session_states "$ROOT_PORT")"
    note "sessions at their prompt: $(session_states "$ROOT_PORT") ($((SECONDS - t0)) s after start)"
    wait_for 10 status_shows claude-failover.service 'Status: "active alpha; sessions 0 busy, 2 idle of 2' ||
        fail "systemctl status shows no STATUS= line with the sessions: $(ct systemctl status claude-failover --no-pager | grep Status: || echo none)"
    line=$(ct systemctl status claude-failover.service --no-pager | grep 'Status:')
    note "systemctl status:${line}"
    journal_since "$c" claude-failover.service | has 'daemon_started' || fail "no daemon_started in journalctl -u claude-failover"
}
check "systemctl start (system unit): READY, sessions at prompt, STATUS=" check_start

check_hardening() {
    local dropins key value c shipped line
    # The hardening is the shipped unit's: the only drop-in is the test's own.
    dropins=$(prop claude-failover.service DropInPaths)
    [ "$dropins" = /etc/systemd/system/claude-failover.service.d/50-systemd-test.conf ] ||
        fail "drop-ins other than the test's: $dropins"
    # Every yes/no/full/strict sandboxing line of the unit as installed by the
    # package is what the running unit has.
    shipped=$(ct grep -E '^(NoNewPrivileges|Protect[A-Za-z]+|Private[A-Za-z]+|Restrict(Namespaces|Realtime|SUIDSGID)|LockPersonality)=' \
        /lib/systemd/system/claude-failover.service)
    [ -n "$shipped" ] || fail "no hardening lines in /lib/systemd/system/claude-failover.service"
    for line in $shipped; do
        key=${line%%=*}
        value=$(prop claude-failover.service "$key")
        [ "$value" = "${line#*=}" ] || fail "$key is '$value' in the running unit, the shipped unit says ${line#*=}"
    done
    if ct grep -q '^SystemCallFilter=' /lib/systemd/system/claude-failover.service; then
        [ -n "$(prop claude-failover.service SystemCallFilter)" ] || fail "the shipped SystemCallFilter= is not in effect"
    fi
    c=$(cursor)
    drop_task "$ROOT_QUEUE" t-hardening "Write the word hardening-check into NOTES.md."
    if ! wait_for 60 in_done "$ROOT_QUEUE" t-hardening; then
        journal_since "$c" claude-failover.service | grep -E -i 'read-only file system|permission denied|operation not permitted' | head -n 5 >>"$work/why" || true
        fail "task t-hardening not done within 60 s (sandbox errors above, if any): inbox $(ct ls "$ROOT_QUEUE/inbox" | xargs), active $(ct ls "$ROOT_QUEUE/active" | xargs), failed $(ct ls "$ROOT_QUEUE/failed" | xargs)"
    fi
    [ "$(times_sent hardening-check)" -eq 1 ] || fail "the task's text reached the fake API $(times_sent hardening-check) times, expected 1"
    # The daemon wrote its state dir, the queue and the project's status file.
    ct test -f "$ROOT_STATE/sessions.json" || fail "no $ROOT_STATE/sessions.json"
    ct test -f "$ROOT_QUEUE/status.json" || fail "no $ROOT_QUEUE/status.json"
    ct find "$ROOT_STATE/sessions.json" -newer "$ROOT_CONFIG" | has . || fail "$ROOT_STATE/sessions.json was not written by this daemon"
    if journal_since "$c" claude-failover.service | grep -E -i 'read-only file system|permission denied|operation not permitted'; then
        fail "the daemon met the sandbox (lines above)"
    fi
    note "task done by $(ct jq -r '.session + " on " + .account' "$ROOT_QUEUE/done/t-hardening.result.json") under $(xargs <<<"$shipped") and SystemCallFilter=$(ct sed -n 's/^SystemCallFilter=//p' /lib/systemd/system/claude-failover.service)"
}
check "a task is done under the unit's hardening" check_hardening

check_reload_good() {
    local c
    c=$(cursor)
    root_config "${GOOD_SESSIONS[@]}" </dev/null
    ct systemctl reload claude-failover.service || fail "systemctl reload failed"
    wait_for 90 all_idle "$ROOT_PORT" 3 || fail "the new session s3 did not appear and reach its prompt within 90 s: $(session_states "$ROOT_PORT")"
    journal_since "$c" claude-failover.service | has 'config_reloaded' || fail "no config_reloaded in journalctl -u claude-failover"
    [ "$(prop claude-failover.service ActiveState)" = active ] || fail "unit not active after reload"
    note "s3 launched: $(session_states "$ROOT_PORT")"
}
check "systemctl reload applies a changed config (a new session)" check_reload_good

check_reload_bad() {
    local c pid line
    c=$(cursor)
    pid=$(prop claude-failover.service MainPID)
    # The good config back whatever happens here, so no later check inherits it.
    trap 'root_config "${GOOD_SESSIONS[@]}" </dev/null' EXIT
    # s4 is fine, s5 names a project that does not exist: the whole file is refused.
    printf '\n[[sessions]]\nname = "s5"\nproject = "no-such-project"\n' | root_config s1 s2 s3 s4
    ct systemctl reload claude-failover.service || fail "systemctl reload failed"
    wait_for 10 journal_has "$c" claude-failover.service config_rejected ||
        fail "no config_rejected in journalctl -u claude-failover within 10 s"
    line=$(journal_since "$c" claude-failover.service | grep config_rejected)
    case $line in *"$ROOT_CONFIG: sessions[4].project: unknown project \"no-such-project\""*) ;;
        *) fail "the rejection does not name the file, key and problem: $line" ;; esac
    [ "$(prop claude-failover.service ActiveState)" = active ] || fail "unit not active after a bad reload"
    [ "$(prop claude-failover.service MainPID)" = "$pid" ] || fail "the daemon was restarted by a bad reload"
    all_idle "$ROOT_PORT" 3 || fail "the old config is not kept: $(session_states "$ROOT_PORT")"
    wait_for 10 prop_has claude-failover.service StatusText 'old config kept' ||
        fail "STATUS= does not say the new config was rejected: $(prop claude-failover.service StatusText)"
    note "journal: $line"
    note "STATUS=$(prop claude-failover.service StatusText)"
}
check "systemctl reload of a broken config: refused, old one kept" check_reload_bad

check_watchdog() {
    local c pid panes_before restarts t0 task
    c=$(cursor)
    pid=$(prop claude-failover.service MainPID)
    restarts=$(prop claude-failover.service NRestarts)
    panes_before=$(panes root)
    [ "$(wc -w <<<"$panes_before")" -eq 3 ] || fail "expected 3 panes, tmux lists: $panes_before"
    [ -n "$(prop claude-failover.service WatchdogUSec)" ] || fail "no watchdog on the unit"
    # Tasks in flight when the role hangs: each turn takes 3 s at the fake API.
    ct curl -fsS -X POST --data '{"ms":3000}' "$API/_control/delay" >/dev/null
    for task in t-wd-1 t-wd-2 t-wd-3; do
        drop_task "$ROOT_QUEUE" $task "Answer the question of task $task-text."
    done
    wait_for 20 in_active_at_least "$ROOT_QUEUE" 2 ||
        fail "the tasks were not dispatched within 20 s"
    ct mkdir -p "$ROOT_STATE/faults"
    ct touch "$ROOT_STATE/faults/hang-dispatcher"
    t0=$SECONDS
    wait_for 30 journal_has "$c" claude-failover.service 'Watchdog timeout' ||
        { ct rm -f "$ROOT_STATE/faults/hang-dispatcher"; fail "no 'Watchdog timeout' in the journal within 30 s of the dispatcher hanging"; }
    # Released before systemd starts the new daemon (RestartSec=5), which would hang too.
    ct rm -f "$ROOT_STATE/faults/hang-dispatcher"
    note "watchdog timeout $((SECONDS - t0)) s after the dispatcher hung"
    wait_for 30 restarted_since claude-failover.service "$restarts" ||
        fail "systemd did not restart the daemon within 30 s of the watchdog timeout: $(prop claude-failover.service ActiveState), NRestarts $(prop claude-failover.service NRestarts)"
    [ "$(prop claude-failover.service MainPID)" != "$pid" ] || fail "MainPID unchanged"
    journal_since "$c" claude-failover.service | has "Failed with result 'watchdog'" || fail "no \"Failed with result 'watchdog'\" in the journal"
    journal_since "$c" claude-failover.service | has 'withholding the watchdog ping: roles not beating: dispatcher' ||
        fail "the daemon did not say which role stopped the pings"
    ct curl -fsS -X POST --data '{"ms":0}' "$API/_control/delay" >/dev/null
    for task in t-wd-1 t-wd-2 t-wd-3; do
        wait_for 60 in_done "$ROOT_QUEUE" $task || fail "task $task not done within 60 s of the restart: active $(ct ls "$ROOT_QUEUE/active" | xargs), failed $(ct ls "$ROOT_QUEUE/failed" | xargs)"
        [ "$(times_sent "$task-text")" -eq 1 ] || fail "task $task reached the fake API $(times_sent "$task-text") times, expected once"
    done
    [ -z "$(ct ls "$ROOT_QUEUE/failed")" ] || fail "tasks in failed/: $(ct ls "$ROOT_QUEUE/failed" | xargs)"
    [ "$(ct find "$ROOT_QUEUE/active" -name '*.md' | wc -l)" -eq 0 ] || fail "tasks left in active/: $(ct ls "$ROOT_QUEUE/active" | xargs)"
    wait_for 60 all_idle "$ROOT_PORT" 3 || fail "sessions not at their prompt after the restart: $(session_states "$ROOT_PORT")"
    [ "$(panes root)" = "$panes_before" ] || fail "the panes changed across the watchdog restart: before $panes_before, after $(panes root)"
    panes_alive_in claude-failover-tmux@root.service "$panes_before"
    journal_since "$c" claude-failover.service | has 'adopted running session s1' || fail "the new daemon did not adopt s1"
    note "restarted by the watchdog (NRestarts $(prop claude-failover.service NRestarts)), same Claude Code PIDs: $(xargs <<<"$panes_before"); 3 tasks done once each"
}
check "a hung role: watchdog restart adopts the sessions, no task lost or doubled" check_watchdog

check_restart() {
    local c pid panes_before
    c=$(cursor)
    pid=$(prop claude-failover.service MainPID)
    panes_before=$(panes root)
    ct systemctl restart claude-failover.service || fail "systemctl restart failed"
    [ "$(prop claude-failover.service MainPID)" != "$pid" ] || fail "MainPID unchanged after restart"
    wait_for 60 all_idle "$ROOT_PORT" 3 || fail "sessions not at their prompt after restart: $(session_states "$ROOT_PORT")"
    [ "$(panes root)" = "$panes_before" ] || fail "the panes changed across the restart: before $panes_before, after $(panes root)"
    panes_alive_in claude-failover-tmux@root.service "$panes_before"
    journal_since "$c" claude-failover.service | grep -c 'adopted running session' | has -x 3 ||
        fail "the new daemon did not adopt all 3 sessions: $(journal_since "$c" claude-failover.service | grep adopted)"
}
check "systemctl restart: the new daemon adopts the running sessions" check_restart

check_stop() {
    local panes_before t0 ms
    panes_before=$(panes root)
    t0=$(date +%s%N)
    ct systemctl stop claude-failover.service || fail "systemctl stop failed"
    ms=$((($(date +%s%N) - t0) / 1000000))
    [ $ms -le 10000 ] || fail "systemctl stop took $ms ms (limit 10 s)"
    [ "$(prop claude-failover.service ActiveState)" = inactive ] || fail "unit $(prop claude-failover.service ActiveState) after stop"
    [ "$(prop claude-failover.service Result)" = success ] || fail "stop result $(prop claude-failover.service Result), expected success (exit 0 on SIGTERM)"
    [ "$(prop claude-failover-tmux@root.service ActiveState)" = active ] || fail "stopping the daemon stopped the tmux unit"
    [ "$(panes root)" = "$panes_before" ] || fail "the panes changed: before $panes_before, after $(panes root)"
    panes_alive_in claude-failover-tmux@root.service "$panes_before"
    note "stopped in $ms ms; 3 Claude Code sessions still running in claude-failover-tmux@root"
}
check "systemctl stop: ends within 10 s, the sessions keep running" check_stop

state_snapshot() { # the daemon's own files under the state dir, with their digests
    ct sh -c "cd $ROOT_STATE && find . -path ./transcripts -prune -o -path ./agent -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum"
}

check_bad_config_start() {
    local before after c out status
    before=$(state_snapshot)
    c=$(cursor)
    trap 'root_config "${GOOD_SESSIONS[@]}" </dev/null' EXIT
    printf '\nno_such_key_typo = 1\n' | root_config "${GOOD_SESSIONS[@]}"
    if out=$(ct systemctl start claude-failover.service 2>&1); then
        fail "systemctl start of a broken config succeeded"
    fi
    note "systemctl start: $(head -n 1 <<<"$out")"
    [ "$(prop claude-failover.service ExecMainStatus)" = 78 ] || fail "exit status $(prop claude-failover.service ExecMainStatus), expected 78"
    [ "$(prop claude-failover.service Result)" = exit-code ] || fail "result $(prop claude-failover.service Result)"
    # RestartPreventExitStatus=78: failed, no restart scheduled (auto-restart).
    [ "$(prop claude-failover.service ActiveState)/$(prop claude-failover.service SubState)" = failed/failed ] ||
        fail "unit is $(prop claude-failover.service ActiveState)/$(prop claude-failover.service SubState): a restart is scheduled"
    status=$(ct systemctl status claude-failover.service --no-pager 2>&1 || true)
    grep -q 'status=78/CONFIG' <<<"$status" || fail "systemctl status does not show status=78/CONFIG: $(grep -i 'process\|status=' <<<"$status")"
    journal_since "$c" claude-failover.service | has 'no_such_key_typo' || fail "the journal does not name the bad key"
    journal_since "$c" claude-failover.service -p err | has 'invalid configuration' ||
        fail "the config error is not in journalctl -p err: $(journal_since "$c" claude-failover.service | grep -A2 'invalid configuration')"
    note "status: $(grep -o 'Main PID:.*' <<<"$status")"
    note "journal -p err: $(journal_since "$c" claude-failover.service -p err | grep -m1 no_such_key_typo)"
    sleep 6 # RestartSec=5: a loop would have restarted it by now
    [ "$(prop claude-failover.service NRestarts)" = 0 ] || [ "$(prop claude-failover.service ActiveState)" = failed ] ||
        fail "restarted after exit 78"
    [ "$(prop claude-failover.service ActiveState)" = failed ] || fail "unit $(prop claude-failover.service ActiveState) 6 s after exit 78"
    after=$(state_snapshot)
    [ "$before" = "$after" ] || fail "the state dir changed: $(diff <(echo "$before") <(echo "$after"))"
    [ "$(prop claude-failover-tmux@root.service ActiveState)" = active ] || fail "the tmux unit stopped"
    note "state dir unchanged ($(wc -l <<<"$before") files), tmux unit and sessions untouched"
}
check "systemctl start with a broken config: 78, no restart loop, state kept" check_bad_config_start

check_start_adopts() {
    local c panes_before
    c=$(cursor)
    panes_before=$(panes root)
    root_config "${GOOD_SESSIONS[@]}" </dev/null
    ct systemctl start claude-failover.service || fail "systemctl start failed after fixing the config"
    wait_for 60 all_idle "$ROOT_PORT" 3 || fail "sessions not at their prompt: $(session_states "$ROOT_PORT")"
    [ "$(panes root)" = "$panes_before" ] || fail "the panes changed: before $panes_before, after $(panes root)"
    panes_alive_in claude-failover-tmux@root.service "$panes_before"
    journal_since "$c" claude-failover.service | grep -c 'adopted running session' | has -x 3 ||
        fail "not all 3 sessions adopted: $(journal_since "$c" claude-failover.service | grep adopted)"
    drop_task "$ROOT_QUEUE" t-after-stop "Task t-after-stop-text."
    wait_for 60 in_done "$ROOT_QUEUE" t-after-stop || fail "no task done after the start"
}
check "systemctl start after a stop adopts the sessions and works" check_start_adopts

check_priorities() {
    local err warning
    err=$(ct journalctl --no-pager -q -o cat -u claude-failover.service -p err)
    warning=$(ct journalctl --no-pager -q -o cat -u claude-failover.service -p warning..warning)
    grep -q 'withholding the watchdog ping' <<<"$err" || fail "journalctl -p err lacks the daemon's watchdog error"
    grep -q 'invalid configuration' <<<"$err" || fail "journalctl -p err lacks the config error at start"
    grep -q 'config_rejected' <<<"$warning" || fail "journalctl -p warning lacks the config_rejected warning"
    grep -q 'test fault switch' <<<"$warning" || fail "journalctl -p warning lacks the fault switch's warning"
    if grep -E 'daemon_started|task_done|adopted running' <<<"$err$warning"; then
        fail "info lines logged at warning or above (above)"
    fi
    note "err: $(wc -l <<<"$err") lines, warning: $(wc -l <<<"$warning") lines; info lines below both"
}
check "journald gets errors and warnings at their priorities" check_priorities

# ---------------------------------------------------------------- claude-failover@agent

check_user_instance() {
    local t0 out owner pid entry
    ct useradd --create-home --shell /bin/bash agent
    make_accounts agent /home/agent /home/agent/site
    config_text /home/agent "$AGENT_STATE" "$AGENT_PORT" site /home/agent/site a1 a2 | ct_write "$AGENT_CONFIG"
    ct /usr/bin/claude-failover check-config --config "$AGENT_CONFIG" >/dev/null ||
        fail "check-config: $(ct /usr/bin/claude-failover check-config --config "$AGENT_CONFIG" 2>&1)"
    # As the README says: the state dir first (systemd would make it only at
    # the first start, and setup writes the hook spool and transcripts there).
    ct install -d -o agent -g agent "$AGENT_STATE"
    out=$(ct runuser -u agent -- /usr/bin/claude-failover setup --config "$AGENT_CONFIG" 2>&1) ||
        fail "setup as agent (as the README says) failed: $out"
    t0=$SECONDS
    out=$(ct systemctl enable --now claude-failover@agent.service 2>&1) || fail "systemctl enable --now claude-failover@agent failed: $out"
    [ "$(prop claude-failover@agent.service ActiveState)" = active ] || fail "not active right after start returned"
    [ "$(prop claude-failover-tmux@agent.service ActiveState)" = active ] || fail "claude-failover-tmux@agent.service not started"
    for unit in claude-failover@agent.service claude-failover-tmux@agent.service; do
        pid=$(prop $unit MainPID)
        owner=$(ct stat -c %U "/proc/$pid")
        [ "$owner" = agent ] || fail "$unit runs as $owner"
    done
    wait_for 90 all_idle "$AGENT_PORT" 2 || fail "agent's sessions did not reach their prompt within 90 s: $(session_states "$AGENT_PORT")"
    for entry in $(panes agent); do
        owner=$(ct stat -c %U "/proc/${entry#*=}")
        [ "$owner" = agent ] || fail "pane ${entry%%=*} runs as $owner"
    done
    panes_alive_in claude-failover-tmux@agent.service "$(panes agent)"
    wait_for 10 status_shows claude-failover@agent.service 'Status: "active alpha; sessions 0 busy, 2 idle of 2' ||
        fail "no STATUS= line: $(ct systemctl status claude-failover@agent --no-pager | grep Status: || echo none)"
    drop_task "$AGENT_QUEUE" t-agent "Task t-agent-text." agent
    wait_for 60 in_done "$AGENT_QUEUE" t-agent || fail "agent's task not done within 60 s"
    ct test -O "$AGENT_STATE/sessions.json" -o "$(ct stat -c %U "$AGENT_STATE/sessions.json")" = agent ||
        fail "agent's state not written as agent"
    note "claude-failover@agent and claude-failover-tmux@agent run as agent; sessions a1, a2 at their prompt $((SECONDS - t0)) s after start; task done"
}
check "claude-failover@agent: runs as agent with its own tmux unit" check_user_instance

# ---------------------------------------------------------------- package life cycle

check_upgrade() {
    local root_pid agent_pid tmux_root tmux_agent panes_root panes_agent out
    root_pid=$(prop claude-failover.service MainPID)
    agent_pid=$(prop claude-failover@agent.service MainPID)
    tmux_root=$(prop claude-failover-tmux@root.service MainPID)
    tmux_agent=$(prop claude-failover-tmux@agent.service MainPID)
    panes_root=$(panes root)
    panes_agent=$(panes agent)
    out=$(ct dpkg -i "$deb2" 2>&1) || fail "dpkg -i $deb2 over $V1 failed: $out"
    ct dpkg-query -W -f '${Version}' claude-failover | has -x "$V2" || fail "installed version is $(ct dpkg-query -W -f '${Version}' claude-failover)"
    [ "$(prop claude-failover.service ActiveState)" = active ] || fail "claude-failover.service $(prop claude-failover.service ActiveState) after the upgrade"
    [ "$(prop claude-failover@agent.service ActiveState)" = active ] || fail "claude-failover@agent $(prop claude-failover@agent.service ActiveState) after the upgrade"
    [ "$(prop claude-failover.service MainPID)" != "$root_pid" ] || fail "the upgrade did not restart claude-failover.service"
    [ "$(prop claude-failover@agent.service MainPID)" != "$agent_pid" ] || fail "the upgrade did not restart claude-failover@agent"
    [ "$(prop claude-failover-tmux@root.service MainPID)" = "$tmux_root" ] || fail "the upgrade restarted claude-failover-tmux@root"
    [ "$(prop claude-failover-tmux@agent.service MainPID)" = "$tmux_agent" ] || fail "the upgrade restarted claude-failover-tmux@agent"
    [ "$(panes root)" = "$panes_root" ] || fail "root's panes changed: before $panes_root, after $(panes root)"
    [ "$(panes agent)" = "$panes_agent" ] || fail "agent's panes changed: before $panes_agent, after $(panes agent)"
    panes_alive_in claude-failover-tmux@root.service "$panes_root"
    panes_alive_in claude-failover-tmux@agent.service "$panes_agent"
    wait_for 60 all_idle "$ROOT_PORT" 3 || fail "root's sessions: $(session_states "$ROOT_PORT")"
    wait_for 60 all_idle "$AGENT_PORT" 2 || fail "agent's sessions: $(session_states "$AGENT_PORT")"
    [ "$(ct cat "$ROOT_CONFIG")" = "$(config_text /root "$ROOT_STATE" "$ROOT_PORT" web /srv/cf-test/web "${GOOD_SESSIONS[@]}")" ] ||
        fail "the upgrade changed the operator's $ROOT_CONFIG"
    note "$V1 -> $V2: both daemons restarted (new MainPIDs), tmux units and the 5 Claude Code PIDs unchanged, config kept"
}
check "upgrade over a running install: daemons restarted, sessions kept" check_upgrade

check_remove() {
    local out panes_root
    panes_root=$(panes root)
    out=$(ct dpkg -r claude-failover 2>&1) || fail "dpkg -r failed: $out"
    ct dpkg-query -W -f '${Status}' claude-failover | has -x 'deinstall ok config-files' ||
        fail "dpkg status: $(ct dpkg-query -W -f '${Status}' claude-failover)"
    ct test ! -e /usr/bin/claude-failover || fail "/usr/bin/claude-failover left"
    ct test ! -e /usr/share/claude-failover || fail "/usr/share/claude-failover left after dpkg -r"
    for unit in claude-failover.service claude-failover@agent.service; do
        [ "$(prop $unit ActiveState)" = inactive ] || fail "$unit is $(prop $unit ActiveState) after dpkg -r"
    done
    [ "$(prop claude-failover-tmux@root.service ActiveState)" = active ] || fail "dpkg -r stopped claude-failover-tmux@root (the sessions)"
    panes_alive_in claude-failover-tmux@root.service "$panes_root"
    for path in "$ROOT_CONFIG" "$AGENT_CONFIG" "$ROOT_STATE/sessions.json" "$AGENT_STATE/sessions.json" "$ROOT_QUEUE/done/t-hardening.md"; do
        ct test -e "$path" || fail "$path is missing after dpkg -r"
    done
    note "daemons stopped, config, state and sessions kept"
}
check "dpkg -r: daemons stopped, config, state and sessions kept" check_remove

check_purge() {
    local out path transcripts
    out=$(ct dpkg -P claude-failover 2>&1) || fail "dpkg -P failed: $out"
    ! ct dpkg-query -W -f '${Status}' claude-failover 2>/dev/null | has 'installed\|config-files' ||
        fail "dpkg still knows the package: $(ct dpkg-query -W -f '${Status}' claude-failover)"
    ct test ! -e "$ROOT_CONFIG" || fail "the conffile $ROOT_CONFIG survived the purge"
    # What the operator and the sessions wrote stays: the per-user config (not
    # the package's), the state dirs with the shared transcript trees, the queues.
    for path in "$AGENT_CONFIG" "$ROOT_STATE/sessions.json" "$AGENT_STATE/sessions.json" "$ROOT_STATE/transcripts" \
        "$ROOT_QUEUE/done/t-hardening.md" /root/.claude-alpha/.credentials.json; do
        ct test -e "$path" || fail "$path is missing after dpkg -P"
    done
    transcripts=$(ct find "$ROOT_STATE/transcripts" "$AGENT_STATE/transcripts" -name '*.jsonl' | wc -l)
    [ "$transcripts" -gt 0 ] || fail "no transcripts in the shared trees after purge"
    note "purged: $ROOT_CONFIG gone; kept: $AGENT_CONFIG, $ROOT_STATE ($transcripts transcripts), queues, account folders"
}
check "dpkg -P: the package's conffile goes, what operators and sessions wrote stays" check_purge

# ---------------------------------------------------------------- end

if [ "${SYSTEMD_TEST_HOLD:-0}" = 1 ]; then
    touch "$work/hold"
    say "SYSTEMD_TEST_HOLD=1: the container runs on until $work/hold is removed (1 h at most); inside it:"
    say "  nsenter -t $PID1 -m -p -C -u -i -n -r -w bash"
    wait_for 3600 test ! -e "$work/hold" || true
fi
echo
say "poweroff and teardown"
trap - EXIT INT TERM
if teardown; then
    passed=$((passed + 1))
    printf 'PASS %-62s\n' "teardown: no process, mount or cgroup left; host /tmp intact"
else
    failed=$((failed + 1))
    failures+=("teardown")
    printf 'FAIL teardown left something on the host (above)\n'
fi
if [ $failed -eq 0 ] && [ "$KEEP_WORK" != 1 ]; then
    rm -rf "$work"
else
    say "work folder kept: $work (journal.txt: the container's journal)"
fi
say "done in $((SECONDS - START)) s"
[ $failed -eq 0 ] || printf 'failed: %s\n' "${failures[*]}"
echo "systemd-test: $passed passed, $failed failed"
[ $failed -eq 0 ]
