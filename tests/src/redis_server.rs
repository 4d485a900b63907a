//! A real `redis-server` (or a three-master Redis Cluster) on loopback
//! ports of its own, started and stopped by a test, with the faults worth
//! testing: kill and restart on the same port, pause (SIGSTOP) and resume.
//!
//! Needs `redis-server` and `redis-cli` on the PATH (`scripts/test.sh`
//! installs Debian's `redis-server`). Without them [`RedisServer::start`]
//! says so and returns `None`, unless `ROOMWIRE_REQUIRE_PEERS=1`, where it
//! panics.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the real peers must be there (set by `scripts/test.sh`).
pub fn peers_required() -> bool {
    std::env::var("ROOMWIRE_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// A free loopback port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out =
        Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Start a server on a free loopback port; `None` (after saying why)
    /// if redis-server is not installed and the peers are not required.
    pub fn start() -> Option<Self> {
        if !have("redis-server") || !have("redis-cli") {
            assert!(!peers_required(), "redis-server / redis-cli not found: apt-get install redis-server");
            eprintln!("SKIPPED: no redis-server (apt-get install redis-server, or run scripts/test.sh)");
            return None;
        }
        Some(Self::spawn(false))
    }

    /// A new server on a free port: another tests' server may take a port
    /// between its check and the start (tests run in parallel), so a server
    /// that does not come up is started again on another port.
    fn spawn(cluster: bool) -> Self {
        for _ in 0..5 {
            let port = if cluster { free_cluster_port() } else { free_port() };
            let dir = std::env::temp_dir().join(format!("roomwire-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a directory for redis-server");
            let mut server = Self { port, dir, cluster, child: None };
            if server.try_launch() {
                return server;
            }
            eprintln!("redis-server on port {port} did not come up: another port");
        }
        panic!("redis-server did not come up on five ports");
    }

    fn launch(&mut self) {
        assert!(self.try_launch(), "redis-server on port {} did not answer", self.port);
    }

    /// Start the process; whether it answered within 10 s (if not, it is
    /// killed).
    fn try_launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]);
        }
        let child =
            cmd.current_dir(&self.dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while cli(self.port, &["ping"]).as_deref() != Some("PONG") {
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                self.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Run a `redis-cli` command against it (None if it failed).
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        cli(self.port, args)
    }

    /// The string at `key` (`GET`), `None` if there is none.
    pub fn get(&self, key: &str) -> Option<String> {
        self.cli(&["get", key]).map(|out| out.trim().to_owned()).filter(|value| !value.is_empty())
    }

    /// How many subscribers a channel has (`PUBSUB NUMSUB`, or
    /// `PUBSUB SHARDNUMSUB` on a cluster node).
    pub fn subscribers(&self, channel: &str) -> usize {
        let command = if self.cluster { "shardnumsub" } else { "numsub" };
        self.cli(&["pubsub", command, channel])
            .and_then(|out| out.lines().nth(1).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Kill it (SIGKILL): connections break, subscriptions are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Pause it (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    /// Resume it after [`pause`](Self::pause).
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters, no replicas.
pub struct RedisCluster {
    /// The three masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Start three cluster-enabled servers and join them (all 16384 slots
    /// assigned); `None` as for [`RedisServer::start`].
    pub fn start() -> Option<Self> {
        RedisServer::start()?; // the same check, and a throwaway server
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::spawn(true)).collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(created.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !nodes.iter().all(|n| n.cli(&["cluster", "info"]).is_some_and(|i| i.contains("cluster_state:ok"))) {
            assert!(Instant::now() < deadline, "the cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { nodes })
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Subscribers of a shard channel, over all masters.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.nodes.iter().map(|n| n.subscribers(channel)).sum()
    }

    /// The index in [`nodes`](Self::nodes) of the master that owns `key`'s
    /// slot, and the slot.
    pub fn owner_of(&self, key: &str) -> (usize, u16) {
        self.owner_seen_by(0, key)
    }

    /// [`owner_of`](Self::owner_of) as master `viewer` sees it.
    fn owner_seen_by(&self, viewer: usize, key: &str) -> (usize, u16) {
        let first = &self.nodes[viewer];
        let slot: u16 = first.cli(&["cluster", "keyslot", key]).and_then(|s| s.parse().ok()).expect("cluster keyslot");
        let ids: Vec<String> = self.nodes.iter().map(|n| n.cli(&["cluster", "myid"]).expect("cluster myid")).collect();
        let table = first.cli(&["cluster", "nodes"]).expect("cluster nodes");
        let owner = table
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let owns = fields.iter().skip(8).any(|range| match range.split_once('-') {
                    Some((lo, hi)) => {
                        lo.parse::<u16>().is_ok_and(|lo| lo <= slot) && hi.parse::<u16>().is_ok_and(|hi| slot <= hi)
                    }
                    None => range.parse::<u16>() == Ok(slot),
                });
                owns.then(|| ids.iter().position(|id| id == fields[0])).flatten()
            })
            .expect("an owner of the slot");
        (owner, slot)
    }

    /// Move `key`'s slot (with no keys in it) to another master, as a
    /// resharding does, and wait until every master agrees; returns the
    /// new owner's index.
    pub fn move_slot_of(&self, key: &str) -> usize {
        let (from, slot) = self.owner_of(key);
        let to = (from + 1) % self.nodes.len();
        let id = |i: usize| self.nodes[i].cli(&["cluster", "myid"]).expect("cluster myid");
        let (from_id, to_id, slot) = (id(from), id(to), slot.to_string());
        assert!(self.nodes[to].cli(&["cluster", "setslot", &slot, "importing", &from_id]).is_some());
        assert!(self.nodes[from].cli(&["cluster", "setslot", &slot, "migrating", &to_id]).is_some());
        for i in [to, from].into_iter().chain((0..self.nodes.len()).filter(|&i| i != to && i != from)) {
            assert!(self.nodes[i].cli(&["cluster", "setslot", &slot, "node", &to_id]).is_some());
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while (0..self.nodes.len()).any(|viewer| self.owner_seen_by(viewer, key).0 != to) {
            assert!(Instant::now() < deadline, "the masters did not agree on the slot's new owner");
            std::thread::sleep(Duration::from_millis(50));
        }
        to
    }
}
