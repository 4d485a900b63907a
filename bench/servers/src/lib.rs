//! Shared by the bench servers: the listen address and the readiness line
//! `scripts/bench.sh` waits for.
//!
//! Every server here is single-threaded (`#[tokio::main(flavor =
//! "current_thread")]`), takes its address as the first argument (default
//! `127.0.0.1:9001`) and prints `listening on ADDR` once it accepts.

/// The address to listen on: the first argument.
pub fn addr() -> String {
    std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned())
}

/// Tell the harness the server is ready.
pub fn ready(addr: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}
