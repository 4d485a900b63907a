//! Stateful rooms (Alepha's `$room`): every behaviour of Alepha's
//! `RoomEngine`, `room-integration` and `room-connection-registry` specs,
//! and the `$room` hardening cases, on in-memory connections with a paused
//! clock where time matters.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roomwire_tokio::server::{Admission, CallError, RoomEndpoint, Server, ServerBuilder};
use roomwire_tokio::{ClientRequest, CloseCode, Config, Message, MessageRef, WebSocket};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio::time::{sleep, timeout};

type Client = WebSocket<DuplexStream>;

const LIMIT: Duration = Duration::from_secs(30);

/// Client → room.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cmd {
    cmd: String,
    #[serde(default)]
    arg: Option<String>,
}

/// A game room's channel: clients send commands, the room sends any JSON.
pub struct Game;

impl roomwire_tokio::roomwire_core::Channel for Game {
    const PATH: &'static str = "/ws/game";
    type In<'a> = Value;
    type Out<'a> = Cmd;
    fn validate(message: &Cmd) -> Result<(), &'static str> {
        if message.cmd == "bad" { Err("bad shape") } else { Ok(()) }
    }
}

/// What the callbacks saw, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.entries().iter().filter(|e| e.starts_with(prefix)).count()
    }
}

#[derive(Debug, Default)]
struct GameState {
    moves: u32,
    switch: bool,
    built: u32,
}

#[derive(Debug, Default)]
struct Player {
    name: String,
}

/// Knobs a test turns.
#[derive(Default)]
struct Knobs {
    /// The next factory calls that fail.
    factory_failures: AtomicU32,
    /// How long the factory takes, ms.
    factory_ms: AtomicU32,
    /// How long an async tick takes, ms (0: it returns at once).
    tick_ms: AtomicU32,
    /// The next ticks that fail.
    tick_failures: AtomicU32,
    /// The next on_leave calls that fail.
    leave_failures: AtomicU32,
    /// How long on_empty takes, ms.
    empty_ms: AtomicU32,
    /// The next on_join calls that fail.
    join_failures: AtomicU32,
}

fn take(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

/// The game room: each callback logs; `cmd`s: `move` counts, `echo` sends
/// `{"echo": arg}` to the sender, `all` broadcasts `{"all": arg}` but to
/// the sender, `kick` closes the sender with 4000 "bye", `fail` errs,
/// `slow` takes `arg` ms.
fn game(log: &Log, knobs: &Arc<Knobs>, tick_hz: u32) -> RoomEndpoint<Game, GameState, Player> {
    let (l1, l2, l3, l4, l5, l6) = (log.clone(), log.clone(), log.clone(), log.clone(), log.clone(), log.clone());
    let (k1, k2, k3, k4, k5) = (knobs.clone(), knobs.clone(), knobs.clone(), knobs.clone(), knobs.clone());
    let built = Arc::new(AtomicU32::new(0));
    RoomEndpoint::<Game, GameState, Player>::new(move |room| {
        let (log, knobs, built) = (l1.clone(), k1.clone(), built.clone());
        let room = room.to_owned();
        async move {
            let ms = knobs.factory_ms.load(Ordering::SeqCst);
            if ms > 0 {
                sleep(Duration::from_millis(ms.into())).await;
            }
            if take(&knobs.factory_failures) {
                log.push(format!("factory-failed {room}"));
                return Err("no state today".into());
            }
            log.push(format!("factory {room}"));
            Ok(GameState { built: built.fetch_add(1, Ordering::SeqCst) + 1, ..GameState::default() })
        }
    })
    .tick_hz(tick_hz)
    .on_join(move |room, id| {
        let (log, knobs) = (l2.clone(), k2.clone());
        Box::pin(async move {
            let name = room.connection(id).and_then(|c| c.query("name").map(str::to_owned)).unwrap_or_default();
            room.connection_mut(id).unwrap().data.name = name.clone();
            log.push(format!("join {id} {name} size={}", room.size()));
            if take(&knobs.join_failures) {
                return Err("no entry".into());
            }
            room.broadcast(&json!({"players": room.size()}))?;
            Ok(())
        })
    })
    .on_message(move |room, id, cmd| {
        let log = l3.clone();
        Box::pin(async move {
            log.push(format!("message {} {}", cmd.cmd, cmd.arg.as_deref().unwrap_or("")));
            match cmd.cmd.as_str() {
                "move" => room.state.moves += 1,
                "echo" => {
                    room.send(id, &json!({"echo": cmd.arg}))?;
                }
                "all" => {
                    room.broadcast_except(&json!({"all": cmd.arg}), &[id])?;
                }
                "kick" => {
                    room.close(id, CloseCode::from(4000), "bye");
                }
                "fail" => return Err("handler boom".into()),
                "slow" => sleep(Duration::from_millis(cmd.arg.as_deref().unwrap_or("0").parse().unwrap())).await,
                _ => {}
            }
            Ok(())
        })
    })
    .on_tick(move |room, dt| {
        let (log, knobs) = (l4.clone(), k3.clone());
        Box::pin(async move {
            log.push(format!("tick {} moves={} built={}", dt.as_millis(), room.state.moves, room.state.built));
            if take(&knobs.tick_failures) {
                return Err("tick boom".into());
            }
            let ms = knobs.tick_ms.load(Ordering::SeqCst);
            if ms > 0 {
                sleep(Duration::from_millis(ms.into())).await;
                log.push("tick-done");
            }
            Ok(())
        })
    })
    .on_leave(move |room, left| {
        let (log, knobs) = (l5.clone(), k4.clone());
        Box::pin(async move {
            log.push(format!("leave {} {} size={}", left.id(), left.data.name, room.size()));
            if take(&knobs.leave_failures) {
                return Err("leave boom".into());
            }
            room.broadcast(&json!({"players": room.size()}))?;
            Ok(())
        })
    })
    .on_empty(move |room| {
        let (log, knobs) = (l6.clone(), k5.clone());
        Box::pin(async move {
            let ms = knobs.empty_ms.load(Ordering::SeqCst);
            if ms > 0 {
                sleep(Duration::from_millis(ms.into())).await;
            }
            log.push(format!("empty {}", room.room_id()));
            Ok(())
        })
    })
    .method("setSwitch", |room, on: bool| {
        Box::pin(async move {
            room.state.switch = on;
            Ok(on)
        })
    })
    .method("getSwitch", |room, (): ()| Box::pin(async move { Ok(room.state.switch) }))
    .method("moveCount", |room, (): ()| Box::pin(async move { Ok(room.state.moves) }))
    .method("fail", |_room, (): ()| Box::pin(async move { Err::<(), _>("method boom".into()) }))
}

struct Harness {
    server: Server,
    log: Log,
    knobs: Arc<Knobs>,
}

fn harness(tick_hz: u32) -> Harness {
    harness_with(tick_hz, |endpoint, builder| builder.room(endpoint))
}

fn harness_with(
    tick_hz: u32,
    build: impl FnOnce(RoomEndpoint<Game, GameState, Player>, ServerBuilder) -> ServerBuilder,
) -> Harness {
    let log = Log::default();
    let knobs = Arc::new(Knobs::default());
    let server = build(game(&log, &knobs, tick_hz), Server::builder()).build().unwrap();
    Harness { server, log, knobs }
}

impl Harness {
    async fn try_connect(&self, target: &str, headers: &[(&str, &str)]) -> Result<Client, roomwire_tokio::Error> {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let server = self.server.clone();
        tokio::spawn(async move { server.serve_stream(theirs, None).await });
        let request = ClientRequest { host: "game.test", target, protocols: &[], headers };
        let (ws, _) = timeout(LIMIT, WebSocket::connect_with_stream(ours, &request, Config::default()))
            .await
            .expect("handshake hung")?;
        Ok(ws)
    }

    async fn connect(&self, target: &str) -> Client {
        self.try_connect(target, &[]).await.expect("connect")
    }

    /// Connect, and read the `{"players": n}` the join broadcasts.
    async fn join(&self, target: &str) -> (Client, String) {
        let mut ws = self.connect(target).await;
        let players = recv_json(&mut ws).await;
        assert!(players.get("players").is_some(), "{players}");
        let id = self.log.entries().iter().rev().find_map(|e| e.strip_prefix("join ").map(str::to_owned)).unwrap();
        (ws, id.split(' ').next().unwrap().to_owned())
    }

    /// Wait until the log has an entry starting with `prefix` `n` times.
    async fn until(&self, prefix: &str, n: usize) {
        timeout(LIMIT, async {
            while self.log.count(prefix) < n {
                sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never {n} × {prefix:?}: {:?}", self.log.entries()));
    }
}

async fn recv_json(ws: &mut Client) -> Value {
    match timeout(LIMIT, ws.recv()).await.expect("recv timed out") {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn send(ws: &mut Client, frame: Value) {
    ws.send(MessageRef::Text(&frame.to_string())).await.unwrap();
}

async fn closed_with(ws: &mut Client) -> Option<(Option<CloseCode>, String)> {
    timeout(LIMIT, async { while let Some(Ok(_)) = ws.recv().await {} }).await.expect("connection did not end");
    ws.peer_close().map(|c| (c.code, c.reason.clone()))
}

fn ticks(log: &Log) -> Vec<String> {
    log.entries().into_iter().filter(|e| e.starts_with("tick ")).collect()
}

// RoomEngine.spec 8, 9, 13: ticks only after a join, with the real dt;
// one state across joins, seen by the tick.
#[tokio::test(start_paused = true)]
async fn ticks_start_at_the_first_join_with_the_elapsed_time() {
    let h = harness(20);
    sleep(Duration::from_millis(500)).await;
    assert!(ticks(&h.log).is_empty(), "no tick before a join");
    assert_eq!(h.server.live_rooms::<Game>(), 0, "no room before a join");
    let (mut a, _) = h.join("/ws/game?roomId=r1").await;
    let (_b, _) = h.join("/ws/game?roomId=r1").await;
    assert_eq!(recv_json(&mut a).await, json!({"players": 2}));
    h.until("tick ", 2).await;
    let t = ticks(&h.log);
    assert_eq!(&t[..2], ["tick 50 moves=0 built=1", "tick 50 moves=0 built=1"]);
    assert_eq!(h.log.count("factory "), 1, "one state for both joins");
}

// RoomEngine.spec 10, 11, 14: the last leave stops the loop, runs on_empty
// and discards the state; a rejoin rebuilds it and restarts the loop.
#[tokio::test(start_paused = true)]
async fn the_last_leave_tears_down_and_a_rejoin_starts_again() {
    let h = harness(20);
    let (mut a, id) = h.join("/ws/game?roomId=r1").await;
    h.until("tick ", 1).await;
    a.close(CloseCode::Normal, "").await.unwrap();
    h.until("empty r1", 1).await;
    let stopped = ticks(&h.log).len();
    sleep(Duration::from_millis(500)).await;
    assert_eq!(ticks(&h.log).len(), stopped, "no tick after the last leave");
    let entries = h.log.entries();
    let leave = entries.iter().position(|e| e.starts_with(&format!("leave {id}"))).unwrap();
    let empty = entries.iter().position(|e| e == "empty r1").unwrap();
    assert!(leave < empty, "{entries:?}");
    timeout(LIMIT, async {
        while h.server.live_rooms::<Game>() > 0 {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the room's task ends once it is vacant");
    let (_a, _) = h.join("/ws/game?roomId=r1").await;
    h.until("tick ", stopped + 1).await;
    assert_eq!(h.log.count("factory "), 2, "rebuilt");
    assert!(ticks(&h.log).last().unwrap().ends_with("built=2"));
}

// RoomEngine.spec 12: a failing (or panicking) tick never stops the loop.
#[tokio::test(start_paused = true)]
async fn tick_errors_never_escape_the_loop() {
    let h = harness(20);
    h.knobs.tick_failures.store(2, Ordering::SeqCst);
    let (_a, _) = h.join("/ws/game").await;
    h.until("tick ", 4).await;
}

// RoomEngine.spec 15: on_leave failing on the last leave still tears down.
#[tokio::test(start_paused = true)]
async fn a_failing_on_leave_still_tears_down() {
    let h = harness(20);
    h.knobs.leave_failures.store(1, Ordering::SeqCst);
    let (mut a, _) = h.join("/ws/game?roomId=x").await;
    drop(a.close(CloseCode::Normal, "").await);
    h.until("empty x", 1).await;
    let n = ticks(&h.log).len();
    sleep(Duration::from_millis(300)).await;
    assert_eq!(ticks(&h.log).len(), n);
}

// RoomEngine.spec 16 and the 1011 close: a failing factory is not
// remembered, for calls and joins.
#[tokio::test(start_paused = true)]
async fn a_failed_state_is_built_again_by_the_next_join_or_call() {
    let h = harness(0);
    h.knobs.factory_failures.store(1, Ordering::SeqCst);
    let failed = h.server.call::<Game, _, u32>("r", "moveCount", &()).await;
    assert_eq!(failed, Err(CallError::Failed("no state today".into())));
    assert_eq!(h.server.call::<Game, _, u32>("r", "moveCount", &()).await, Ok(0));

    h.knobs.factory_failures.store(1, Ordering::SeqCst);
    let mut ws = h.connect("/ws/game?roomId=q").await;
    assert_eq!(closed_with(&mut ws).await, Some((Some(CloseCode::Error), "Room join failed".into())));
    let (_ws, _) = h.join("/ws/game?roomId=q").await;
    assert_eq!(h.log.count("factory q"), 1);
    assert_eq!(h.log.count("factory-failed q"), 1);
}

// A state factory that never ends (here: a minute) does not hold the
// joining connection: it is closed with 1011 at the join's timeout, and
// leaves once the room takes its join.
#[tokio::test(start_paused = true)]
async fn a_join_that_never_ends_is_closed_at_the_join_timeout() {
    let h = harness(0);
    h.knobs.factory_ms.store(60_000, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let mut ws = h.connect("/ws/game?roomId=s").await;
    timeout(Duration::from_secs(30), async {
        while let Some(received) = ws.recv().await {
            if received.is_err() {
                break;
            }
        }
    })
    .await
    .expect("still joining after 30 s");
    let waited = started.elapsed();
    assert_eq!(
        ws.peer_close().map(|c| (c.code, c.reason.clone())),
        Some((Some(CloseCode::Error), "Room join failed".into()))
    );
    assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(11), "{waited:?}");
    // The state is built at last: the join given up is taken, then left.
    sleep(Duration::from_secs(60)).await;
    h.until("empty s", 1).await;
    assert_eq!(h.log.count("join "), 1);
    assert_eq!(h.server.connection_count(), 0);
}

// A failing on_join closes with 1011; the connection then leaves as any.
#[tokio::test(start_paused = true)]
async fn a_failing_on_join_closes_with_1011_and_leaves() {
    let h = harness(0);
    h.knobs.join_failures.store(1, Ordering::SeqCst);
    let mut ws = h.connect("/ws/game?roomId=j").await;
    assert_eq!(closed_with(&mut ws).await, Some((Some(CloseCode::Error), "Room join failed".into())));
    h.until("empty j", 1).await;
    assert_eq!(h.log.count("leave "), 1);
}

// RoomEngine.spec 17, 18; WebSocketRoom.room.spec 60: on_join and
// on_leave see the same connection, its data and its query.
#[tokio::test(start_paused = true)]
async fn join_and_leave_see_the_same_connection_and_its_data() {
    let h = harness(0);
    let (mut a, id) = h.join("/ws/game?roomId=r&name=ada&name=bob").await;
    a.close(CloseCode::Normal, "").await.unwrap();
    h.until("empty r", 1).await;
    let entries = h.log.entries();
    assert!(entries.contains(&format!("join {id} ada size=1")), "{entries:?}");
    assert!(entries.contains(&format!("leave {id} ada size=0")), "{entries:?}");
}

// RoomEngine.spec 19–21, 23, 25, 26; room-integration.spec 97:
// send, broadcast except, close; frames are the bare message.
#[tokio::test(start_paused = true)]
async fn send_broadcast_and_close_reach_the_right_connections() {
    let h = harness(0);
    let (mut a, _) = h.join("/ws/game?roomId=r").await;
    let (mut b, b_id) = h.join("/ws/game?roomId=r").await;
    assert_eq!(recv_json(&mut a).await, json!({"players": 2}));
    send(&mut a, json!({"cmd": "echo", "arg": "hello"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"echo": "hello"}), "exactly the message: no room label");
    send(&mut a, json!({"roomId": "elsewhere", "message": {"cmd": "all", "arg": "hi"}})).await;
    assert_eq!(recv_json(&mut b).await, json!({"all": "hi"}));
    // Server-side broadcast, except b.
    assert!(h.server.broadcast_to_room::<Game>("r", &json!({"server": 1}), &[&b_id]).unwrap());
    assert_eq!(recv_json(&mut a).await, json!({"server": 1}));
    send(&mut a, json!({"cmd": "echo", "arg": "a-only"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"echo": "a-only"}), "a got nothing else");
    assert!(!h.server.broadcast_to_room::<Game>("nowhere", &json!({}), &[]).unwrap(), "no room started for it");
    send(&mut b, json!({"cmd": "kick"})).await;
    assert_eq!(closed_with(&mut b).await, Some((Some(CloseCode::from(4000)), "bye".into())));
    assert_eq!(recv_json(&mut a).await, json!({"players": 1}));
}

// RoomEngine.spec 22, 24: invalid messages never reach on_message and
// are answered with the bare reason; a failing on_message answers its
// error and keeps the connection.
#[tokio::test(start_paused = true)]
async fn invalid_and_failing_messages_are_answered_to_the_sender() {
    let h = harness(0);
    let (mut a, _) = h.join("/ws/game").await;
    send(&mut a, json!({"cmd": "bad"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"error": "bad shape"}));
    send(&mut a, json!({"nope": 1})).await;
    let error = recv_json(&mut a).await;
    assert!(error["error"].as_str().unwrap().contains("cmd"), "{error}");
    send(&mut a, json!({"cmd": "fail"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"error": "handler boom"}));
    a.send(MessageRef::Text("not json")).await.unwrap();
    send(&mut a, json!({"message": {"cmd": "move"}})).await;
    send(&mut a, json!({"cmd": "echo", "arg": "still here"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"echo": "still here"}));
    assert_eq!(h.server.call::<Game, _, u32>("default", "moveCount", &()).await, Ok(1));
    assert_eq!(h.log.count("message "), 3, "only valid messages: {:?}", h.log.entries());
}

/// A room slower than the handler deadline holds one message of each
/// connection, not one more per deadline: the sender is told its message
/// timed out, and its next ones are answered "Room busy", unhandled,
/// until the room is done with the first; then it is served again.
#[tokio::test(start_paused = true)]
async fn a_slow_room_holds_one_message_per_connection() {
    let h = harness_with(0, |endpoint, builder| {
        let mut config = roomwire_tokio::server::ServerConfig::default();
        config.handler_timeout = Some(Duration::from_millis(50));
        builder.config(config).room(endpoint)
    });
    let (mut a, _) = h.join("/ws/game").await;
    send(&mut a, json!({"cmd": "slow", "arg": "1000"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"error": "Handler timed out"}));
    for _ in 0..9 {
        send(&mut a, json!({"cmd": "move"})).await;
        let busy = recv_json(&mut a).await;
        assert_eq!(busy, json!({"error": roomwire_tokio::roomwire_core::stateful::ROOM_BUSY}));
    }
    sleep(Duration::from_secs(2)).await;
    assert_eq!(h.log.count("message move"), 0, "{:?}", h.log.entries());
    send(&mut a, json!({"cmd": "echo", "arg": "served again"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"echo": "served again"}));
}

// RoomEngine.spec 28, 29; room-integration.spec 98: headless calls.
#[tokio::test(start_paused = true)]
async fn headless_calls_build_state_once_per_room() {
    let h = harness(0);
    assert_eq!(h.server.call::<Game, _, bool>("a", "setSwitch", &true).await, Ok(true));
    assert_eq!(h.server.call::<Game, _, bool>("a", "getSwitch", &()).await, Ok(true));
    assert_eq!(h.server.call::<Game, _, bool>("b", "getSwitch", &()).await, Ok(false), "isolated per room");
    assert_eq!(h.log.count("factory a"), 1);
    let unknown = h.server.call::<Game, _, ()>("a", "nope", &()).await.unwrap_err();
    assert!(unknown.to_string().contains("not defined"), "{unknown}");
    assert_eq!(h.server.call::<Game, _, ()>("a", "fail", &()).await, Err(CallError::Failed("method boom".into())));
    assert!(matches!(h.server.call::<Game, _, bool>("a", "setSwitch", &"yes").await, Err(CallError::Arguments(_))));
    assert_eq!(h.log.count("empty"), 0, "a headless room is never emptied");
}

// NodeWebSocketServerProvider: headless rooms idle for 5 minutes are
// disposed of without on_empty.
#[tokio::test(start_paused = true)]
async fn idle_headless_rooms_are_evicted_after_five_minutes() {
    let h = harness(0);
    h.server.call::<Game, _, bool>("a", "setSwitch", &true).await.unwrap();
    sleep(Duration::from_secs(299)).await;
    assert_eq!(h.server.live_rooms::<Game>(), 1);
    // A call resets the idle time.
    assert_eq!(h.server.call::<Game, _, bool>("a", "getSwitch", &()).await, Ok(true));
    sleep(Duration::from_secs(299)).await;
    assert_eq!(h.server.live_rooms::<Game>(), 1);
    sleep(Duration::from_secs(2)).await;
    assert_eq!(h.server.live_rooms::<Game>(), 0);
    assert_eq!(h.server.call::<Game, _, bool>("a", "getSwitch", &()).await, Ok(false), "a new state");
    assert_eq!(h.log.count("empty"), 0);
}

// RoomEngine.spec 30–32: an async tick in flight makes later beats skip,
// with a warning; a tick that returns at once is never skipped.
#[tokio::test(start_paused = true)]
async fn a_tick_still_running_makes_later_beats_skip() {
    let logs = Capture::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish(),
    );
    let h = harness(20);
    let (_a, _) = h.join("/ws/game").await;
    h.until("tick ", 3).await;
    assert_eq!(ticks(&h.log)[..3], ["tick 50 moves=0 built=1"; 3], "3 beats, 3 ticks");
    assert!(!logs.text().contains("still running"));
    // A tick of 120 ms at 50 ms beats: the beats at +50 and +100 skip.
    h.knobs.tick_ms.store(120, Ordering::SeqCst);
    h.until("tick-done", 1).await;
    h.knobs.tick_ms.store(0, Ordering::SeqCst);
    h.until("tick ", 5).await;
    let t = ticks(&h.log);
    assert_eq!(h.log.count("tick-done"), 1, "one start over the slow tick's beats");
    assert_eq!(t[4], "tick 150 moves=0 built=1", "the next beat after the slow one, in phase: {t:?}");
    assert!(logs.text().contains("still running"), "{}", logs.text());
}

// node-hardening.spec 91: a socket closed while the state is being built
// leaves no ghost: on_empty runs exactly once.
#[tokio::test(start_paused = true)]
async fn a_socket_closed_during_the_state_factory_leaves_no_ghost() {
    let h = harness(20);
    h.knobs.factory_ms.store(1_000, Ordering::SeqCst);
    let ws = h.connect("/ws/game?roomId=g").await;
    sleep(Duration::from_millis(10)).await;
    drop(ws);
    h.until("empty g", 1).await;
    sleep(Duration::from_secs(2)).await;
    assert_eq!(h.log.count("empty"), 1);
    assert_eq!(h.log.count("join "), 1);
    assert_eq!(h.server.live_rooms::<Game>(), 0);
    assert_eq!(h.server.connection_count(), 0);
}

// Concurrent leavers share one teardown; a join during a teardown waits
// for it and gets a new state.
#[tokio::test(start_paused = true)]
async fn leavers_share_one_teardown_and_a_join_waits_for_it() {
    let h = harness(0);
    h.knobs.empty_ms.store(200, Ordering::SeqCst);
    let (a, _) = h.join("/ws/game?roomId=t").await;
    let (b, _) = h.join("/ws/game?roomId=t").await;
    drop((a, b));
    h.until("leave ", 2).await;
    let (_c, _) = h.join("/ws/game?roomId=t").await;
    let entries = h.log.entries();
    assert_eq!(h.log.count("empty t"), 1);
    let empty = entries.iter().position(|e| e == "empty t").unwrap();
    let rebuilt = entries.iter().rposition(|e| e == "factory t").unwrap();
    assert!(empty < rebuilt, "{entries:?}");
    assert_eq!(h.log.count("factory t"), 2);
}

// room-connection-registry.spec 92–95: room sockets are connections like
// any: listed, closed by id, closed with 1001 at shutdown (the rooms
// disposed of without on_empty, RoomEngine.spec 27).
#[tokio::test(start_paused = true)]
async fn room_sockets_are_listed_closed_and_shut_down() {
    let h = harness(20);
    let (mut a, a_id) = h.join("/ws/game?roomId=r").await;
    let (mut b, _) = h.join("/ws/game?roomId=r").await;
    let listed = h.server.connections();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.path == "/ws/game" && c.rooms == ["r"]));
    assert_eq!(h.server.room_connections("r").len(), 2);
    assert!(h.server.close_connection(&a_id, CloseCode::from(4000), "bye"));
    assert_eq!(closed_with(&mut a).await, Some((Some(CloseCode::from(4000)), "bye".into())));
    h.until("leave ", 1).await;
    assert_eq!(h.server.connections().len(), 1);
    h.until("tick ", 2).await;
    let server = h.server.clone();
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    assert_eq!(recv_json(&mut b).await, json!({"players": 1}));
    assert_eq!(closed_with(&mut b).await, Some((Some(CloseCode::Away), "Server shutting down".into())));
    timeout(LIMIT, shutdown).await.unwrap().unwrap();
    assert_eq!(h.log.count("empty"), 0, "disposed of without on_empty: {:?}", h.log.entries());
    assert_eq!(h.server.live_rooms::<Game>(), 0);
    let n = ticks(&h.log).len();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(ticks(&h.log).len(), n);
}

// room-integration.spec 96: the player count follows joins and leaves.
#[tokio::test(start_paused = true)]
async fn the_player_count_follows_joins_and_leaves() {
    let h = harness(20);
    let (mut a, _) = h.join("/ws/game?roomId=p").await;
    let (mut b, _) = h.join("/ws/game?roomId=p").await;
    assert_eq!(recv_json(&mut a).await, json!({"players": 2}));
    a.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(recv_json(&mut b).await, json!({"players": 1}));
}

// A connection is in the first room of its handshake; a room frame's
// roomId is never honoured; room ids are validated; the limits and
// admission rules of any endpoint apply.
#[tokio::test(start_paused = true)]
async fn admission_rules_apply_to_room_endpoints() {
    let h = harness_with(0, |endpoint, builder| {
        builder.room(endpoint.max_connections_per_user(1).authorize(|handshake| {
            let user = handshake.query_param("user").map(|u| u.into_owned());
            async move {
                match user {
                    Some(user) if user == "mallory" => Admission::refuse(403, "Forbidden"),
                    Some(user) => Admission::user(user),
                    None => Admission::accept(),
                }
            }
        }))
    });
    let (_a, _) = h.join("/ws/game?roomIds=first,second&user=ann").await;
    assert_eq!(h.server.connections()[0].rooms, ["first"]);
    let mut again = h.connect("/ws/game?roomId=first&user=ann").await;
    assert_eq!(
        closed_with(&mut again).await,
        Some((Some(CloseCode::Policy), "Max connections per user exceeded".into()))
    );
    assert!(h.try_connect("/ws/game?user=mallory", &[]).await.is_err(), "403");
    let long = "x".repeat(300);
    let mut invalid = h.connect(&format!("/ws/game?roomId={long}")).await;
    assert_eq!(closed_with(&mut invalid).await, Some((Some(CloseCode::Policy), "Invalid room id".into())));
    assert_eq!(h.log.count("factory"), 1, "refused connections build nothing");
}

/// A log sink for the tests that read warnings.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

// ---------------------------------------------------------------------------
// Across a cluster: one owner per room, members on any node.
// ---------------------------------------------------------------------------

use roomwire_tokio::backplane::{MemoryBackplane, MemoryBus};

fn node(bus: &MemoryBus, tick_hz: u32) -> (Harness, MemoryBackplane) {
    let backplane = bus.backplane();
    let given = backplane.clone();
    (harness_with(tick_hz, move |endpoint, builder| builder.room(endpoint).backplane(given)), backplane)
}

/// The next frame that is not a `{"players": n}` notice.
async fn next_not_players(ws: &mut Client) -> Value {
    loop {
        let frame = recv_json(ws).await;
        if frame.get("players").is_none() {
            return frame;
        }
    }
}

/// Read until `{"players": n}`.
async fn players(ws: &mut Client, n: usize) {
    timeout(LIMIT, async { while recv_json(ws).await != json!({"players": n}) {} })
        .await
        .unwrap_or_else(|_| panic!("never {{\"players\": {n}}}"));
}

#[tokio::test(start_paused = true)]
async fn members_on_two_nodes_share_one_state_on_its_owner() {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus, 0);
    let (b, _) = node(&bus, 0);
    let (mut ca, _) = a.join("/ws/game?roomId=x").await;
    // b's member joins the room a owns: on_join runs on a.
    let mut cb = b.connect("/ws/game?roomId=x").await;
    players(&mut cb, 2).await;
    players(&mut ca, 2).await;
    assert_eq!(a.log.count("factory x"), 1);
    assert_eq!(b.log.count("factory"), 0, "no state on b");
    assert_eq!(b.server.live_rooms::<Game>(), 1, "b stands in for a");
    let cb_id = a.log.entries().iter().rev().find_map(|e| e.strip_prefix("join ").map(str::to_owned)).unwrap();
    let cb_id = cb_id.split(' ').next().unwrap().to_owned();
    // b's member's messages reach a's state; answers come back to it alone.
    send(&mut cb, json!({"cmd": "move"})).await;
    send(&mut cb, json!({"cmd": "echo", "arg": "via a"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "via a"}));
    send(&mut cb, json!({"cmd": "bad"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"error": "bad shape"}), "checked on b");
    send(&mut cb, json!({"cmd": "fail"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"error": "handler boom"}), "failed on a");
    send(&mut ca, json!({"cmd": "all", "arg": "from a"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"all": "from a"}));
    // Calls and broadcasts from b's code reach a's state.
    assert_eq!(b.server.call::<Game, _, u32>("x", "moveCount", &()).await, Ok(1));
    assert_eq!(b.server.call::<Game, _, ()>("x", "nope", &()).await, Err(CallError::UnknownMethod("nope".into())));
    assert!(b.server.broadcast_to_room::<Game>("x", &json!({"server": "b"}), &[&cb_id]).unwrap());
    assert_eq!(next_not_players(&mut ca).await, json!({"server": "b"}));
    send(&mut cb, json!({"cmd": "echo", "arg": "fence"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "fence"}), "the broadcast skipped cb");
    // b's member leaves: on_leave on a.
    cb.close(CloseCode::Normal, "").await.unwrap();
    players(&mut ca, 1).await;
    assert!(a.log.entries().contains(&format!("leave {cb_id}  size=1")), "{:?}", a.log.entries());
    timeout(LIMIT, async {
        while b.server.live_rooms::<Game>() > 0 {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b's stand-in ends with its last member");
}

#[tokio::test(start_paused = true)]
async fn when_the_owner_is_cut_off_the_room_moves_with_a_new_state() {
    let bus = MemoryBus::new();
    let (a, a_plane) = node(&bus, 0);
    let (b, _) = node(&bus, 0);
    let (mut ca, _) = a.join("/ws/game?roomId=m").await;
    let mut cb = b.connect("/ws/game?roomId=m").await;
    players(&mut cb, 2).await;
    for _ in 0..3 {
        send(&mut cb, json!({"cmd": "move"})).await;
    }
    send(&mut cb, json!({"cmd": "echo", "arg": "moved"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "moved"}));
    assert_eq!(b.server.call::<Game, _, u32>("m", "moveCount", &()).await, Ok(3));
    // a goes silent (its claim is no longer renewed).
    bus.set_cut(&a_plane, true);
    // A member joining b meanwhile waits for a, then joins the new owner.
    let joining = tokio::spawn({
        let target = "/ws/game?roomId=m&name=late";
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let server = b.server.clone();
        tokio::spawn(async move { server.serve_stream(theirs, None).await });
        async move {
            let request = ClientRequest { host: "game.test", target, protocols: &[], headers: &[] };
            WebSocket::connect_with_stream(ours, &request, Config::default()).await.expect("connect").0
        }
    });
    sleep(Duration::from_secs(10)).await;
    // b took the room over: a new state (nothing survives), its member
    // joined again.
    timeout(LIMIT, async {
        while b.log.count("factory m") == 0 {
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("b never took the room");
    assert_eq!(b.server.call::<Game, _, u32>("m", "moveCount", &()).await, Ok(0));
    send(&mut cb, json!({"cmd": "move"})).await;
    send(&mut cb, json!({"cmd": "echo", "arg": "on b"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "on b"}));
    assert_eq!(b.server.call::<Game, _, u32>("m", "moveCount", &()).await, Ok(1));
    let mut late = joining.await.unwrap();
    sleep(Duration::from_secs(15)).await;
    send(&mut late, json!({"cmd": "echo", "arg": "still in"})).await;
    assert_eq!(next_not_players(&mut late).await, json!({"echo": "still in"}), "joined the new owner, not kicked");
    assert!(b.log.entries().iter().any(|e| e.starts_with("join ") && e.contains(" late ")), "{:?}", b.log.entries());
    // a comes back: it lost the room; its member joins b's.
    bus.set_cut(&a_plane, false);
    timeout(LIMIT, async {
        while b.log.entries().iter().filter(|e| e.starts_with("join ")).count() < 3 {
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a's member never joined b: {:?}", b.log.entries()));
    send(&mut ca, json!({"cmd": "move"})).await;
    send(&mut ca, json!({"cmd": "echo", "arg": "a again"})).await;
    assert_eq!(next_not_players(&mut ca).await, json!({"echo": "a again"}));
    assert_eq!(a.server.call::<Game, _, u32>("m", "moveCount", &()).await, Ok(2), "one state, on b");
    assert_eq!(a.log.count("empty"), 0, "a's state went without on_empty");
}

#[tokio::test(start_paused = true)]
async fn a_member_node_cut_off_and_back_joins_its_members_again() {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus, 0);
    let (b, b_plane) = node(&bus, 0);
    let (mut ca, _) = a.join("/ws/game?roomId=k").await;
    let mut cb = b.connect("/ws/game?roomId=k").await;
    players(&mut ca, 2).await;
    // b goes silent long enough for a to drop its member.
    bus.set_cut(&b_plane, true);
    players(&mut ca, 1).await;
    assert_eq!(a.log.count("leave "), 1);
    // b is back: a does not know its member, says so, and b joins it again.
    bus.set_cut(&b_plane, false);
    players(&mut ca, 2).await;
    send(&mut cb, json!({"cmd": "echo", "arg": "back"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "back"}));
    assert_eq!(a.log.count("factory k"), 1, "the same state all along");
}

/// An owner slower than its members' nodes wait holds one message of each
/// member of another node, as of its own: after the member's node gave up
/// on the first, the next ones are refused "Room busy" by the owner until
/// it is done with the first, not queued behind it one per try.
#[tokio::test(start_paused = true)]
async fn a_slow_owner_holds_one_message_per_member_of_another_node() {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus, 0);
    let (b, _) = node(&bus, 0);
    let (_ca, _) = a.join("/ws/game?roomId=x").await;
    let mut cb = b.connect("/ws/game?roomId=x").await;
    players(&mut cb, 2).await;
    send(&mut cb, json!({"cmd": "slow", "arg": "10000"})).await;
    let unavailable = next_not_players(&mut cb).await;
    assert_eq!(unavailable, json!({"error": roomwire_tokio::roomwire_core::cluster::ownership::ROOM_UNAVAILABLE}));
    let busy = json!({"error": roomwire_tokio::roomwire_core::stateful::ROOM_BUSY});
    for _ in 0..5 {
        send(&mut cb, json!({"cmd": "move"})).await;
        assert_eq!(next_not_players(&mut cb).await, busy);
    }
    sleep(Duration::from_secs(10)).await;
    assert_eq!(a.log.count("message move"), 0, "{:?}", a.log.entries());
    send(&mut cb, json!({"cmd": "echo", "arg": "served again"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "served again"}));
}

/// The bus forgets every claim (a Redis restarted without its data) while
/// the owner is alive: the other nodes, which the owner answers, put it
/// back rather than take the room, so the state goes on where it was.
#[tokio::test(start_paused = true)]
async fn a_bus_that_forgets_its_claims_keeps_the_live_owner() {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus, 0);
    let (b, _) = node(&bus, 0);
    let (c, _) = node(&bus, 0);
    let (_ca, _) = a.join("/ws/game?roomId=f").await;
    // Each node asks for the claim every 2 s from when the room started
    // there: b and c ask 0.7 s and 1.4 s after a.
    sleep(Duration::from_millis(700)).await;
    let mut cb = b.connect("/ws/game?roomId=f").await;
    sleep(Duration::from_millis(700)).await;
    let mut cc = c.connect("/ws/game?roomId=f").await;
    players(&mut cc, 3).await;
    for _ in 0..3 {
        send(&mut cb, json!({"cmd": "move"})).await;
    }
    send(&mut cb, json!({"cmd": "echo", "arg": "moved"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "moved"}));
    // A few renewals, so that b and c have had their reports answered.
    sleep(Duration::from_secs(5)).await;
    // Forgotten every 100 ms: b or c finds no claim before a renews its own.
    for _ in 0..100 {
        bus.forget_claims();
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((b.log.count("factory"), c.log.count("factory")), (0, 0), "the room moved off its live owner");
    send(&mut cc, json!({"cmd": "move"})).await;
    send(&mut cc, json!({"cmd": "echo", "arg": "still a"})).await;
    assert_eq!(next_not_players(&mut cc).await, json!({"echo": "still a"}));
    assert_eq!(c.server.call::<Game, _, u32>("f", "moveCount", &()).await, Ok(4), "the state was built again");
    assert_eq!(a.log.count("factory f"), 1);
}

/// An owner that goes silent as the bus forgets its claim is not put back
/// for good: its reports unanswered, the other node takes the room.
#[tokio::test(start_paused = true)]
async fn a_silent_owner_whose_claim_is_lost_is_replaced() {
    let bus = MemoryBus::new();
    let (a, a_plane) = node(&bus, 0);
    let (b, _) = node(&bus, 0);
    let (_ca, _) = a.join("/ws/game?roomId=s").await;
    let mut cb = b.connect("/ws/game?roomId=s").await;
    players(&mut cb, 2).await;
    sleep(Duration::from_secs(5)).await;
    bus.set_cut(&a_plane, true);
    bus.forget_claims();
    timeout(LIMIT, async {
        while b.log.count("factory s") == 0 {
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("b never took the room from its silent owner");
    send(&mut cb, json!({"cmd": "echo", "arg": "on b"})).await;
    assert_eq!(next_not_players(&mut cb).await, json!({"echo": "on b"}));
}
