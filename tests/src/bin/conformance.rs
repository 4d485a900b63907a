//! Runs the conformance sessions against a chat server at HOST:PORT (the
//! embassy server in `scripts/embassy-e2e.sh`, or any other):
//!
//! ```text
//! cargo run -p roomwire-tests --bin conformance -- 127.0.0.1:8080
//! ```
//!
//! Prints one line per session; exits with 1 if any failed.

use roomwire_tests::conformance::{Tcp, run};

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: conformance HOST:PORT");
        std::process::exit(2);
    };
    let mut failed = 0;
    for (name, outcome) in run(&mut Tcp(addr)) {
        match outcome {
            Ok(()) => println!("PASS  {name}"),
            Err(e) => {
                failed += 1;
                println!("FAIL  {name}: {e}");
            }
        }
    }
    println!("{failed} failed");
    std::process::exit(i32::from(failed > 0));
}
