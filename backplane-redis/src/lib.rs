//! # roomwire-redis
//!
//! A [`Backplane`] over Redis: roomwire servers that share a Redis (a single
//! server, or a Redis Cluster) serve the same rooms, users and connections.
//! Each server hears a room's traffic only while it has members in that
//! room: one Redis channel per room, per user and per node, subscribed and
//! unsubscribed as the server's rooms open and close
//! ([`roomwire_core::cluster`] decides the names and the bytes).
//!
//! ```no_run
//! use roomwire_redis::RedisBackplane;
//! use roomwire_tokio::server::Server;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     // .endpoint(...)
//!     .backplane(RedisBackplane::new("redis://127.0.0.1:6379")?)
//!     .build()?;
//! server.listen("0.0.0.0:8080").await?;
//! # Ok(()) }
//! ```
//!
//! # Single server and cluster
//!
//! [`RedisBackplane::new`] talks to one Redis server over one RESP3
//! connection (commands and pushes together) with classic pub/sub
//! (`PUBLISH`, `SUBSCRIBE`): on one server it is the same as sharded pub/sub.
//! [`RedisBackplane::cluster`] talks to a Redis Cluster with sharded pub/sub
//! (`SPUBLISH`, `SSUBSCRIBE`): a room's messages go to the shard that owns
//! its channel's slot and no further, instead of to every shard.
//!
//! # Faults
//!
//! The backplane checks the bus every [`BUS_HEARTBEAT`] and gives any
//! command [`BUS_TIMEOUT`]; a bus that fails, closes or pauses longer is
//! taken as lost: the server keeps serving its own connections, what would
//! cross nodes is dropped and counted, and the backplane connects again
//! ([`BUS_RECONNECT`]) and subscribes again to everything its server
//! wants. [`Server::backplane_stats`](roomwire_tokio::Server::backplane_stats)
//! reports the state and the counts.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cluster;
mod single;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};
use roomwire_core::cluster::{BUS_HEARTBEAT, BUS_RECONNECT, BUS_TIMEOUT};
use roomwire_tokio::backplane::{Backplane, ClusterWire, LeaseRequest, Link, Publish};
use roomwire_tokio::server::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

#[doc(no_inline)]
pub use redis::RedisError;

/// At most this many messages are published in one pipeline.
const BATCH: usize = 512;
/// At most this many channels are subscribed in one command.
const SUBSCRIBE_CHUNK: usize = 1024;

/// A Redis backplane: give it to
/// [`ServerBuilder::backplane`](roomwire_tokio::server::ServerBuilder::backplane).
pub struct RedisBackplane {
    target: Target,
    wire: ClusterWire,
}

enum Target {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.target {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisBackplane").field("redis", &kind).finish()
    }
}

/// Add RESP3 to a `redis://` URL (pushes and commands share a connection).
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    // A URL without a path needs one before its query.
    let base = match url.split_once("://") {
        Some((_, rest)) if !rest.contains('/') && !url.contains('?') => format!("{url}/"),
        _ => url.to_owned(),
    };
    format!("{base}{separator}protocol=resp3")
}

impl RedisBackplane {
    /// A backplane over one Redis server (7 or later), such as
    /// `redis://127.0.0.1:6379` or `rediss://user:pass@host:6380/0`. No
    /// connection is made until the server starts it.
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Ok(Self { target: Target::Single(redis::Client::open(with_resp3(url).as_str())?), wire: ClusterWire::Roomwire })
    }

    /// A backplane that joins a cluster of Alepha Node servers on their
    /// Redis: every emit and reply is published as Alepha publishes it (on
    /// `topic:websocket:broadcast`, JSON) and every node hears all of them,
    /// Alepha's and roomwire's alike, so a cluster can move to roomwire
    /// one node at a time. See [`ClusterWire::Alepha`] for what it lacks.
    pub fn alepha(url: &str) -> Result<Self, RedisError> {
        Ok(Self { wire: ClusterWire::Alepha, ..Self::new(url)? })
    }

    /// A backplane over a Redis Cluster, from some of its nodes' URLs (the
    /// others are discovered).
    pub fn cluster<I, S>(nodes: I) -> Result<Self, RedisError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        Ok(Self { target: Target::Cluster(Box::new(cluster::client(nodes)?)), wire: ClusterWire::Roomwire })
    }
}

/// A user's places under a cluster-wide cap: a sorted set of connection
/// ids scored by expiry, in Redis's own clock (`TIME`), so that no node's
/// clock matters. Take a place if fewer than the cap are unexpired (or
/// keep the one this connection holds: asking twice is asking once).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1";

/// Extend (or add back) a place.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1";

/// Claim a key (a stateful room's owner): take it if nobody holds it (or
/// renew it if the caller does), in Redis's own clock (`PX`); answer the
/// holder.
const CLAIM: &str = r"
local h = redis.call('GET', KEYS[1])
if not h or h == ARGV[1] then
  if not h and ARGV[3] ~= '' then h = ARGV[3] else h = ARGV[1] end
  redis.call('SET', KEYS[1], h, 'PX', ARGV[2])
end
return h";

/// Give a claimed key up if the caller holds it.
const DISCLAIM: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1";

/// Where a lease command's answer goes.
enum Answer {
    None,
    Granted(oneshot::Sender<bool>),
    Holder(oneshot::Sender<String>),
}

/// One command per lease request, with where its answer goes.
fn lease_commands(requests: Vec<LeaseRequest>) -> Vec<(redis::Cmd, Answer)> {
    let mut commands = Vec::new();
    for request in requests {
        match request {
            LeaseRequest::Acquire { key, member, cap, ttl, answer } => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(ACQUIRE).arg(1).arg(key).arg(member).arg(cap).arg(ttl.as_millis() as u64);
                commands.push((cmd, Answer::Granted(answer)));
            }
            LeaseRequest::Renew { places, ttl } => {
                for (key, member) in places {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(RENEW).arg(1).arg(key).arg(member).arg(ttl.as_millis() as u64);
                    commands.push((cmd, Answer::None));
                }
            }
            LeaseRequest::Release { key, member } => {
                let mut cmd = redis::cmd("ZREM");
                cmd.arg(key).arg(member);
                commands.push((cmd, Answer::None));
            }
            LeaseRequest::Claim { key, holder, restore, ttl, answer } => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(CLAIM).arg(1).arg(key).arg(holder).arg(ttl.as_millis() as u64).arg(restore.unwrap_or_default());
                commands.push((cmd, Answer::Holder(answer)));
            }
            LeaseRequest::Disclaim { key, holder } => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(DISCLAIM).arg(1).arg(key).arg(holder);
                commands.push((cmd, Answer::None));
            }
            // A request of a later version: its answer (if any) is dropped,
            // and the server decides alone.
            _ => {}
        }
    }
    commands
}

/// The lease and claim commands of one batch that Redis refused (out of
/// memory under `noeviction`, a replica's `READONLY`, an ACL's `NOPERM`, a
/// busy script): the connection is fine and only those commands failed,
/// so the session goes on; each is left unanswered (its server decides
/// alone) and counted.
#[derive(Default)]
struct Refused {
    count: usize,
    first: Option<redis::RedisError>,
}

impl Refused {
    /// `reply`'s value; `None` if Redis refused the command (noted here);
    /// any other error, which ends the session.
    fn check<T>(&mut self, reply: redis::RedisResult<T>) -> Result<Option<T>, String> {
        match reply {
            Ok(value) => Ok(Some(value)),
            Err(error) if matches!(error.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension) => {
                self.count += 1;
                self.first.get_or_insert(error);
                Ok(None)
            }
            Err(error) => Err(format!("lease: {error}")),
        }
    }

    /// Count what was refused, and say it once.
    fn report(self, link: &Link) {
        if self.count > 0 {
            link.leases_refused(self.count);
            let error = self.first.map(|error| error.to_string()).unwrap_or_default();
            warn!(count = self.count, %error, "the bus refused lease commands: their servers decide alone");
        }
    }
}

/// Hand a lease command its answer: an acquire an integer reply (1
/// granted), a claim the holder (a bulk string).
fn answer(to: Answer, reply: &redis::Value) {
    match to {
        Answer::None => {}
        Answer::Granted(to) => {
            let _ = to.send(matches!(reply, redis::Value::Int(1)));
        }
        Answer::Holder(to) => {
            if let redis::Value::BulkString(holder) = reply
                && let Ok(holder) = std::str::from_utf8(holder)
            {
                let _ = to.send(holder.to_owned());
            }
        }
    }
}

/// How a session with the bus ended.
enum Ended {
    /// The server shut down.
    Closed,
    /// The bus failed; connect again.
    Lost(String),
}

impl Backplane for RedisBackplane {
    fn wire(&self) -> ClusterWire {
        self.wire
    }

    fn run(self: Arc<Self>, link: Link) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut failures = 0u32;
            loop {
                let started = Instant::now();
                let ended = match &self.target {
                    Target::Single(client) => match single::connect(client, &link).await {
                        Ok((bus, pushes)) => session(bus, pushes, &link).await,
                        Err(ended) => ended,
                    },
                    Target::Cluster(client) => match cluster::connect(client, &link).await {
                        Ok((bus, pushes)) => session(bus, pushes, &link).await,
                        Err(ended) => ended,
                    },
                };
                link.set_connected(false);
                let why = match ended {
                    Ended::Closed => return,
                    Ended::Lost(why) => why,
                };
                if started.elapsed() >= BUS_RECONNECT.reset_after.into() {
                    failures = 0;
                }
                let mut random = [0u8; 4];
                let _ = getrandom::fill(&mut random);
                let delay = BUS_RECONNECT.delay(failures, u32::from_le_bytes(random));
                failures = failures.saturating_add(1);
                warn!(%why, ?delay, "redis backplane lost its bus; connecting again");
                tokio::select! {
                    () = link.closed() => return,
                    () = tokio::time::sleep(delay.into()) => {}
                }
            }
        })
    }
}

/// One way of talking to Redis (one server, or a cluster): what a
/// session asks of it. Clones share the connection; each loop of a session
/// has its own, so that no command waits behind another kind.
trait Bus: Clone {
    /// The push kind of a message on a subscribed channel.
    const MESSAGE: PushKind;
    async fn subscribe(&mut self, channels: &[String]) -> Result<(), String>;
    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String>;
    async fn publish(&mut self, link: &Link, publishes: Vec<Publish>) -> Result<(), String>;
    /// Sends lease and claim commands, answering each. A command the bus
    /// refuses is left unanswered (its server decides alone) and counted;
    /// only a failure of the connection itself is an error.
    async fn leases(&mut self, link: &Link, requests: Vec<LeaseRequest>) -> Result<(), String>;
    async fn ping(&mut self) -> Result<(), String>;
}

/// At most this many messages heard wait to be handed to the server, and
/// at most [`MAX_PENDING_PUSH_BYTES`] of them; beyond, they are dropped and
/// counted (a bus faster than this node cannot grow its memory).
const MAX_PENDING_PUSHES: usize = 65_536;

/// At most this many bytes of messages heard wait to be handed to the
/// server (one larger message alone goes over it), as many as wait to be
/// published. The count alone would let a few nodes relaying megabyte
/// messages faster than this node takes them in queue tens of GiB: the
/// connection reads Redis's socket as fast as Redis writes it, so Redis's
/// own output limit for subscribers never applies.
const MAX_PENDING_PUSH_BYTES: usize = 64 << 20;

/// Where a connection's pushes go: a bounded queue of messages, the bytes
/// in it, and a flag for the connection's loss (never dropped), with
/// whether it is a subscription Redis ended rather than the connection.
struct Pushes {
    queue: mpsc::Receiver<PushInfo>,
    bytes: Arc<AtomicUsize>,
    lost: Arc<tokio::sync::Notify>,
    ended_by_redis: Arc<AtomicBool>,
}

impl Pushes {
    /// The next push heard, once it is out of the queue's byte count.
    async fn next(&mut self) -> Option<PushInfo> {
        let push = self.queue.recv().await?;
        self.bytes.fetch_sub(push_size(&push), Ordering::Relaxed);
        Some(push)
    }
}

/// The bytes a push holds (its channel and payload).
fn push_size(push: &PushInfo) -> usize {
    push.data.iter().map(|value| if let Value::BulkString(bytes) = value { bytes.len() } else { 0 }).sum()
}

/// The push sender to give a connection, and what its session reads.
fn push_channel(link: &Link) -> (impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static, Pushes) {
    let (tx, queue) = mpsc::channel(MAX_PENDING_PUSHES);
    let bytes = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(tokio::sync::Notify::new());
    let ended_by_redis = Arc::new(AtomicBool::new(false));
    let (on_loss, link, queued, ended) = (lost.clone(), link.clone(), bytes.clone(), ended_by_redis.clone());
    let sender = move |push: PushInfo| {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {}
            PushKind::Disconnection => {
                on_loss.notify_one();
                return Ok(());
            }
            // A subscription to a topic this node still wants, ended by
            // Redis: its slot moved to another master (a resharding, a
            // failover), and the client forgets it without a word. The
            // session starts over and subscribes again, where the topic now
            // lives. (Wanted, not confirmed: a slot that moves while the
            // session subscribes is caught too.) A topic this node gave up
            // is no longer wanted when it asks.
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                if let Some(Value::BulkString(topic)) = push.data.first()
                    && link.wants(&String::from_utf8_lossy(topic))
                {
                    ended.store(true, Ordering::Relaxed);
                    on_loss.notify_one();
                }
                return Ok(());
            }
            // Confirmations of what this node asked for: nothing to hear.
            _ => return Ok(()),
        }
        let size = push_size(&push);
        let before = queued.fetch_add(size, Ordering::Relaxed);
        if (before > 0 && before + size > MAX_PENDING_PUSH_BYTES) || tx.try_send(push).is_err() {
            queued.fetch_sub(size, Ordering::Relaxed);
            link.receive_dropped(1);
        }
        // Never an error: the connection would stop handing pushes over.
        Ok(())
    };
    (sender, Pushes { queue, bytes, lost, ended_by_redis })
}

/// Connected to Redis (`bus`, whose pushes arrive in `pushes`): subscribe
/// to everything the server wants, then run four loops at once until the
/// server shuts down or one fails: messages heard, messages to publish
/// (in order), subscriptions and the heartbeat, lease requests.
async fn session<B: Bus>(mut bus: B, pushes: Pushes, link: &Link) -> Ended {
    // Everything wanted now; what changes meanwhile comes as changes.
    let wanted = link.interest();
    if let Err(why) = bus.subscribe(&wanted).await {
        return Ended::Lost(why);
    }
    link.confirm_subscribed(&wanted);
    debug!(channels = wanted.len(), "redis backplane subscribed");
    link.set_connected(true);
    let mut pushes = pushes;
    let (lost, ended_by_redis) = (pushes.lost.clone(), pushes.ended_by_redis.clone());
    let hearing = async {
        loop {
            tokio::select! {
                push = pushes.next() => match push {
                    Some(push) if push.kind == B::MESSAGE => {
                        if let [Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice() {
                            link.receive(&String::from_utf8_lossy(channel), payload);
                        }
                    }
                    Some(_) => {}
                    None => return "connection closed".to_owned(),
                },
                // On a cluster, one shard's connection: the client connects
                // again by itself but restores shard subscriptions only
                // partly, so the session starts over and subscribes to
                // everything again (harmless where still subscribed).
                () = lost.notified() => return if ended_by_redis.load(Ordering::Relaxed) {
                    "Redis ended a subscription (its slot moved)".to_owned()
                } else {
                    "connection lost".to_owned()
                },
            }
        }
    };
    // The other three end (Ok) once the server has shut down and what it
    // left to send is sent: the places its last connections gave back,
    // its last messages.
    let mut publisher = bus.clone();
    let publishing = async move {
        loop {
            let publishes = link.next_publishes(BATCH).await;
            if publishes.is_empty() && link.is_closed() {
                return Ok(());
            }
            // A batch in flight when the session ends (another loop failed)
            // is cut off here: it reached every node or none.
            let mut in_flight = InFlight { link, messages: publishes.len() };
            let published = publisher.publish(link, publishes).await;
            in_flight.messages = 0;
            published?;
        }
    };
    let mut leaser = bus.clone();
    let leasing = async move {
        loop {
            let requests = link.next_leases().await;
            if requests.is_empty() && link.is_closed() {
                return Ok(());
            }
            leaser.leases(link, requests).await?;
        }
    };
    let mut subscriber = bus;
    let subscribing = async move {
        let mut heartbeat = tokio::time::interval(BUS_HEARTBEAT.into());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = link.closed() => return Ok(()),
                (subscribe, unsubscribe) = link.interest_changes() => {
                    subscriber.subscribe(&subscribe).await?;
                    link.confirm_subscribed(&subscribe);
                    link.confirm_unsubscribed(&unsubscribe);
                    subscriber.unsubscribe(&unsubscribe).await?;
                }
                _ = heartbeat.tick() => subscriber.ping().await?,
            }
        }
    };
    tokio::select! {
        why = hearing => Ended::Lost(why),
        done = async { tokio::try_join!(publishing, leasing, subscribing) } => match done {
            Ok(_) => Ended::Closed,
            Err(why) => Ended::Lost(why),
        },
    }
}

/// Messages handed to the bus and not yet confirmed or failed: counted
/// unconfirmed if the publish is dropped before it says.
struct InFlight<'l> {
    link: &'l Link,
    messages: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.messages > 0 {
            self.link.publish_unconfirmed(self.messages);
        }
    }
}

/// `fut` within [`BUS_TIMEOUT`], its error or the timeout as text.
async fn within<T>(what: &str, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    within_reply(what, fut).await?.map_err(|error| format!("{what}: {error}"))
}

/// `fut`'s reply, an error reply included, within [`BUS_TIMEOUT`]; the
/// timeout as text.
async fn within_reply<T>(
    what: &str,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<redis::RedisResult<T>, String> {
    tokio::time::timeout(BUS_TIMEOUT.into(), fut)
        .await
        .map_err(|_| format!("{what}: no answer within {:?}", Duration::from(BUS_TIMEOUT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(size: usize) -> PushInfo {
        PushInfo {
            kind: PushKind::Message,
            data: vec![Value::BulkString(b"t".to_vec()), Value::BulkString(vec![0; size])],
        }
    }

    /// Confirmations of subscriptions are not queued (nor counted as
    /// dropped); the end of a subscription to a topic no longer wanted
    /// (this node's own unsubscribe) does not end the session. (One Redis
    /// ends while the topic is wanted: `tests/tests/redis_backplane.rs`.)
    #[test]
    fn only_messages_are_queued_and_an_unsubscribe_asked_for_is_no_loss() {
        let link = Link::new();
        let (send, pushes) = push_channel(&link);
        let push = |kind, topic: &str| PushInfo { kind, data: vec![Value::BulkString(topic.into()), Value::Int(1)] };
        for _ in 0..(MAX_PENDING_PUSHES + 10) {
            send(push(PushKind::SSubscribe, "t")).unwrap();
        }
        assert!(pushes.queue.is_empty());
        assert_eq!(link.stats().receive_dropped, 0);
        send(push(PushKind::SUnsubscribe, "t")).unwrap();
        send(push(PushKind::Unsubscribe, "t")).unwrap();
        assert!(!pushes.ended_by_redis.load(Ordering::Relaxed), "not wanted: given up by this node");
    }

    /// Heard faster than taken in, megabyte messages are dropped past the
    /// byte bound, not queued up to the count bound; taken in, they make
    /// room again. One message over the bound alone still goes in.
    #[tokio::test]
    async fn messages_heard_wait_within_a_byte_bound() {
        let link = Link::new();
        let (send, mut pushes) = push_channel(&link);
        for _ in 0..256 {
            send(message(1 << 20)).unwrap();
        }
        let queued = pushes.bytes.load(Ordering::Relaxed);
        assert!(queued <= MAX_PENDING_PUSH_BYTES, "{queued} bytes queued");
        assert_eq!(link.stats().receive_dropped, 256 - 63, "{:?}", link.stats());
        while !pushes.queue.is_empty() {
            pushes.next().await.unwrap();
        }
        assert_eq!(pushes.bytes.load(Ordering::Relaxed), 0);
        send(message(MAX_PENDING_PUSH_BYTES * 2)).unwrap();
        assert_eq!(pushes.queue.len(), 1, "a message over the bound, alone, was dropped");
        send(message(1)).unwrap();
        assert_eq!(pushes.queue.len(), 1);
    }
}
