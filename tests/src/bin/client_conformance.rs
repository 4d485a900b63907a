//! Runs the client conformance sessions against clients started as
//! processes: `client_conformance IP PROGRAM [ARGS…]` listens on `IP` and
//! starts, for each session, `PROGRAM ARGS… --server HOST:PORT --wire W
//! --rooms A,B --silent` (the embassy TAP node does, in
//! `scripts/embassy-e2e.sh`), killing it when the session ends. Exits
//! non-zero if a session fails. What the client printed is kept and shown
//! for a session that fails, with the time the session took, so that a
//! failure seen once can be read from the log (`CLIENT_CONFORMANCE_SHOW=1`
//! shows it for every session).

use std::any::Any;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use roomwire_core::WireFormat;
use roomwire_tests::client_conformance::{self, Launch};
use roomwire_tests::conformance::print_report;

struct Processes {
    ip: String,
    program: String,
    args: Vec<String>,
    /// Where the current session's client writes its output.
    log: PathBuf,
}

/// The client process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Launch for Processes {
    fn launch(&mut self, url: &str, wire: WireFormat, rooms: &[&str]) -> Box<dyn Any> {
        let server = url.trim_start_matches("ws://");
        let wire = match wire {
            WireFormat::Json => "json",
            WireFormat::Postcard => "postcard",
            WireFormat::Alepha => "alepha",
        };
        let output = File::create(&self.log).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
        let child = Command::new(&self.program)
            .args(&self.args)
            .args(["--server", server, "--wire", wire, "--rooms", &rooms.join(","), "--silent"])
            .stdout(output)
            .spawn()
            .expect("start the client");
        Box::new(Process(child))
    }

    fn server_ip(&self) -> &str {
        &self.ip
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(ip), Some(program)) = (args.next(), args.next()) else {
        eprintln!("usage: client_conformance IP PROGRAM [ARGS…]");
        std::process::exit(2);
    };
    let log = std::env::temp_dir().join(format!("client-conformance-{}.log", std::process::id()));
    let mut launch = Processes { ip, program, args: args.collect(), log: log.clone() };
    let show_all = std::env::var_os("CLIENT_CONFORMANCE_SHOW").is_some();
    let results = client_conformance::run_observed(&mut launch, |name, outcome, took| {
        if outcome.is_err() || show_all {
            // The session's client has been killed: its output is whole.
            let printed = std::fs::read_to_string(&log).unwrap_or_default();
            let verdict = if outcome.is_err() { "failed" } else { "passed" };
            eprintln!("{name}: {verdict} after {took:.2?}; the client printed:\n{printed}");
        }
        // Each launch creates the file anew; the last one goes too.
        let _ = std::fs::remove_file(&log);
    });
    std::process::exit(print_report(results));
}
