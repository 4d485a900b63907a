//! The demo's counter room: a stateful room (Alepha's `$room`) ticking at
//! 10 Hz whose state is a counter (see the chat example's docs for its
//! contract). Shared by the chat example and the cluster tests' node
//! process.

use roomwire_tokio::server::RoomEndpoint;
use serde::{Deserialize, Serialize};

/// Counter room, client → server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CounterCommand {
    /// Add `by` (1 to 100) to the counter.
    Inc {
        /// How much.
        by: u32,
    },
}

/// Counter room, server → client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CounterEvent {
    /// The counter and how many are in the room.
    Count {
        /// The counter.
        value: u64,
        /// The room's members.
        members: usize,
    },
}

/// The counter room's channel: its commands are checked beyond their shape.
pub struct CounterRoom;

impl roomwire_tokio::roomwire_core::Channel for CounterRoom {
    const PATH: &'static str = "/ws/counter";
    type In<'a> = CounterEvent;
    type Out<'a> = CounterCommand;

    fn validate(message: &CounterCommand) -> Result<(), &'static str> {
        match message {
            CounterCommand::Inc { by: 1..=100 } => Ok(()),
            CounterCommand::Inc { .. } => Err("by must be an integer from 1 to 100"),
        }
    }
}

/// A counter room's state.
#[derive(Debug, Default)]
pub struct Counter {
    value: u64,
    /// What the members were last told (value, members).
    told: Option<(u64, usize)>,
}

impl Counter {
    fn event(&self, members: usize) -> CounterEvent {
        CounterEvent::Count { value: self.value, members }
    }
}

/// The counter room: 10 Hz, changes sent on the tick after them.
pub fn counter_room() -> RoomEndpoint<CounterRoom, Counter> {
    RoomEndpoint::<CounterRoom, Counter>::new(|_room| async { Ok(Counter::default()) })
        .tick_hz(10)
        // Anything but a valid `inc` is answered, text that is not JSON too.
        .refuse_non_json()
        .on_join(|room, id| {
            Box::pin(async move {
                room.send(id, &room.state.event(room.size()))?;
                Ok(())
            })
        })
        .on_message(|room, _id, command| {
            Box::pin(async move {
                let CounterCommand::Inc { by } = command;
                room.state.value = room.state.value.saturating_add(u64::from(by));
                Ok(())
            })
        })
        .on_tick(|room, _dt| {
            Box::pin(async move {
                let now = (room.state.value, room.size());
                if room.state.told != Some(now) {
                    room.state.told = Some(now);
                    room.broadcast(&room.state.event(now.1))?;
                }
                Ok(())
            })
        })
        .method("reset", |room, (): ()| Box::pin(async move { Ok(std::mem::take(&mut room.state.value)) }))
}
