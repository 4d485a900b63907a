//! The telemetry room of the QEMU end-to-end test: what a device and an
//! operator say to each other in a room of `/ws/telemetry`, relayed by the
//! server (`telemetry_peer server`) to everyone else in the room.
//!
//! Shared, word for word, by the firmware (`firmware/src/bin/qemu-room.rs`,
//! which borrows its strings from the received frame: `S = &str`) and the
//! tokio side (`telemetry_peer`, which owns them: `S = String`). Postcard
//! encodes both the same way. Externally tagged enums only: the postcard
//! wire cannot decode an internally tagged one.

use serde::{Deserialize, Serialize};

/// The channel's path.
pub const PATH: &str = "/ws/telemetry";

/// Everything said in a telemetry room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame<S> {
    /// Device → room: a measurement.
    Reading(Reading<S>),
    /// Operator → room: something for the device to do.
    Command(Command<S>),
    /// Device → room: a command was carried out.
    Ack(Ack<S>),
}

/// A measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading<S> {
    /// Which device.
    pub device: S,
    /// Counts from 1 over the device's life (across reconnects).
    pub seq: u32,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// The measured temperature, in millidegrees Celsius.
    pub temperature_mc: i32,
    /// The set point in force, in millidegrees Celsius.
    pub set_point_mc: i32,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command<S> {
    /// Chosen by the operator, echoed in the [`Ack`].
    pub id: u32,
    /// The new set point, in millidegrees Celsius.
    pub set_point_mc: i32,
    /// Free text, echoed in the [`Ack`].
    pub note: S,
    /// The device acknowledges, closes its connection and stops.
    pub last: bool,
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack<S> {
    /// Which device.
    pub device: S,
    /// The command's id.
    pub id: u32,
    /// The set point now in force.
    pub set_point_mc: i32,
    /// The command's note.
    pub note: S,
    /// Readings sent so far.
    pub readings: u32,
    /// Connections opened so far (more than one: it reconnected).
    pub connections: u32,
}
