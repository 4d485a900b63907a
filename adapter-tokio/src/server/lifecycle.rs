//! What a running server counts and awaits: its shutdown signal, its
//! tasks, its places under the caps.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::endpoint::{ErasedEndpoint, Resolver};
use super::{Hooks, ServerConfig};

/// A flag that can be awaited.
#[derive(Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) endpoints: Vec<Arc<dyn ErasedEndpoint>>,
    pub(super) by_path: HashMap<&'static str, usize>,
    pub(crate) hooks: Hooks,
    pub(crate) resolver: Option<Resolver>,
    /// Open WebSocket connections (counted from the decision to accept).
    pub(super) open: AtomicUsize,
    /// Connections in their opening handshake.
    pub(super) handshakes: AtomicUsize,
    /// Tasks serving a stream, whatever their stage.
    pub(crate) tasks: AtomicUsize,
    pub(crate) idle: Notify,
    /// Shutdown started: stop accepting, close everything with 1001.
    pub(crate) closing: Signal,
}

impl Shared {
    pub(crate) fn endpoint(&self, path: &str) -> Option<&Arc<dyn ErasedEndpoint>> {
        self.by_path.get(path).and_then(|&i| self.endpoints.get(i))
    }
}

/// Counts a task serving a stream; shutdown waits for none to remain.
pub(crate) struct TaskGuard(Arc<Shared>);

impl TaskGuard {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.tasks.fetch_add(1, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A place under one of the server's caps (open connections, handshakes
/// in progress), given back on drop.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    open: bool,
}

impl Permit {
    fn take(shared: &Arc<Shared>, open: bool) -> Option<Self> {
        let (counter, max) = if open {
            (&shared.open, shared.config.max_connections)
        } else {
            (&shared.handshakes, shared.config.max_handshakes)
        };
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Self { shared: shared.clone(), open })
    }

    /// A place among the open connections, if the cap allows.
    pub(crate) fn open(shared: &Arc<Shared>) -> Option<Self> {
        Self::take(shared, true)
    }

    /// A place among the handshakes in progress, if the cap allows.
    pub(crate) fn handshake(shared: &Arc<Shared>) -> Option<Self> {
        Self::take(shared, false)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let counter = if self.open { &self.shared.open } else { &self.shared.handshakes };
        counter.fetch_sub(1, Ordering::SeqCst);
    }
}
