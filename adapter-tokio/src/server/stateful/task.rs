//! One room's task: it owns the room's state and runs its callbacks one
//! input at a time, as the core's [`Lifecycle`] orders.

use std::sync::Arc;

use roomwire_core::channel::Channel;
use roomwire_core::payload;
use roomwire_core::stateful::{Due, Lifecycle};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info_span, warn};

use super::{CallError, Callbacks, Input, Room, RoomHost};
use crate::server::conn::{CatchUnwind, to_std};
use crate::server::{HandlerResult, Server, TaskGuard};

/// The task of room `room_id`: until its room is vacant with nothing
/// queued, or the server shuts down (the state is then dropped without
/// `on_empty`, and a running callback is cancelled).
pub(crate) async fn run<C, S, D>(
    callbacks: Arc<Callbacks<C, S, D>>,
    host: Arc<RoomHost>,
    server: Server,
    room_id: Arc<str>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
) where
    C: Channel + 'static,
    S: Send + 'static,
    D: Default + Send + 'static,
{
    let _task = TaskGuard::new(&server.shared);
    let span = info_span!("room", room = &*room_id, path = C::PATH);
    let shared = server.shared.clone();
    let mut driver = Driver::<C, S, D> {
        callbacks,
        life: Lifecycle::new(0),
        room: None,
        room_id: room_id.clone(),
        server,
        epoch: Instant::now(),
    };
    driver.life = Lifecycle::new(driver.callbacks.tick_hz);
    let serving = async {
        loop {
            let deadline =
                driver.life.poll_timeout().map(|at| driver.epoch + to_std(at - roomwire_core::Instant::ZERO));
            let input = tokio::select! {
                biased;
                input = inputs.recv() => input,
                () = sleep_until(deadline) => {
                    driver.timeout().await;
                    None
                }
            };
            if let Some(input) = input {
                driver.handle(input).await;
            }
            if driver.life.is_vacant() && host.retire(&room_id, &inputs) {
                debug!("room closed");
                return;
            }
        }
    };
    tokio::select! {
        biased;
        () = shared.closing.wait() => {
            // Disposed of: the state goes without `on_empty`.
            host.forget(&room_id);
            debug!("room disposed of (shutdown)");
        }
        () = serving.instrument(span.clone()) => {}
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Driver<C: Channel, S, D> {
    callbacks: Arc<Callbacks<C, S, D>>,
    life: Lifecycle,
    /// `Some` while the room has state.
    room: Option<Room<C, S, D>>,
    room_id: Arc<str>,
    server: Server,
    epoch: Instant,
}

/// A callback's outcome, a panic counted as an error.
async fn guarded(future: crate::server::BoxFuture<'_, HandlerResult>) -> Result<(), String> {
    match CatchUnwind(future).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(String::new()),
    }
}

impl<C, S, D> Driver<C, S, D>
where
    C: Channel + 'static,
    S: Send + 'static,
    D: Default + Send + 'static,
{
    fn now(&self) -> roomwire_core::Instant {
        roomwire_core::Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The room's state, built first if it has none. `Err`: the factory's
    /// error (not remembered: the next join or call builds again).
    async fn live(&mut self) -> Result<&mut Room<C, S, D>, String> {
        if self.life.needs_state() || self.room.is_none() {
            let build = (self.callbacks.state)(&self.room_id);
            let state = match CatchUnwind(build).await {
                Ok(Ok(state)) => state,
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => return Err("the state factory panicked".to_owned()),
            };
            self.room = Some(Room::new(self.room_id.clone(), state, self.server.clone()));
            self.life.built(self.now());
        }
        self.room.as_mut().ok_or_else(String::new)
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Join { joining, done } => {
                let id = joining.id.clone();
                let callbacks = self.callbacks.clone();
                let room = match self.live().await {
                    Ok(room) => room,
                    Err(error) => {
                        warn!(connection = &*id, error, "room state not built: join failed");
                        let _ = done.send(false);
                        return;
                    }
                };
                room.add(joining.into_connection());
                let joined = match &callbacks.on_join {
                    Some(on_join) => guarded(on_join(room, &id)).await,
                    None => Ok(()),
                };
                let now = self.now();
                self.life.joined(now);
                if let Err(error) = &joined {
                    warn!(connection = &*id, error, "on_join failed: join failed");
                }
                // An error leaves the connection in until it leaves (it is
                // closed with 1011 now), as any member.
                let _ = done.send(joined.is_ok());
            }
            Input::Leave { id } => self.leave(&id).await,
            Input::Message { id, format, payload, done } => {
                let callbacks = self.callbacks.clone();
                let Some(room) = self.room.as_mut().filter(|room| room.connection(&id).is_some()) else {
                    let _ = done.send(Err("Not in the room".to_owned()));
                    return;
                };
                let outcome = match payload::decode_message::<C>(format, &payload, &mut []) {
                    Err(error) => Err(error.to_string()),
                    Ok(message) => match &callbacks.on_message {
                        Some(on_message) => guarded(on_message(room, &id, message)).await,
                        None => Ok(()),
                    },
                };
                let _ = done.send(outcome);
            }
            Input::Call { method, args, done } => {
                let Some(call) = self.callbacks.methods.get(&method).cloned() else {
                    let _ = done.send(Err(CallError::UnknownMethod(method)));
                    return;
                };
                let room = match self.live().await {
                    Ok(room) => room,
                    Err(error) => {
                        let _ = done.send(Err(CallError::Failed(error)));
                        return;
                    }
                };
                let result = match CatchUnwind(call(room, &args)).await {
                    Ok(result) => result,
                    Err(_) => Err(CallError::Failed(String::new())),
                };
                let now = self.now();
                self.life.called(now);
                let _ = done.send(result);
            }
            Input::Broadcast { encoded, except } => {
                if let Some(room) = &self.room {
                    room.deliver(&encoded, |c| !except.iter().any(|e| **e == *c.id()));
                }
            }
        }
    }

    async fn leave(&mut self, id: &str) {
        let callbacks = self.callbacks.clone();
        let Some(room) = self.room.as_mut() else { return };
        let Some(connection) = room.remove(id) else { return };
        if let Some(on_leave) = &callbacks.on_leave
            && let Err(error) = guarded(on_leave(room, connection)).await
        {
            warn!(connection = id, error, "on_leave failed");
        }
        if !self.life.left() {
            return;
        }
        // The last member left: one teardown, then the state goes.
        if let Some(on_empty) = &callbacks.on_empty
            && let Err(error) = guarded(on_empty(room)).await
        {
            warn!(error, "on_empty failed");
        }
        self.room = None;
        self.life.discarded();
        debug!("room emptied: state discarded");
    }

    async fn timeout(&mut self) {
        let now = self.now();
        match self.life.handle_timeout(now) {
            Some(Due::Beat(beat)) => {
                let callbacks = self.callbacks.clone();
                if let (Some(on_tick), Some(room)) = (&callbacks.on_tick, self.room.as_mut())
                    && let Err(error) = guarded(on_tick(room, beat.dt.into())).await
                {
                    error!(error, "on_tick failed");
                }
                let skipped = self.life.tick_done(self.now());
                if skipped > 0 {
                    warn!(skipped, "on_tick still running: beats skipped");
                }
            }
            Some(Due::Evict) => {
                debug!("headless room idle: disposed of");
                self.room = None;
                self.life.discarded();
            }
            None => {}
        }
    }
}
