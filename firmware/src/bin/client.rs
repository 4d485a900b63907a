//! The baseline plus the roomwire-embassy room client: joins a room on the
//! postcard wire, sends a reading every 10 s, acts on the commands it
//! receives, keeps alive and reconnects. Its channel allows every wire
//! (chosen at run time, the default): it links the JSON wires too.
#![no_std]
#![no_main]

use roomwire_firmware::app::Telemetry;

/// The wire it asks for.
const FORMAT: roomwire_embassy::roomwire_core::WireFormat = roomwire_embassy::roomwire_core::WireFormat::Postcard;

include!("../client_main.rs");
