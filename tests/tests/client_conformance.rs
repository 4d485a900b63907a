//! The client conformance sessions (`roomwire_tests::client_conformance`)
//! against the core's session alone and against the tokio client. The
//! embassy client runs them in `scripts/embassy-e2e.sh`.

use std::any::Any;

use roomwire_core::WireFormat;
use roomwire_tests::chat::Chat;
use roomwire_tests::client_conformance::{self, Launch};
use roomwire_tests::conformance::Outcome;
use roomwire_tests::session_client::SessionClients;
use roomwire_tokio::client::{Client, ClientOptions};

fn report(client: &str, results: Vec<(&'static str, Outcome)>) {
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(name, outcome)| outcome.err().map(|e| format!("{client}: {name}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{} session(s) failed:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn the_core_session_conforms() {
    report("core session", client_conformance::run(&mut SessionClients));
}

/// Tokio clients on a runtime of their own.
struct TokioClients(tokio::runtime::Runtime);

impl Launch for TokioClients {
    fn launch(&mut self, url: &str, wire: WireFormat, rooms: &[&str]) -> Box<dyn Any> {
        let _entered = self.0.enter();
        let options = ClientOptions::new().wire(wire).rooms(rooms.iter().copied());
        let (client, incoming) = Client::<Chat>::connect(url, options).expect("valid options");
        Box::new((client, incoming))
    }
}

#[test]
fn the_tokio_client_conforms() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    report("tokio client", client_conformance::run(&mut TokioClients(runtime)));
}
