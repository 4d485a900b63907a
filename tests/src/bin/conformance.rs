//! Runs the conformance sessions against a chat server at HOST:PORT (the
//! embassy server in `scripts/embassy-e2e.sh`, or any other):
//!
//! ```text
//! cargo run -p roomwire-tests --bin conformance -- 127.0.0.1:8080
//! ```
//!
//! Prints one line per session; exits with 1 if any failed.

use roomwire_tests::conformance::{Tcp, print_report, run};

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: conformance HOST:PORT");
        std::process::exit(2);
    };
    std::process::exit(print_report(run(&mut Tcp(addr))));
}
