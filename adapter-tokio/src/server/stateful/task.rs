//! One room's task on one node: it owns the room's state and runs its
//! callbacks one input at a time, as the core's [`Lifecycle`] orders; in a
//! cluster, on the node that owns the room. On every other node with
//! members in the room, the room's task stands in for the owner: it sends
//! its members' joins, leaves, messages and calls to the owner, hands them
//! the answers, and moves them to another owner when ownership moves.
//!
//! Ownership is a claim on the bus ([`roomwire_core::cluster::room_owner_key`])
//! that the owner renews every [`ROOM_LEASE_RENEW`] and that expires after
//! [`ROOM_LEASE_TTL`]; every other node with members asks who owns the room
//! as often, and takes it when the claim has expired (its owner died). The
//! new owner builds a new state: nothing of the old one survives unless the
//! application stored it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use roomwire_core::channel::Channel;
use roomwire_core::cluster::ownership::{self, Claimed, MAX_REDIRECTS, Owner, ROOM_JOIN_TIMEOUT, ROOM_UNAVAILABLE};
use roomwire_core::cluster::{ROOM_LEASE_RENEW, ROOM_LEASE_TTL, ROOM_REQUEST_TIMEOUT, RoomBody, RoomOp, RoomStatus};
use roomwire_core::payload;
use roomwire_core::stateful::{Due, Lifecycle};
use roomwire_core::wire::WireFormat;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info_span, warn};

use super::metronome::Metronome;
use super::{CallError, Callbacks, Encoded, Input, Joining, Place, RemoteOp, Room, RoomHost};
use crate::server::conn::{CatchUnwind, to_std};
use crate::server::{HandlerResult, Server, TaskGuard};

/// The task of room `room_id`: until its room is vacant with nothing
/// queued, or the server shuts down (the state is then dropped without
/// `on_empty`, and a running callback is cancelled).
pub(crate) async fn run<C, S, D>(
    callbacks: Arc<Callbacks<C, S, D>>,
    host: Arc<RoomHost>,
    server: Server,
    room_id: Arc<str>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
) where
    C: Channel + 'static,
    S: Send + 'static,
    D: Default + Send + 'static,
{
    let _task = TaskGuard::new(&server.shared);
    let span = info_span!("room", room = &*room_id, path = C::PATH);
    let shared = server.shared.clone();
    let clustered = shared.node.interest_link().is_some();
    let precise = shared.config.precise_ticks;
    let (claims, mut claimed) = mpsc::unbounded_channel();
    let mut driver = Driver::<C, S, D> {
        life: Lifecycle::new(callbacks.tick_hz),
        callbacks,
        room: None,
        room_id: room_id.clone(),
        host: host.clone(),
        server,
        epoch: Instant::now(),
        owner: if clustered { Owner::Unknown } else { Owner::Here },
        locals: Vec::new(),
        pending: HashMap::new(),
        seen: HashMap::new(),
        renew_at: None,
        claims,
        claiming: false,
        redirected: None,
        report: None,
        owner_seen: None,
    };
    let serving = async {
        // The wait for the next deadline, kept across inputs: made again
        // only when the deadline changes (a wait on the metronome is one
        // entry in its schedule, not one per input).
        let mut timer: Pin<Box<dyn Future<Output = ()> + Send + '_>> = Box::pin(std::future::pending());
        let mut timer_for = None;
        loop {
            let (deadline, beat) = driver.deadline();
            if timer_for != Some((deadline, beat)) {
                timer = Box::pin(sleep_until(deadline, (beat && precise).then_some(&host.metronome)));
                timer_for = Some((deadline, beat));
            }
            // Time first: inputs that never stop coming must not hold the
            // beats and the ownership's renewal back.
            let input = tokio::select! {
                biased;
                () = &mut timer => {
                    timer_for = None;
                    driver.timeout().await;
                    None
                }
                Some(holder) = claimed.recv() => {
                    driver.claimed(holder).await;
                    None
                }
                input = inputs.recv() => input,
            };
            if let Some(input) = input {
                driver.handle(input).await;
            }
            if driver.is_vacant() && host.retire(&room_id, &inputs) {
                debug!("room closed");
                return;
            }
        }
    };
    tokio::select! {
        biased;
        () = shared.closing.wait() => {
            // Disposed of: the state goes without `on_empty`.
            host.forget(&room_id);
            debug!("room disposed of (shutdown)");
        }
        () = serving.instrument(span.clone()) => {}
    }
    if driver.owner == Owner::Here {
        shared.node.disclaim_room(C::PATH, &room_id);
    }
}

/// Wait until `deadline`, on the metronome for a beat.
async fn sleep_until(deadline: Option<Instant>, metronome: Option<&Metronome>) {
    match (deadline, metronome) {
        (Some(deadline), Some(metronome)) => metronome.until(deadline).await,
        (Some(deadline), None) => tokio::time::sleep_until(deadline).await,
        (None, _) => std::future::pending().await,
    }
}

/// A request of this node waiting for the owner's answer: what it was (to
/// send again if the owner moved), and until when it waits.
struct Pending {
    input: Input,
    deadline: Instant,
    /// How many times it followed the room to a new owner.
    redirects: u8,
}

struct Driver<C: Channel, S, D> {
    callbacks: Arc<Callbacks<C, S, D>>,
    life: Lifecycle,
    /// `Some` while the room has state (here).
    room: Option<Room<C, S, D>>,
    room_id: Arc<str>,
    host: Arc<RoomHost>,
    server: Server,
    epoch: Instant,
    owner: Owner,
    /// This node's connections in the room, whoever owns it.
    locals: Vec<Joining>,
    /// Requests sent to the owner, by number.
    pending: HashMap<u64, Pending>,
    /// As the owner: when each node with members here last said which.
    seen: HashMap<u32, Instant>,
    /// When to renew or check the ownership (in a cluster).
    renew_at: Option<Instant>,
    /// Where the claims asked in the background answer.
    claims: mpsc::UnboundedSender<Option<u32>>,
    /// A claim is being asked.
    claiming: bool,
    /// The deadline and redirect count a request being sent again keeps.
    redirected: Option<(Instant, u8)>,
    /// The request number of this node's last `members` report, until
    /// the owner answers it.
    report: Option<u64>,
    /// When this node last had word of the owner being alive: the owner
    /// answered a `members` report, or the bus showed its claim (which it
    /// renews).
    owner_seen: Option<Instant>,
}

/// A callback's outcome, a panic counted as an error.
async fn guarded(future: crate::server::BoxFuture<'_, HandlerResult>) -> Result<(), String> {
    match CatchUnwind(future).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(String::new()),
    }
}

impl<C, S, D> Driver<C, S, D>
where
    C: Channel + 'static,
    S: Send + 'static,
    D: Default + Send + 'static,
{
    fn now(&self) -> roomwire_core::Instant {
        roomwire_core::Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn is_vacant(&self) -> bool {
        self.life.is_vacant() && self.locals.is_empty() && self.pending.is_empty()
    }

    /// The next time something is due (a beat or an eviction, a renewal,
    /// a request's deadline), and whether it is a beat.
    fn deadline(&self) -> (Option<Instant>, bool) {
        let life = self.life.poll_timeout().map(|at| self.epoch + to_std(at - roomwire_core::Instant::ZERO));
        let pending = self.pending.values().map(|p| p.deadline).min();
        let next = [life, self.renew_at, pending].into_iter().flatten().min();
        let ticking = self.life.period().is_some() && self.life.members() > 0;
        (next, ticking && next.is_some() && next == life)
    }

    /// Find out who owns the room if this node does not know.
    async fn settle(&mut self) {
        if self.owner != Owner::Unknown {
            return;
        }
        let node = &self.server.shared.node;
        let holder = node.claim_room(C::PATH, &self.room_id, None).await;
        // A bus that cannot say: this node serves its own members alone
        // until it can (then one owner remains).
        self.owner = ownership::claimed(Owner::Unknown, holder, node.tag).0;
        self.owner_seen = matches!(self.owner, Owner::Node(_)).then(Instant::now);
        self.renew_at = Some(Instant::now() + ROOM_LEASE_RENEW.into());
        debug!(owner = ?self.owner, "room owner");
    }

    /// The room's state, built first if it has none. `Err`: the factory's
    /// error (not remembered: the next join or call builds again).
    async fn live(&mut self) -> Result<&mut Room<C, S, D>, String> {
        if self.life.needs_state() || self.room.is_none() {
            let build = (self.callbacks.state)(&self.room_id);
            let state = match CatchUnwind(build).await {
                Ok(Ok(state)) => state,
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => return Err("the state factory panicked".to_owned()),
            };
            self.room = Some(Room::new(self.room_id.clone(), state, self.server.clone()));
            self.life.built(self.now());
        }
        self.room.as_mut().ok_or_else(String::new)
    }

    /// Send request `op` to the owner `tag`, waiting for its answer as
    /// `input` (`None`: no answer wanted).
    fn request(&mut self, tag: u32, op: RoomOp<'_, &[&str]>, input: Option<Input>) {
        let request = match input {
            Some(input) => {
                let request = self.host.next_request.fetch_add(1, Ordering::Relaxed);
                let wait = if matches!(input, Input::Join { .. }) { ROOM_JOIN_TIMEOUT } else { ROOM_REQUEST_TIMEOUT };
                let (deadline, redirects) = self.redirected.take().unwrap_or((Instant::now() + wait.into(), 0));
                self.pending.insert(request, Pending { input, deadline, redirects });
                request
            }
            None => 0,
        };
        let node = &self.server.shared.node;
        let body = RoomBody { reply_to: node.tag, request, room: &self.room_id, op };
        node.send_room(tag, C::PATH, body);
    }

    /// Answer request `request` of node `to`.
    fn answer(&self, to: u32, request: u64, status: RoomStatus, body: &[u8]) {
        if request == 0 {
            return;
        }
        let node = &self.server.shared.node;
        let body = RoomBody { reply_to: node.tag, request, room: &self.room_id, op: RoomOp::Outcome { status, body } };
        node.send_room(to, C::PATH, body);
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Remote { from, request, op, heard } => return self.remote(from, request, op, heard).await,
            Input::Outcome { from, request, status, body } => return self.outcome(from, request, status, body).await,
            Input::Leave { id } => {
                self.locals.retain(|joining| joining.id != id);
                match self.owner {
                    Owner::Node(tag) => self.request(tag, RoomOp::Leave { connection: &id }, None),
                    Owner::Here | Owner::Unknown => self.leave(&id).await,
                }
                return;
            }
            _ => {}
        }
        self.settle().await;
        match (input, self.owner) {
            (Input::Join { joining, done }, owner) => {
                self.locals.retain(|local| local.id != joining.id);
                self.locals.push(joining.clone());
                match owner {
                    Owner::Node(tag) => {
                        let op = RoomOp::Join {
                            connection: &joining.id,
                            user: joining.user_id.as_deref(),
                            wire: joining.format,
                            query: joining.query.as_deref().unwrap_or(""),
                        };
                        self.request(tag, op, Some(Input::Join { joining: joining.clone(), done }));
                    }
                    Owner::Here | Owner::Unknown => {
                        let joined = self.join(joining.clone()).await;
                        self.joined(&joining, done, joined);
                    }
                }
            }
            // Its sender stopped waiting (the handler deadline): dropped
            // unhandled, as the sender was told it failed.
            (Input::Message { done, .. }, _) if done.is_closed() => {
                debug!("a message waited longer than its sender: dropped");
            }
            (Input::Message { id, format, payload, done, queued }, Owner::Node(tag)) => {
                let op = RoomOp::Message { connection: &id, wire: format, payload: &payload };
                let input = Input::Message { id: id.clone(), format, payload: payload.clone(), done, queued };
                self.request(tag, op, Some(input));
            }
            (Input::Message { id, format, payload, done, queued }, _) => {
                let outcome = self.message(&id, format, &payload).await;
                // Out of the queue before its sender hears: its next message
                // is not refused for this one.
                drop(queued);
                let _ = done.send(outcome);
            }
            (Input::Call { method, args, done }, Owner::Node(tag)) => {
                let op = RoomOp::Call { method: &method, args: &args };
                let input = Input::Call { method: method.clone(), args: args.clone(), done };
                self.request(tag, op, Some(input));
            }
            (Input::Call { method, args, done }, _) => {
                let _ = done.send(self.call(&method, &args).await);
            }
            (Input::Broadcast { encoded, except }, Owner::Node(tag)) => {
                let except: Vec<&str> = except.iter().map(String::as_str).collect();
                let op = RoomOp::Broadcast {
                    except: &except[..],
                    json: &encoded.json,
                    postcard: encoded.postcard.as_deref(),
                };
                self.request(tag, op, None);
            }
            (Input::Broadcast { encoded, except }, _) => self.broadcast(&encoded, &except),
            (Input::Leave { .. } | Input::Remote { .. } | Input::Outcome { .. }, _) => {}
        }
    }

    /// A connection joins the room here (its state built first if need
    /// be). Whether it joined.
    async fn join(&mut self, joining: Joining) -> bool {
        let id = joining.id.clone();
        let callbacks = self.callbacks.clone();
        let room = match self.live().await {
            Ok(room) => room,
            Err(error) => {
                warn!(connection = &*id, error, "room state not built: join failed");
                return false;
            }
        };
        if room.connection(&id).is_some() {
            return true;
        }
        room.add(joining.into_connection());
        let joined = match &callbacks.on_join {
            Some(on_join) => guarded(on_join(room, &id)).await,
            None => Ok(()),
        };
        let now = self.now();
        self.life.joined(now);
        if let Err(error) = &joined {
            warn!(connection = &*id, error, "on_join failed: join failed");
        }
        // An error leaves the connection in until it leaves (it is closed
        // with 1011 now), as any member.
        joined.is_ok()
    }

    /// A client message for `on_message`, here.
    async fn message(&mut self, id: &str, format: WireFormat, payload: &[u8]) -> Result<(), String> {
        let callbacks = self.callbacks.clone();
        let Some(room) = self.room.as_mut().filter(|room| room.connection(id).is_some()) else {
            return Err("Not in the room".to_owned());
        };
        match payload::decode_message::<C>(format, payload, &mut []) {
            Err(error) => Err(error.to_string()),
            Ok(message) => match &callbacks.on_message {
                Some(on_message) => guarded(on_message(room, id, message)).await,
                None => Ok(()),
            },
        }
    }

    /// A method call, here.
    async fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, CallError> {
        let Some(call) = self.callbacks.methods.get(method).cloned() else {
            return Err(CallError::UnknownMethod(method.to_owned()));
        };
        let room = self.live().await.map_err(CallError::Failed)?;
        let result = match CatchUnwind(call(room, args)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Failed(String::new())),
        };
        let now = self.now();
        self.life.called(now);
        result
    }

    fn broadcast(&self, encoded: &Encoded, except: &[String]) {
        if let Some(room) = &self.room {
            room.deliver(encoded, |c| !except.iter().any(|e| **e == *c.id()));
        }
    }

    /// A member leaves the room here: `on_leave`, and the teardown if it
    /// was the last.
    async fn leave(&mut self, id: &str) {
        let callbacks = self.callbacks.clone();
        let Some(room) = self.room.as_mut() else { return };
        let Some(connection) = room.remove(id) else { return };
        if let Some(on_leave) = &callbacks.on_leave
            && let Err(error) = guarded(on_leave(room, connection)).await
        {
            warn!(connection = id, error, "on_leave failed");
        }
        if !self.life.left() {
            return;
        }
        // The last member left: one teardown, then the state goes.
        if let Some(on_empty) = &callbacks.on_empty
            && let Err(error) = guarded(on_empty(room)).await
        {
            warn!(error, "on_empty failed");
        }
        self.discard();
        debug!("room emptied: state discarded");
    }

    /// The state goes (teardown, eviction, ownership lost). An owner gives
    /// the room up, so that the next join anywhere takes it.
    fn discard(&mut self) {
        self.room = None;
        self.life.discarded();
        self.seen.clear();
        if self.owner == Owner::Here && self.server.shared.node.interest_link().is_some() {
            self.server.shared.node.disclaim_room(C::PATH, &self.room_id);
            self.owner = Owner::Unknown;
            self.renew_at = None;
        }
    }

    /// A request of node `from`, to this node as the owner.
    async fn remote(&mut self, from: u32, request: u64, op: RemoteOp, heard: Instant) {
        self.settle().await;
        if self.owner != Owner::Here {
            return self.answer(from, request, RoomStatus::NotOwner, &[]);
        }
        self.seen.insert(from, Instant::now());
        // A message or call its asker stopped waiting for is dropped
        // unhandled: a slow room's queue does not grow with retries.
        let stale = heard.elapsed() > ROOM_REQUEST_TIMEOUT.into();
        if stale && matches!(op, RemoteOp::Message { .. } | RemoteOp::Call { .. }) {
            debug!(node = from, "a request waited longer than its asker: dropped");
            return;
        }
        match op {
            RemoteOp::Join(joining) => {
                let joined = self.join(joining).await;
                let status = if joined { RoomStatus::Done } else { RoomStatus::Failed };
                self.answer(from, request, status, &[]);
            }
            RemoteOp::Leave(id) => self.leave(&id).await,
            RemoteOp::Message { id, format, payload, queued } => {
                let outcome = self.message(&id, format, &payload).await;
                // Out of the queue before its node hears.
                drop(queued);
                match outcome {
                    Ok(()) => self.answer(from, request, RoomStatus::Done, &[]),
                    Err(text) => self.answer(from, request, RoomStatus::Failed, text.as_bytes()),
                }
            }
            RemoteOp::Call { method, args } => match self.call(&method, &args).await {
                Ok(result) => self.answer(from, request, RoomStatus::Done, &result),
                Err(CallError::UnknownMethod(name)) => {
                    self.answer(from, request, RoomStatus::UnknownMethod, name.as_bytes());
                }
                Err(error) => self.answer(from, request, RoomStatus::Failed, error.to_string().as_bytes()),
            },
            RemoteOp::Broadcast { encoded, except } => self.broadcast(&encoded, &except),
            RemoteOp::Members(ids) => {
                // Leaves of that node lost on the way: its members not
                // listed leave. Joins lost (or members dropped while that
                // node was silent): the listed ones not here are named in
                // the answer, and that node joins them again.
                let listed: HashSet<&str> = ids.iter().map(String::as_str).collect();
                let mut here = HashSet::new();
                let mut gone: Vec<Arc<str>> = Vec::new();
                for c in self.room.iter().flat_map(|room| room.connections.iter()) {
                    if matches!(c.place, Place::Node(tag) if tag == from) {
                        here.insert(c.id());
                        if !listed.contains(c.id()) {
                            gone.push(Arc::from(c.id()));
                        }
                    }
                }
                let unknown: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !here.contains(id)).collect();
                self.answer(from, request, RoomStatus::Done, unknown.join("\n").as_bytes());
                for id in gone {
                    self.leave(&id).await;
                }
            }
        }
    }

    /// The owner's answer to request `request` of this node.
    async fn outcome(&mut self, from: u32, request: u64, status: RoomStatus, body: Vec<u8>) {
        if self.report == Some(request) {
            self.report = None;
            self.owner_seen = Some(Instant::now());
            if status == RoomStatus::NotOwner {
                // That node no longer holds the room (it emptied there):
                // this node's members join whoever owns it now.
                self.forget_owner(from);
                for joining in std::mem::take(&mut self.locals) {
                    Box::pin(self.handle(Input::Join { joining, done: None })).await;
                }
                return;
            }
            return self.rejoin_unknown(&body).await;
        }
        let Some(Pending { input, deadline, redirects }) = self.pending.remove(&request) else { return };
        if status == RoomStatus::NotOwner {
            if let Input::Join { joining, .. } = &input
                && !self.locals.iter().any(|local| local.id == joining.id)
            {
                // It left meanwhile: nothing to join.
                return;
            }
            if redirects >= MAX_REDIRECTS {
                return self.fail(input);
            }
            // Ownership moved: send the request where the room is now
            // (asking again if it was that node), with its first deadline.
            debug!("asked a node that does not own the room: asking again");
            self.forget_owner(from);
            self.redirected = Some((deadline, redirects + 1));
            Box::pin(self.handle(input)).await;
            self.redirected = None;
            return;
        }
        let text = || String::from_utf8_lossy(&body).into_owned();
        match input {
            Input::Join { joining, done } => self.joined(&joining, done, status == RoomStatus::Done),
            Input::Message { done, queued, .. } => {
                drop(queued);
                let _ = done.send(if status == RoomStatus::Done { Ok(()) } else { Err(text()) });
            }
            Input::Call { done, .. } => {
                let result = match status {
                    RoomStatus::Done => Ok(body),
                    RoomStatus::UnknownMethod => Err(CallError::UnknownMethod(text())),
                    _ => Err(CallError::Failed(text())),
                };
                let _ = done.send(result);
            }
            _ => {}
        }
    }

    async fn timeout(&mut self) {
        let now = self.now();
        match self.life.handle_timeout(now) {
            Some(Due::Beat(beat)) => {
                let callbacks = self.callbacks.clone();
                if let (Some(on_tick), Some(room)) = (&callbacks.on_tick, self.room.as_mut())
                    && let Err(error) = guarded(on_tick(room, beat.dt.into())).await
                {
                    error!(error, "on_tick failed");
                }
                let skipped = self.life.tick_done(self.now());
                if skipped > 0 {
                    warn!(skipped, "on_tick still running: beats skipped");
                }
            }
            Some(Due::Evict) => {
                debug!("headless room idle: disposed of");
                self.discard();
            }
            None => {}
        }
        let now = Instant::now();
        self.expire(now);
        if self.renew_at.is_some_and(|at| at <= now) {
            self.renew();
        }
    }

    /// How a join of this node's connection ended: its connection learns
    /// it (a rejoin nobody waits for is closed with 1011 if it failed). A
    /// failed one is no longer this node's member, and leaves the owner
    /// (which may keep it: its `on_join` failed).
    fn joined(&mut self, joining: &Joining, done: Option<oneshot::Sender<bool>>, joined: bool) {
        if !joined {
            self.locals.retain(|local| local.id != joining.id);
            if let Owner::Node(tag) = self.owner {
                self.request(tag, RoomOp::Leave { connection: &joining.id }, None);
            }
        }
        match done {
            Some(done) => {
                let _ = done.send(joined);
            }
            None if !joined => joining.refuse(),
            None => {}
        }
    }

    /// Node `tag` said it does not own the room: if this node took it for
    /// the owner, it asks again (a room held here stays here).
    fn forget_owner(&mut self, tag: u32) {
        if self.owner == Owner::Node(tag) {
            self.owner = Owner::Unknown;
        }
    }

    /// Fail the requests the owner did not answer in time.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(&r, _)| r).collect();
        for request in late {
            if let Some(Pending { input, .. }) = self.pending.remove(&request) {
                warn!("the room's owner did not answer in time");
                self.fail(input);
            }
        }
    }

    /// A request to the owner that will not be answered: a join is refused
    /// (1011), a message or a call fails.
    fn fail(&mut self, input: Input) {
        match input {
            Input::Join { joining, done } => self.joined(&joining, done, false),
            Input::Message { done, queued, .. } => {
                drop(queued);
                let _ = done.send(Err(ROOM_UNAVAILABLE.to_owned()));
            }
            Input::Call { done, .. } => {
                let _ = done.send(Err(CallError::Failed(ROOM_UNAVAILABLE.to_owned())));
            }
            _ => {}
        }
    }

    /// The owner does not know these members of this node (`members`'
    /// answer, one id per line): they join it again.
    async fn rejoin_unknown(&mut self, body: &[u8]) {
        let unknown: HashSet<&str> = std::str::from_utf8(body).unwrap_or("").lines().collect();
        let rejoining: Vec<Joining> =
            self.locals.iter().filter(|local| unknown.contains(&*local.id)).cloned().collect();
        if !rejoining.is_empty() {
            warn!(members = rejoining.len(), "the room's owner did not know members of this node: they join again");
        }
        for joining in rejoining {
            Box::pin(self.handle(Input::Join { joining, done: None })).await;
        }
    }

    /// Every [`ROOM_LEASE_RENEW`]: ask the bus who owns the room (the owner
    /// renews its claim so; another node takes the room if its owner's claim
    /// expired), in the background: the room goes on meanwhile.
    fn renew(&mut self) {
        self.renew_at = Some(Instant::now() + ROOM_LEASE_RENEW.into());
        if self.claiming || self.owner == Owner::Unknown {
            return;
        }
        self.claiming = true;
        let node = self.server.shared.node.clone();
        let (room, claims) = (self.room_id.clone(), self.claims.clone());
        // The owner this node knows is put back if the bus lost its claim,
        // as long as it answers this node's reports.
        let seen_ago = self.owner_seen.map(|at| at.elapsed().into());
        let restore = ownership::restore(self.owner, seen_ago, self.report.is_some());
        tokio::spawn(async move {
            let _ = claims.send(node.claim_room(C::PATH, &room, restore).await);
        });
    }

    /// The bus's answer to the claim: follow the room where it is (the
    /// core's [`ownership::claimed`]), report this node's members to its
    /// owner, or drop the members of nodes gone silent.
    async fn claimed(&mut self, holder: Option<u32>) {
        self.claiming = false;
        let node = self.server.shared.node.clone();
        if self.owner == Owner::Unknown {
            // The room emptied meanwhile; a claim that took it after it
            // was given up is given up again.
            if holder == Some(node.tag) && self.room.is_none() {
                node.disclaim_room(C::PATH, &self.room_id);
            }
            return;
        }
        let before = self.owner;
        let (owner, what) = ownership::claimed(before, holder, node.tag);
        self.owner = owner;
        match what {
            Claimed::Kept if owner == Owner::Here => self.drop_silent().await,
            Claimed::Kept => {}
            Claimed::Report => {
                let Owner::Node(tag) = owner else { return };
                self.owner_seen = Some(Instant::now());
                let ids: Vec<&str> = self.locals.iter().map(|local| &*local.id).collect();
                let request = self.host.next_request.fetch_add(1, Ordering::Relaxed);
                self.report = Some(request);
                let op = RoomOp::Members { connections: &ids[..] };
                node.send_room(tag, C::PATH, RoomBody { reply_to: node.tag, request, room: &self.room_id, op });
            }
            Claimed::Took | Claimed::Lost { .. } | Claimed::Moved { .. } => {
                warn!(from = ?before, to = ?owner, "the room moved");
                if matches!(what, Claimed::Lost { .. }) {
                    // This node was cut off longer than its claim lasts:
                    // the state goes, without `on_empty`.
                    self.room = None;
                    self.life.discarded();
                    self.seen.clear();
                }
                // What waited on the old owner: joins go to the new one
                // (with their first deadline), messages and calls fail now.
                let waiting: Vec<u64> = self.pending.keys().copied().collect();
                let mut joins = Vec::new();
                for request in waiting {
                    let Some(pending) = self.pending.remove(&request) else { continue };
                    match pending.input {
                        Input::Join { .. } => joins.push(pending),
                        input => self.fail(input),
                    }
                }
                let joining_ids: Vec<Arc<str>> = joins
                    .iter()
                    .filter_map(|p| match &p.input {
                        Input::Join { joining, .. } => Some(joining.id.clone()),
                        _ => None,
                    })
                    .collect();
                // Every other member of this node joins the new owner (a
                // new state there: `on_join` again).
                let members = std::mem::take(&mut self.locals);
                for joining in members.into_iter().filter(|local| !joining_ids.contains(&local.id)) {
                    Box::pin(self.handle(Input::Join { joining, done: None })).await;
                }
                for Pending { input, deadline, redirects } in joins {
                    self.redirected = Some((deadline, redirects));
                    Box::pin(self.handle(input)).await;
                    self.redirected = None;
                }
            }
        }
    }

    /// As the owner: the members of nodes not heard from for
    /// [`ROOM_LEASE_TTL`] leave.
    async fn drop_silent(&mut self) {
        let ttl = std::time::Duration::from(ROOM_LEASE_TTL);
        let silent: Vec<u32> = self.seen.iter().filter(|(_, at)| at.elapsed() > ttl).map(|(&t, _)| t).collect();
        for tag in silent {
            self.seen.remove(&tag);
            let gone: Vec<Arc<str>> = self
                .room
                .iter()
                .flat_map(|room| room.connections.iter())
                .filter(|c| matches!(c.place, Place::Node(t) if t == tag))
                .map(|c| Arc::from(c.id()))
                .collect();
            if !gone.is_empty() {
                warn!(node = tag, members = gone.len(), "a node with members went silent: they leave");
            }
            for id in gone {
                self.leave(&id).await;
            }
        }
    }
}
