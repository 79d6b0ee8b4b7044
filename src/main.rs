fn main() {
    println!("claude-failover {}", env!("CARGO_PKG_VERSION"));
}
