//! Servers of one process joined into a cluster, without a network.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

use super::{Backplane, LeaseRequest, Link};
use crate::server::BoxFuture;

/// A bus in memory: every [`MemoryBackplane`] of one bus hears what the
/// others publish on the topics it subscribes to, in publish order.
///
/// ```
/// use roomwire_tokio::backplane::MemoryBus;
/// use roomwire_tokio::server::Server;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = MemoryBus::new();
/// let a = Server::builder().backplane(bus.backplane()).build().unwrap();
/// let b = Server::builder().backplane(bus.backplane()).build().unwrap();
/// # let _ = (a, b);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    nodes: Arc<Mutex<Nodes>>,
}

#[derive(Default)]
struct Nodes {
    next: usize,
    links: HashMap<usize, Link>,
    topics: HashMap<String, HashSet<usize>>,
    /// Nodes cut off the bus (a partition, in tests).
    cut: HashSet<usize>,
    /// Lease sets: key → member → expiry.
    leases: HashMap<String, HashMap<String, Instant>>,
    /// Claims: key → (holder, expiry).
    claims: HashMap<String, (String, Instant)>,
    /// Topics held back (a slow server, in tests): their messages wait
    /// here, in order.
    held: HashMap<String, Vec<Vec<u8>>>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus").field("nodes", &self.lock().links.len()).finish()
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Nodes> {
        crate::lock(&self.nodes)
    }

    /// A backplane for one more server on this bus.
    pub fn backplane(&self) -> MemoryBackplane {
        let mut nodes = self.lock();
        let id = nodes.next;
        nodes.next += 1;
        MemoryBackplane { bus: self.clone(), id }
    }

    /// Hold `topic`'s messages back (or let them go, in order): a topic
    /// that lags behind the others, as on a slower server.
    pub fn hold(&self, topic: &str, hold: bool) {
        let waiting = {
            let mut nodes = self.lock();
            if hold {
                nodes.held.entry(topic.to_owned()).or_default();
                return;
            }
            nodes.held.remove(topic).unwrap_or_default()
        };
        for bytes in waiting {
            self.send(topic, &bytes);
        }
    }

    /// How many messages wait on held `topic`.
    pub fn held(&self, topic: &str) -> usize {
        self.lock().held.get(topic).map_or(0, Vec::len)
    }

    /// Forget every claim, as a bus restarted without its data does (the
    /// owners of stateful rooms are then known to their nodes only).
    pub fn forget_claims(&self) {
        self.lock().claims.clear();
    }

    /// How many nodes hear `topic`.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, HashSet::len)
    }

    /// Cut `backplane`'s node off the bus (or join it again): while cut, it
    /// is disconnected, hears nothing and publishes nothing.
    pub fn set_cut(&self, backplane: &MemoryBackplane, cut: bool) {
        let link = {
            let mut nodes = self.lock();
            if cut {
                nodes.cut.insert(backplane.id);
            } else {
                nodes.cut.remove(&backplane.id);
            }
            nodes.links.get(&backplane.id).cloned()
        };
        if let Some(link) = link {
            link.set_connected(!cut);
        }
    }

    /// How many nodes heard it (or will, on a held topic); `None` if
    /// `from` is cut off.
    fn deliver(&self, from: usize, topic: &str, bytes: &[u8]) -> Option<usize> {
        {
            let mut nodes = self.lock();
            if nodes.cut.contains(&from) {
                return None;
            }
            if let Some(waiting) = nodes.held.get_mut(topic) {
                waiting.push(bytes.to_vec());
                return Some(nodes.topics.get(topic).map_or(0, HashSet::len));
            }
        }
        Some(self.send(topic, bytes))
    }

    fn send(&self, topic: &str, bytes: &[u8]) -> usize {
        let links: Vec<Link> = {
            let nodes = self.lock();
            let Some(ids) = nodes.topics.get(topic) else { return 0 };
            ids.iter().filter(|id| !nodes.cut.contains(id)).filter_map(|id| nodes.links.get(id).cloned()).collect()
        };
        for link in &links {
            link.receive(topic, bytes);
        }
        links.len()
    }
}

/// One server's place on a [`MemoryBus`].
#[derive(Debug, Clone)]
pub struct MemoryBackplane {
    bus: MemoryBus,
    id: usize,
}

impl MemoryBackplane {
    fn apply(&self, link: &Link, subscribe: Vec<String>, unsubscribe: Vec<String>) {
        link.confirm_unsubscribed(&unsubscribe);
        self.subscribe(&subscribe, &unsubscribe);
        link.confirm_subscribed(&subscribe);
    }

    fn subscribe(&self, subscribe: &[String], unsubscribe: &[String]) {
        let mut nodes = self.bus.lock();
        for topic in subscribe {
            nodes.topics.entry(topic.clone()).or_default().insert(self.id);
        }
        for topic in unsubscribe {
            if let Some(ids) = nodes.topics.get_mut(topic) {
                ids.remove(&self.id);
                if ids.is_empty() {
                    nodes.topics.remove(topic);
                }
            }
        }
    }
}

impl MemoryBackplane {
    fn lease(&self, request: LeaseRequest) {
        let mut nodes = self.bus.lock();
        let now = Instant::now();
        match request {
            LeaseRequest::Acquire { key, member, cap, ttl, answer } => {
                let places = nodes.leases.entry(key).or_default();
                places.retain(|_, expiry| *expiry > now);
                // Asking twice is asking once.
                let granted = places.contains_key(&member) || places.len() < cap;
                if granted {
                    places.insert(member, now + ttl);
                }
                let _ = answer.send(granted);
            }
            LeaseRequest::Renew { places, ttl } => {
                for (key, member) in places {
                    nodes.leases.entry(key).or_default().insert(member, now + ttl);
                }
            }
            LeaseRequest::Release { key, member } => {
                if let Some(places) = nodes.leases.get_mut(&key) {
                    places.remove(&member);
                }
            }
            LeaseRequest::Claim { key, holder, restore, ttl, answer } => {
                // As the Redis script: an expired claim is no claim.
                let claims = nodes.claims.entry(key).or_insert_with(|| (String::new(), now));
                if claims.1 <= now {
                    *claims = (restore.unwrap_or(holder), now + ttl);
                } else if claims.0 == holder {
                    claims.1 = now + ttl;
                }
                let _ = answer.send(claims.0.clone());
            }
            LeaseRequest::Disclaim { key, holder } => {
                if nodes.claims.get(&key).is_some_and(|(h, _)| *h == holder) {
                    nodes.claims.remove(&key);
                }
            }
        }
        nodes.leases.retain(|_, places| !places.is_empty());
    }
}

impl Backplane for MemoryBackplane {
    fn run(self: Arc<Self>, link: Link) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            {
                let mut nodes = self.bus.lock();
                nodes.links.insert(self.id, link.clone());
            }
            self.apply(&link, link.interest(), Vec::new());
            let cut = self.bus.lock().cut.contains(&self.id);
            link.set_connected(!cut);
            loop {
                tokio::select! {
                    biased;
                    () = link.closed() => break,
                    (subscribe, unsubscribe) = link.interest_changes() => self.apply(&link, subscribe, unsubscribe),
                    leases = link.next_leases() => leases.into_iter().for_each(|request| self.lease(request)),
                    publishes = link.next_publishes(256) => {
                        for mut publish in publishes {
                            let heard: Option<Vec<usize>> =
                                publish.topics.iter().map(|topic| self.bus.deliver(self.id, topic, &publish.bytes)).collect();
                            match heard {
                                Some(heard) => {
                                    publish.report_receivers(heard.first().copied().unwrap_or(0));
                                    link.published(1);
                                }
                                None => link.publish_failed(1),
                            }
                        }
                    }
                }
            }
            let mut nodes = self.bus.lock();
            nodes.links.remove(&self.id);
            for ids in nodes.topics.values_mut() {
                ids.remove(&self.id);
            }
            nodes.topics.retain(|_, ids| !ids.is_empty());
        })
    }
}
