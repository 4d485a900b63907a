//! Waiting connections parked without a task of their own, over loopback
//! TCP: they hold no task while they wait, and whatever they wait for
//! (a message of their client, a frame emitted to them, their keepalive,
//! the server's shutdown) runs them again.

mod server_support;

use std::time::Duration;

use roomwire_tokio::server::Emit;
use roomwire_tokio::{CloseCode, Message};
use server_support::*;
use tokio::time::{sleep, timeout};

/// The runtime's live tasks.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Wait until the runtime has at most `most` live tasks; how many it has.
async fn settle_to(most: usize) -> usize {
    let settled = timeout(LIMIT, async {
        while alive_tasks() > most {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "{} tasks still alive, expected at most {most}", alive_tasks());
    alive_tasks()
}

/// `n` clients connected to `target`.
async fn connect_many(h: &mut Harness, n: usize, target: &str) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(h.connect(target).await.0);
    }
    clients
}

/// The first client says `content` in `room`; every other one receives it.
async fn first_says_to_the_rest(clients: &mut [Client], room: &str, content: &str) {
    let (sender, members) = clients.split_first_mut().unwrap();
    say(sender, room, content).await;
    for member in members.iter_mut() {
        let got = recv_json(member).await;
        assert_eq!(got["content"], content, "{got}");
    }
}

/// Connected idle clients hold no task each; one that sends runs again
/// (its message is handled, its room gets it), and parks again within a
/// couple of seconds of going quiet; a parked one still receives.
#[tokio::test]
async fn waiting_connections_hold_no_task_of_their_own() {
    let mut h = harness().await;
    // The test, the listener and the lot's timer (made at the first park).
    let baseline = alive_tasks() + 1;
    let mut clients = connect_many(&mut h, 20, "/ws/chat?roomId=lobby").await;
    settle_to(baseline).await;
    first_says_to_the_rest(&mut clients, "lobby", "hello").await;
    // Quiet again: parked within a second of its last traffic.
    settle_to(baseline).await;
    // Parked, it still reads its client's next message, and its members
    // (parked as well) still receive.
    first_says_to_the_rest(&mut clients, "lobby", "again").await;
}

/// With `park_waiting` off, each connection keeps its task while it waits.
#[tokio::test]
async fn with_parking_off_each_waiting_connection_keeps_its_task() {
    let mut h = harness_with(config(|c| c.park_waiting = false), |e| e).await;
    let before = alive_tasks();
    let mut clients = connect_many(&mut h, 20, "/ws/chat?roomId=lobby").await;
    sleep(Duration::from_millis(300)).await;
    assert!(alive_tasks() >= before + 20, "{} tasks for 20 connections", alive_tasks() - before);
    first_says_to_the_rest(&mut clients, "lobby", "hello").await;
}

/// On a multi-threaded runtime emitters never write to a parked
/// connection's socket: its outbox wakes it, and it writes what waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_emitted_to_a_parked_connection_wakes_it() {
    let mut h = harness().await;
    let baseline = alive_tasks() + 1;
    let mut clients = connect_many(&mut h, 10, "/ws/chat?roomId=news").await;
    settle_to(baseline).await;
    for round in 0..3 {
        let message = ChatIn::System { message: format!("round {round}") };
        assert_eq!(h.server.emit::<Chat>(&Emit::to_room("news"), &message).unwrap(), 10);
        for client in &mut clients {
            let got = recv_json(client).await;
            assert_eq!(got["message"], format!("round {round}"), "{got}");
        }
        settle_to(baseline).await;
    }
}

/// A parked connection whose client stops answering pings is resumed at
/// its keepalive deadline by the lot's timer, pings, and is closed; one
/// that answers lives on, parked between pings.
#[tokio::test]
async fn parked_connections_keep_their_keepalive() {
    use roomwire_tokio::roomwire_core::Duration as CoreDuration;
    let mut h =
        harness_with(config(|c| c.socket.core.keepalive_interval = Some(CoreDuration::from_millis(200))), |e| e).await;
    // Reads frames by hand: sees the pings, never answers.
    let mut silent = raw_upgrade(h.addr, "/ws/chat?roomId=k", "").await;
    let silent_event = h.next_connect().await;
    // Reads all along, so answers every ping.
    let (mut answering, answering_event) = h.connect("/ws/chat?roomId=k").await;
    let reading = tokio::spawn(async move {
        let got = answering.recv().await;
        (answering, got)
    });
    let (b0, _) = server_frame(&mut silent).await;
    assert_eq!(b0, 0x89, "a ping from a parked connection");
    let gone = h.next_disconnect().await;
    assert_eq!(gone.connection_id, silent_event.connection_id);
    assert!(gone.reason.contains("keepalive"), "{}", gone.reason);
    sleep(Duration::from_millis(1_000)).await;
    h.mark(&answering_event.connection_id, "still here");
    let (_answering, got) = timeout(LIMIT, reading).await.unwrap().unwrap();
    assert!(matches!(got, Some(Ok(Message::Text(ref t))) if t.contains("still here")), "{got:?}");
}

/// Shutdown closes parked connections with 1001 and returns once they are
/// gone.
#[tokio::test]
async fn shutdown_closes_parked_connections() {
    let mut h = harness().await;
    let baseline = alive_tasks() + 1;
    let mut clients = connect_many(&mut h, 5, "/ws/chat?roomId=s").await;
    settle_to(baseline).await;
    let closing = tokio::spawn(async move {
        let mut codes = Vec::new();
        for client in &mut clients {
            codes.push(closed_with(client).await.map(|(code, _)| code));
        }
        codes
    });
    timeout(LIMIT, h.server.shutdown()).await.expect("shutdown waited for parked connections past its limit");
    let codes = timeout(LIMIT, closing).await.unwrap().unwrap();
    assert_eq!(codes, vec![Some(Some(CloseCode::Away)); 5]);
}

/// When the server's runtime shuts down, its parked connections are dropped
/// with it (as its tasks are): their clients see the stream end.
#[tokio::test]
async fn a_runtime_shut_down_drops_its_parked_connections() {
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let serving = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let server = runtime.block_on(async {
            let h = harness().await;
            addr_tx.send(h.addr).unwrap();
            h
        });
        // Runs the runtime until told to stop, then drops it.
        runtime.block_on(async {
            while stop_rx.try_recv().is_err() {
                sleep(Duration::from_millis(10)).await;
            }
        });
        drop(runtime);
        drop(server);
    });
    let addr = addr_rx.await.unwrap();
    let mut client = raw_upgrade(addr, "/ws/chat?roomId=r", "").await;
    // Parked by now (it has nothing to do from its first wait).
    sleep(Duration::from_millis(200)).await;
    stop_tx.send(()).unwrap();
    let mut byte = [0u8; 1];
    use tokio::io::AsyncReadExt;
    let read = timeout(LIMIT, client.read(&mut byte)).await.expect("the parked connection outlived its runtime");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    serving.join().unwrap();
}
