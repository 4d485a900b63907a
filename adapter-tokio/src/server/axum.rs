//! The axum 0.8 integration (feature `axum`): upgrade requests that an
//! existing router received.
//!
//! hyper has already parsed the request; the core still judges it. The
//! request head is handed to a server [`Connection`] exactly as it came
//! (method, target, version, headers), so the core validates the Upgrade
//! and computes the 101 (accept key, subprotocol) as for a connection it
//! reads itself; the adapter only translates the core's 101 into an
//! `http::Response` for hyper to send, then drives the same core
//! connection, now open, over the upgraded stream.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;
use roomwire_core::admission::{self, HttpRefusal};
use roomwire_core::session::StepError;
use roomwire_core::{Event, SendError};
use tokio::time::Instant as TokioInstant;
use tracing::{Instrument, Span, debug, info_span};

use super::conn::{self, ServedStream};
use super::upgrade::RequestHead;
use super::{Permit, Server, TaskGuard};
use crate::socket::{WebSocket, append_with};

impl Server {
    /// A router with one route per endpoint path, upgrading the requests
    /// it receives ([`upgrade`](Self::upgrade)). Merge it into an
    /// application's router; it works with any router state `S`. The
    /// application must be served with upgrades enabled: `axum::serve`
    /// does, but sets no time limit on reading a request's header and
    /// gives no peer address; [`serve_router`](Self::serve_router) serves
    /// it with the limits of [`serve`](Self::serve).
    ///
    /// ```no_run
    /// # async fn f(server: roomwire_tokio::Server) -> std::io::Result<()> {
    /// use axum::{Router, routing::get};
    /// let app = Router::new().route("/", get(|| async { "hello" })).merge(server.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// server.serve_router(listener, app).await // or axum::serve, without those limits
    /// # }
    /// ```
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mut router = Router::new();
        for endpoint in &self.shared.endpoints {
            let server = self.clone();
            router = router.route(
                endpoint.path(),
                any(move |request: Request| {
                    let server = server.clone();
                    async move { server.upgrade(request).await }
                }),
            );
        }
        router
    }

    /// Serve `app` (an application's router holding this server's
    /// [`router`](Self::router)) from `listener` until
    /// [`shutdown`](Self::shutdown), with the limits of
    /// [`serve`](Self::serve) that `axum::serve` does not set: a request's
    /// header must arrive within `core.handshake_timeout` (else the
    /// connection is closed), the peer's address reaches `authorize` and
    /// the per-address handshake cap (as `ConnectInfo<SocketAddr>`), and
    /// accept errors never end the loop.
    ///
    /// ```no_run
    /// # async fn f(server: roomwire_tokio::Server) -> std::io::Result<()> {
    /// use axum::{Router, routing::get};
    /// let app = Router::new().route("/", get(|| async { "hello" })).merge(server.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// server.serve_router(listener, app).await
    /// # }
    /// ```
    pub async fn serve_router(&self, listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new());
        if let Some(limit) = self.shared.config.socket.core.handshake_timeout {
            http.header_read_timeout(conn::to_std(limit));
        }
        self.accept_loop(listener, |tcp, peer| {
            let app = app.clone();
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                tower_service::Service::call(&mut app.clone(), request)
            });
            let serving = http.serve_connection(TokioIo::new(tcp), service).with_upgrades();
            let closing = self.clone();
            tokio::spawn(async move {
                tokio::select! {
                    // Upgraded connections live on in their own tasks.
                    () = closing.shared.closing.wait() => {}
                    served = serving => if let Err(error) = served { debug!(%error, "HTTP connection ended") },
                }
            });
        })
        .await
    }

    /// Upgrade one request to a WebSocket connection of the endpoint its
    /// path names (for custom routing; [`router`](Self::router) does this
    /// for every endpoint). Answers 101 and serves the connection in a new
    /// task (it is in its rooms before the 101 is answered), or answers
    /// with the refusal: the core's status for a request
    /// that is not a valid Upgrade (400, 426 …), 404 for an unknown path,
    /// 503 at the connection cap or during shutdown, 401 or the
    /// `authorize` hook's status.
    pub async fn upgrade(&self, mut request: Request) -> Response {
        let shared = &self.shared;
        if shared.closing.is_set() {
            return answer(admission::SHUTTING_DOWN);
        }
        // The peer, if the application serves with
        // `into_make_service_with_connect_info::<SocketAddr>()`.
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
        let handshake_permit = match Permit::handshake(shared, peer) {
            Ok(permit) => permit,
            Err(refused) => return answer(refused),
        };
        let config = shared.config.socket;
        // The server's clock, which all its connections share.
        let origin = shared.origin;
        let start = TokioInstant::now();
        let started = crate::socket::core_clock(origin, start);
        let mut connection = crate::socket::server_conn(config.core, started);
        let mut head = request_head(&request);
        let received = connection.handle_input(started, &mut head);
        let mut head = match received.event {
            Some(Event::Request(request)) => RequestHead::from_request(&request),
            Some(Event::HandshakeFailed(error)) => {
                // The core's own refusal (status, headers such as
                // `Sec-WebSocket-Version: 13`, body), as hyper's response.
                let mut out = vec![0u8; 1024];
                return match connection.poll_transmit(&mut out) {
                    Ok(n) => response_from(out.get(..n).unwrap_or(&[])),
                    Err(_) => None,
                }
                .unwrap_or_else(|| refusal(error.status(), &error.to_string()));
            }
            _ => return answer(admission::BAD_REQUEST),
        };
        let (endpoint, open) = match conn::screen(self, &mut head.session, &head.info, peer) {
            Ok(screened) => screened,
            Err(refused) => return answer(refused),
        };
        let span =
            info_span!("connection", path = endpoint.path(), id = tracing::field::Empty, user = tracing::field::Empty);
        let deadline = config.core.handshake_timeout.map(|t| start + conn::to_std(t));
        let mut admitted =
            match conn::decide(self, endpoint.as_ref(), open, head, peer, deadline).instrument(span.clone()).await {
                Ok(admitted) => admitted,
                Err((status, body)) => return refusal(status, &body),
            };
        // The core accepts and writes its 101; hyper sends it.
        let now = crate::socket::core_clock(origin, TokioInstant::now());
        let mut out = Vec::new();
        let needs = |e: &StepError| match e {
            StepError::Send(SendError::Buffer(e)) => Some(e.required),
            _ => None,
        };
        let accepted = append_with(&mut out, 512, needs, |out| admitted.session.accept(&mut connection, now, out));
        if accepted.is_err() {
            return answer(admission::INTERNAL_ERROR);
        }
        let Some(response) = response_from(&out) else {
            return answer(admission::INTERNAL_ERROR);
        };
        let on_upgrade = hyper::upgrade::on(&mut request);
        let server = self.clone();
        // Counts from here: a shutdown waits for this connection, enrolled
        // or not.
        let task = TaskGuard::new(shared);
        let (enrolled_tx, enrolled_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(
            async move {
                // In its rooms before hyper answers 101: a client with its
                // 101 misses nothing sent to them (what is emitted to it
                // meanwhile waits in its outbox). Refused, it is closed with
                // the reason after the 101, as on the server's own listener.
                // Enrolled here, not in the handler, which hyper drops if the
                // client goes: a place leased on the bus would be kept.
                let enrolled = conn::enroll(&server, &endpoint, connection.deflate(), admitted).await;
                let _ = enrolled_tx.send(());
                // hyper hands the stream over once the 101 is out; a client
                // that does not take it holds its places (and its rooms) no
                // longer than the handshake's deadline.
                let upgrading = async {
                    match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline, on_upgrade).await.ok(),
                        None => Some(on_upgrade.await),
                    }
                };
                let upgraded = tokio::select! {
                    biased;
                    () = server.shared.closing.wait() => None,
                    upgraded = upgrading => match upgraded {
                        Some(Ok(upgraded)) => Some(upgraded),
                        Some(Err(error)) => {
                            debug!(%error, "upgrade failed");
                            None
                        }
                        None => {
                            debug!("upgrade not done by the handshake deadline");
                            None
                        }
                    },
                };
                let Some(upgraded) = upgraded else {
                    // Out of the registry and its rooms, its places given
                    // back, then no longer counted among the server's tasks.
                    drop((enrolled, handshake_permit));
                    drop(task);
                    return;
                };
                drop(handshake_permit);
                let stream = ServedStream::boxed(TokioIo::new(upgraded));
                let ws = Box::new(WebSocket::from_accepted(stream, connection, config, origin));
                conn::run_enrolled(server, endpoint, ws, enrolled, task).await;
            }
            .instrument(span),
        );
        // Answered once it is in its rooms (or refused them); if its task
        // is gone (the application's room gate panicked), an error.
        if enrolled_rx.await.is_err() {
            return answer(admission::INTERNAL_ERROR);
        }
        response
    }
}

/// The request head as it would have come on the wire.
fn request_head(request: &Request) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let version = match request.version() {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    };
    for part in [request.method().as_str(), " ", target, " ", version, "\r\n"] {
        head.extend_from_slice(part.as_bytes());
    }
    for (name, value) in request.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// One of the core's HTTP answers, as hyper's response.
fn answer(refused: HttpRefusal) -> Response {
    refusal(refused.status, refused.body)
}

/// A response the core wrote (its 101, or a refusal) as an
/// `http::Response`; hyper frames the body itself.
fn response_from(bytes: &[u8]) -> Option<Response> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse::<u16>().ok()?;
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).ok()?;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
        if name != axum::http::header::CONTENT_LENGTH {
            response.headers_mut().append(name, HeaderValue::from_str(value.trim()).ok()?);
        }
    }
    Some(response)
}

fn refusal(status: u16, body: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    debug!(parent: &Span::current(), status = status.as_u16(), "upgrade refused");
    (status, body.to_owned()).into_response()
}
