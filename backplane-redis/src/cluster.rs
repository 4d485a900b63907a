//! A Redis Cluster: sharded pub/sub, each channel on the shard that owns
//! its slot.

use std::time::Instant;

use futures_util::future::join_all;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushKind, Value};
use roomwire_core::cluster::BUS_TIMEOUT;
use roomwire_tokio::backplane::{LeaseRequest, Link, Publish};
use tracing::debug;

use super::{Bus, Ended, Pushes, Refused, answer, lease_commands, push_channel, within, within_reply};

pub(crate) fn client(nodes: Vec<String>) -> Result<ClusterClient, redis::RedisError> {
    // The push sender is per connection: set at each session.
    ClusterClientBuilder::new(nodes)
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(BUS_TIMEOUT.into())
        .response_timeout(BUS_TIMEOUT.into())
        // A command retried after it ran would publish twice: a failed
        // command fails the session instead, which counts it unconfirmed.
        .retries(0)
        .build()
}

/// At most this many subscription commands in flight at once: a node
/// that subscribes to every room again after a reconnect (tens of
/// thousands of channels) would otherwise put them all in line at once,
/// each timed from then, and those at the end would pass the bus's
/// timeout waiting their turn, failing the session again and again.
const SUBSCRIBING_AT_ONCE: usize = 256;

/// Subscribe (or unsubscribe) `channels`, one command each (channels of
/// different slots cannot share one), [`SUBSCRIBING_AT_ONCE`] in flight
/// at a time, each timed from when its batch is sent.
async fn each_channel(con: &ClusterConnection, channels: &[String], subscribe: bool) -> Result<(), String> {
    for batch in channels.chunks(SUBSCRIBING_AT_ONCE) {
        let results = join_all(batch.iter().map(|channel| {
            let mut con = con.clone();
            async move {
                if subscribe {
                    within("ssubscribe", con.ssubscribe(channel)).await
                } else {
                    within("sunsubscribe", con.sunsubscribe(channel)).await
                }
            }
        }))
        .await;
        results.into_iter().collect::<Result<(), String>>()?;
    }
    Ok(())
}

/// A cluster connection (it routes each command to its slot's shard).
#[derive(Clone)]
pub(crate) struct Sharded(ClusterConnection);

pub(crate) async fn connect(client: &ClusterClient, link: &Link) -> Result<(Sharded, Pushes), Ended> {
    let (sender, pushes) = push_channel(link);
    let config = redis::cluster::ClusterConfig::new().set_push_sender(sender);
    tokio::select! {
        () = link.closed() => Err(Ended::Closed),
        con = within("connect", client.get_async_connection_with_config(config)) => match con {
            Ok(con) => Ok((Sharded(con), pushes)),
            Err(why) => Err(Ended::Lost(why)),
        },
    }
}

impl Bus for Sharded {
    const MESSAGE: PushKind = PushKind::SMessage;

    async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
        each_channel(&self.0, channels, true).await
    }

    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
        each_channel(&self.0, channels, false).await
    }

    async fn publish(&mut self, link: &Link, publishes: Vec<Publish>) -> Result<(), String> {
        publish(&self.0, link, publishes).await
    }

    async fn leases(&mut self, link: &Link, requests: Vec<LeaseRequest>) -> Result<(), String> {
        leases_concurrently(&self.0, link, requests).await
    }

    async fn ping(&mut self) -> Result<(), String> {
        let mut con = self.0.clone();
        within("heartbeat", redis::cmd("PING").query_async::<Value>(&mut con)).await.map(drop)
    }
}

/// Each lease command on its key's shard, all in flight at once.
async fn leases_concurrently(con: &ClusterConnection, link: &Link, requests: Vec<LeaseRequest>) -> Result<(), String> {
    let results = join_all(lease_commands(requests).into_iter().map(|(cmd, to)| {
        let mut con = con.clone();
        async move {
            // Answered as soon as its shard replies; an error is judged below.
            let reply = within_reply("lease", cmd.query_async::<Value>(&mut con)).await?;
            if let Ok(reply) = &reply {
                answer(to, reply);
            }
            Ok::<_, String>(reply.map(drop))
        }
    }))
    .await;
    let mut refused = Refused::default();
    for result in results {
        refused.check(result?)?;
    }
    refused.report(link);
    Ok(())
}

/// `SPUBLISH` each message on each topic, all in flight at once in order
/// (a pipeline cannot span slots).
async fn publish(con: &ClusterConnection, link: &Link, mut publishes: Vec<Publish>) -> Result<(), String> {
    if publishes.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let sends = publishes.iter().flat_map(|p| {
        p.topics.iter().map(move |topic| {
            let mut con = con.clone();
            let bytes = p.bytes.clone();
            async move {
                within("spublish", redis::cmd("SPUBLISH").arg(topic).arg(bytes.as_ref()).query_async::<i64>(&mut con))
                    .await
            }
        })
    });
    let results = join_all(sends).await;
    let mut at = 0;
    let mut failed = 0;
    let mut error = None;
    for p in &mut publishes {
        let mine = results.get(at..at + p.topics.len()).unwrap_or_default();
        at += p.topics.len();
        match mine.iter().find_map(|r| r.as_ref().err()) {
            Some(why) => {
                failed += 1;
                error.get_or_insert_with(|| why.clone());
            }
            None => {
                if let Some(Ok(n)) = mine.first() {
                    p.report_receivers(usize::try_from(*n).unwrap_or(0));
                }
            }
        }
    }
    link.published(publishes.len() - failed);
    debug!(n = publishes.len(), elapsed = ?started.elapsed(), "spublished");
    match error {
        Some(why) => {
            link.publish_unconfirmed(failed);
            Err(why)
        }
        None => Ok(()),
    }
}
