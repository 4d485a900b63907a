//! One connection's life: handshake, admission, registration, the message
//! loop, cleanup.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use roomwire_core::admission::{Gates, HttpRefusal};
use roomwire_core::cluster::ownership::ROOM_JOIN_TIMEOUT;
use roomwire_core::cluster::{BUS_TIMEOUT, ConnectionId};
use roomwire_core::dispatch::Refusal;
use roomwire_core::room::MemberId;
use roomwire_core::session::{ServerClose, ServerSession, Undecided};
use roomwire_core::{CloseCode, InsufficientSize, MessageKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;
use tracing::{Instrument, Span, debug, debug_span, trace};

use super::admission::{Admission, Handshake};
use super::endpoint::{Dispatched, ErasedEndpoint};
use super::lifecycle::NoPlace;
use super::outbox::{DirectStream, Outbox};
use super::parking::{Lot, Parked, Ticket};
use super::registry::{
    ChannelCell, ConnectEvent, DisconnectEvent, ErrorEvent, HandlerFailure, MessageEvent, Registered,
};
use super::stateful::{Joining, Place};
use super::upgrade::RequestHead;
use super::{Permit, Server, TaskGuard};
use crate::config::Config;
use crate::error::Error;
use crate::message::{HandshakeInfo, Message};
use crate::socket::{Resting, WebSocket, append_with};

/// Any stream: one connection type for TCP, TLS, upgraded HTTP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + ?Sized> Stream for T {}

/// The stream a connection is served on. A plain TCP stream, shared with
/// its outbox, is held as it is; any other is boxed. (Boxing the TCP one
/// too cost every such connection a 32-byte allocation for its pointer.)
pub(crate) enum ServedStream {
    Tcp(DirectStream),
    Boxed(Box<dyn Stream>),
}

impl ServedStream {
    /// Any stream, boxed.
    pub(crate) fn boxed(stream: impl Stream + 'static) -> Self {
        Self::Boxed(Box::new(stream))
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut dyn Stream> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream),
            Self::Boxed(stream) => Pin::new(&mut **stream),
        }
    }

    fn inner_ref(&self) -> &dyn Stream {
        match self {
            Self::Tcp(stream) => stream,
            Self::Boxed(stream) => &**stream,
        }
    }
}

impl AsyncRead for ServedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for ServedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.inner().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner_ref().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}

/// A stream as it was accepted.
pub(crate) enum Incoming {
    /// Ready for its HTTP request.
    Ready(ServedStream),
    /// A plain TCP stream, ready for its HTTP request: its socket will be
    /// held by its outbox, and if `writes_direct`, emitters write to it
    /// while it sleeps (on a current-thread runtime; see `Server::serve`).
    Tcp { stream: TcpStream, writes_direct: bool },
    /// To be wrapped first (a TLS handshake), once it has a place to
    /// handshake and within the handshake's time. Without a place it is
    /// dropped: a client expecting TLS could not read an HTTP answer.
    /// (Made by `serve_tls`, feature `tls`.)
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Wrapped(Pin<Box<dyn Future<Output = std::io::Result<ServedStream>> + Send>>),
}

/// What admission decided, for a connection about to be accepted.
pub(crate) struct Admitted {
    /// The connection's session, past its application decision.
    pub(crate) session: ServerSession,
    query: Option<String>,
    user: Option<String>,
    room: Option<String>,
    /// Its place under the server's connection cap.
    open: Permit,
    /// Its outbox, made with its socket (`Incoming::Tcp`).
    outbox: Option<Arc<Outbox>>,
}

/// Serve one accepted stream, start to end; or until it parks, if it
/// `may_park` (its task is the server's own: one that the application
/// awaits must not end before the connection does).
///
/// Not an `async fn`: its arguments would stay in the connection's task for
/// its whole life (async fn arguments are kept beside the body's state).
pub(crate) fn serve_stream(
    server: Server,
    stream: Incoming,
    peer: Option<SocketAddr>,
    may_park: bool,
) -> impl Future<Output = ()> + Send + 'static {
    let task = TaskGuard::new(&server.shared);
    // The handshake's and the registration's state (request, admission,
    // hooks' futures) is boxed: freed once the connection runs, so that
    // what an idle connection's task holds is the running connection's
    // pointer and the loop's few words (the guard counts the task until
    // the connection's open permit does).
    let opening = Box::pin(async move {
        let (ws, endpoint, admitted) = handshake(server.clone(), stream, peer).await?;
        register(server, endpoint, ws, admitted, task).await
    });
    async move { run(opening.await, may_park).await }
}

/// Read the request, admit, queue the 101 (written by [`register`], once
/// the connection is in its rooms). `None`: refused or failed (answered).
async fn handshake(
    server: Server,
    incoming: Incoming,
    peer: Option<SocketAddr>,
) -> Option<(Box<WebSocket<ServedStream>>, Arc<dyn ErasedEndpoint>, Admitted)> {
    let shared = &server.shared;
    if shared.closing.is_set() {
        return None;
    }
    let handshake_permit = match Permit::handshake(shared, peer) {
        Ok(permit) => permit,
        Err(refusal) => {
            debug!(status = refusal.status, "no place to handshake");
            // Answered while few such answers are under way; in a flood,
            // dropped at once like a stream that expects TLS.
            let stream: Option<ServedStream> = match incoming {
                Incoming::Ready(stream) => Some(stream),
                Incoming::Tcp { stream, .. } => Some(ServedStream::boxed(stream)),
                Incoming::Wrapped(_) => None,
            };
            if let Some(stream) = stream
                && let Some(_answering) = Answering::take(shared)
            {
                refuse_unread(stream, refusal).await;
            }
            return None;
        }
    };
    let mut outbox = None;
    let stream = match incoming {
        Incoming::Ready(stream) => stream,
        Incoming::Tcp { stream: tcp, writes_direct } => {
            let (shared_with, stream) = Outbox::with_socket(shared.config.socket.max_outbound, tcp, writes_direct);
            outbox = Some(shared_with);
            ServedStream::Tcp(stream)
        }
        Incoming::Wrapped(wrapping) => {
            let limit = shared.config.socket.core.handshake_timeout.map(to_std);
            let wrapped = tokio::select! {
                biased;
                () = shared.closing.wait() => return None,
                wrapped = within(limit, wrapping) => wrapped,
            };
            match wrapped {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    debug!(%error, "stream not wrapped");
                    return None;
                }
                None => {
                    debug!("stream not wrapped in time");
                    return None;
                }
            }
        }
    };
    let read = tokio::select! {
        biased;
        () = shared.closing.wait() => return None,
        read = WebSocket::read_request(stream, shared.config.socket, shared.origin) => read,
    };
    let (mut ws, mut head) = match read {
        Ok(read) => read,
        Err(error) => {
            debug!(%error, "handshake failed");
            return None;
        }
    };
    let (endpoint, open) = match screen(&server, &mut head.session, &head.info, peer) {
        Ok(screened) => screened,
        Err(refusal) => {
            debug!(path = head.info.path, status = refusal.status, "refused");
            let _ = ws.refuse_request(refusal.status, refusal.body).await;
            return None;
        }
    };
    Span::current().record("path", endpoint.path());
    let deadline = ws.handshake_deadline();
    let mut admitted = match decide(&server, endpoint.as_ref(), open, head, peer, deadline).await {
        Ok(admitted) => admitted,
        Err((status, body)) => {
            debug!(status, "refused");
            let _ = ws.refuse_request(status, &body).await;
            return None;
        }
    };
    admitted.outbox = outbox;
    // Queued here, written once the connection is in its rooms
    // (`register`).
    if let Err(error) = ws.queue_accept(&mut admitted.session) {
        debug!(%error, "could not queue the 101");
        return None;
    }
    drop(handshake_permit);
    // Boxed: moved from future to future, it would otherwise take room in
    // each (async fn arguments are stored twice).
    Some((Box::new(ws), endpoint, admitted))
}

/// Refusals answered to streams with no place to handshake, under way at
/// once: each holds its stream for up to a quarter of a second.
const MAX_ANSWERING: usize = 64;

/// A place among the refusals under way, given back on drop.
struct Answering(Arc<super::Shared>);

impl Answering {
    fn take(shared: &Arc<super::Shared>) -> Option<Self> {
        let counter = &shared.answering;
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX_ANSWERING).then_some(n + 1)).ok()?;
        Some(Self(shared.clone()))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `future`'s output, or `None` if `limit` passed first.
pub(crate) async fn within<T>(limit: Option<std::time::Duration>, future: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// The core's duration as tokio's.
pub(crate) fn to_std(duration: roomwire_core::Duration) -> std::time::Duration {
    std::time::Duration::from_micros(duration.as_micros())
}

/// Answer `refusal` on a stream whose request was not read, and close it.
/// What the client sent meanwhile (up to 16 KiB) is read and dropped
/// before the close: closing with unread input would reset the
/// connection, and the reset can reach the client before the answer does.
/// A quarter of a second at most, so a peer that neither reads nor closes
/// holds nothing for long.
async fn refuse_unread(mut stream: ServedStream, refusal: HttpRefusal) {
    let mut answer = [0u8; 256];
    let Ok(n) = roomwire_core::handshake::write_refusal(refusal.status, &[], refusal.body, &mut answer) else {
        return;
    };
    let lingering = async {
        stream.write_all(answer.get(..n).unwrap_or_default()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut left = 16 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(250), lingering).await;
}

/// The route and the server's gates ([`ServerSession::screen`]): the
/// endpoint at the request's path, a place under the connection caps (the
/// server's, `peer`'s address's) and an origin the endpoint allows.
pub(crate) fn screen(
    server: &Server,
    session: &mut ServerSession,
    request: &HandshakeInfo,
    peer: Option<SocketAddr>,
) -> Result<(Arc<dyn ErasedEndpoint>, Permit), HttpRefusal> {
    let shared = &server.shared;
    let endpoint = shared.endpoint(&request.path).cloned();
    let open = endpoint.as_ref().map(|_| Permit::open(shared, peer));
    let foreign_origin = endpoint.as_ref().is_some_and(|endpoint| {
        !endpoint.policy().allows_origin(request.header_str("origin"), request.header_str("host"))
    });
    let gates = Gates {
        shutting_down: shared.closing.is_set(),
        full: matches!(open, Some(Err(NoPlace::Full))),
        address_full: matches!(open, Some(Err(NoPlace::AddressFull))),
        foreign_origin,
    };
    session.screen(endpoint.is_some(), gates)?;
    // Both are there: the session screened on them.
    endpoint.zip(open.and_then(Result::ok)).ok_or(roomwire_core::admission::INTERNAL_ERROR)
}

/// The application's decision (step 4 of [`roomwire_core::admission`]),
/// within the handshake deadline and unless the server starts shutting
/// down meanwhile. `Err` is the HTTP refusal.
pub(crate) async fn decide(
    server: &Server,
    endpoint: &dyn ErasedEndpoint,
    open: Permit,
    head: RequestHead,
    peer: Option<SocketAddr>,
    deadline: Option<TokioInstant>,
) -> Result<Admitted, (u16, String)> {
    let shared = &server.shared;
    let RequestHead { info, mut session } = head;
    let handshake = Handshake::new(info, session.format(), peer);
    let decide = endpoint.policy().decide(&handshake, shared.resolver.as_ref());
    let decided = async {
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, decide).await.ok(),
            None => Some(decide.await),
        }
    };
    let admission = tokio::select! {
        biased;
        () = shared.closing.wait() => return Err(owned(session.refusal(Undecided::ShuttingDown))),
        admission = decided => admission.ok_or_else(|| owned(session.refusal(Undecided::TimedOut)))?,
    };
    match admission {
        Admission::Refuse { status, body } => Err((status, body)),
        Admission::Accept { user_id, room_id } => Ok(Admitted {
            session,
            query: handshake.query().map(str::to_owned),
            user: user_id,
            room: room_id,
            open,
            outbox: None,
        }),
    }
}

fn owned(refusal: HttpRefusal) -> (u16, String) {
    (refusal.status, refusal.body.to_owned())
}

/// Takes a connection out of its endpoint's registry if its registration
/// ends early (panic, abort, a refused stateful room) until it is handed
/// to [`Registered`], which does the same from then on.
struct Registration {
    cell: Arc<ChannelCell>,
    member: Option<MemberId>,
    /// Under a cluster-wide per-user cap: the connection's user and id,
    /// whose place is given back when it ends (whether it was granted at
    /// admission or added back by a renewal since).
    lease: Option<(Arc<str>, ConnectionId)>,
}

impl Registration {
    /// Hand the duty over: whether the connection holds a lease.
    fn hand_over(mut self) -> bool {
        self.member = None;
        self.lease.take().is_some()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(member) = self.member.take() {
            unregister_member(&self.cell, member, self.lease.take());
        }
    }
}

/// Take `member` out of its endpoint's registry and rooms, give back its
/// lease; the rooms it was in.
pub(crate) fn unregister_member(
    cell: &ChannelCell,
    member: MemberId,
    lease: Option<(Arc<str>, ConnectionId)>,
) -> Vec<String> {
    let mut state = cell.lock();
    // Under the endpoint's lock, as renewals are queued: a renewal queued
    // after this release cannot list the connection.
    if let Some((user, id)) = lease {
        cell.node.release_lease(cell.path, &user, &id.text());
    }
    state.unregister(member)
}

/// Serve a connection [enrolled](enroll) before its 101 was sent: finish
/// registering it (or close it with its refusal), run it, clean up.
///
/// A connection that waits with nothing under way parks without a task
/// ([`super::parking`]); one that cannot (awake for up to a second after
/// traffic, closing or with an error to report, on another runtime than
/// its server's lot, or served by an application's own task through
/// `Server::serve_stream`) waits in its task, so what the task holds while
/// waiting still counts. Registration and cleanup run in futures of their
/// own (boxed, freed when done), so that their state (the admission
/// result, the connect and disconnect events, the hooks' futures) is not
/// part of the task for its whole life. Measured
/// with `scripts/bench.sh` (idle cell, `VmRSS` per connection) and
/// `-Zprint-type-sizes`; the test `an_idle_connections_future_stays_small`
/// holds the size of `serve_stream`'s future, which runs the same `run`.
#[cfg(feature = "axum")]
pub(crate) fn run_enrolled(
    server: Server,
    endpoint: Arc<dyn ErasedEndpoint>,
    ws: Box<WebSocket<ServedStream>>,
    enrolled: Result<Enrolled, Refused>,
    task: TaskGuard,
) -> impl Future<Output = ()> + Send + 'static {
    // Not an `async fn`, for the reason given at `serve_stream`.
    let settling = Box::pin(settle(server, endpoint, ws, enrolled, task));
    async move { run(settling.await, true).await }
}

/// What a registered connection keeps while it runs, in one allocation
/// (and its whole WebSocket in a second one while awake: [`Socket`]).
/// Parked ([`super::parking`]), the same allocation waits in its server's
/// lot.
pub(crate) struct Running {
    socket: Socket,
    endpoint: Arc<dyn ErasedEndpoint>,
    outbox: Arc<Outbox>,
    /// Last: dropped, it gives back the connection's place under the cap
    /// and its count among the server's tasks, after all else it held.
    registered: Registered,
}

/// The connection's WebSocket: whole while it has work, at rest while it
/// waits. Most connections wait most of the time, and the resting form is
/// about a tenth of the whole (the core's control-frame buffers, decoder
/// and configuration, the read and message state, are made again when it
/// wakes). See BENCHMARKS.md, seventh pass.
///
/// A connection with traffic stays awake for a while: a message of its
/// peer, or frames queued for it, ask for a wake [`REST_AFTER`] later (if
/// none is due yet), and it rests at its first wait after that wake has
/// come. So a busy sender, or a member whose frames cannot all be written
/// by their emitters (its socket full, or a TLS stream, which emitters
/// never write to), pays for resting and waking (about 1 900
/// instructions) at most once per `REST_AFTER`, not at every turn; and one
/// that goes quiet rests within `REST_AFTER`, whatever its keepalive.
enum Socket {
    Awake(Box<WebSocket<ServedStream>>),
    Resting(Resting<ServedStream>),
    /// For the length of a move between the two.
    Moving,
}

/// How long a connection stays awake after traffic (see [`Socket`]),
/// counted from its first traffic since it last rested: one with steady
/// traffic rests and wakes about once per `REST_AFTER` (a constant cost,
/// about 1 900 instructions), and one that went quiet gives its memory
/// back (about 850 bytes) within it.
const REST_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl Socket {
    /// The whole WebSocket, woken with what it was made with if it rests.
    /// `None` only after a move that did not finish.
    fn awake(&mut self, (config, origin): MadeWith<'_>) -> Option<&mut WebSocket<ServedStream>> {
        if matches!(self, Self::Resting(_))
            && let Self::Resting(resting) = std::mem::replace(self, Self::Moving)
        {
            *self = Self::Awake(Box::new(resting.wake(*config, origin)));
        }
        match self {
            Self::Awake(ws) => Some(ws),
            Self::Resting(_) | Self::Moving => None,
        }
    }

    /// A message of its peer came, or frames were queued for it: stay
    /// awake until [`REST_AFTER`] from now, or from the first traffic
    /// since its last wake of this kind.
    fn mark_busy(&mut self) {
        if let Self::Awake(ws) = self {
            ws.wake_after(REST_AFTER);
        }
    }

    /// About to wait: rest if the WebSocket is idle ([`WebSocket::rest`])
    /// and no wake after traffic is still due. What it waits for stays
    /// registered with the task.
    fn wait(&mut self) {
        if self.is_quiet()
            && matches!(self, Self::Awake(ws) if ws.can_rest())
            && let Self::Awake(ws) = std::mem::replace(self, Self::Moving)
        {
            *self = match (*ws).rest() {
                Ok(resting) => Self::Resting(resting),
                Err(ws) => Self::Awake(Box::new(ws)),
            };
        }
    }

    /// No wake for traffic is due: were it idle, it would rest.
    fn is_quiet(&self) -> bool {
        match self {
            Self::Awake(ws) => !ws.wake_pending(),
            Self::Resting(_) | Self::Moving => true,
        }
    }

    /// About to park: its deadline, if it rests (its timer dropped, as its
    /// lot keeps time for it). Awake, it keeps its own timer (polled with
    /// its lot space's waker).
    fn park_deadline(&mut self, origin: TokioInstant) -> Option<TokioInstant> {
        match self {
            Self::Resting(resting) => resting.take_deadline(origin),
            Self::Awake(_) | Self::Moving => None,
        }
    }

    /// The peer's close frame, if the WebSocket is awake and has one.
    fn peer_close(&self) -> Option<&crate::message::CloseFrame> {
        match self {
            Self::Awake(ws) => ws.peer_close(),
            Self::Resting(_) | Self::Moving => None,
        }
    }
}

/// What a connection's WebSocket was made with: its configuration and its
/// clock's origin, the same for every connection of a server (kept by the
/// server, not by each resting connection).
type MadeWith<'a> = (&'a Config, TokioInstant);

/// What every connection of the server was made with.
fn made_with(registered: &Registered) -> MadeWith<'_> {
    let shared = &registered.server().shared;
    (&shared.config.socket, shared.origin)
}

/// How a connection ends whose WebSocket was lost in a move (not reached).
fn lost() -> End {
    End { code: None, reason: "connection state lost".into() }
}

/// Run a registered connection (if registration gave one) and clean up;
/// or, if it `may_park`, until it parks in its server's lot, which runs it
/// again in a task of its own when it is woken. Not an `async fn`, for the
/// reason given at `serve_stream`: the connection's pointer is kept once,
/// not twice.
#[allow(clippy::manual_async_fn)] // see above
fn run(mut running: Option<Box<Running>>, may_park: bool) -> impl Future<Output = ()> + Send {
    async move {
        let mut yield_first = false;
        loop {
            if std::mem::take(&mut yield_first) {
                tokio::task::yield_now().await;
            }
            let Some(connection) = running.as_deref_mut() else { return };
            let may_park = may_park && connection.registered.server().shared.config.park_waiting;
            // Bound, not matched on across the awaits below (the task would
            // keep the whole `Ran`).
            let end = match run_loop(connection, may_park).await {
                Ran::Ended(end) => end,
                Ran::Parking(ticket) => {
                    let Some(mut state) = running.take() else { return };
                    let (_, origin) = made_with(&state.registered);
                    let deadline = state.socket.park_deadline(origin);
                    match ticket.park(Parked { state, span: Span::current() }, deadline) {
                        Ok(()) => return,
                        // Woken meanwhile: it runs on here, after a turn of
                        // the scheduler (a stream that wakes its waker
                        // whenever polled would otherwise keep it here).
                        Err(back) => {
                            running = Some(back.state);
                            yield_first = true;
                        }
                    }
                    continue;
                }
            };
            if let Some(running) = running.take() {
                Box::pin(unregister(running, end)).await;
            }
            return;
        }
    }
}

/// The lot `server`'s connections park in, on the current runtime (made at
/// the first park).
fn lot(server: &Server) -> Option<Arc<Lot<Box<Running>>>> {
    let parking = &server.shared.parking;
    if let Some(owner) = parking.get() {
        return Some(owner.lot().clone());
    }
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(parking.get_or_init(|| Lot::start(handle, resume)).lot().clone())
}

/// A parked connection woken: it runs in a task of its own again.
fn resume(handle: &tokio::runtime::Handle, parked: Parked<Box<Running>>) {
    let Parked { state, span } = parked;
    drop(handle.spawn(run(Some(state), true).instrument(span)));
}

/// How [`run_loop`] returned.
enum Ran {
    Ended(End),
    /// It waits with nothing under way, its wakers those of its space in
    /// its lot: to be parked there.
    Parking(Ticket<Box<Running>>),
}

/// Register the connection in its endpoint and its rooms, write its 101,
/// call the connect hooks. `None`: refused after the upgrade (the 101, then
/// the close with the reason) or failed.
async fn register(
    server: Server,
    endpoint: Arc<dyn ErasedEndpoint>,
    mut ws: Box<WebSocket<ServedStream>>,
    admitted: Admitted,
    task: TaskGuard,
) -> Option<Box<Running>> {
    let enrolled = enroll(&server, &endpoint, ws.conn.deflate(), admitted).await;
    // Refused, the 101 goes out with the close after it (`settle`).
    if enrolled.is_ok() {
        // In its rooms: now the 101 (queued at the handshake).
        if let Err(error) = ws.send_accept().await {
            debug!(%error, "could not send the 101");
            return None;
        }
    }
    settle(server, endpoint, ws, enrolled, task).await
}

/// A connection in its endpoint's registry and its rooms, whose client
/// may have its 101: what [`settle`] needs to finish registering it.
pub(crate) struct Enrolled {
    session: ServerSession,
    id: ConnectionId,
    user: Option<Arc<str>>,
    member: MemberId,
    rooms: Vec<String>,
    query: Option<String>,
    outbox: Arc<Outbox>,
    shared_deflate: Option<roomwire_core::deflate::Deflate>,
    /// Takes it out of the registry again if it goes no further: declared
    /// before its place under the cap, so dropped first.
    registration: Registration,
    /// Its place under the server's connection cap.
    open: Permit,
}

/// A connection refused a place after its upgrade: the close that follows
/// its 101, and its place under the server's connection cap, held until
/// that close is done (a refused client that never answers it counts
/// against the cap meanwhile).
pub(crate) struct Refused {
    refusal: Refusal,
    open: Permit,
}

/// The first half of registering: the connection in its endpoint's
/// registry (its place under the per-user cap taken) and in its rooms,
/// before its client has its 101, so that a client with its 101 misses
/// nothing sent to its rooms. `deflate`: its permessage-deflate agreement.
/// Refused, it is in none.
pub(crate) async fn enroll(
    server: &Server,
    endpoint: &Arc<dyn ErasedEndpoint>,
    deflate: Option<&roomwire_core::deflate::Deflate>,
    admitted: Admitted,
) -> Result<Enrolled, Refused> {
    let shared = &server.shared;
    let Admitted { mut session, query, user, room, open, outbox } = admitted;
    let format = session.format();
    let id = shared.node.connection_id();
    let id_text = id.text();
    let user: Option<Arc<str>> = user.map(Into::into);
    let span = Span::current();
    span.record("id", id_text.as_str());
    if let Some(user) = &user {
        span.record("user", &**user);
    }
    let outbox = outbox.unwrap_or_else(|| Arc::new(Outbox::new(shared.config.socket.max_outbound)));
    // What the room's frames compressed once for many can be sent to it with.
    let shared_deflate = crate::deflate::for_shared_frames(deflate);
    let cell = endpoint.cell();
    let policy = endpoint.policy();
    // The cap is checked and the slot taken in one step; the rooms are
    // joined after it, without the lock while the application's room gate
    // runs.
    // With a backplane, the cap counts the user's connections on every
    // node (a place leased on the bus); if the bus cannot say, this node's.
    let leased = match (&user, policy.max_connections_per_user) {
        (Some(user), Some(cap)) => cell.node.acquire_lease(cell.path, user, &id_text, cap).await,
        _ => None,
    };
    let capped = policy.max_connections_per_user.is_some() && cell.node.link.is_some();
    let lease = user.clone().filter(|_| capped).map(|u| (u, id));
    let (over_user_cap, member) = {
        let mut state = cell.lock();
        let over_user_cap = match leased {
            Some(granted) => !granted,
            None => state.at_user_cap(user.as_ref(), policy.max_connections_per_user),
        };
        (over_user_cap, state.register(id, user.clone(), format, outbox.clone(), shared_deflate))
    };
    // Guarded from here: a panic of the application's room gate, or a
    // refusal, takes the connection out of the registry again.
    let registration = Registration { cell: cell.clone(), member: Some(member), lease };
    match endpoint.register(
        &mut session,
        cell,
        (member, user.as_deref(), &id_text),
        query.as_deref(),
        room.as_deref(),
        over_user_cap,
    ) {
        Ok(()) => {
            let rooms = cell.lock().rooms_of(member);
            Ok(Enrolled { session, id, user, member, rooms, query, outbox, shared_deflate, open, registration })
        }
        Err(refusal) => {
            drop(registration);
            if over_user_cap && let Some(user) = &user {
                // Some of the user's connections may be dead: find out now,
                // so that the client's next attempt finds room.
                let state = cell.lock();
                for other in state.members_of_user(user) {
                    if let Some(slot) = state.slot(other) {
                        slot.outbox.request_check_alive();
                    }
                }
            }
            Err(Refused { refusal, open })
        }
    }
}

/// The second half of registering, its 101 sent: its stateful room joined,
/// the connect hooks called. Refused by [`enroll`], it is closed with the
/// reason; `None` then, or if its room's join fails.
async fn settle(
    server: Server,
    endpoint: Arc<dyn ErasedEndpoint>,
    mut ws: Box<WebSocket<ServedStream>>,
    enrolled: Result<Enrolled, Refused>,
    task: TaskGuard,
) -> Option<Box<Running>> {
    // Bound in this order, so that on the way out the registry entry goes
    // first, then the place under the cap (the task guard, an argument,
    // after both).
    let Enrolled { session, id, user, member, rooms, query, outbox, shared_deflate, open, registration } =
        match enrolled {
            Ok(enrolled) => enrolled,
            Err(Refused { refusal: Refusal { code, reason }, open }) => {
                debug!(code = u16::from(code), reason, "accepted, then refused");
                if ws.start_close(code, reason).is_ok() {
                    while ws.recv().await.is_some() {}
                }
                drop(open);
                return None;
            }
        };
    let shared = server.shared.clone();
    let format = session.format();
    // A stateful room's connection joins its room's task (its state may be
    // built then); refused, it is closed with 1011.
    let place = Place::Here(outbox.clone(), shared_deflate);
    let joining = Joining { id: id.text().as_str().into(), user_id: user.clone(), query, format, place };
    let seat = match rooms.first().and_then(|room| endpoint.join_room(&server, joining, room)) {
        None => None,
        // Bounded: a state factory or `on_join` that never ends must not
        // hold the connection for good (the join, given up, still leaves
        // once the room takes it).
        Some(joining) => match tokio::time::timeout(ROOM_JOIN_TIMEOUT.into(), joining).await.ok().flatten() {
            Some(seat) => Some(Box::new(seat)),
            None => {
                let failed = roomwire_core::stateful::JOIN_FAILED;
                debug!(code = u16::from(failed.code), reason = failed.reason, "room join failed");
                if ws.start_close(failed.code, failed.reason).is_ok() {
                    while ws.recv().await.is_some() {}
                }
                return None;
            }
        },
    };
    if shared.closing.is_set() {
        let shutdown = ServerClose::Shutdown.refusal();
        outbox.request_close(shutdown.code, shutdown.reason);
    }
    debug!(?rooms, wire = ?format, "connected");
    let event = ConnectEvent {
        connection_id: id.to_string(),
        user_id: user.as_deref().map(str::to_owned),
        rooms,
        path: endpoint.path(),
    };
    if let Some(hook) = &shared.hooks.connect {
        hook(&event);
    }
    let policy = endpoint.policy();
    if let Some(hook) = &policy.on_connect {
        // Bounded as a handler is: a hook that never ends would leave the
        // connection open and its messages unhandled for good.
        let hook = hook(server.clone(), event);
        match shared.config.handler_timeout {
            Some(limit) => {
                if tokio::time::timeout(limit, hook).await.is_err() {
                    tracing::warn!("on_connect hook timed out: cancelled");
                }
            }
            None => hook.await,
        }
    }
    let leased = registration.hand_over();
    let cell = endpoint.cell().clone();
    drop(server);
    let registered = Registered { id, user, member, session, cell, seat, listed: true, leased, open };
    // From here its open permit counts it among the server's tasks.
    drop(task);
    Some(Box::new(Running { socket: Socket::Awake(ws), endpoint, registered, outbox }))
}

/// The connection has ended: leave the rooms, call the disconnect hooks.
async fn unregister(running: Box<Running>, end: End) {
    let Running { socket, endpoint, mut registered, outbox } = *running;
    // Its stateful room first (`on_leave` runs in the room's task).
    drop(registered.seat.take());
    let rooms = registered.unregister();
    debug!(code = end.code.map(u16::from), reason = end.reason, "disconnected");
    let event = DisconnectEvent {
        connection_id: registered.id.to_string(),
        user_id: registered.user.as_deref().map(str::to_owned),
        rooms,
        path: endpoint.path(),
        code: end.code,
        reason: end.reason,
    };
    drop(socket);
    let shared = &registered.server().shared;
    if let Some(hook) = &shared.hooks.disconnect {
        hook(&event);
    }
    if let Some(hook) = &endpoint.policy().on_disconnect {
        hook(registered.server().clone(), event).await;
    }
    drop((endpoint, outbox));
    // Last, with its open permit: the server's shutdown waits until no task
    // or open permit is left, by when the connection has let go of
    // everything it held of the server.
    drop(registered);
}

/// How a connection ended.
struct End {
    code: Option<CloseCode>,
    reason: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Stop now, without a closing handshake (shutdown timeout).
    Abort,
}

/// The closing handshake this side started, if any: its code and reason
/// (boxed, as what an idle connection's task holds is kept small).
type OurClose = Option<Box<(CloseCode, String)>>;

/// Outbox turns (since `recv` last returned) after which `recv`, which
/// also writes what is queued, goes first once: frames emitted without
/// pause from other threads cannot keep the queue from being written.
const OUTBOX_TURNS: u32 = 16;

/// The connection's loop, until it ends or is to park. A connection that
/// waits in its task (one that may not park, or awake after traffic) holds
/// its state, so it keeps few bytes across its waits: one pointer to the
/// connection (its parts are borrowed afresh after each wait, not held),
/// and what is seldom there (our close, an error, a message read ahead)
/// boxed. Not an `async fn`, which would keep its argument twice.
#[allow(clippy::manual_async_fn)] // see above
fn run_loop(running: &mut Running, may_park: bool) -> impl Future<Output = Ran> + Send + '_ {
    async move {
        let mut ours: OurClose = None;
        let mut error: Option<Box<Error>> = None;
        let mut outbox_turns = 0;
        let mut read_ahead: ReadAhead = None;
        loop {
            let Running { socket, outbox, registered, .. } = &mut *running;
            let Some(ws) = socket.awake(made_with(registered)) else { return Ran::Ended(lost()) };
            let batch = match pump(ws, outbox, &mut ours) {
                Pumped::Abort => return Ran::Ended(End { code: None, reason: "Server shutting down".into() }),
                Pumped::Continue { batch } => u8::try_from(batch).unwrap_or(u8::MAX),
            };
            if batch > 0 {
                socket.mark_busy();
            }
            // The outbox first: a task woken for emitted frames takes them at
            // once, and `recv` then writes them and waits for input in the same
            // poll. With `recv` first, every delivery cost two polls of the
            // socket (callgrind, fan-out at 10 k deliveries/s: about 15 % of the
            // server's instructions per delivery).
            let received = if let Some(received) = read_ahead.take() {
                *received
            } else {
                // Polled in place rather than through `select!` over a `recv`
                // future: the wait then holds no future of its own, which keeps
                // every idle connection's task small.
                let outbox_first = outbox_turns < OUTBOX_TURNS;
                // Nothing under way that only this loop remembers (a close of
                // ours, an error to report): it may park if it goes idle.
                let may_park = may_park && ours.is_none() && error.is_none();
                // Moved in (a copy of each word): the wait holds no borrow of
                // the loop's locals, which would take room in every idle task.
                let running = &mut *running;
                let woken = poll_fn(move |cx| poll_or_park(running, cx, may_park, outbox_first, batch)).await;
                match woken {
                    Woken::Received(received) => received,
                    Woken::Again => {
                        outbox_turns = if outbox_first { outbox_turns + 1 } else { 0 };
                        continue;
                    }
                    Woken::Parking(ticket) => return Ran::Parking(ticket),
                }
            };
            outbox_turns = 0;
            running.socket.mark_busy();
            // What is emitted while this is handled is queued, as before direct
            // writes: the handling puts it in its place (before its answer).
            running.outbox.close_direct();
            let message = {
                // Moved into this block, which ends before the handler's await:
                // its room is not kept in the task beside the idle wait's.
                let taken = received;
                match taken {
                    None => break,
                    Some(Err(e)) => {
                        debug!(error = %e, "connection failed");
                        if error.is_none() {
                            error = Some(Box::new(e));
                        }
                        continue;
                    }
                    Some(Ok(message)) => message,
                }
            };
            // Boxed: its state (the handler's future, its select) is allocated
            // per message rather than held by every idle connection's task; the
            // handler's future is boxed anyway.
            let Running { socket, endpoint, registered, outbox, .. } = &mut *running;
            let Some(ws) = socket.awake(made_with(registered)) else { return Ran::Ended(lost()) };
            let handling = handle(ws, endpoint.as_ref(), registered, outbox, &mut ours, &mut read_ahead, message);
            if Box::pin(handling).await == Flow::Abort {
                return Ran::Ended(End { code: None, reason: "Server shutting down".into() });
            }
            // A message read ahead is handled without touching the socket,
            // so without this a peer that pipelines thousands of small
            // messages would hold the worker for all of them: each one
            // spends a unit of tokio's budget, and the task yields when
            // the budget is spent, as it would after that much I/O.
            tokio::task::coop::consume_budget().await;
        }
        Ran::Ended(match (ours, running.socket.peer_close(), error) {
            (Some(ours), _, _) => {
                let (code, reason) = *ours;
                End { code: Some(code), reason }
            }
            (None, Some(peer), _) => End { code: peer.code, reason: peer.reason.clone() },
            (None, None, Some(error)) => End { code: None, reason: error.to_string() },
            (None, None, None) => End { code: None, reason: String::new() },
        })
    }
}

/// The loop's wait. A connection quiet since its last wake for traffic
/// (one that would rest), if it `may_park`, waits with the waker of a
/// space in its lot and, nothing being ready, is to be parked there
/// ([`Woken::Parking`]); otherwise it waits in its task, at rest if idle.
fn poll_or_park(
    running: &mut Running,
    cx: &mut TaskContext<'_>,
    may_park: bool,
    outbox_first: bool,
    batch: u8,
) -> Poll<Woken> {
    let reserve = |running: &Running| {
        (may_park && running.socket.is_quiet()).then(|| lot(running.registered.server())?.reserve())?
    };
    let park = |running: &mut Running, ticket: Ticket<Box<Running>>, batch: u8| {
        let mut parking = TaskContext::from_waker(ticket.waker());
        if let Poll::Ready(woken) = poll_wait(running, &mut parking, outbox_first, batch) {
            return Poll::Ready(woken);
        }
        running.socket.wait();
        Poll::Ready(Woken::Parking(ticket))
    };
    if let Some(ticket) = reserve(running) {
        return park(running, ticket, batch);
    }
    let polled = poll_wait(running, cx, outbox_first, batch);
    if polled.is_pending() {
        // Its wake for traffic came in this poll: quiet now, it parks
        // (else it would wait in its task until its next event). Polled
        // again, it has learnt nothing new about its frames (`batch` 0).
        if let Some(ticket) = reserve(running) {
            return park(running, ticket, 0);
        }
        // Waiting: in its resting form, woken as it would have been.
        running.socket.wait();
    }
    polled
}

/// The loop's wait, polled once: the outbox (first, unless `outbox_first`
/// is off), the connection, then, if it has nothing to write, its socket
/// opened to emitters. `Pending`: it waits (its caller rests it, if it is
/// idle, once done polling: [`Socket::wait`]).
fn poll_wait(running: &mut Running, cx: &mut TaskContext<'_>, outbox_first: bool, batch: u8) -> Poll<Woken> {
    let Running { socket, outbox, registered, .. } = running;
    let Some(ws) = socket.awake(made_with(registered)) else {
        // The loop's next turn ends it (`lost`).
        return Poll::Ready(Woken::Again);
    };
    if outbox_first && outbox.poll_notified(cx).is_ready() {
        return Poll::Ready(Woken::Again);
    }
    if let Poll::Ready(received) = ws.poll_recv(cx) {
        return Poll::Ready(Woken::Received(received));
    }
    if !outbox_first && outbox.poll_notified(cx).is_ready() {
        return Poll::Ready(Woken::Again);
    }
    // Asleep: while it has nothing to write, emitters write to its socket
    // themselves (no wake-up, no copy per recipient).
    if outbox.open_direct(ws.takes_direct_frames(), usize::from(batch)) {
        return Poll::Ready(Woken::Again);
    }
    Poll::Pending
}

/// What woke the loop's wait.
enum Woken {
    Received(Option<Result<Message, Error>>),
    /// The outbox, or a turn to take again.
    Again,
    /// Nothing ready: to park.
    Parking(Ticket<Box<Running>>),
}

/// What [`pump`] found.
enum Pumped {
    /// Stop now (shutdown timeout).
    Abort,
    /// How many frames waited.
    Continue { batch: usize },
}

/// Move what the outbox holds into the connection: frames into the write
/// queue, close requests into a closing handshake.
fn pump(ws: &mut WebSocket<ServedStream>, outbox: &Outbox, ours: &mut OurClose) -> Pumped {
    let taken = outbox.take();
    if taken.abort {
        return Pumped::Abort;
    }
    let batch = taken.batch();
    if taken.rest {
        // The end of a frame an emitter cut short goes out with the next
        // write or flush.
        ws.want_flush();
    }
    let mut overflow = taken.overflowed;
    for frame in taken.frames.iter() {
        match ws.feed_encoded_frame(frame) {
            Ok(()) => {}
            Err(Error::QueueFull | Error::OutboundLimit) => {
                overflow = true;
                break;
            }
            // Closing: what was emitted since is dropped.
            Err(_) => break,
        }
    }
    if overflow {
        slow_consumer(ws, outbox, ours);
    }
    if let Some((code, reason)) = taken.close {
        close(ws, ours, code, &reason);
    }
    if taken.check_alive {
        ws.check_alive(roomwire_core::admission::USER_CAP_PROBE);
    }
    Pumped::Continue { batch }
}

/// The connection's queues are full: it reads slower than the server must
/// send. Drop what is queued for it and close it with 1013.
fn slow_consumer(ws: &mut WebSocket<ServedStream>, outbox: &Outbox, ours: &mut OurClose) {
    if ours.is_some() {
        return;
    }
    outbox.set_overflowed();
    debug!("slow consumer: closing");
    let full = ServerClose::OutboundFull.refusal();
    close(ws, ours, full.code, full.reason);
}

/// A connection whose next message waits (for its handler, or for the
/// bus), kept alive meanwhile.
struct Served<'a> {
    ws: &'a mut WebSocket<ServedStream>,
    outbox: &'a Outbox,
    ours: &'a mut OurClose,
    read_ahead: &'a mut ReadAhead,
    write_failed: bool,
}

impl Served<'_> {
    /// `wait`'s output, with the connection's output moving, its outbox
    /// pumped and its input read up to the next message (kept in
    /// `read_ahead`) meanwhile; `None` if the outbox asked to abort.
    async fn meanwhile<F: Future>(&mut self, wait: F) -> Option<F::Output> {
        tokio::pin!(wait);
        loop {
            tokio::select! {
                biased;
                output = &mut wait => return Some(output),
                () = self.outbox.notified() => {
                    if let Pumped::Abort = pump(self.ws, self.outbox, self.ours) {
                        return None;
                    }
                }
                io = handler_io(self.ws, self.read_ahead.is_none(), !self.write_failed) => match io {
                    HandlerIo::Received(received) => *self.read_ahead = Some(Box::new(received)),
                    HandlerIo::Flushed(ok) => self.write_failed = !ok,
                },
            }
        }
    }
}

/// Queue an answer for the sender alone (an acknowledgement, an error). A
/// sender too far behind to take it is a slow consumer like any other:
/// its answer is not dropped in silence.
fn answer(ws: &mut WebSocket<ServedStream>, outbox: &Outbox, ours: &mut OurClose, kind: MessageKind, body: &[u8]) {
    if let Err(Error::QueueFull | Error::OutboundLimit) = ws.feed_fragment(kind, body, true) {
        slow_consumer(ws, outbox, ours);
    }
}

fn close(ws: &mut WebSocket<ServedStream>, ours: &mut OurClose, code: CloseCode, reason: &str) {
    if ws.start_close(code, reason).is_ok() {
        ours.get_or_insert_with(|| Box::new((code, reason.to_owned())));
    }
}

/// What was read while a handler ran: the client's next message (or the
/// end of its input), handled after it (boxed, as [`OurClose`] is).
type ReadAhead = Option<Box<Option<Result<Message, Error>>>>;

/// The connection's I/O while a handler runs.
enum HandlerIo {
    Received(Option<Result<Message, Error>>),
    Flushed(bool),
}

/// While a handler runs: read on until the client's next whole message is
/// held (so pings are answered, deadlines kept and a close seen, while
/// messages are still handled one at a time, in order); once one is held,
/// only write.
async fn handler_io(ws: &mut WebSocket<ServedStream>, read: bool, write: bool) -> HandlerIo {
    if read {
        HandlerIo::Received(ws.recv().await)
    } else if write && (ws.queued() > 0 || ws.wants_flush()) {
        HandlerIo::Flushed(ws.flush().await.is_ok())
    } else {
        std::future::pending().await
    }
}

/// Handle one whole client message.
async fn handle(
    ws: &mut WebSocket<ServedStream>,
    endpoint: &dyn ErasedEndpoint,
    registered: &Registered,
    outbox: &Outbox,
    ours: &mut OurClose,
    read_ahead: &mut ReadAhead,
    message: Message,
) -> Flow {
    let data = message.as_bytes();
    let id = registered.id.text();
    if let Some(hook) = &registered.server().shared.hooks.message {
        hook(&MessageEvent { connection_id: &id, path: endpoint.path(), data });
    }
    // The reply buffer lives in this block only (not across the awaits of
    // a handler, which would grow every connection's task).
    let (room, future) = {
        let mut out = [0u8; 1024];
        match endpoint.dispatch(registered, &id, ws.state(), data, &mut out) {
            Dispatched::Ignored => {
                trace!("message ignored (not JSON, or its connection is in no room)");
                return Flow::Continue;
            }
            Dispatched::Answer { len, membership } => {
                if let Some(membership) = membership {
                    debug!(?membership, "membership changed");
                }
                // Frames emitted before go first.
                if let Pumped::Abort = pump(ws, outbox, ours) {
                    return Flow::Abort;
                }
                let kind = registered.session.format().message_kind();
                answer(ws, outbox, ours, kind, out.get(..len).unwrap_or(&[]));
                return Flow::Continue;
            }
            Dispatched::Handler { room, future } => (room, future),
        }
    };
    let span = debug_span!("message", room = room.as_str());
    let future = CatchUnwind(future).instrument(span.clone());
    let limit = registered.server().shared.config.handler_timeout;
    let mut served = Served { ws, outbox, ours, read_ahead, write_failed: false };
    // While the handler runs, keep the connection alive: its output moving,
    // its input read up to the next message, or up to the client's close,
    // which waits until the handler's answer is out.
    served.ws.hold_close(true);
    let within = async {
        match limit {
            Some(limit) => tokio::time::timeout(limit, future).await.ok(),
            None => Some(future.await),
        }
    };
    let Some(result) = served.meanwhile(within).await else { return Flow::Abort };
    // The bus carries this node's emits slower than its clients send them:
    // before this connection's next message is handled, it waits for the
    // queue its node's clients share to drain (at most the bus's timeout,
    // by which a bus that takes nothing has failed), kept alive the same
    // way, rather than fill that queue until the other clients' messages
    // are dropped. Boxed: allocated only then, so an idle task keeps its
    // size.
    if let Some(link) = endpoint.cell().node.link.as_ref().filter(|link| link.is_congested()) {
        let drained = Box::pin(tokio::time::timeout(BUS_TIMEOUT.into(), link.uncongested()));
        if served.meanwhile(drained).await.is_none() {
            return Flow::Abort;
        }
    }
    let Served { ws, ours, .. } = served;
    ws.hold_close(false);
    let report = |failure: HandlerFailure<'_>| {
        if let Some(hook) = &registered.server().shared.hooks.error {
            hook(&ErrorEvent {
                connection_id: &id,
                user_id: registered.user.as_deref(),
                path: endpoint.path(),
                room_id: room.as_str(),
                failure,
            });
        }
    };
    let failure = match result {
        Some(Ok(Ok(()))) => return Flow::Continue,
        Some(Ok(Err(error))) => {
            report(HandlerFailure::Error(&*error));
            error.to_string()
        }
        // The panic's message went to the panic hook (and the logs) and
        // to the error hook; the sender gets the session's text for an
        // error without one.
        Some(Err(panicked)) => {
            report(HandlerFailure::Panic(panicked.message()));
            String::new()
        }
        // Cancelled: dropping its future ends it at its current await.
        None => {
            tracing::warn!(parent: &span, "handler timed out");
            report(HandlerFailure::TimedOut(limit.unwrap_or_default()));
            roomwire_core::dispatch::HANDLER_TIMED_OUT.to_owned()
        }
    };
    debug!(parent: &span, error = failure, "handler failed");
    if let Pumped::Abort = pump(ws, outbox, ours) {
        return Flow::Abort;
    }
    let mut frame = Vec::new();
    let needs = |e: &InsufficientSize| Some(e.required);
    let _ = append_with(&mut frame, 256, needs, |out| registered.session.handler_failed(Some(&failure), out));
    answer(ws, outbox, ours, registered.session.format().message_kind(), &frame);
    Flow::Continue
}

/// The handler panicked, with this payload.
pub(crate) struct Panicked(Box<dyn std::any::Any + Send>);

impl Panicked {
    /// The panic's message, when it has one (`panic!` with a literal or a
    /// format string).
    pub(crate) fn message(&self) -> &str {
        match self.0.downcast_ref::<&'static str>() {
            Some(text) => text,
            None => self.0.downcast_ref::<String>().map_or("", String::as_str),
        }
    }
}

/// Turns a panic of the handler into an error for the sender rather than
/// the end of the connection task.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(Panicked(payload))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the connection, woken with what it was made with, has
    /// nothing to give yet (polled once).
    async fn pending(socket: &mut Socket, made_with: MadeWith<'_>) -> bool {
        let ws = socket.awake(made_with).unwrap();
        poll_fn(|cx| Poll::Ready(ws.poll_recv(cx).is_pending())).await
    }

    /// A waiting connection rests, unless it had traffic less than
    /// `REST_AFTER` ago; then the wake asked for comes, and it rests at
    /// that wait. Woken, it reads on as before.
    #[tokio::test(start_paused = true)]
    async fn a_connection_rests_once_it_went_quiet() {
        use tokio::io::AsyncWriteExt;
        let config = Config::default();
        let (ws, mut peer) = crate::socket::tests::accepted_as(config, ServedStream::boxed).await;
        let made_with = (&config, ws.origin());
        let mut socket = Socket::Awake(Box::new(ws));
        let pending = async |socket: &mut Socket| pending(socket, made_with).await;
        assert!(pending(&mut socket).await);
        socket.mark_busy();
        socket.wait();
        assert!(matches!(socket, Socket::Awake(_)), "a connection with traffic rested at once");
        // Woken for nothing else before it: still awake.
        tokio::time::advance(REST_AFTER / 2).await;
        assert!(pending(&mut socket).await);
        socket.wait();
        assert!(matches!(socket, Socket::Awake(_)), "it rested before its wake");
        // The wake it asked for comes: it rests.
        tokio::time::advance(REST_AFTER / 2).await;
        assert!(pending(&mut socket).await);
        socket.wait();
        assert!(matches!(socket, Socket::Resting(_)), "a quiet connection did not rest");
        // A message (masked with a zero key) wakes it, read as before.
        peer.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']).await.unwrap();
        let ws = socket.awake(made_with).unwrap();
        let got = ws.recv().await;
        assert!(matches!(got, Some(Ok(Message::Text(ref t))) if t == "hi"), "{got:?}");
        // Without traffic, a waiting connection rests at once.
        assert!(pending(&mut socket).await);
        socket.wait();
        assert!(matches!(socket, Socket::Resting(_)), "an idle connection did not rest");
    }

    /// With keepalive off, the timer a connection had only for its wake
    /// after traffic is not kept once it rests.
    #[tokio::test(start_paused = true)]
    async fn without_keepalive_a_rested_connection_keeps_no_timer() {
        let mut config = Config::default();
        config.core.keepalive_interval = None;
        let (ws, _peer) = crate::socket::tests::accepted_as(config, ServedStream::boxed).await;
        let made_with = (&config, ws.origin());
        let mut socket = Socket::Awake(Box::new(ws));
        let pending = async |socket: &mut Socket| pending(socket, made_with).await;
        assert!(pending(&mut socket).await);
        socket.wait();
        assert!(matches!(&socket, Socket::Resting(resting) if !resting.holds_timer()), "a timer with no deadline");
        // Traffic (it is awake for it): a wake asked for, on a timer.
        socket.awake(made_with).unwrap();
        socket.mark_busy();
        assert!(pending(&mut socket).await);
        socket.wait();
        assert!(matches!(socket, Socket::Awake(_)));
        tokio::time::advance(REST_AFTER).await;
        assert!(pending(&mut socket).await);
        socket.wait();
        assert!(matches!(&socket, Socket::Resting(resting) if !resting.holds_timer()), "the wake's timer was kept");
    }

    /// After its wake for traffic has come and it rests, a connection's
    /// timer is armed at its keepalive deadline again: its task, waiting,
    /// is woken then and the ping goes out on time.
    #[tokio::test(start_paused = true)]
    async fn after_its_wake_a_resting_connection_pings_on_time() {
        use tokio::io::AsyncReadExt;
        let mut config = Config::default();
        config.core.keepalive_interval = Some(roomwire_core::Duration::from_secs(30));
        let (ws, mut peer) = crate::socket::tests::accepted_as(config, ServedStream::boxed).await;
        let start = TokioInstant::now();
        let origin = ws.origin();
        let mut socket = Socket::Awake(Box::new(ws));
        socket.mark_busy();
        // The connection's wait, as the loop has it: polled when woken.
        let rested = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = rested.clone();
        let task = tokio::spawn(poll_fn(move |cx| {
            let Some(ws) = socket.awake((&config, origin)) else { return Poll::Ready(()) };
            if ws.poll_recv(cx).is_ready() {
                return Poll::Ready(());
            }
            socket.wait();
            if matches!(socket, Socket::Resting(_)) {
                seen.store(true, Ordering::SeqCst);
            }
            Poll::Pending
        }));
        let mut frame = [0u8; 2];
        tokio::time::timeout(std::time::Duration::from_secs(40), peer.read_exact(&mut frame))
            .await
            .expect("no ping: the resting connection's task was never woken")
            .unwrap();
        assert_eq!(frame[0], 0x89, "a ping");
        let at = start.elapsed();
        assert!(
            at >= std::time::Duration::from_secs(30) && at < std::time::Duration::from_secs(31),
            "pinged at {at:?}"
        );
        assert!(rested.load(Ordering::SeqCst), "it never rested");
        task.abort();
    }

    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, C, D, R>(_: impl FnOnce(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every idle connection's tokio task holds this future, inside
    /// tracing's `Instrumented` (40 bytes more) and tokio's stage (8 more).
    /// tokio's task cell is 96 bytes besides, rounded up to 128: up to 112
    /// bytes here the cell is 256 bytes; past that every connection costs
    /// 128 more (BENCHMARKS, seventh pass). What it holds across its waits:
    /// one pointer to the running connection and the loop's few words, the
    /// rare values boxed.
    #[test]
    fn an_idle_connections_future_stays_small() {
        let size = returned_size(serve_stream);
        assert!(size <= 112, "serve_stream's future is {size} bytes");
    }

    /// Every registered connection holds its running state in one
    /// allocation, parked or not: up to 216 bytes it is glibc's 224-byte
    /// class on x86_64, past that 240 (BENCHMARKS, tenth pass).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_running_connection_stays_small() {
        let size = std::mem::size_of::<Running>();
        assert!(size <= 216, "a running connection is {size} bytes");
    }
}
