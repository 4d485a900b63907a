//! One Redis server: one RESP3 connection carries the commands and the
//! messages (pushes) of the subscriptions.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushKind, Value};
use roomwire_core::cluster::BUS_TIMEOUT;
use roomwire_tokio::backplane::{LeaseRequest, Link, Publish};

use super::{Bus, Ended, Pushes, Refused, SUBSCRIBE_CHUNK, answer, lease_commands, push_channel, within};

/// One RESP3 connection, for commands and pushes.
#[derive(Clone)]
pub(crate) struct Single(MultiplexedConnection);

pub(crate) async fn connect(client: &redis::Client, link: &Link) -> Result<(Single, Pushes), Ended> {
    let (sender, pushes) = push_channel(link);
    let config = AsyncConnectionConfig::new()
        .set_push_sender(sender)
        .set_connection_timeout(Some(BUS_TIMEOUT.into()))
        .set_response_timeout(Some(BUS_TIMEOUT.into()));
    tokio::select! {
        () = link.closed() => Err(Ended::Closed),
        con = within("connect", client.get_multiplexed_async_connection_with_config(&config)) => match con {
            Ok(con) => Ok((Single(con), pushes)),
            Err(why) => Err(Ended::Lost(why)),
        },
    }
}

impl Bus for Single {
    const MESSAGE: PushKind = PushKind::Message;

    async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            within("subscribe", self.0.subscribe(chunk)).await?;
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            within("unsubscribe", self.0.unsubscribe(chunk)).await?;
        }
        Ok(())
    }

    async fn publish(&mut self, link: &Link, publishes: Vec<Publish>) -> Result<(), String> {
        publish(&mut self.0, link, publishes).await
    }

    async fn leases(&mut self, link: &Link, requests: Vec<LeaseRequest>) -> Result<(), String> {
        leases_pipelined(&mut self.0, link, requests).await
    }

    async fn ping(&mut self) -> Result<(), String> {
        within("heartbeat", redis::cmd("PING").query_async::<Value>(&mut self.0)).await.map(drop)
    }
}

async fn leases_pipelined(
    con: &mut MultiplexedConnection,
    link: &Link,
    requests: Vec<LeaseRequest>,
) -> Result<(), String> {
    let commands = lease_commands(requests);
    if commands.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    // Each reply on its own: a refused command fails alone, not the batch.
    pipe.ignore_errors();
    for (cmd, _) in &commands {
        pipe.add_command(cmd.clone());
    }
    // Unanswered acquires (dropped senders) make their servers count alone.
    let replies = within("leases", pipe.query_async::<Vec<redis::RedisResult<Value>>>(con)).await?;
    let mut refused = Refused::default();
    for ((_, to), reply) in commands.into_iter().zip(replies) {
        if let Some(reply) = refused.check(reply)? {
            answer(to, &reply);
        }
    }
    refused.report(link);
    Ok(())
}

async fn publish(con: &mut MultiplexedConnection, link: &Link, mut publishes: Vec<Publish>) -> Result<(), String> {
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
