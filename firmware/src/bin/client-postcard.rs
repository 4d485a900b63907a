//! The room client of `client`, whose channel is spoken in postcard only
//! (`wires: Wires::POSTCARD`): what a firmware that speaks one wire links.
#![no_std]
#![no_main]

use roomwire_firmware::app::TelemetryPostcard as Telemetry;

/// The wire it asks for (the only one its channel allows).
const FORMAT: roomwire_embassy::roomwire_core::WireFormat = roomwire_embassy::roomwire_core::WireFormat::Postcard;

include!("../client_main.rs");
