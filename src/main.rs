fn main() {
    std::process::exit(claude_failover::cli::main(std::env::args().collect()));
}
