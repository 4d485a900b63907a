//! The Alepha-style Node server of `tests/alepha-node` (Node's `ws`, served
//! as Alepha's Node `$websocket` provider serves a channel), as a process a
//! test starts and kills.
//!
//! Needs `node` and `npm ci` in `tests/alepha-node` (`scripts/test.sh` does
//! it). Without them [`NodeServer::start`] says so and returns `None`,
//! unless `ROOMWIRE_REQUIRE_PEERS=1`, where it panics.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::redis_server::peers_required;

/// The Node server process, killed on drop.
pub struct NodeServer {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl NodeServer {
    /// Starts the server on `port` (0: any); `None` when Node or the `ws`
    /// package is missing and the peers are not required.
    pub fn start(port: u16) -> Option<Self> {
        Self::start_with(port, None)
    }

    /// The same, as one node of an Alepha cluster on the Redis at
    /// `redis_url` (see `tests/alepha-node/server.js`).
    pub fn start_with(port: u16, redis_url: Option<&str>) -> Option<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("alepha-node");
        let required = peers_required();
        if !dir.join("node_modules/ws").is_dir() {
            assert!(!required, "tests/alepha-node/node_modules missing: run npm ci there");
            eprintln!("SKIPPED: no tests/alepha-node/node_modules (npm ci there, or run scripts/test.sh)");
            return None;
        }
        let mut command = Command::new("node");
        if let Some(url) = redis_url {
            command.env("REDIS_URL", url);
        }
        let spawned = command
            .arg("server.js")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(!required, "cannot start node: {e}");
                eprintln!("SKIPPED: cannot start node: {e}");
                return None;
            }
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the server printed nothing").unwrap();
        let port = first.strip_prefix("listening on ").expect(&first).parse().unwrap();
        // Keep reading its log so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("node: {line}");
            }
        });
        Some(Self { child, port })
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Kill it; its port.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
