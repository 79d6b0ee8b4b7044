//! A real etcd cluster on loopback for the fleet tests: members started
//! from Debian's `etcd-server` package (`/usr/bin/etcd`, or `CF_ETCD`),
//! each with its own data folder, client and peer port; members can be
//! stopped (SIGKILL) and started again on their data. Raw reads and writes
//! go through the v3 JSON gateway with the kit's one HTTP client.

use super::{free_port, wait_until};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The etcd binary: `CF_ETCD`, else Debian's. Panics with how to get it.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("CF_ETCD").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: the fleet tests need a real etcd (apt-get install etcd-server, as .ci/run does)",
        path.display()
    );
    path
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// Members are killed when it drops.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    token: String,
}

impl EtcdCluster {
    /// `n` members under `dir`, started and healthy.
    pub fn start(dir: &Path, n: usize) -> EtcdCluster {
        let members = (0..n)
            .map(|i| Member { name: format!("m{i}"), client_port: free_port(), peer_port: free_port(), child: None })
            .collect();
        let mut cluster = EtcdCluster { members, dir: dir.join("etcd"), token: super::unique_name("cf-etcd") };
        for i in 0..n {
            cluster.start_member(i);
        }
        cluster.wait_healthy();
        cluster
    }

    /// The client URLs, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect()
    }

    /// Starts member `i` (on its data folder, if it ran before).
    pub fn start_member(&mut self, i: usize) {
        let cluster: Vec<String> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        std::fs::create_dir_all(&self.dir).expect("etcd folder");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))
            .expect("etcd log");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(binary())
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        self.members[i].child = Some(child);
    }

    /// SIGKILL to member `i`.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }

    pub fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.start_member(i);
            }
        }
        self.wait_healthy();
    }

    /// Every running member answers `/health` with a leader.
    pub fn wait_healthy(&self) {
        wait_until(Duration::from_secs(60), "every etcd member healthy", || {
            self.members
                .iter()
                .filter(|m| m.child.is_some())
                .all(|m| super::http::get_json(m.client_port, "/health").is_some_and(|v| v["health"] == "true"))
                .then_some(())
        });
    }

    /// The index of the leader, per the first running member that knows.
    pub fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Some(status) = self.post(m.client_port, "/v3/maintenance/status", &json!({})) else { continue };
            let leader = status["leader"].as_str().unwrap_or_default().to_string();
            for (i, other) in self.members.iter().enumerate() {
                let s = self.post(other.client_port, "/v3/maintenance/status", &json!({}));
                if s.is_some_and(|s| s["header"]["member_id"].as_str() == Some(leader.as_str())) {
                    return Some(i);
                }
            }
        }
        None
    }

    fn post(&self, port: u16, path: &str, body: &Value) -> Option<Value> {
        let (code, text) = super::http::request(port, "POST", path, Some(&body.to_string()), &[]).ok()?;
        (code == 200).then(|| serde_json::from_str(&text).ok()).flatten()
    }

    fn any_port(&self) -> u16 {
        self.members.iter().find(|m| m.child.is_some()).expect("a running member").client_port
    }

    /// Writes `value` at `key` (raw bytes: garbage too).
    pub fn put(&self, key: &str, value: &[u8]) {
        let body = json!({"key": b64(key.as_bytes()), "value": b64(value)});
        self.post(self.any_port(), "/v3/kv/put", &body).unwrap_or_else(|| panic!("etcd put {key}"));
    }

    /// Every key under `prefix` with its value as text.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("a prefix") += 1;
        let body = json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)});
        let answer = self.post(self.any_port(), "/v3/kv/range", &body).unwrap_or_else(|| panic!("etcd range {prefix}"));
        let text = |v: &Value| String::from_utf8_lossy(&unb64(v.as_str().unwrap_or_default())).into_owned();
        answer["kvs"].as_array().into_iter().flatten().map(|kv| (text(&kv["key"]), text(&kv["value"]))).collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn unb64(text: &str) -> Vec<u8> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else { break };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
