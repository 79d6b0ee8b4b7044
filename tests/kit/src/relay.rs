//! A TCP relay on loopback that a test can cut and heal: a network partition
//! between one daemon and a real server (an etcd member) without touching
//! the machine's network. Cut, it behaves as a dropped link does: the
//! connections it carried go silent (nothing more is relayed either way,
//! nothing is closed on the daemon's side) and new ones are accepted but
//! never answered, so the daemon meets its own timeouts. Healed, it relays
//! new connections again; the silent ones are closed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Links {
    /// The relay's connections to the server, shut down on a cut.
    upstream: Vec<TcpStream>,
    /// Daemon-side connections left silent by a cut, closed on a heal.
    parked: Vec<TcpStream>,
}

pub struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    links: Arc<Mutex<Links>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Relays `127.0.0.1:<free port>` to `target` (`http://host:port` or `host:port`).
    pub fn start(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay port");
        let port = listener.local_addr().expect("relay address").port();
        let (cut, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let links = Arc::new(Mutex::new(Links::default()));
        let (c, s, l) = (cut.clone(), stop.clone(), links.clone());
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    lock(&l).parked.push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else { continue };
                relay(client, server, &c, &l);
            }
        });
        Relay { port, cut, stop, links, thread: Some(thread) }
    }

    /// The address a daemon is given instead of the server's.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The link drops: nothing more goes through.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in lock(&self.links).upstream.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// The link is back for new connections.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        for s in lock(&self.links).parked.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        self.heal();
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(links: &Mutex<Links>) -> std::sync::MutexGuard<'_, Links> {
    links.lock().unwrap_or_else(|e| e.into_inner())
}

/// Copies both ways on two threads. When a copy ends because of a cut, the
/// daemon's side is parked (left open and silent), not closed.
fn relay(client: TcpStream, server: TcpStream, cut: &Arc<AtomicBool>, links: &Arc<Mutex<Links>>) {
    let (Ok(client2), Ok(server2), Ok(kept)) = (client.try_clone(), server.try_clone(), server.try_clone()) else {
        return;
    };
    lock(links).upstream.push(kept);
    for (from, to) in [(client, server), (server2, client2)] {
        let (cut, links) = (cut.clone(), links.clone());
        std::thread::spawn(move || {
            copy(&from, &to);
            if cut.load(Ordering::SeqCst) {
                // Whichever side is the daemon's stays open until a heal.
                let mut l = lock(&links);
                l.parked.extend(from.try_clone().ok());
                l.parked.extend(to.try_clone().ok());
            } else {
                let _ = to.shutdown(Shutdown::Write);
            }
        });
    }
}

fn copy(mut from: &TcpStream, mut to: &TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
