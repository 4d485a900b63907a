//! The connection task of a [`Client`](super::Client): a loop that moves
//! bytes between the stream (TCP, or TLS) and the core's
//! [`ClientSession`], time into it, and requests, messages and answers
//! between it and the handles. Every protocol decision (the handshake, the
//! rooms restored, the close code for what the server broke, the request
//! deadline, when to reconnect) is the session's, as in the embassy
//! client.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::deflate::Codec;
use roomwire_core::client::{ClientError, ClientEvent, Requested, TargetBase};
use roomwire_core::message::VecStorage;
use roomwire_core::payload;
use roomwire_core::payload::EncodeError;
use roomwire_core::session::{ClientSession, Disconnect, Next, Output, SessionConfig, SessionEvent, TransportError};
use roomwire_core::url::WsUrl;
use roomwire_core::{Channel, InsufficientSize, RoomId, Timeout};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    ClientOptions, ConnectError, ConnectionError, ConnectionState, Core, MAX_ROOMS, Outgoing, Owned, RoomError, Shared,
    Sinks,
};
use crate::error::Error;
use crate::lock;
use crate::socket::{RandomKeys, append_with};

use super::incoming::{Charged, Held};
use super::stream::ClientStream;

type Session<C, M> = ClientSession<Owned<C, M>, MAX_ROOMS, RandomKeys, VecStorage>;

/// A stream being opened.
type Opening = Pin<Box<dyn Future<Output = io::Result<ClientStream>> + Send>>;

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
    /// Done: written to the output, or nothing to send.
    Done,
    /// Every request slot is taken: try again after an answer.
    Deferred(RoomCommand),
}

/// An open stream, split so that reading and writing wait together.
struct Link {
    reader: ReadHalf<ClientStream>,
    writer: WriteHalf<ClientStream>,
    /// Bytes read and not consumed by the session yet.
    input: Vec<u8>,
}

/// Why the stream stopped.
enum Io {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
}

/// Where to connect: a parsed `ws[s]://host[:port][/prefix][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl {
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

impl ServerUrl {
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
    pub(crate) incoming: Merged<M>,
    pub(crate) sinks: Sinks<M>,
    /// What the messages waiting in them hold.
    pub(crate) held: Arc<Held>,
}

/// The task: see the [module docs](self).
pub(crate) struct Driver<C, M>
where
    C: Channel,
    M: Serialize + DeserializeOwned,
{
    endpoint: ServerUrl,
    options: ClientOptions,
    session: Session<C, M>,
    /// permessage-deflate's inflater, while the connection agreed to it.
    codec: Option<Box<Codec>>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    incoming: Merged<M>,
    /// The per-room streams.
    sinks: Sinks<M>,
    /// What the messages waiting in the streams hold.
    held: Arc<Held>,
    state: watch::Sender<ConnectionState>,
    waiters: Vec<Waiter>,
    /// Joins and leaves waiting for a request slot, in order.
    deferred: VecDeque<RoomCommand>,
    close_replies: Vec<oneshot::Sender<()>>,
    /// Answered once the connection is closed by `disconnect`.
    disconnect_replies: Vec<oneshot::Sender<()>>,
    shutdown: bool,
    /// Bytes for the stream: the session's frames, then queued messages.
    out: Vec<u8>,
    /// Working memory of the core's decoder.
    scratch: Vec<u8>,
    /// The send queue should be looked at.
    scan: bool,
    /// The last I/O error, for the error reported with the disconnect.
    io_error: Option<io::Error>,
    /// When the session's clock started.
    origin: Instant,
}

impl<C, M> Driver<C, M>
where
    C: Channel + 'static,
    M: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(
        endpoint: ServerUrl,
        options: ClientOptions,
        core: Core<C, M>,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        outlets: Outlets<M>,
        state: watch::Sender<ConnectionState>,
    ) -> io::Result<Self> {
        let Outlets { incoming, sinks, held } = outlets;
        let websocket = options.config.core;
        let config = SessionConfig {
            websocket,
            // TCP and TLS, as the handshake, within the handshake timeout.
            connect_timeout: websocket.handshake_timeout.unwrap_or(roomwire_core::Duration::from_secs(3600)),
            request_timeout: Some(options.request_timeout.into()),
            reconnect: options.reconnect,
        };
        let limit = usize::try_from(websocket.max_message_size).unwrap_or(usize::MAX);
        let storage = VecStorage::new(limit, 64 * 1024);
        let origin = Instant::now();
        let session = ClientSession::new(config, core, RandomKeys::new()?, storage, roomwire_core::Instant::ZERO);
        let mut driver = Self {
            endpoint,
            options,
            session,
            codec: None,
            shared,
            commands,
            incoming,
            sinks,
            held,
            state,
            waiters: Vec::new(),
            deferred: VecDeque::new(),
            close_replies: Vec::new(),
            disconnect_replies: Vec::new(),
            shutdown: false,
            out: Vec::new(),
            scratch: Vec::new(),
            scan: false,
            io_error: None,
            origin,
        };
        driver.rooms_changed();
        Ok(driver)
    }

    /// Now, on the session's clock.
    fn now(&self) -> roomwire_core::Instant {
        roomwire_core::Instant::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// A session deadline on tokio's clock.
    fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout().map(|at| crate::socket::on_tokio_clock(self.origin, at))
    }

    /// Connect, run, reconnect, until closed or the core's reconnect policy
    /// stops.
    pub(crate) async fn run(mut self) {
        let mut link: Option<Link> = None;
        let mut opening: Option<Opening> = None;
        let mut gave_up = None;
        'run: loop {
            while let Some(output) = self.session.poll(self.now()) {
                match output {
                    Output::Connect => {
                        let attempt = self.session.reconnector().failures();
                        self.state.send_replace(ConnectionState::Connecting { attempt });
                        debug!(attempt, "connecting");
                        opening = Some(Box::pin(open_stream(self.endpoint.clone(), self.options.clone())));
                    }
                    Output::Connected { format } => {
                        self.shared.set_format(format);
                        debug!(?format, "connected");
                        // The rooms first: whoever sees the new state sees its rooms.
                        self.rooms_changed();
                        self.state.send_replace(ConnectionState::Connected { format });
                        self.retry_deferred();
                        self.scan = true;
                    }
                    Output::Disconnected { why, next } => {
                        opening = None;
                        if let Some(link) = link.take() {
                            self.release(link, why.is_clean()).await;
                        }
                        self.out.clear();
                        // A wire change (Alepha server) applies to what is sent next.
                        self.shared.set_format(self.session.format());
                        self.rooms_changed();
                        let error = self.connection_error(why);
                        match next {
                            Next::After(delay) => {
                                let Some(error) = error else {
                                    debug!(%why, "reconnecting at once");
                                    continue;
                                };
                                let failures = self.session.reconnector().failures();
                                let retry_in = Duration::from(delay);
                                info!(%error, failures, ?retry_in, "connection failed; retrying");
                                self.state.send_replace(ConnectionState::Error { error, attempt: failures, retry_in });
                            }
                            Next::Offline => {
                                for reply in self.disconnect_replies.drain(..) {
                                    let _ = reply.send(());
                                }
                                if !self.shutdown {
                                    self.state.send_replace(ConnectionState::Disconnected);
                                }
                            }
                            Next::Stopped(stop) => {
                                warn!(%why, ?stop, failures = self.session.reconnector().failures(), "giving up");
                                gave_up = error;
                                break 'run;
                            }
                        }
                    }
                }
            }
            if self.shutdown && !self.session.is_live() {
                break;
            }
            let deadline = self.deadline();
            let Some(live) = link.as_mut() else {
                // Connecting, waiting to, or offline.
                tokio::select! {
                    biased;
                    command = self.commands.recv() => self.command(command),
                    opened = async {
                        match opening.as_mut() {
                            Some(opening) => opening.await,
                            None => std::future::pending().await,
                        }
                    }, if opening.is_some() => {
                        opening = None;
                        match opened {
                            Ok(stream) => link = Some(self.start(stream)),
                            Err(error) => {
                                let now = self.now();
                                self.io_error = Some(error);
                                self.session.transport_failed(now, TransportError::Connect);
                            }
                        }
                    }
                    () = sleep_until(deadline) => {
                        let now = self.now();
                        self.session.handle_timeout(now);
                    }
                }
                continue;
            };
            self.transmit();
            if self.scan {
                self.flush_outgoing();
            }
            // Read while the application keeps up (or is gone), and while
            // the output is not backed up.
            let mut room_for_more = self.room_for_more();
            while room_for_more && !live.input.is_empty() {
                // Input left unread when the application fell behind. The
                // application may make room again while it is read (it
                // runs on another thread): read on while it does, or the
                // rest would wait for bytes the server has already sent.
                let before = live.input.len();
                self.read_input(live);
                room_for_more = self.room_for_more();
                if live.input.len() == before {
                    // Only part of a frame: the rest comes from the socket.
                    break;
                }
            }
            let backlog = self.out.len() >= self.backlog_limit();
            let read = room_for_more && !backlog;
            let now = self.now();
            self.session.set_reading(now, read);
            let deadline = self.deadline();
            // The streams the application has to make room in, when it
            // must: the merged one and the per-room ones, each waited for.
            let made_room = (!room_for_more).then(|| self.full_streams());
            let chunk = self.options.config.max_read_chunk.max(4096);
            tokio::select! {
                biased;
                command = self.commands.recv() => self.command(command),
                () = self.shared.notify.notified() => self.scan = true,
                io = async {
                    live.input.reserve(chunk);
                    Io::Read(live.reader.read_buf(&mut live.input).await)
                }, if read => self.on_io(live, io).await,
                io = async { Io::Wrote(live.writer.write(&self.out).await) }, if !self.out.is_empty() => {
                    self.on_io(live, io).await
                }
                // Wakes up when the application made room in every full
                // stream (each permit is given back at once).
                () = async move {
                    if let Some(FullStreams { merged, rooms, held }) = made_room {
                        if let Some(merged) = merged {
                            drop(merged.reserve().await);
                        }
                        for room in rooms {
                            drop(room.reserve().await);
                        }
                        if let Some(held) = held {
                            held.freed().await;
                        }
                    }
                }, if !room_for_more => {}
                () = sleep_until(deadline) => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
        if let Some(link) = link.take() {
            self.release(link, false).await;
        }
        self.finish(gave_up);
    }

    /// The stream is open: the upgrade request goes out first.
    fn start(&mut self, stream: ClientStream) -> Link {
        let (reader, writer) = tokio::io::split(stream);
        let now = self.now();
        let base = self.endpoint.base();
        let headers: Vec<(&str, &str)> =
            self.options.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let session = &mut self.session;
        let authority = &self.endpoint.authority;
        let written = grow(&mut self.out, 512, |out| session.start(now, &base, authority, &headers, out));
        if let Err(e) = written {
            self.session.transport_failed(now, TransportError::BufferTooSmall(e.required));
        }
        Link { reader, writer, input: Vec::new() }
    }

    /// Bytes moved on the stream.
    async fn on_io(&mut self, link: &mut Link, io: Io) {
        let now = self.now();
        match io {
            Io::Read(Ok(0)) => {
                // Whatever came before the end was read.
                self.session.transport_failed(now, TransportError::Reset);
            }
            Io::Read(Ok(_)) => self.read_input(link),
            Io::Wrote(Ok(n)) => {
                self.out.drain(..n.min(self.out.len()));
                if self.out.is_empty()
                    && let Err(error) = link.writer.flush().await
                {
                    self.lost(error);
                }
            }
            Io::Read(Err(error)) | Io::Wrote(Err(error)) => self.lost(error),
        }
    }

    fn lost(&mut self, error: io::Error) {
        let now = self.now();
        debug!(%error, "stream failed");
        self.io_error = Some(error);
        self.session.transport_failed(now, TransportError::Reset);
    }

    /// Hand the input to the session, and its messages on.
    fn read_input(&mut self, link: &mut Link) {
        // What was consumed is dropped once, at the end: dropping it after
        // each frame would move the rest of the buffer once per frame, and
        // a server sending many tiny frames would make that quadratic.
        let mut at = 0;
        // A message goes on only where there is room for it: otherwise
        // the input waits here, and reading stops until the application
        // catches up.
        while self.room_for_more() {
            let now = self.now();
            let rest = link.input.get_mut(at..).unwrap_or_default();
            // permessage-deflate, if this connection agreed to it; the
            // inflater is dropped with the agreement (a new connection
            // starts with a new one).
            let input = match self.session.deflate() {
                Some(_) => {
                    let codec = self.codec.get_or_insert_with(|| Box::new(Codec::new()));
                    self.session.handle_input_inflating(now, rest, codec.inflater())
                }
                None => {
                    self.codec = None;
                    self.session.handle_input(now, rest)
                }
            };
            at += input.consumed;
            if input.message {
                self.take_message();
            } else if input.consumed == 0 {
                break;
            }
        }
        link.input.drain(..at);
    }

    /// The message the session just read: to the application, or to the
    /// waiters of a request.
    fn take_message(&mut self) {
        let now = self.now();
        let len = self.session.message_len().unwrap_or(0);
        let event = match self.session.take_message(now, &mut self.scratch) {
            None => return,
            Some(SessionEvent::Invalid(error)) => {
                warn!(%error, "unreadable server message");
                return;
            }
            Some(SessionEvent::Room(event)) => event,
        };
        let (kind, room, code, text) = match event {
            ClientEvent::Message { room, message } => {
                self.deliver(room, message, len);
                return;
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
                return;
            }
            ClientEvent::DecodeFailed { room, error } => {
                warn!(room = room.as_deref(), %error, "ignoring a message that does not decode");
                return;
            }
        };
        if let Some(code) = code {
            warn!(%room, code, %text, ?kind, "refused by the server");
            self.fail_waiters(kind, &room, code, &text);
        }
        // An answer frees a request slot, and may open a room to the
        // queued messages.
        self.retry_deferred();
        self.rooms_changed();
        self.scan = true;
    }

    /// Write what the session owes: pongs, pings, closes, the requests
    /// that restore the rooms.
    fn transmit(&mut self) {
        let now = self.now();
        loop {
            let session = &mut self.session;
            match grow(&mut self.out, 256, |out| session.poll_transmit(now, out)) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    self.session.transport_failed(now, TransportError::BufferTooSmall(e.required));
                    return;
                }
            }
        }
    }

    /// A command from a handle.
    fn command(&mut self, command: Option<Command>) {
        let now = self.now();
        let command = match command {
            None | Some(Command::Close { .. }) => {
                if let Some(Command::Close { reply }) = command {
                    self.close_replies.push(reply);
                }
                self.shutdown = true;
                self.session.disconnect(now);
                return;
            }
            Some(Command::Disconnect { reply }) => {
                if self.shutdown || self.session.is_offline() {
                    let _ = reply.send(());
                } else {
                    self.disconnect_replies.push(reply);
                }
                self.session.disconnect(now);
                return;
            }
            Some(Command::Reconnect) => {
                self.session.reconnect(now);
                return;
            }
            Some(Command::Join { room, reply }) => RoomCommand { kind: Kind::Join, room, reply },
            Some(Command::Leave { room, reply }) => RoomCommand { kind: Kind::Leave, room, reply },
        };
        if !self.deferred.is_empty() {
            // Keep the order of requests.
            self.deferred.push_back(command);
            return;
        }
        if let Request::Deferred(command) = self.request(command) {
            self.deferred.push_back(command);
        }
    }

    /// Let the session take a join or leave; register who waits for it.
    fn request(&mut self, command: RoomCommand) -> Request {
        let RoomCommand { kind, room, reply } = command;
        let now = self.now();
        let session = &mut self.session;
        let result = grow_client(
            &mut self.out,
            128,
            |out| match kind {
                Kind::Join => session.join(now, &room, out),
                Kind::Leave => session.leave(now, &room, out),
            },
            requested_len,
        );
        match result {
            Ok(_) => {}
            Err(ClientError::TooManyPending { .. }) => return Request::Deferred(RoomCommand { kind, room, reply }),
            Err(error) => {
                let _ = reply.send(Err(match error {
                    ClientError::InvalidRoomId => RoomError::InvalidRoomId,
                    ClientError::TooManyRooms(_) => RoomError::TooManyRooms,
                    other => RoomError::Client(other),
                }));
                return Request::Done;
            }
        }
        match RoomId::new(&room) {
            Ok(room) => self.waiters.push(Waiter { kind, room, reply }),
            // The core accepted the room id: cannot happen.
            Err(_) => drop(reply.send(Err(RoomError::InvalidRoomId))),
        }
        self.rooms_changed();
        Request::Done
    }

    /// Retry the requests that waited for a slot, in order.
    fn retry_deferred(&mut self) {
        while let Some(command) = self.deferred.pop_front() {
            if let Request::Deferred(command) = self.request(command) {
                self.deferred.push_front(command);
                break;
            }
        }
    }

    /// The error a connection's end is reported with; `None` when it was
    /// not a failure.
    fn connection_error(&mut self, why: Disconnect) -> Option<ConnectionError> {
        let io = self.io_error.take();
        let socket = |error: Error| Some(ConnectionError::WebSocket(Arc::new(error)));
        match why {
            Disconnect::Replaced | Disconnect::Local => None,
            Disconnect::Transport(_) => match io {
                Some(io) => socket(Error::Io(io)),
                None => socket(Error::Closed),
            },
            Disconnect::ConnectTimeout => socket(Error::Timeout(Timeout::Handshake)),
            Disconnect::Handshake(error) => socket(Error::Handshake(error)),
            Disconnect::Timeout(timeout) => socket(Error::Timeout(timeout)),
            Disconnect::RequestTimeout => Some(ConnectionError::RequestTimeout),
            Disconnect::Protocol(error) => socket(Error::Protocol(error)),
            Disconnect::Rooms(error) => Some(ConnectionError::Protocol(error)),
            Disconnect::Closed(code) => {
                Some(ConnectionError::ClosedByServer { code, reason: self.session.close_reason().to_owned() })
            }
            _ => socket(Error::Closed),
        }
    }

    /// Write what is left (the close frame) and end the stream: cleanly
    /// after a closing handshake, bounded by the close timeout.
    async fn release(&mut self, mut link: Link, clean: bool) {
        if !clean {
            return;
        }
        let limit = Duration::from(self.options.config.core.close_timeout);
        let out = std::mem::take(&mut self.out);
        let _ = tokio::time::timeout(limit, async {
            link.writer.write_all(&out).await?;
            link.writer.shutdown().await
        })
        .await;
    }

    /// The most bytes queued for the stream before queued messages wait:
    /// half the outbound limit, leaving room for requests and control
    /// frames.
    fn backlog_limit(&self) -> usize {
        (self.options.config.max_outbound / 2).max(1)
    }

    /// Whether the application can take another message: on the merged
    /// stream (unless it is gone) and on every per-room stream, and the
    /// messages waiting in them hold less than their bound in bytes.
    fn room_for_more(&self) -> bool {
        !self.held.is_full() && !is_full(&self.incoming) && self.sinks_have_room()
    }

    /// What the application has to make room in: the streams that cannot
    /// take another message now (the merged one unless it is gone, and the
    /// live per-room ones), and the bytes held when they reached their
    /// bound. Waiting on the merged one alone, a full per-room stream
    /// would leave nothing to wait for, and the driver would spin until
    /// the application read.
    fn full_streams(&self) -> FullStreams<M> {
        let merged = is_full(&self.incoming).then(|| self.incoming.clone());
        let rooms = lock(&self.sinks).iter().filter(|sink| is_full(&sink.tx)).map(|sink| sink.tx.clone()).collect();
        let held = self.held.is_full().then(|| self.held.clone());
        FullStreams { merged, rooms, held }
    }

    /// Whether every live per-room stream can take a message (dropped
    /// streams are forgotten here).
    fn sinks_have_room(&self) -> bool {
        let mut sinks = lock(&self.sinks);
        sinks.retain(|sink| !sink.tx.is_closed());
        !sinks.iter().any(|sink| is_full(&sink.tx))
    }

    /// Hand a message to the application: the per-room streams of its room
    /// (all of them when it has none), then the merged stream.
    fn deliver(&mut self, room: Option<RoomId>, message: M, len: usize) {
        for sink in lock(&self.sinks).iter() {
            if room.as_ref().is_none_or(|room| *room == sink.room)
                && sink.tx.try_send(Charged::new((sink.clone)(&message), self.held.charge(len))).is_err()
            {
                // Only while closing, or a stream dropped meanwhile.
                debug!(room = %sink.room, "a room stream is not reading: message dropped");
            }
        }
        if self.incoming.is_closed() {
            return;
        }
        if self.incoming.try_send(Charged::new((room, message), self.held.charge(len))).is_err() {
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
            rooms.joined.extend(self.session.rooms().rooms().iter().cloned());
            rooms.wanted.clear();
            rooms.wanted.extend(self.session.rooms().wanted().iter().cloned());
        }
        let mut i = 0;
        while i < self.waiters.len() {
            let outcome = self.waiters.get(i).and_then(|w| {
                let joined = self.session.rooms().is_joined(&w.room);
                let wanted = self.session.rooms().wanted().contains(&w.room);
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
    }

    /// Write the queued messages whose room is joined; keep those whose
    /// room is wanted but not joined yet; discard the others.
    fn flush_outgoing(&mut self) {
        self.scan = false;
        let mut batch = std::mem::take(&mut *lock(&self.shared.queue));
        if batch.is_empty() {
            return;
        }
        let mut keep = VecDeque::new();
        let mut rejected = 0u64;
        while let Some(item) = batch.pop_front() {
            let rooms = self.session.rooms();
            if !rooms.is_joined(&item.room) {
                if rooms.wanted().contains(&item.room) {
                    keep.push_back(item);
                } else {
                    debug!(room = %item.room, "message for a room not wanted: discarded");
                    rejected += 1;
                }
                continue;
            }
            if self.out.len() >= self.backlog_limit() || !self.session.is_open() {
                keep.push_back(item);
                keep.extend(batch.drain(..));
                break;
            }
            if let Err(reason) = self.write_message(&item) {
                warn!(room = %item.room, %reason, "message discarded");
                rejected += 1;
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

    /// Frame a queued message for the current connection.
    fn write_message(&mut self, item: &Outgoing) -> Result<(), String> {
        // The payload was encoded by `send` as a valid `Out`. In the same
        // encoding the core frames it as it is; otherwise (the wire changed
        // on reconnect) decoding it back lets the core re-encode it.
        let same_encoding = item.format.is_json() == self.session.format().is_json();
        let session = &mut self.session;
        let hint = item.payload.len() + item.room.len() + 64;
        let written = if same_encoding {
            grow_client(&mut self.out, hint, |out| session.send_encoded(&item.room, &item.payload, out), |n| n)
        } else {
            let message = payload::decode_payload::<C::Out<'_>>(item.format, &item.payload, &mut [])
                .map_err(|e| e.to_string())?;
            grow_client(&mut self.out, hint, |out| session.send(&item.room, &message, out), |n| n)
        };
        written.map(drop).map_err(|e| e.to_string())
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

/// Append to `out` what `write` writes into spare room (at least `hint`
/// bytes, grown to what it says it needs).
fn grow(
    out: &mut Vec<u8>,
    hint: usize,
    write: impl FnMut(&mut [u8]) -> Result<usize, InsufficientSize>,
) -> Result<usize, InsufficientSize> {
    append_with(out, hint, |e: &InsufficientSize| Some(e.required), write)
}

/// [`grow`] for the calls that fail with a [`ClientError`]; `len` says
/// how much of the spare room a result filled.
fn grow_client<T: Copy>(
    out: &mut Vec<u8>,
    hint: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<T, ClientError>,
    len: impl Fn(T) -> usize,
) -> Result<T, ClientError> {
    let mut outcome = None;
    let written = grow(out, hint, |buf| match write(buf) {
        Ok(value) => {
            outcome = Some(Ok(value));
            Ok(len(value))
        }
        Err(ClientError::Encode(EncodeError::InsufficientSize(e))) => Err(e),
        Err(error) => {
            outcome = Some(Err(error));
            Ok(0)
        }
    });
    match (written, outcome) {
        (Ok(_), Some(outcome)) => outcome,
        (Err(e), _) => Err(ClientError::from(e)),
        (Ok(_), None) => Err(ClientError::NotOpen),
    }
}

/// The bytes a join or leave wrote.
fn requested_len(requested: Requested) -> usize {
    match requested {
        Requested::Sent { len, .. } => len,
        Requested::NotSent | Requested::Reconnect => 0,
    }
}

/// Sleep until `deadline`, or forever.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// TCP connect, and TLS for `wss://`.
async fn open_stream(endpoint: ServerUrl, options: ClientOptions) -> io::Result<ClientStream> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    tcp.set_nodelay(true)?;
    if endpoint.secure {
        #[cfg(feature = "tls")]
        return super::stream::tls(tcp, &endpoint.host, options.tls.clone()).await;
    }
    let _ = options;
    Ok(ClientStream::Plain(tcp))
}

/// The merged stream's sending side.
pub(crate) type Merged<M> = mpsc::Sender<Charged<(Option<RoomId>, M)>>;

/// What [`Driver::full_streams`] found full.
struct FullStreams<M> {
    merged: Option<Merged<M>>,
    rooms: Vec<mpsc::Sender<Charged<M>>>,
    held: Option<Arc<Held>>,
}

/// Whether a stream the application reads cannot take another message
/// now (a stream it dropped takes anything: the message is dropped).
fn is_full<T>(stream: &mpsc::Sender<T>) -> bool {
    !stream.is_closed() && stream.capacity() == 0
}

#[cfg(test)]
mod tests {
    use super::ServerUrl;
    use crate::client::ConnectError;

    #[test]
    fn parses_endpoints() {
        let e = ServerUrl::parse("ws://127.0.0.1:8080").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.host.as_str(), e.port, e.prefix.as_str(), e.secure),
            ("127.0.0.1:8080", "127.0.0.1", 8080, "", false)
        );
        let e = ServerUrl::parse("WS://example.com/api/?token=t").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str(), e.query.as_deref()),
            ("example.com", 80, "/api", Some("token=t"))
        );
        let e = ServerUrl::parse("wss://[::1]/").unwrap();
        assert_eq!((e.authority.as_str(), e.host.as_str(), e.port, e.secure), ("[::1]", "::1", 443, true));
        for bad in ["http://h/", "ws://", "ws://:80", "ws://h:99999", "ws://u@h", "ws://h/#f", "h:80"] {
            assert!(matches!(ServerUrl::parse(bad), Err(ConnectError::InvalidUrl(_))), "{bad}");
        }
    }
}
