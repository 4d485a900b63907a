//! Stateful rooms under load: how many rooms × members × tick rate one
//! core sustains, and the tick jitter it shows.
//!
//! The server runs on one current-thread runtime on the main thread;
//! `rooms × members` clients (real TCP over loopback) run on a second
//! thread, read every frame and count them. Every room ticks at `--hz`;
//! each tick changes the room's state and broadcasts it to its members
//! (`--quiet`: ticks change nothing and send nothing, the cost of ticking
//! alone). Printed, one line: ticks/s, deliveries/s received, the server
//! thread's CPU (share of one core, from `/proc/thread-self/schedstat`),
//! the jitter of `dt` (|dt − period|) and how late each beat started after
//! its scheduled time (or early: a beat may be taken up to 100 µs before
//! it), at p50, p99, p99.9 and max.
//!
//! `--tokio-timer`: the rooms' beats on tokio's timers alone
//! (`ServerConfig::precise_ticks` off), to compare.
//!
//! ```text
//! cargo run --release -p roomwire-bench-servers --bin rw-ticks -- --rooms 1000 --members 10 --hz 10 --duration 5
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roomwire_tokio::server::{RoomEndpoint, Server};
use roomwire_tokio::{ClientRequest, Config, WebSocket};
use serde::{Deserialize, Serialize};

/// Client → room (never sent here).
#[derive(Serialize, Deserialize)]
pub struct Nothing {}

/// Room → clients: the tick's state.
#[derive(Serialize, Deserialize)]
pub struct Frame {
    n: u64,
    members: usize,
}

roomwire_tokio::roomwire_core::channel! {
    /// The ticking room.
    pub struct Ticking { path: "/ws/tick", in: Frame, out: Nothing }
}

/// A room's state: its beat count, and when its loop started.
#[derive(Default)]
struct Beats {
    n: u64,
    start: Option<Instant>,
}

struct Args {
    rooms: usize,
    members: usize,
    hz: u32,
    warmup: f64,
    duration: f64,
    quiet: bool,
    /// tokio's timers alone (no metronome thread).
    tokio_timer: bool,
}

fn args() -> Args {
    let mut parsed =
        Args { rooms: 100, members: 10, hz: 20, warmup: 1.0, duration: 5.0, quiet: false, tokio_timer: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value");
        match arg.as_str() {
            "--rooms" => parsed.rooms = value().parse().expect("--rooms N"),
            "--members" => parsed.members = value().parse().expect("--members N"),
            "--hz" => parsed.hz = value().parse().expect("--hz N"),
            "--warmup" => parsed.warmup = value().parse().expect("--warmup SECONDS"),
            "--duration" => parsed.duration = value().parse().expect("--duration SECONDS"),
            "--quiet" => parsed.quiet = true,
            "--tokio-timer" => parsed.tokio_timer = true,
            other => panic!("unknown argument {other}"),
        }
    }
    parsed
}

/// The calling thread's CPU time so far (`/proc/thread-self/schedstat`).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

fn main() {
    let args = args();
    let period = Duration::from_secs(1) / args.hz.max(1);
    // Jitter samples, µs, while measuring.
    let jitter = Arc::new(Mutex::new(Vec::<u32>::new()));
    // How late each beat started after its scheduled time, µs.
    let late = Arc::new(Mutex::new(Vec::<u32>::new()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticks = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (server, addr) = runtime.block_on(async {
        let (jitter, measuring, ticks, quiet) = (jitter.clone(), measuring.clone(), ticks.clone(), args.quiet);
        let late = late.clone();
        let room = RoomEndpoint::<Ticking, Beats>::new(|_room| async { Ok(Beats::default()) })
            .tick_hz(args.hz)
            .on_tick(move |room, dt| {
                let (jitter, late, measuring, ticks) = (jitter.clone(), late.clone(), measuring.clone(), ticks.clone());
                Box::pin(async move {
                    // The loop started one period before its first beat.
                    let now = Instant::now();
                    let start = *room.state.start.get_or_insert(now - dt);
                    if measuring.load(Ordering::Relaxed) {
                        let off = dt.abs_diff(period).as_micros();
                        jitter.lock().expect("jitter").push(u32::try_from(off).unwrap_or(u32::MAX));
                        // Off its scheduled time, either way (a beat may be
                        // taken a little early).
                        let behind = (now - start).as_micros() % period.as_micros();
                        let off = behind.min(period.as_micros() - behind);
                        late.lock().expect("late").push(u32::try_from(off).unwrap_or(u32::MAX));
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                    if !quiet {
                        room.state.n += 1;
                        room.broadcast(&Frame { n: room.state.n, members: room.size() })?;
                    }
                    Ok(())
                })
            });
        let mut config = roomwire_tokio::server::ServerConfig::default();
        config.max_handshakes_per_address = 100_000;
        config.max_handshakes = 100_000;
        config.precise_ticks = !args.tokio_timer;
        let server = Server::builder().config(config).room(room).build().expect("server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serving = server.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        (server, addr)
    });

    // The clients, on their own thread.
    let (rooms, members) = (args.rooms, args.members);
    let counter = received.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let clients = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        clients.block_on(async move {
            let mut tasks = Vec::new();
            for room in 0..rooms {
                for _ in 0..members {
                    let target = format!("/ws/tick?roomId=room-{room}");
                    let host = addr.to_string();
                    let request = ClientRequest { host: &host, target: &target, protocols: &[], headers: &[] };
                    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    let (mut ws, _) =
                        WebSocket::connect_with_stream(tcp, &request, Config::default()).await.expect("ws");
                    let counter = counter.clone();
                    tasks.push(tokio::spawn(async move {
                        while let Some(Ok(_)) = ws.recv().await {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
            }
            ready_tx.send(()).expect("ready");
            for task in tasks {
                let _ = task.await;
            }
        });
    });

    runtime.block_on(async {
        // Every connection in, then the warm-up, then the window.
        while ready_rx.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        measuring.store(true, Ordering::SeqCst);
        let (cpu0, wall0, got0) = (thread_cpu(), Instant::now(), received.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        measuring.store(false, Ordering::SeqCst);
        let (cpu1, wall1, got1) = (thread_cpu(), Instant::now(), received.load(Ordering::SeqCst));
        let seconds = (wall1 - wall0).as_secs_f64();
        let quantiles = |samples: &Mutex<Vec<u32>>| {
            let mut samples = std::mem::take(&mut *samples.lock().expect("samples"));
            samples.sort_unstable();
            let at = |q: f64| samples.get(((samples.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
            format!("p50={} p99={} p99.9={} max={}", at(0.5), at(0.99), at(0.999), samples.last().copied().unwrap_or(0))
        };
        println!(
            "rooms={} members={} hz={} quiet={} timer={} ticks/s={:.0} deliveries/s={:.0} server_cpu={:.1}% \
             jitter_us {} late_us {} live_rooms={}",
            args.rooms,
            args.members,
            args.hz,
            args.quiet,
            if args.tokio_timer { "tokio" } else { "metronome" },
            ticks.load(Ordering::SeqCst) as f64 / seconds,
            (got1 - got0) as f64 / seconds,
            100.0 * (cpu1 - cpu0).as_secs_f64() / seconds,
            quantiles(&jitter),
            quantiles(&late),
            server.live_rooms::<Ticking>(),
        );
        server.shutdown().await;
    });
}
