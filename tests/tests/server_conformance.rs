//! The conformance sessions (`roomwire_tests::conformance`) against the
//! tokio server, and against the core alone over an in-memory transport.
//! The embassy server runs the same sessions in `scripts/embassy-e2e.sh`.

use roomwire_tests::conformance::{self, Tcp};
use roomwire_tests::core_server::CoreServer;

fn report(server: &str, results: Vec<(&'static str, Result<(), conformance::Failure>)>) {
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(name, outcome)| outcome.err().map(|e| format!("{server}: {name}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{} session(s) failed:\n{}", failed.len(), failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokio_server_conforms() {
    use roomwire_tokio::server::Server;
    let server = Server::builder().endpoint(roomwire_tests::chat::tokio_endpoint()).build().expect("valid endpoints");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    let results = tokio::task::spawn_blocking(move || conformance::run(&mut Tcp(addr))).await.expect("sessions");
    server.shutdown().await;
    serving.abort();
    report("tokio", results);
}

#[test]
fn the_core_alone_conforms() {
    report("core", conformance::run(&mut CoreServer::default()));
}
