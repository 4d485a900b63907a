//! wss:// through tokio-rustls: the room server serving TLS streams.
//!
//! ```text
//! cargo run -p roomwire-tokio --example tls                                   # round trip, then exit
//! cargo run -p roomwire-tokio --example tls -- --listen 127.0.0.1:8443 cert.pem  # serve until Ctrl-C
//! ```
//!
//! A self-signed certificate for `localhost` is generated at start (rcgen).
//! Without arguments the example serves it on a free port, connects a
//! rustls client that trusts it, exchanges a message in a room and exits.
//! With `--listen ADDR CERT` it writes the certificate (PEM) to `CERT` and
//! serves `wss://localhost:PORT/ws/echo` until Ctrl-C; any client trusting
//! `CERT` can connect, e.g. `websocat --ca-file cert.pem wss://localhost:8443/ws/echo`
//! if your tool supports it.
//!
//! The server side is [`Server::serve_stream`]: accept TCP, run the TLS
//! handshake, hand the TLS stream over. Nothing else changes.

use std::borrow::Cow;
use std::sync::Arc;

use roomwire_tokio::server::{Endpoint, Server};
use roomwire_tokio::{ClientRequest, Config, Message, MessageRef, WebSocket};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

/// Client → server and back.
#[derive(Debug, Serialize, Deserialize)]
pub struct Text<'a> {
    /// The text.
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

roomwire_tokio::roomwire_core::channel! {
    /// Echo to the room, the sender included.
    pub struct Echo { path: "/ws/echo", in: Text<'a>, out: Text<'a> }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;

    let server = Server::builder()
        .endpoint(Endpoint::<Echo>::new(|ctx| {
            Box::pin(async move {
                ctx.reply(&Text { text: ctx.message.text.clone() })?;
                Ok(())
            })
        }))
        .build()?;

    if let [flag, addr, cert_path] = args.as_slice()
        && flag == "--listen"
    {
        std::fs::write(cert_path, certified.cert.pem())?;
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        println!("serving wss://localhost:{port}/ws/echo (certificate in {cert_path}); Ctrl-C to stop");
        tokio::select! {
            served = server.serve_tls(listener, tokio_rustls::TlsAcceptor::from(Arc::new(tls))) => served?,
            _ = tokio::signal::ctrl_c() => server.shutdown().await,
        }
        return Ok(());
    }
    if !args.is_empty() {
        eprintln!("usage: tls [--listen ADDR CERT.pem]");
        std::process::exit(2);
    }

    // Round trip: serve on a free port, connect a client trusting the certificate.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let serving = server.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move { serving.serve_tls(listener, acceptor).await });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let stream =
        tokio_rustls::TlsConnector::from(Arc::new(client)).connect(ServerName::try_from("localhost")?, tcp).await?;
    let host = format!("localhost:{port}");
    let request = ClientRequest { host: &host, target: "/ws/echo?roomId=tls", protocols: &[], headers: &[] };
    let (mut ws, _) = WebSocket::connect_with_stream(stream, &request, Config::default()).await?;
    ws.send(MessageRef::Text(r#"{"roomId":"tls","message":{"text":"hello over wss"}}"#)).await?;
    match ws.recv().await {
        Some(Ok(Message::Text(reply))) => println!("wss://localhost:{port}/ws/echo answered: {reply}"),
        other => return Err(format!("unexpected answer: {other:?}").into()),
    }
    ws.close(roomwire_tokio::CloseCode::Normal, "done").await?;
    while ws.recv().await.is_some() {}
    server.shutdown().await;
    Ok(())
}
