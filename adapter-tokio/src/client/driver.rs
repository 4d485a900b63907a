//! The connection task of a [`Client`](super::Client): it owns the socket
//! and the core's [`RoomClient`](roomwire_core::RoomClient), connects,
//! reconnects, moves requests, messages and answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use roomwire_core::client::{CLOSE_LEAVING, CLOSE_REQUEST_TIMEOUT, ClientError, ClientEvent, Opened, Requested};
use roomwire_core::envelope::{self, EncodeError};
use roomwire_core::reconnect::{Ending, Reconnect, Reconnector};
use roomwire_core::{Channel, CloseCode, MessageKind, RoomId, Timeout};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    ClientOptions, ConnectError, ConnectionError, ConnectionState, Core, Outgoing, RoomError, Shared, Sinks, lock,
};
use crate::error::Error;
use crate::message::{MessageRef, Response};
use crate::socket::WebSocket;
use roomwire_core::client::TargetBase;
use roomwire_core::handshake::ClientRequest;
use roomwire_core::url::WsUrl;

use super::stream::ClientStream;

type Socket = WebSocket<ClientStream>;

/// The answer to a join or leave.
type Reply = oneshot::Sender<Result<(), RoomError>>;

/// A request from a handle to the task.
pub(crate) enum Command {
    /// Join a room.
    Join { room: String, reply: Reply },
    /// Leave a room.
    Leave { room: String, reply: Reply },
    /// Close the client.
    Close { reply: oneshot::Sender<()> },
    /// Close the connection and stay disconnected until `Reconnect`.
    Disconnect { reply: oneshot::Sender<()> },
    /// Connect again now: close the open connection, or skip the wait.
    Reconnect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Join,
    Leave,
}

/// A join or leave the task has not carried out yet.
struct RoomCommand {
    kind: Kind,
    room: String,
    reply: Reply,
}

/// A join or leave waiting for its outcome.
struct Waiter {
    kind: Kind,
    room: RoomId,
    reply: Reply,
}

/// What [`Driver::request`] did.
enum Request {
    /// Send the request of this length, at the start of `out`.
    Send(usize),
    /// Nothing to send.
    Nothing,
    /// Alepha wire: reconnect with the new rooms.
    Reconnect,
    /// Every request slot is taken: try again after an answer.
    Deferred(RoomCommand),
}

/// What a connection attempt gave.
enum Attempt {
    Open(Box<Socket>, Option<String>),
    Failed(ConnectionError),
    Shutdown,
    /// `disconnect` was called meanwhile.
    Paused,
}

/// How a session ended.
enum End {
    /// Closed on request.
    Shutdown,
    /// Closed to reconnect at once (new rooms or new wire, Alepha wire, or
    /// `reconnect`).
    Reconnect,
    /// Closed by `disconnect`.
    Paused,
    /// Lost: retry after the backoff.
    Lost(ConnectionError),
}

/// What the session does after one step.
enum Flow {
    Continue,
    Reconnect,
    Shutdown,
    Pause,
    /// The connection is gone.
    Lost(ConnectionError),
    /// The server broke the protocol: close with this code, then retry.
    Broken(ConnectionError, CloseCode),
}

/// What one round of socket I/O gave.
enum IoStep {
    Message(crate::Message),
    /// `recv` ended: `None` after a close handshake, else the error.
    Ended(Option<Error>),
    Flushed(Result<(), Error>),
}

/// Why a queued message was not written.
enum WriteError {
    /// The socket cannot take it now: keep it.
    Retry,
    /// It cannot be sent: discard it.
    Reject(String),
}

/// Where to connect: a parsed `ws[s]://host[:port][/prefix][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `wss://`.
    secure: bool,
    /// `host[:port]` as written: the `Host` header.
    authority: String,
    /// The host to connect to, without IPv6 brackets.
    host: String,
    port: u16,
    /// Path prefix before the channel's path, without a trailing `/`.
    prefix: String,
    /// The URL's query, carried by every handshake before the rooms.
    query: Option<String>,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Self, ConnectError> {
        let url = WsUrl::parse(url).map_err(|e| ConnectError::InvalidUrl(e.as_str()))?;
        if url.secure && !cfg!(feature = "tls") {
            return Err(ConnectError::InvalidUrl("wss:// needs the `tls` feature of roomwire-tokio"));
        }
        Ok(Self {
            secure: url.secure,
            authority: url.authority.to_owned(),
            host: url.host.to_owned(),
            port: url.port,
            prefix: url.prefix().to_owned(),
            query: url.query.map(str::to_owned),
        })
    }

    fn base(&self) -> TargetBase<'_> {
        TargetBase { prefix: &self.prefix, query: self.query.as_deref() }
    }
}

/// Where the task hands received messages: the merged stream and the
/// per-room streams.
pub(crate) struct Outlets<M> {
    pub(crate) incoming: mpsc::Sender<(Option<RoomId>, M)>,
    pub(crate) sinks: Sinks<M>,
}

/// The task: see the [module docs](self).
pub(crate) struct Driver<C, M>
where
    C: Channel,
    M: Serialize + DeserializeOwned,
{
    endpoint: Endpoint,
    options: ClientOptions,
    core: Core<C, M>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::Sender<(Option<RoomId>, M)>,
    /// The per-room streams.
    sinks: Sinks<M>,
    state: watch::Sender<ConnectionState>,
    waiters: Vec<Waiter>,
    /// Joins and leaves waiting for a request slot (or received during a
    /// connection attempt), in order.
    deferred: VecDeque<RoomCommand>,
    close_replies: Vec<oneshot::Sender<()>>,
    /// Answered once the connection is closed by `disconnect`.
    disconnect_replies: Vec<oneshot::Sender<()>>,
    shutdown: bool,
    /// False after `disconnect`, until `reconnect`.
    online: bool,
    /// `reconnect` asked to skip the wait before the next attempt.
    hurry: bool,
    /// Output of the core (requests, frames).
    out: Vec<u8>,
    /// Working memory of the core's decoder.
    scratch: Vec<u8>,
    /// Since when the server owes an answer to a request (reset by each
    /// answer).
    waiting_since: Option<Instant>,
    /// The send queue should be looked at.
    scan: bool,
    /// Queued messages wait for the socket to drain.
    backlog: bool,
}

impl<C, M> Driver<C, M>
where
    C: Channel + 'static,
    M: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(
        endpoint: Endpoint,
        options: ClientOptions,
        core: Core<C, M>,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        outlets: Outlets<M>,
        state: watch::Sender<ConnectionState>,
    ) -> Self {
        let Outlets { incoming, sinks } = outlets;
        let mut driver = Self {
            endpoint,
            options,
            core,
            shared,
            commands,
            incoming,
            sinks,
            state,
            waiters: Vec::new(),
            deferred: VecDeque::new(),
            close_replies: Vec::new(),
            disconnect_replies: Vec::new(),
            shutdown: false,
            online: true,
            hurry: false,
            out: vec![0; 512],
            scratch: Vec::new(),
            waiting_since: None,
            scan: false,
            backlog: false,
        };
        driver.rooms_changed();
        driver
    }

    /// Connect, run, reconnect, until closed or the core's reconnect policy
    /// stops.
    pub(crate) async fn run(mut self) {
        let origin = Instant::now();
        let now = move || {
            roomwire_core::Instant::from_micros(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX))
        };
        let mut reconnector = Reconnector::new(self.options.reconnect);
        let mut gave_up = None;
        loop {
            self.apply_offline();
            if self.shutdown {
                break;
            }
            if !self.online {
                for reply in self.disconnect_replies.drain(..) {
                    let _ = reply.send(());
                }
                self.state.send_replace(ConnectionState::Disconnected);
                if !self.wait_online().await {
                    break;
                }
                reconnector.restart();
            }
            if std::mem::take(&mut self.hurry) {
                reconnector.restart();
            }
            self.state.send_replace(ConnectionState::Connecting { attempt: reconnector.failures() });
            let error = match self.attempt().await {
                Attempt::Shutdown => break,
                Attempt::Paused => continue,
                Attempt::Failed(error) => error,
                Attempt::Open(mut ws, protocol) => {
                    reconnector.opened(now());
                    let end = self.session(&mut ws, protocol).await;
                    drop(ws);
                    self.core.closed();
                    self.rooms_changed();
                    match end {
                        End::Shutdown => break,
                        End::Paused => continue,
                        End::Reconnect => {
                            reconnector.ended(now(), Ending::Replaced, 0);
                            continue;
                        }
                        End::Lost(error) => error,
                    }
                }
            };
            let delay = match reconnector.ended(now(), error.ending(), random_u32()) {
                Reconnect::Now => continue,
                Reconnect::After(delay) => Duration::from(delay),
                Reconnect::Stop(why) => {
                    warn!(%error, ?why, failures = reconnector.failures(), "giving up");
                    gave_up = Some(error);
                    break;
                }
            };
            let failures = reconnector.failures();
            info!(%error, failures, retry_in = ?delay, "connection failed; retrying");
            self.state.send_replace(ConnectionState::Error { error, attempt: failures, retry_in: delay });
            if !self.wait(delay).await {
                break;
            }
        }
        self.finish(gave_up);
    }

    /// One connection attempt: TCP, then the opening handshake for the
    /// wanted rooms. Joins and leaves that arrive meanwhile wait for its
    /// outcome (on the Alepha wire the rooms are those of the target).
    async fn attempt(&mut self) -> Attempt {
        let target = match self.target() {
            Ok(target) => target,
            Err(error) => return Attempt::Failed(error),
        };
        let protocols = self.core.protocols();
        let headers: Vec<(&str, &str)> =
            self.options.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        debug!(target = %target, ?protocols, "connecting");
        let connect = open(&self.endpoint, &target, protocols, &headers, &self.options);
        tokio::pin!(connect);
        loop {
            tokio::select! {
                result = &mut connect => {
                    return match result {
                        Ok((ws, response)) => Attempt::Open(Box::new(ws), response.protocol),
                        Err(error) => Attempt::Failed(error.into()),
                    };
                }
                command = self.commands.recv() => match command {
                    None => {
                        self.shutdown = true;
                        return Attempt::Shutdown;
                    }
                    Some(Command::Close { reply }) => {
                        self.close_replies.push(reply);
                        self.shutdown = true;
                        return Attempt::Shutdown;
                    }
                    Some(Command::Join { room, reply }) => {
                        self.deferred.push_back(RoomCommand { kind: Kind::Join, room, reply })
                    }
                    Some(Command::Leave { room, reply }) => {
                        self.deferred.push_back(RoomCommand { kind: Kind::Leave, room, reply })
                    }
                    Some(Command::Disconnect { reply }) => {
                        self.disconnect_replies.push(reply);
                        self.online = false;
                        return Attempt::Paused;
                    }
                    // Already connecting.
                    Some(Command::Reconnect) => {}
                },
            }
        }
    }

    /// The request target: the core's, under the URL's prefix and query.
    fn target(&mut self) -> Result<String, ConnectionError> {
        let mut buf = vec![0u8; 256];
        loop {
            match self.core.connect_target_in(self.endpoint.base(), &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    break;
                }
                Err(e) if e.required > buf.len() => buf.resize(e.required, 0),
                Err(_) => return Err(ConnectionError::Target),
            }
        }
        String::from_utf8(buf).map_err(|_| ConnectionError::Target)
    }

    /// Run one open connection until it ends.
    async fn session(&mut self, ws: &mut Socket, protocol: Option<String>) -> End {
        match self.core.opened(protocol.as_deref()) {
            Err(error) => {
                abort(ws, error.failure_code(self.core.format())).await;
                return End::Lost(ConnectionError::Protocol(error));
            }
            Ok(Opened::Reconnect) => {
                info!("the server does not speak the roomwire wire: reconnecting on the Alepha wire");
                self.shared.set_format(self.core.format());
                self.close_socket(ws).await;
                return End::Reconnect;
            }
            Ok(Opened::Ready) => {}
        }
        let format = self.core.format();
        self.shared.set_format(format);
        debug!(?format, "connected");
        // The rooms first: whoever sees the new state sees its rooms.
        self.rooms_changed();
        self.state.send_replace(ConnectionState::Connected { format });
        let mut flow = self.progress(ws).await;
        loop {
            match flow {
                Flow::Continue => {}
                Flow::Reconnect => {
                    debug!("reconnecting (new rooms on the Alepha wire, or asked to)");
                    self.close_socket(ws).await;
                    return End::Reconnect;
                }
                Flow::Shutdown => {
                    self.flush_outgoing(ws);
                    self.close_socket(ws).await;
                    return End::Shutdown;
                }
                Flow::Pause => {
                    self.flush_outgoing(ws);
                    self.close_socket(ws).await;
                    return End::Paused;
                }
                Flow::Lost(error) => return End::Lost(error),
                Flow::Broken(error, code) => {
                    warn!(%error, "closing the connection");
                    abort(ws, code).await;
                    return End::Lost(error);
                }
            }
            if self.backlog && ws.queued() == 0 {
                self.backlog = false;
                self.scan = true;
            }
            if self.scan {
                self.flush_outgoing(ws);
            }
            // Read while the application keeps up (or is gone), and while no
            // queued message waits for the socket to drain.
            let room_for_more = (self.incoming.is_closed() || self.incoming.capacity() > 0) && self.sinks_have_room();
            let read = room_for_more && !self.backlog;
            // Answers are only late while they are being read.
            let deadline = self.waiting_since.filter(|_| read).map(|since| since + self.options.request_timeout);
            let incoming = &self.incoming;
            flow = tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    None => {
                        self.shutdown = true;
                        Flow::Shutdown
                    }
                    Some(command) => self.command(command, ws).await,
                },
                () = self.shared.notify.notified() => {
                    self.scan = true;
                    Flow::Continue
                }
                step = io_step(ws, read) => self.on_io(step, ws).await,
                // Wakes up when the application made room (the permit is
                // given back at once).
                () = async move { drop(incoming.reserve().await) }, if !room_for_more => Flow::Continue,
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    Flow::Broken(ConnectionError::RequestTimeout, CLOSE_REQUEST_TIMEOUT)
                }
            };
            if !read && let Some(since) = self.waiting_since.as_mut() {
                // The request clock stands still while nothing is read.
                *since = Instant::now();
            }
        }
    }

    /// A command on an open connection.
    async fn command(&mut self, command: Command, ws: &mut Socket) -> Flow {
        let command = match command {
            Command::Close { reply } => {
                self.close_replies.push(reply);
                self.shutdown = true;
                return Flow::Shutdown;
            }
            Command::Join { room, reply } => RoomCommand { kind: Kind::Join, room, reply },
            Command::Leave { room, reply } => RoomCommand { kind: Kind::Leave, room, reply },
            Command::Disconnect { reply } => {
                self.disconnect_replies.push(reply);
                self.online = false;
                return Flow::Pause;
            }
            Command::Reconnect => {
                self.hurry = true;
                return Flow::Reconnect;
            }
        };
        if !self.deferred.is_empty() {
            // Keep the order of requests.
            self.deferred.push_back(command);
            return Flow::Continue;
        }
        match self.request(command) {
            Request::Send(len) => self.feed_request(ws, len).await,
            Request::Nothing => Flow::Continue,
            Request::Reconnect => Flow::Reconnect,
            Request::Deferred(command) => {
                self.deferred.push_back(command);
                Flow::Continue
            }
        }
    }

    /// Let the core take a join or leave; register who waits for it.
    fn request(&mut self, command: RoomCommand) -> Request {
        let RoomCommand { kind, room, reply } = command;
        let result = loop {
            let result = match kind {
                Kind::Join => self.core.join(&room, &mut self.out),
                Kind::Leave => self.core.leave(&room, &mut self.out),
            };
            match result {
                Err(ClientError::Encode(EncodeError::InsufficientSize(e))) if e.required > self.out.len() => {
                    self.out.resize(e.required, 0)
                }
                other => break other,
            }
        };
        let request = match result {
            Ok(Requested::Sent { len, .. }) => {
                self.waiting_since.get_or_insert_with(Instant::now);
                Request::Send(len)
            }
            Ok(Requested::NotSent) => Request::Nothing,
            Ok(Requested::Reconnect) => Request::Reconnect,
            Err(ClientError::TooManyPending { .. }) => return Request::Deferred(RoomCommand { kind, room, reply }),
            Err(error) => {
                let _ = reply.send(Err(match error {
                    ClientError::InvalidRoomId => RoomError::InvalidRoomId,
                    ClientError::TooManyRooms(_) => RoomError::TooManyRooms,
                    other => RoomError::Client(other),
                }));
                return Request::Nothing;
            }
        };
        match RoomId::new(&room) {
            Ok(room) => self.waiters.push(Waiter { kind, room, reply }),
            // The core accepted the room id: cannot happen.
            Err(_) => drop(reply.send(Err(RoomError::InvalidRoomId))),
        }
        self.rooms_changed();
        request
    }

    /// Queue the request of `len` bytes at the start of `out`.
    async fn feed_request(&mut self, ws: &mut Socket, len: usize) -> Flow {
        let kind = self.core.message_kind();
        match feed(ws, kind, self.out.get(..len).unwrap_or_default()).await {
            Ok(()) => Flow::Continue,
            Err(error) => Flow::Lost(error.into()),
        }
    }

    /// After the connection opened or the server answered a request: send
    /// what the core wants sent (the joins that restore the wanted rooms),
    /// retry deferred requests, settle waiters, look at the send queue.
    async fn progress(&mut self, ws: &mut Socket) -> Flow {
        let kind = self.core.message_kind();
        loop {
            let len = loop {
                match self.core.poll_transmit(&mut self.out) {
                    Ok(len) => break len,
                    Err(e) => {
                        let len = e.required.max(self.out.len() + 1);
                        self.out.resize(len, 0);
                    }
                }
            };
            if len == 0 {
                break;
            }
            self.waiting_since.get_or_insert_with(Instant::now);
            if let Err(error) = feed(ws, kind, self.out.get(..len).unwrap_or_default()).await {
                return Flow::Lost(error.into());
            }
        }
        while let Some(command) = self.deferred.pop_front() {
            let flow = match self.request(command) {
                Request::Send(len) => self.feed_request(ws, len).await,
                Request::Nothing => Flow::Continue,
                Request::Reconnect => Flow::Reconnect,
                Request::Deferred(command) => {
                    self.deferred.push_front(command);
                    break;
                }
            };
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
        self.rooms_changed();
        self.scan = true;
        Flow::Continue
    }

    /// One round of socket I/O.
    async fn on_io(&mut self, step: IoStep, ws: &mut Socket) -> Flow {
        match step {
            IoStep::Message(message) => match self.on_message(message.as_bytes()) {
                Ok(true) => self.progress(ws).await,
                Ok(false) => Flow::Continue,
                Err((error, code)) => Flow::Broken(ConnectionError::Protocol(error), code),
            },
            IoStep::Ended(Some(error)) => Flow::Lost(error.into()),
            IoStep::Ended(None) => Flow::Lost(match ws.peer_close() {
                Some(close) => ConnectionError::ClosedByServer { code: close.code, reason: close.reason.clone() },
                None => ConnectionError::ClosedByServer { code: None, reason: String::new() },
            }),
            IoStep::Flushed(Ok(())) => Flow::Continue,
            IoStep::Flushed(Err(error)) => Flow::Lost(error.into()),
        }
    }

    /// One whole message from the server. `Ok(true)` when it answered a
    /// request; the error and the close code the core chose for it when
    /// the connection must end.
    fn on_message(&mut self, data: &[u8]) -> Result<bool, (ClientError, CloseCode)> {
        if self.scratch.len() < data.len() {
            self.scratch.resize(data.len(), 0);
        }
        let format = self.core.format();
        let event = match self.core.handle_message(data, &mut self.scratch) {
            Ok(event) => event,
            Err(error) => match error.close_code(format) {
                Some(code) => return Err((error, code)),
                None => {
                    warn!(%error, "ignoring a server frame");
                    return Ok(false);
                }
            },
        };
        let (kind, room, code, text) = match event {
            ClientEvent::Message { room, message } => {
                self.deliver(room, message);
                return Ok(false);
            }
            ClientEvent::Joined(room) => {
                debug!(%room, "joined");
                (Kind::Join, room, None, String::new())
            }
            ClientEvent::Left(room) => {
                debug!(%room, "left");
                (Kind::Leave, room, None, String::new())
            }
            ClientEvent::JoinFailed { room, code, text } => (Kind::Join, room, Some(code), text.to_string()),
            ClientEvent::LeaveFailed { room, code, text } => (Kind::Leave, room, Some(code), text.to_string()),
            ClientEvent::ServerError { code, text } => {
                warn!(code, %text, "server error");
                return Ok(false);
            }
            ClientEvent::DecodeFailed { room, error } => {
                warn!(room = room.as_deref(), %error, "ignoring a message that does not decode");
                return Ok(false);
            }
        };
        if let Some(code) = code {
            warn!(%room, code, %text, ?kind, "refused by the server");
            self.fail_waiters(kind, &room, code, &text);
        }
        self.waiting_since = (self.core.pending_requests() > 0).then(Instant::now);
        Ok(true)
    }

    /// Whether every live per-room stream can take a message (dropped
    /// streams are forgotten here).
    fn sinks_have_room(&self) -> bool {
        let mut sinks = lock(&self.sinks);
        sinks.retain(|sink| !sink.tx.is_closed());
        sinks.iter().all(|sink| sink.tx.capacity() > 0)
    }

    /// Hand a message to the application: the per-room streams of its room
    /// (all of them when it has none), then the merged stream.
    fn deliver(&mut self, room: Option<RoomId>, message: M) {
        for sink in lock(&self.sinks).iter() {
            if room.as_ref().is_none_or(|room| *room == sink.room) && sink.tx.try_send((sink.clone)(&message)).is_err()
            {
                // Only while closing, or a stream dropped meanwhile.
                debug!(room = %sink.room, "a room stream is not reading: message dropped");
            }
        }
        if self.incoming.is_closed() {
            return;
        }
        if self.incoming.try_send((room, message)).is_err() {
            // Only while closing: otherwise the socket is read only when
            // there is room.
            warn!("the application is not reading: message dropped");
        }
    }

    /// Answer the waiters of a refused request.
    fn fail_waiters(&mut self, kind: Kind, room: &RoomId, code: u16, text: &str) {
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters.get(i).is_some_and(|w| w.kind == kind && w.room == *room) {
                let waiter = self.waiters.swap_remove(i);
                let _ = waiter.reply.send(Err(RoomError::Refused { code, text: text.to_owned() }));
            } else {
                i += 1;
            }
        }
    }

    /// Publish the rooms and answer the waiters whose request completed.
    fn rooms_changed(&mut self) {
        {
            let mut rooms = lock(&self.shared.rooms);
            rooms.joined.clear();
            rooms.joined.extend(self.core.rooms().iter().cloned());
            rooms.wanted.clear();
            rooms.wanted.extend(self.core.wanted().iter().cloned());
        }
        let mut i = 0;
        while i < self.waiters.len() {
            let outcome = self.waiters.get(i).and_then(|w| {
                let joined = self.core.is_joined(&w.room);
                let wanted = self.core.wanted().contains(&w.room);
                match w.kind {
                    Kind::Join if joined => Some(Ok(())),
                    Kind::Join if !wanted => Some(Err(RoomError::Superseded)),
                    Kind::Leave if wanted => Some(Err(RoomError::Superseded)),
                    Kind::Leave if !joined => Some(Ok(())),
                    _ => None,
                }
            });
            match outcome {
                Some(outcome) => {
                    let waiter = self.waiters.swap_remove(i);
                    let _ = waiter.reply.send(outcome);
                }
                None => i += 1,
            }
        }
        if self.core.pending_requests() == 0 {
            self.waiting_since = None;
        }
    }

    /// Write the queued messages whose room is joined; keep those whose
    /// room is wanted but not joined yet; discard the others.
    fn flush_outgoing(&mut self, ws: &mut Socket) {
        self.scan = false;
        let mut batch = std::mem::take(&mut *lock(&self.shared.queue));
        if batch.is_empty() {
            return;
        }
        // Leave room in the socket's queue for requests and control frames.
        let limit = (ws.config().max_outbound / 2).max(1);
        let mut keep = VecDeque::new();
        let mut rejected = 0u64;
        while let Some(item) = batch.pop_front() {
            if !self.core.is_joined(&item.room) {
                if self.core.wanted().contains(&item.room) {
                    keep.push_back(item);
                } else {
                    debug!(room = %item.room, "message for a room not wanted: discarded");
                    rejected += 1;
                }
                continue;
            }
            if ws.queued() >= limit {
                self.backlog = true;
                keep.push_back(item);
                keep.extend(batch.drain(..));
                break;
            }
            match self.write_message(ws, &item) {
                Ok(()) => {}
                Err(WriteError::Retry) => {
                    keep.push_back(item);
                    keep.extend(batch.drain(..));
                    break;
                }
                Err(WriteError::Reject(reason)) => {
                    warn!(room = %item.room, %reason, "message discarded");
                    rejected += 1;
                }
            }
        }
        if rejected > 0 {
            self.shared.rejected.fetch_add(rejected, Ordering::Relaxed);
        }
        if keep.is_empty() {
            return;
        }
        let mut dropped = 0u64;
        {
            let mut queue = lock(&self.shared.queue);
            // What was sent meanwhile is newer than what is kept.
            keep.append(&mut queue);
            while keep.len() > self.shared.capacity {
                keep.pop_front();
                dropped += 1;
            }
            *queue = keep;
        }
        if dropped > 0 {
            self.shared.dropped.fetch_add(dropped, Ordering::Relaxed);
            warn!(dropped, "send queue full: oldest message dropped");
        }
    }

    /// Frame a queued message for the current connection and queue it on
    /// the socket.
    fn write_message(&mut self, ws: &mut Socket, item: &Outgoing) -> Result<(), WriteError> {
        // The payload was encoded by `send` as a valid `Out`. In the same
        // encoding the core frames it as it is; otherwise (the wire changed
        // on reconnect) decoding it back lets the core re-encode it.
        let same_encoding = item.format.is_json() == self.core.format().is_json();
        let message = if same_encoding {
            None
        } else {
            let message = envelope::decode_payload::<C::Out<'_>>(item.format, &item.payload, &mut [])
                .map_err(|e| WriteError::Reject(e.to_string()))?;
            Some(message)
        };
        let len = loop {
            let sent = match &message {
                None => self.core.send_encoded(&item.room, &item.payload, &mut self.out),
                Some(message) => self.core.send(&item.room, message, &mut self.out),
            };
            match sent {
                Ok(len) => break len,
                Err(ClientError::Encode(EncodeError::InsufficientSize(e))) if e.required > self.out.len() => {
                    self.out.resize(e.required, 0)
                }
                Err(error) => return Err(WriteError::Reject(error.to_string())),
            }
        };
        let frame = self.out.get(..len).unwrap_or_default();
        let message = message_ref(self.core.message_kind(), frame).map_err(WriteError::Reject)?;
        match ws.feed(message) {
            Ok(()) => Ok(()),
            Err(Error::QueueFull | Error::Closed) => Err(WriteError::Retry),
            Err(error) => Err(WriteError::Reject(error.to_string())),
        }
    }

    /// The closing handshake (1000), delivering what the server sent before
    /// its answer; bounded by the close timeout.
    async fn close_socket(&mut self, ws: &mut Socket) {
        if ws.close(CLOSE_LEAVING, "").await.is_err() {
            return;
        }
        while let Some(result) = ws.recv().await {
            if let Ok(message) = result {
                let _ = self.on_message(message.as_bytes());
            }
        }
    }

    /// Between connections: carry out the commands received so far (the
    /// core only updates the wanted rooms while disconnected).
    fn apply_offline(&mut self) {
        for command in std::mem::take(&mut self.deferred) {
            self.request_offline(command);
        }
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.command_offline(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.shutdown = true;
                    break;
                }
            }
        }
    }

    fn command_offline(&mut self, command: Command) {
        match command {
            Command::Close { reply } => {
                self.close_replies.push(reply);
                self.shutdown = true;
            }
            Command::Join { room, reply } => self.request_offline(RoomCommand { kind: Kind::Join, room, reply }),
            Command::Leave { room, reply } => self.request_offline(RoomCommand { kind: Kind::Leave, room, reply }),
            Command::Disconnect { reply } => {
                self.online = false;
                if self.shutdown {
                    let _ = reply.send(());
                } else {
                    self.disconnect_replies.push(reply);
                }
            }
            Command::Reconnect => {
                self.online = true;
                self.hurry = true;
            }
        }
    }

    /// Disconnected on request: carry out commands until `reconnect`
    /// (true) or the end of the client (false).
    async fn wait_online(&mut self) -> bool {
        while !self.online {
            match self.commands.recv().await {
                None => return false,
                Some(command) => self.command_offline(command),
            }
            if self.shutdown {
                return false;
            }
        }
        true
    }

    fn request_offline(&mut self, command: RoomCommand) {
        // Disconnected, the core sends nothing and needs no request slot.
        if let Request::Deferred(command) = self.request(command) {
            let _ = command.reply.send(Err(RoomError::Client(ClientError::TooManyPending { capacity: 0 })));
        }
    }

    /// Wait `delay` before the next attempt, carrying out commands; false
    /// if the client is to shut down. `reconnect` and `disconnect` end the
    /// wait early.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(command) => {
                        self.command_offline(command);
                        if self.shutdown {
                            return false;
                        }
                        if self.hurry || !self.online {
                            return true;
                        }
                    }
                },
            }
        }
    }

    /// The end: the client is closed, whoever waits is answered.
    fn finish(self, gave_up: Option<ConnectionError>) {
        let Self {
            shared,
            mut commands,
            incoming,
            sinks,
            state,
            waiters,
            deferred,
            mut close_replies,
            disconnect_replies,
            ..
        } = self;
        shared.closed.store(true, Ordering::Release);
        let unsent = std::mem::take(&mut *lock(&shared.queue)).len();
        if unsent > 0 {
            debug!(unsent, "client closed: unsent messages discarded");
        }
        for waiter in waiters {
            let _ = waiter.reply.send(Err(RoomError::Closed));
        }
        for command in deferred {
            let _ = command.reply.send(Err(RoomError::Closed));
        }
        commands.close();
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Join { reply, .. } | Command::Leave { reply, .. } => drop(reply.send(Err(RoomError::Closed))),
                Command::Close { reply } | Command::Disconnect { reply } => close_replies.push(reply),
                Command::Reconnect => {}
            }
        }
        // The streams end (after what they hold) before `close` returns.
        drop(incoming);
        lock(&sinks).clear();
        debug!("closed");
        state.send_replace(ConnectionState::Closed { error: gave_up });
        for reply in close_replies.into_iter().chain(disconnect_replies) {
            let _ = reply.send(());
        }
    }
}

/// A uniform draw over `u32` from the operating system's generator, for
/// the reconnect jitter (a fixed value if it fails: only the spread is
/// lost).
fn random_u32() -> u32 {
    getrandom::u32().unwrap_or(u32::MAX / 2)
}

/// TCP connect and TLS for `wss://` (together bounded by the handshake
/// timeout), then the opening handshake.
async fn open(
    endpoint: &Endpoint,
    target: &str,
    protocols: &[&str],
    headers: &[(&str, &str)],
    options: &ClientOptions,
) -> Result<(Socket, Response), Error> {
    let config = options.config;
    let connect = async {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        tcp.set_nodelay(true)?;
        if endpoint.secure {
            #[cfg(feature = "tls")]
            return super::stream::tls(tcp, &endpoint.host, options.tls.clone()).await;
        }
        Ok::<_, std::io::Error>(ClientStream::Plain(tcp))
    };
    let stream = match config.core.handshake_timeout {
        Some(limit) => tokio::time::timeout(Duration::from(limit), connect)
            .await
            .map_err(|_| Error::Timeout(Timeout::Handshake))??,
        None => connect.await?,
    };
    let request = ClientRequest { host: &endpoint.authority, target, protocols, headers };
    WebSocket::connect_with_stream(stream, &request, config).await
}

/// Read a message (and write what is queued meanwhile), or only write.
async fn io_step(ws: &mut Socket, read: bool) -> IoStep {
    if read {
        match ws.recv().await {
            Some(Ok(message)) => IoStep::Message(message),
            Some(Err(error)) => IoStep::Ended(Some(error)),
            None => IoStep::Ended(None),
        }
    } else if ws.queued() > 0 {
        IoStep::Flushed(ws.flush().await)
    } else {
        std::future::pending().await
    }
}

/// Queue one message of `kind`, writing what is queued first if the
/// socket's queue is full.
async fn feed(ws: &mut Socket, kind: MessageKind, bytes: &[u8]) -> Result<(), Error> {
    let message = message_ref(kind, bytes).map_err(|_| Error::Send(roomwire_core::SendError::InvalidState))?;
    match ws.feed(message) {
        Err(Error::QueueFull) => {
            ws.flush().await?;
            ws.feed(message)
        }
        other => other,
    }
}

/// The core's output as a message of `kind` (its JSON is always UTF-8).
fn message_ref(kind: MessageKind, bytes: &[u8]) -> Result<MessageRef<'_>, String> {
    match kind {
        MessageKind::Text => std::str::from_utf8(bytes).map(MessageRef::Text).map_err(|e| e.to_string()),
        MessageKind::Binary => Ok(MessageRef::Binary(bytes)),
    }
}

/// Close with `code` without waiting for the answer (the server broke the
/// protocol or stopped answering).
async fn abort(ws: &mut Socket, code: CloseCode) {
    let limit = Duration::from_micros(ws.config().core.close_timeout.as_micros());
    let _ = tokio::time::timeout(limit, ws.close(code, "")).await;
}

#[cfg(test)]
mod tests {
    use super::Endpoint;
    use crate::client::ConnectError;

    #[test]
    fn parses_endpoints() {
        let e = Endpoint::parse("ws://127.0.0.1:8080").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.host.as_str(), e.port, e.prefix.as_str(), e.secure),
            ("127.0.0.1:8080", "127.0.0.1", 8080, "", false)
        );
        let e = Endpoint::parse("WS://example.com/api/?token=t").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str(), e.query.as_deref()),
            ("example.com", 80, "/api", Some("token=t"))
        );
        let e = Endpoint::parse("wss://[::1]/").unwrap();
        assert_eq!((e.authority.as_str(), e.host.as_str(), e.port, e.secure), ("[::1]", "::1", 443, true));
        for bad in ["http://h/", "ws://", "ws://:80", "ws://h:99999", "ws://u@h", "ws://h/#f", "h:80"] {
            assert!(matches!(Endpoint::parse(bad), Err(ConnectError::InvalidUrl(_))), "{bad}");
        }
    }
}
