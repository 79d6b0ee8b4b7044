//! Loopback ports for servers a test starts.

use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback port for a server a test starts and may restart on the same
/// port (the daemon under test). Not `bind(0)`-then-drop, whose port the
/// kernel hands to the next outgoing connection (a Claude Code request, say)
/// between the drop and the daemon's bind, or between a kill and a restart:
/// a port picked below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), where no outgoing connection
/// takes one, that is free now. (The EADDRINUSE once seen at a restart was
/// the kernel holding the port a moment; the daemon retries its bind.)
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (first, span) = (10_000u32, low.saturating_sub(10_000).max(1));
    static TURN: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut pick = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..500 {
        pick = pick.wrapping_mul(1_103_515_245).wrapping_add(12_345 + TURN.fetch_add(1, Ordering::Relaxed));
        let port = (first + (pick >> 8) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {first}..{} after 500 tries", first + span)
}
