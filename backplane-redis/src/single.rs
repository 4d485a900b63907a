//! One Redis server: one RESP3 connection carries the commands and the
//! messages (pushes) of the subscriptions.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushKind, Value};
use roomwire_core::cluster::{BUS_HEARTBEAT, BUS_TIMEOUT};
use roomwire_tokio::backplane::Link;
use tokio::sync::mpsc;
use tracing::debug;

use roomwire_tokio::backplane::LeaseRequest;

use super::{BATCH, Ended, SUBSCRIBE_CHUNK, answer, lease_commands, within};

pub(crate) async fn session(client: &redis::Client, link: &Link) -> Ended {
    let (tx, mut pushes) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_push_sender(tx)
        .set_connection_timeout(Some(BUS_TIMEOUT.into()))
        .set_response_timeout(Some(BUS_TIMEOUT.into()));
    let mut con = match tokio::select! {
        () = link.closed() => return Ended::Closed,
        con = within("connect", client.get_multiplexed_async_connection_with_config(&config)) => con,
    } {
        Ok(con) => con,
        Err(why) => return Ended::Lost(why),
    };
    // Everything wanted now; what changes meanwhile comes as changes.
    let wanted = link.interest();
    for chunk in wanted.chunks(SUBSCRIBE_CHUNK) {
        if let Err(why) = within("subscribe", con.subscribe(chunk)).await {
            return Ended::Lost(why);
        }
    }
    debug!(channels = wanted.len(), "redis backplane subscribed");
    link.set_connected(true);
    let mut heartbeat = tokio::time::interval(BUS_HEARTBEAT.into());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            biased;
            () = link.closed() => return Ended::Closed,
            push = pushes.recv() => match push {
                None => Err("connection closed".to_owned()),
                Some(push) if push.kind == PushKind::Disconnection => Err("connection lost".to_owned()),
                Some(push) => {
                    if push.kind == PushKind::Message
                        && let [Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice()
                    {
                        link.receive(&String::from_utf8_lossy(channel), payload);
                    }
                    Ok(())
                }
            },
            (subscribe, unsubscribe) = link.interest_changes() => change(&mut con, subscribe, unsubscribe).await,
            publishes = link.next_publishes(BATCH) => publish(&mut con, link, publishes).await,
            leases = link.next_leases() => leases_pipelined(&mut con, leases).await,
            _ = heartbeat.tick() => within("heartbeat", redis::cmd("PING").query_async::<Value>(&mut con)).await.map(drop),
        };
        if let Err(why) = step {
            return Ended::Lost(why);
        }
    }
}

async fn leases_pipelined(con: &mut MultiplexedConnection, requests: Vec<LeaseRequest>) -> Result<(), String> {
    let commands = lease_commands(requests);
    if commands.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (cmd, _) in &commands {
        pipe.add_command(cmd.clone());
    }
    // Unanswered acquires (dropped senders) make their servers count alone.
    let replies = within("leases", pipe.query_async::<Vec<Value>>(con)).await?;
    for ((_, to), reply) in commands.into_iter().zip(&replies) {
        answer(to, reply);
    }
    Ok(())
}

async fn change(
    con: &mut MultiplexedConnection,
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
) -> Result<(), String> {
    for chunk in subscribe.chunks(SUBSCRIBE_CHUNK) {
        within("subscribe", con.subscribe(chunk)).await?;
    }
    for chunk in unsubscribe.chunks(SUBSCRIBE_CHUNK) {
        within("unsubscribe", con.unsubscribe(chunk)).await?;
    }
    Ok(())
}

async fn publish(
    con: &mut MultiplexedConnection,
    link: &Link,
    mut publishes: Vec<roomwire_tokio::backplane::Publish>,
) -> Result<(), String> {
    if publishes.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for p in &publishes {
        for topic in &p.topics {
            pipe.cmd("PUBLISH").arg(topic).arg(p.bytes.as_ref());
        }
    }
    match within("publish", pipe.query_async::<Vec<i64>>(con)).await {
        Ok(counts) => {
            let mut at = 0;
            for p in &mut publishes {
                if let Some(&n) = counts.get(at) {
                    p.report_receivers(usize::try_from(n).unwrap_or(0));
                }
                at += p.topics.len();
            }
            link.published(publishes.len());
            Ok(())
        }
        Err(why) => {
            link.publish_unconfirmed(publishes.len());
            Err(why)
        }
    }
}
