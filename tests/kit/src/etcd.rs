//! A real etcd cluster on loopback for the fleet tests: members started
//! from Debian's `etcd-server` package (`/usr/bin/etcd`, or `CF_ETCD`),
//! each with its own data folder, client and peer port; members can be
//! stopped (SIGKILL) and started again on their data. Raw reads and writes
//! go through the v3 JSON gateway with the kit's one HTTP client.
//!
//! A cluster can be secured as an operator would ([`Security`]): TLS on the
//! client URLs with `--client-cert-auth` (certificates made with `openssl`
//! for the test), or etcd's users (`auth enable`, a user whose role may
//! only read and write under the fleet's prefix). The kit itself then goes
//! through a second, plain listener of each member (TLS) or signs in as
//! `root` (users).

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
    /// The kit's own plain listener (the client port itself without TLS).
    admin_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// How a cluster is secured.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// https client URLs; every client must show a certificate the test CA signed.
    pub tls: bool,
    /// etcd's users are on: this user (and password) may read and write
    /// under `prefix` only.
    pub user: Option<User>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub prefix: String,
}

/// The PEM files of a TLS cluster: the CA, and a client certificate and key
/// the cluster takes.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

const ROOT_PASSWORD: &str = "kit-root-password";

/// Members are killed when it drops.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    token: String,
    security: Security,
    tls: Option<TlsFiles>,
}

impl EtcdCluster {
    /// `n` members under `dir`, started and healthy.
    pub fn start(dir: &Path, n: usize) -> EtcdCluster {
        EtcdCluster::secured(dir, n, Security::default())
    }

    /// `n` members under `dir`, secured as `security` says, started and healthy.
    pub fn secured(dir: &Path, n: usize, security: Security) -> EtcdCluster {
        let members = (0..n)
            .map(|i| {
                let client_port = free_port();
                let admin_port = if security.tls { free_port() } else { client_port };
                Member { name: format!("m{i}"), client_port, admin_port, peer_port: free_port(), child: None }
            })
            .collect();
        let dir = dir.join("etcd");
        let tls = security.tls.then(|| make_certificates(&dir.join("tls")));
        let mut cluster = EtcdCluster { members, dir, token: super::unique_name("cf-etcd"), security, tls };
        for i in 0..n {
            cluster.start_member(i);
        }
        cluster.wait_healthy();
        if let Some(user) = cluster.security.user.clone() {
            cluster.enable_users(&user);
        }
        cluster
    }

    /// The client URLs, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.security.tls { "https" } else { "http" };
        self.members.iter().map(|m| format!("{scheme}://127.0.0.1:{}", m.client_port)).collect()
    }

    /// The CA and a client certificate of a TLS cluster.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// `root` with the root role, `user` with a role that may read and
    /// write under its prefix only, then `auth enable`.
    fn enable_users(&self, user: &User) {
        let end = {
            let mut end = user.prefix.as_bytes().to_vec();
            *end.last_mut().expect("a prefix") += 1;
            end
        };
        let role = format!("{}-role", user.name);
        let steps = [
            ("/v3/auth/user/add", json!({"name": "root", "password": ROOT_PASSWORD})),
            ("/v3/auth/user/grant", json!({"user": "root", "role": "root"})),
            ("/v3/auth/role/add", json!({"name": role})),
            (
                "/v3/auth/role/grant",
                json!({"name": role, "perm": {"key": b64(user.prefix.as_bytes()), "range_end": b64(&end), "permType": "READWRITE"}}),
            ),
            ("/v3/auth/user/add", json!({"name": user.name, "password": user.password})),
            ("/v3/auth/user/grant", json!({"user": user.name, "role": role})),
            ("/v3/auth/enable", json!({})),
        ];
        for (path, body) in steps {
            self.post(self.any_port(), path, &body).unwrap_or_else(|| panic!("etcd {path} {body}"));
        }
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
        let scheme = if self.security.tls { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let mut listen = client.clone();
        if m.admin_port != m.client_port {
            listen = format!("{client},http://127.0.0.1:{}", m.admin_port);
        }
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new(binary());
        if let Some(tls) = &self.tls {
            let dir = tls.ca.parent().expect("tls folder");
            command
                .arg("--cert-file")
                .arg(dir.join("server.pem"))
                .arg("--key-file")
                .arg(dir.join("server.key"))
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &listen, "--advertise-client-urls", &client])
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
                .all(|m| super::http::get_json(m.admin_port, "/health").is_some_and(|v| v["health"] == "true"))
                .then_some(())
        });
    }

    /// The index of the leader, per the first running member that knows.
    pub fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Some(status) = self.post(m.admin_port, "/v3/maintenance/status", &json!({})) else { continue };
            let leader = status["leader"].as_str().unwrap_or_default().to_string();
            for (i, other) in self.members.iter().enumerate() {
                let s = self.post(other.admin_port, "/v3/maintenance/status", &json!({}));
                if s.is_some_and(|s| s["header"]["member_id"].as_str() == Some(leader.as_str())) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// A call through a member's plain listener, as `root` once users are on
    /// (signed in afresh each time: tokens are the member's own).
    fn post(&self, port: u16, path: &str, body: &Value) -> Option<Value> {
        let call = |token: Option<&str>| {
            let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
            let (code, text) = super::http::request(port, "POST", path, Some(&body.to_string()), &headers).ok()?;
            let value: Value = serde_json::from_str(&text).ok()?;
            (code == 200 && value.get("error").is_none()).then_some(value)
        };
        if let Some(answer) = call(None) {
            return Some(answer);
        }
        let root = json!({"name": "root", "password": ROOT_PASSWORD}).to_string();
        let (_, text) = super::http::request(port, "POST", "/v3/auth/authenticate", Some(&root), &[]).ok()?;
        let token = serde_json::from_str::<Value>(&text).ok()?["token"].as_str()?.to_string();
        call(Some(&token))
    }

    fn any_port(&self) -> u16 {
        self.members.iter().find(|m| m.child.is_some()).expect("a running member").admin_port
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

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with `openssl` under `dir`.
fn make_certificates(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).expect("tls folder");
    std::fs::write(
        dir.join("ext.cnf"),
        "[server]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n\
         [client]\nextendedKeyUsage=clientAuth\n",
    )
    .expect("openssl extensions");
    let openssl = |args: &[&str]| {
        let out =
            Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (apt-get install openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=kit-ca"]]
            .concat(),
    );
    for name in ["server", "client"] {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]].concat());
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-extensions",
            name,
        ]);
    }
    TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("client.pem"), key: dir.join("client.key") }
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
