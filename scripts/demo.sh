#!/usr/bin/env bash
# make demo: a pool of real Claude Code sessions driven by claude-failover against a
# fake Anthropic API on loopback, with two accounts. Tasks are done on the first
# account, the first account then runs out of quota, and the daemon moves every
# session to the second one, where the remaining tasks are done.
#
# Usage: scripts/demo.sh          run the demo, clean up at the end (also on Ctrl-C)
#        KEEP=1 scripts/demo.sh   leave the daemon, tmux and the fake API running
#        scripts/demo.sh stop     stop what a KEEP=1 run left running
#
# It does not build: `make demo` builds first. Environment (all optional):
#   DEMO_DIR       where everything lives (default build/demo; wiped at start)
#   CF_BIN         claude-failover binary (default target/debug/claude-failover)
#   FAKE_API_BIN   fake API program (default target/debug/examples/fake_api)
#   FAKE_API_URL   use this already running fake API instead of starting one
#   CLAUDE_BIN     Claude Code (default build/claude-code/node_modules/.bin/claude)
#   DEMO_SOCKET    tmux socket name (default claude-failover-demo)
#   SCENARIO       threshold (default): the usage endpoint reports 95 % for the first
#                  account, so the daemon swaps before the limit is hit;
#                  hard_limit: the fake API starts refusing the first account's
#                  requests with a quota 429 while tasks are in flight
#   SWAP_DEADLINE_SECS  how long to wait for the swap (default 60)
#   KEEP           1: leave it running at the end
# Needs: tmux 3.2+, node (also what installs Claude Code), curl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_DIR=${DEMO_DIR:-$ROOT/build/demo}
CF_BIN=${CF_BIN:-$ROOT/target/debug/claude-failover}
FAKE_API_BIN=${FAKE_API_BIN:-$ROOT/target/debug/examples/fake_api}
FAKE_API_URL=${FAKE_API_URL:-}
CLAUDE_BIN=${CLAUDE_BIN:-$ROOT/build/claude-code/node_modules/.bin/claude}
DEMO_SOCKET=${DEMO_SOCKET:-claude-failover-demo}
SCENARIO=${SCENARIO:-threshold}
SWAP_DEADLINE_SECS=${SWAP_DEADLINE_SECS:-60}
KEEP=${KEEP:-0}

ACCOUNTS=(alpha beta)
SESSIONS=(demo-1 demo-2)
PROJECT_NAME=demo
TOKEN_PREFIX=sk-ant-oat01-DEMO-

# ---------------------------------------------------------------- helpers

START=$SECONDS
say() { printf '[%3ds] %s\n' $((SECONDS - START)) "$*"; }
heading() { printf '\n[%3ds] == %s\n' $((SECONDS - START)) "$*"; }
indent() { sed 's/^/        /'; }

fail() {
    printf '\ndemo: FAILED: %s\n' "$*" >&2
    if [ -s "${DEMO_DIR}/daemon.log" ]; then
        printf '\nlast lines of %s:\n' "$DEMO_DIR/daemon.log" >&2
        # ureq's own debug lines are noise here.
        grep -v ' DEBUG ureq' "$DEMO_DIR/daemon.log" | tail -n 25 | indent >&2
    fi
    exit 1
}

# jsq EXPR: prints EXPR evaluated with `d` bound to the JSON document on stdin
# (objects as JSON, null/undefined as nothing). node is there anyway: it is what
# installs Claude Code.
jsq() {
    node -e '
        let t = "";
        process.stdin.on("data", c => t += c).on("end", () => {
            const d = JSON.parse(t);
            const v = (0, eval)("(d) => (" + process.argv[1] + ")")(d);
            if (v !== undefined && v !== null) console.log(typeof v === "object" ? JSON.stringify(v) : String(v));
        });' "$1"
}

# wait_until SECS WHAT CMD...: runs CMD every half second until it succeeds;
# fails the demo naming WHAT after SECS.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || fail "$what did not happen within $secs s"
        sleep 0.5
    done
}

# A free loopback port: bound by the system, then released.
free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

cf() { "$CF_BIN" "$@" --config "$DEMO_DIR/config.toml"; }
status_json() { cf status --json 2>/dev/null; }

fake_control() { # WHAT JSON
    curl -fsS -X POST -H 'Content-Type: application/json' --data "$2" "$FAKE_API_URL/_control/$1" >/dev/null ||
        fail "the fake API at $FAKE_API_URL refused /_control/$1"
}

# Is PID still the process we started (not a recycled pid)?
is_ours() { # PID NAME
    [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

# stop_all: ends what run.env names: the daemon (SIGTERM, then SIGKILL after
# 10 s), the demo's tmux server (every Claude Code session), the event follower
# and the fake API if this script started it.
stop_all() {
    local env=$DEMO_DIR/run.env
    [ -f "$env" ] || return 0
    local DAEMON_PID='' FAKE_PID='' FOLLOW_PID='' SOCKET=''
    # shellcheck disable=SC1090
    . "$env"
    if is_ours "$DAEMON_PID" claude-failover; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        local i
        for i in $(seq 100); do is_ours "$DAEMON_PID" claude-failover || break; sleep 0.1; done
        if is_ours "$DAEMON_PID" claude-failover; then
            echo "demo: the daemon did not stop within 10 s of SIGTERM; killing it" >&2
            kill -KILL "$DAEMON_PID" 2>/dev/null || true
        fi
    fi
    if [ -n "$SOCKET" ]; then
        # Claude Code still writes to its folders for a moment after its pane
        # goes: wait for the pane processes, so nothing runs (or writes) after us.
        local panes pid i
        panes=$(tmux -L "$SOCKET" list-panes -a -F '#{pane_pid}' 2>/dev/null || true)
        tmux -L "$SOCKET" kill-server 2>/dev/null || true
        for pid in $panes; do
            for i in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
        done
    fi
    is_ours "$FOLLOW_PID" node && kill "$FOLLOW_PID" 2>/dev/null || true
    is_ours "$FAKE_PID" fake_api && kill "$FAKE_PID" 2>/dev/null || true
    rm -f "$env"
}

record() { # KEY VALUE: remembered in run.env for stop_all
    printf '%s=%q\n' "$1" "$2" >>"$DEMO_DIR/run.env"
}

if [ "${1:-}" = stop ]; then
    stop_all
    echo "demo: stopped what ran in $DEMO_DIR"
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: scripts/demo.sh [stop]" >&2; exit 2; }

finished=0
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$KEEP" = 1 ] && [ $finished = 1 ]; then
        return
    fi
    stop_all
    [ $rc -eq 0 ] || echo "demo: cleaned up (files kept in $DEMO_DIR)" >&2
    exit $rc
}
trap on_exit EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- checks

for tool in tmux node curl; do
    command -v $tool >/dev/null || fail "$tool is not installed (see the README's prerequisites)"
done
[ -x "$CF_BIN" ] || fail "$CF_BIN is missing: build it with 'make demo' or 'cargo build'"
[ -n "$FAKE_API_URL" ] || [ -x "$FAKE_API_BIN" ] ||
    fail "$FAKE_API_BIN is missing: build it with 'cargo build --example fake_api'"
[ -x "$CLAUDE_BIN" ] || fail "Claude Code is not at $CLAUDE_BIN: run 'make claude-code'"
case $SCENARIO in threshold | hard_limit) ;; *) fail "SCENARIO must be threshold or hard_limit, not $SCENARIO" ;; esac
# These would override the account's credentials file in every session.
unset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN CLAUDE_CODE_OAUTH_TOKEN CLAUDE_CONFIG_DIR

stop_all # a previous KEEP=1 run in the same folder
rm -rf "$DEMO_DIR" 2>/dev/null || { sleep 1; rm -rf "$DEMO_DIR"; }
mkdir -p "$DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
PROJECT=$DEMO_DIR/project
QUEUE=$PROJECT/.agent-queue
record SOCKET "$DEMO_SOCKET"

heading "claude-failover demo: $("$CF_BIN" --version), Claude Code $("$CLAUDE_BIN" --version 2>/dev/null | head -n 1)"
say "everything lives in $DEMO_DIR"

# ---------------------------------------------------------------- fake API

if [ -z "$FAKE_API_URL" ]; then
    "$FAKE_API_BIN" --port 0 --port-file "$DEMO_DIR/fake_api.url" >"$DEMO_DIR/fake_api.log" 2>&1 &
    record FAKE_PID $!
    wait_until 20 "the fake API's start" test -s "$DEMO_DIR/fake_api.url"
    FAKE_API_URL=$(cat "$DEMO_DIR/fake_api.url")
fi
say "fake Anthropic API (Messages + usage endpoint) at $FAKE_API_URL"

# ---------------------------------------------------------------- accounts, config

mkdir -p "$QUEUE/inbox"
expires_ms=$(( ($(date +%s) + 8 * 3600) * 1000 ))
for account in "${ACCOUNTS[@]}"; do
    dir=$DEMO_DIR/accounts/$account
    mkdir -p "$dir"
    token=$TOKEN_PREFIX${account^^}
    (
        umask 077
        printf '{"claudeAiOauth":{"accessToken":"%s","refreshToken":"sk-ant-ort01-DEMO-%s","expiresAt":%s,"scopes":["user:inference","user:profile"],"subscriptionType":"max"}}\n' \
            "$token" "${account^^}" "$expires_ms" >"$dir/.credentials.json"
    )
    printf '{"hasCompletedOnboarding":true,"theme":"dark","projects":{"%s":{"hasTrustDialogAccepted":true}}}\n' \
        "$PROJECT" >"$dir/.claude.json"
    fake_control usage "{\"token\":\"$token\",\"five_hour\":20,\"seven_day\":10}"
done
say "accounts: ${ACCOUNTS[*]} (Claude Code config folders under $DEMO_DIR/accounts, each its own token)"

HTTP_PORT=$(free_port)
{
    cat <<EOF
# Written by scripts/demo.sh.
state_dir = "$DEMO_DIR/state"

[claude]
binary = "$CLAUDE_BIN"
shared_projects_dir = "$DEMO_DIR/shared-projects"
startup_timeout_secs = 30
stop_timeout_secs = 10

[claude.env]
ANTHROPIC_BASE_URL = "$FAKE_API_URL"
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"
DISABLE_TELEMETRY = "1"
DISABLE_AUTOUPDATER = "1"

[tmux]
socket_name = "$DEMO_SOCKET"
width = 120
height = 40

[quota]
usage_url = "$FAKE_API_URL/api/oauth/usage"
poll_interval_secs = 2
request_timeout_secs = 5
min_dwell_secs = 0

[dispatch]
settle_secs = 2

[http]
listen = "127.0.0.1:$HTTP_PORT"
EOF
    for account in "${ACCOUNTS[@]}"; do
        printf '\n[[accounts]]\nname = "%s"\nconfig_dir = "%s"\n' "$account" "$DEMO_DIR/accounts/$account"
    done
    printf '\n[[projects]]\nname = "%s"\npath = "%s"\n' "$PROJECT_NAME" "$PROJECT"
    for session in "${SESSIONS[@]}"; do
        printf '\n[[sessions]]\nname = "%s"\nproject = "%s"\n' "$session" "$PROJECT_NAME"
    done
} >"$DEMO_DIR/config.toml"
cf check-config >/dev/null || fail "the generated config $DEMO_DIR/config.toml does not validate"
say "config: $DEMO_DIR/config.toml (valid; HTTP on 127.0.0.1:$HTTP_PORT, tmux -L $DEMO_SOCKET)"

heading "claude-failover setup"
cf setup 2>&1 | grep -v '^ *$' | indent || fail "setup failed"

# ---------------------------------------------------------------- daemon

heading "starting the daemon and ${#SESSIONS[@]} Claude Code sessions"
RUST_LOG=${RUST_LOG:-info} "$CF_BIN" run --config "$DEMO_DIR/config.toml" \
    </dev/null >/dev/null 2>"$DEMO_DIR/daemon.log" &
DAEMON_PID=$!
record DAEMON_PID "$DAEMON_PID"
daemon_up() {
    # (kill -0, not is_ours: right after the fork the child may not have exec'd yet.)
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon exited at start"
    curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1
}
wait_until 20 "the daemon's /healthz" daemon_up
say "daemon pid $DAEMON_PID, log $DEMO_DIR/daemon.log"

# Events as they come, in the background, until the end.
node -e '
    const [base] = process.argv.slice(1);
    let since = 0;
    const pad = (s, n) => String(s).padEnd(n);
    async function tick() {
        try {
            const r = await fetch(base + "/events?since=" + since);
            const { events } = await r.json();
            for (const e of events) {
                since = Math.max(since, e.seq);
                const at = String(e.at).slice(11, 19);
                console.log(`        event ${at}  ${pad(e.kind, 17)} ${e.message}`);
            }
        } catch (err) { /* the daemon is starting or stopping */ }
        setTimeout(tick, 400);
    }
    tick();' "http://127.0.0.1:$HTTP_PORT" &
record FOLLOW_PID $!

all_sessions() { # STATE: every session in that state
    local n
    n=$(status_json | jsq "d.sessions.filter(s => s.state === '$1').length") || return 1
    [ "$n" = "${#SESSIONS[@]}" ]
}
wait_until 120 "every session reaching its idle prompt" all_sessions idle
say "every session is idle on account $(status_json | jsq 'd.active_account')"
cf status | indent

# ---------------------------------------------------------------- tasks

drop_task() { # NAME TEXT: written aside, then renamed into the inbox
    printf '%s\n' "$2" >"$QUEUE/inbox/.$1.tmp"
    mv "$QUEUE/inbox/.$1.tmp" "$QUEUE/inbox/$1.md"
}
done_count() { find "$QUEUE/done" -maxdepth 1 -name '*.md' 2>/dev/null | wc -l; }
done_at_least() { [ "$(done_count)" -ge "$1" ]; }

FIRST=(
    "01-changelog|Summarise the changes since the last release in CHANGELOG.md."
    "02-flaky-test|Find out why test_login_redirect fails one run in ten and fix it."
    "03-docs|Document the retry settings of the HTTP client in docs/http.md."
    "04-deps|List the dependencies that have a newer major version and what changed."
)
SECOND=(
    "05-bench|Add a benchmark for the queue scan with 10000 tasks."
    "06-typos|Fix the typos in the comments of src/queue/."
    "07-review|Review the open pull request about the janitor and list the risks."
    "08-release|Prepare the release notes for 0.2.0 from the changelog."
)

heading "dropping ${#FIRST[@]} tasks into $QUEUE/inbox/"
for t in "${FIRST[@]}"; do drop_task "${t%%|*}" "${t#*|}"; done
wait_until 120 "the first ${#FIRST[@]} tasks reaching done/" done_at_least ${#FIRST[@]}
say "${#FIRST[@]} tasks done"
cf status | indent

# ---------------------------------------------------------------- the limit

ALPHA_TOKEN=$TOKEN_PREFIX${ACCOUNTS[0]^^}
case $SCENARIO in
    threshold)
        heading "account ${ACCOUNTS[0]} nears its limit: the usage endpoint now reports 95 % of its 5-hour window (threshold 90 %)"
        fake_control usage "{\"token\":\"$ALPHA_TOKEN\",\"five_hour\":95,\"seven_day\":40}"
        ;;
    hard_limit)
        heading "account ${ACCOUNTS[0]} hits its limit: the API refuses its requests (429, 5-hour limit), with tasks in flight"
        fake_control mode "{\"token\":\"$ALPHA_TOKEN\",\"mode\":\"hard_limit\",\"claim\":\"five_hour\"}"
        fake_control usage "{\"token\":\"$ALPHA_TOKEN\",\"five_hour\":100,\"seven_day\":40}"
        for t in "${SECOND[@]}"; do drop_task "${t%%|*}" "${t#*|}"; done
        say "dropped ${#SECOND[@]} more tasks"
        ;;
esac

swap_finished() {
    local s
    s=$(status_json) || return 1
    [ "$(jsq 'd.swap.in_progress === false && d.swap.last && d.swap.last.finished_at ? "yes" : "no"' <<<"$s")" = yes ]
}
deadline=$((SECONDS + SWAP_DEADLINE_SECS))
until swap_finished; do
    if [ $SECONDS -ge $deadline ]; then
        cf status | indent
        now=$(status_json) || fail "the daemon stopped answering /status"
        if [ "$(jsq 'd.swap.in_progress' <<<"$now")" = true ]; then
            fail "a swap to $(jsq 'd.active_account' <<<"$now") started but did not finish within $SWAP_DEADLINE_SECS s of ${ACCOUNTS[0]} reaching its limit (/status swap.in_progress is still true; sessions: $(jsq 'd.sessions.map(s => s.name + " " + s.state + " on " + s.account).join(", ")' <<<"$now"))"
        fi
        fail "no account swap within $SWAP_DEADLINE_SECS s of ${ACCOUNTS[0]} reaching its limit: /status swap.last is $(jsq 'd.swap.last || "null"' <<<"$now") and the active account is still $(jsq 'd.active_account' <<<"$now"). Does this build of the daemon swap accounts yet?"
    fi
    sleep 0.5
done
SWAP=$(status_json | jsq 'd.swap.last')
say "swap finished: $(jsq '`${d.from} -> ${d.to}, reason ${d.reason}, ${d.sessions_moved} sessions moved`' <<<"$SWAP")"
moved=$(jsq 'd.sessions_moved' <<<"$SWAP")
[ "$moved" = "${#SESSIONS[@]}" ] || fail "the swap moved $moved of ${#SESSIONS[@]} sessions (see the failover events above and the log below)"
wait_until 120 "every session idle again after the swap" all_sessions idle
cf status | indent

if [ "$SCENARIO" = threshold ]; then
    heading "dropping ${#SECOND[@]} more tasks"
    for t in "${SECOND[@]}"; do drop_task "${t%%|*}" "${t#*|}"; done
fi
TOTAL=$((${#FIRST[@]} + ${#SECOND[@]}))
wait_until 120 "all $TOTAL tasks reaching done/" done_at_least $TOTAL
say "all $TOTAL tasks done"
cf status | indent
sleep 1 # the follower prints the last events

# ---------------------------------------------------------------- summary

heading "summary"
per_account=$(node -e '
    const fs = require("fs"), path = require("path");
    const dir = process.argv[1], out = {};
    for (const f of fs.readdirSync(dir).filter(f => f.endsWith(".result.json"))) {
        const r = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
        (out[r.account] = out[r.account] || []).push(f.replace(/\.result\.json$/, ""));
    }
    for (const [a, ts] of Object.entries(out).sort()) console.log(`${a}: ${ts.length} (${ts.sort().join(", ")})`);' \
    "$QUEUE/done")
turns=$(curl -fsS "$FAKE_API_URL/_control/requests" | jsq "
    Object.entries(d.reduce((m, r) => (m[r.token] = (m[r.token] || 0) + 1, m), {}))
        .map(([t, n]) => t.replace('$TOKEN_PREFIX', '').toLowerCase() + ' ' + n).sort().join(', ')")
# Per conversation (Claude Code's session id in each request), the accounts whose
# tokens carried its turns, in order: "alpha 2, beta 2" is one conversation resumed.
conversations=$(curl -fsS "$FAKE_API_URL/_control/requests" | jsq "
    Object.entries(d.filter(r => r.session_id).reduce((m, r) => {
        const a = r.token.replace('$TOKEN_PREFIX', '').toLowerCase(), runs = (m[r.session_id] = m[r.session_id] || []);
        if (runs.length && runs[runs.length - 1][0] === a) runs[runs.length - 1][1]++; else runs.push([a, 1]);
        return m;
    }, {})).map(([id, runs]) => '  ' + id + ': ' + runs.map(([a, n]) => a + ' ' + n).join(', then ')).join('\\n')")
failed=$(find "$QUEUE/failed" -maxdepth 1 -name '*.md' 2>/dev/null | wc -l)
echo "tasks done per account:"
printf '%s\n' "$per_account" | sed 's/^/  /'
echo "tasks failed: $failed"
jsq '`swap: from ${d.from} to ${d.to}, reason ${d.reason}, sessions moved ${d.sessions_moved}, ${d.started_at} -> ${d.finished_at}`' <<<"$SWAP"
echo "user turns the fake API served per account token: $turns"
echo "user turns per conversation (Claude Code session id), by account token:"
printf '%s\n' "$conversations"
echo "active account now: $(status_json | jsq 'd.active_account')"
errors=$(grep -c ' ERROR ' "$DEMO_DIR/daemon.log" || true)
echo "daemon log: $errors ERROR lines ($DEMO_DIR/daemon.log)"
echo "run time: $((SECONDS - START)) s"

[ "$failed" -eq 0 ] || fail "$failed tasks went to failed/ (see $QUEUE/failed/*.error.json)"
# The promise: the tasks given after the limit were done on the other account.
to=$(jsq 'd.to' <<<"$SWAP")
for t in "${SECOND[@]}"; do
    name=${t%%|*}
    account=$(jsq 'd.account' <"$QUEUE/done/$name.result.json")
    [ "$account" = "$to" ] || fail "task $name was done on $account, not on $to after the swap"
done

finished=1
if [ "$KEEP" = 1 ]; then
    sleep 0.5
    FOLLOW_PID=$(sed -n 's/^FOLLOW_PID=//p' "$DEMO_DIR/run.env")
    kill "$FOLLOW_PID" 2>/dev/null || true
    stop="make demo-stop    (or scripts/demo.sh stop)"
    [ "$DEMO_DIR" = "$ROOT/build/demo" ] || stop="DEMO_DIR=$DEMO_DIR scripts/demo.sh stop"
    cat <<EOF

The demo is still running (KEEP=1):
  watch a session:    tmux -L $DEMO_SOCKET attach -t ${SESSIONS[0]}     (detach: Ctrl-b d)
  status:             $CF_BIN status --config $DEMO_DIR/config.toml
  events:             curl -s 'http://127.0.0.1:$HTTP_PORT/events?since=0'
  more tasks:         drop NAME.md files into $QUEUE/inbox/
  ${ACCOUNTS[0]}'s window resets (the daemon fails back to its first account):
                      curl -s -X POST -d '{"token":"$ALPHA_TOKEN","five_hour":20}' $FAKE_API_URL/_control/usage
  swap by hand:       $CF_BIN failover --to ${ACCOUNTS[1]} --config $DEMO_DIR/config.toml
  daemon log:         $DEMO_DIR/daemon.log
  stop it all:        $stop
EOF
else
    echo "demo: OK, cleaning up"
fi
