//! Runs the client conformance sessions against clients started as
//! processes: `client_conformance IP PROGRAM [ARGS…]` listens on `IP` and
//! starts, for each session, `PROGRAM ARGS… --server HOST:PORT --wire W
//! --rooms A,B --silent` (the embassy TAP node does, in
//! `scripts/embassy-e2e.sh`), killing it when the session ends. Exits
//! non-zero if a session fails.

use std::any::Any;
use std::process::{Child, Command, Stdio};

use roomwire_core::WireFormat;
use roomwire_tests::client_conformance::{self, Launch};
use roomwire_tests::conformance::print_report;

struct Processes {
    ip: String,
    program: String,
    args: Vec<String>,
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
        let child = Command::new(&self.program)
            .args(&self.args)
            .args(["--server", server, "--wire", wire, "--rooms", &rooms.join(","), "--silent"])
            .stdout(Stdio::null())
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
    let mut launch = Processes { ip, program, args: args.collect() };
    std::process::exit(print_report(client_conformance::run(&mut launch)));
}
