//! The room client of `client`, whose channel is spoken on the Alepha wire
//! only (`wires: Wires::ALEPHA`: JSON frames, rooms in the handshake
//! query): a firmware client of Alepha servers.
#![no_std]
#![no_main]

use roomwire_firmware::app::TelemetryAlepha as Telemetry;

/// The wire it asks for (the only one its channel allows).
const FORMAT: roomwire_embassy::roomwire_core::WireFormat = roomwire_embassy::roomwire_core::WireFormat::Alepha;

include!("../client_main.rs");
