//! The thinnest adapter there is: the core's [`ClientSession`] driven over
//! a blocking `std` TCP stream on a thread. It moves bytes and time and
//! nothing else, so the client conformance sessions
//! ([`crate::client_conformance`]) check the core's decisions themselves
//! through it.

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use roomwire_core::client::TargetBase;
use roomwire_core::message::VecStorage;
use roomwire_core::session::{ClientSession, Output, SessionConfig, TransportError};
use roomwire_core::url::WsUrl;
use roomwire_core::{RoomClient, WireFormat};

use crate::chat::Chat;
use crate::client_conformance::Launch;

/// Starts session clients on threads.
#[derive(Debug, Default)]
pub struct SessionClients;

/// A running client: stopped and joined when dropped.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Launch for SessionClients {
    fn launch(&mut self, url: &str, wire: WireFormat, rooms: &[&str]) -> Box<dyn Any> {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, rooms) = (url.to_owned(), rooms.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>());
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || drive(&url, wire, &rooms, &stop)
        });
        Box::new(Running { stop, thread: Some(thread) })
    }
}

/// Keys from a seeded generator: enough for tests (firmware and servers
/// use a CSPRNG).
fn keys() -> impl FnMut() -> [u8; 4] {
    let mut state = u32::try_from(Instant::now().elapsed().as_nanos() & 0xFFFF).unwrap_or(1) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state.to_le_bytes()
    }
}

fn drive(url: &str, wire: WireFormat, rooms: &[String], stop: &AtomicBool) {
    let Ok(url) = WsUrl::parse(url) else { return };
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let Ok(rooms) = RoomClient::<Chat, 8>::with_rooms(wire, &rooms) else { return };
    let origin = Instant::now();
    let now = || roomwire_core::Instant::from_micros(origin.elapsed().as_micros() as u64);
    let storage = VecStorage::new(1 << 20, 4096);
    let mut session = ClientSession::new(SessionConfig::default(), rooms, keys(), storage, now());
    let mut stream: Option<TcpStream> = None;
    let (mut input, mut out, mut scratch) = (Vec::new(), vec![0u8; 64 * 1024], Vec::new());
    while !stop.load(Ordering::Acquire) {
        while let Some(output) = session.poll(now()) {
            match output {
                Output::Connect => match connect(url.host, url.port) {
                    Ok(tcp) => match session.start(now(), &TargetBase::from(&url), url.authority, &[], &mut out) {
                        Ok(n) if (&tcp).write_all(&out[..n]).is_ok() => stream = Some(tcp),
                        _ => session.transport_failed(now(), TransportError::Reset),
                    },
                    Err(_) => session.transport_failed(now(), TransportError::Connect),
                },
                Output::Disconnected { .. } => {
                    if let Some(tcp) = stream.take() {
                        let _ = tcp.shutdown(Shutdown::Both);
                    }
                    input.clear();
                }
                Output::Connected { .. } => {}
            }
        }
        let Some(tcp) = stream.as_ref() else {
            std::thread::sleep(Duration::from_millis(5));
            session.handle_timeout(now());
            continue;
        };
        let mut tcp = tcp;
        while let Ok(n) = session.poll_transmit(now(), &mut out) {
            if n == 0 {
                break;
            }
            if tcp.write_all(&out[..n]).is_err() {
                session.transport_failed(now(), TransportError::Reset);
                break;
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match tcp.read(&mut chunk) {
            Ok(0) => session.transport_failed(now(), TransportError::Reset),
            Ok(n) => {
                input.extend_from_slice(&chunk[..n]);
                loop {
                    let read = session.handle_input(now(), &mut input);
                    input.drain(..read.consumed);
                    if read.message {
                        let _ = session.take_message(now(), &mut scratch);
                    } else if read.consumed == 0 {
                        break;
                    }
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => session.transport_failed(now(), TransportError::Reset),
        }
        session.handle_timeout(now());
    }
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| io::Error::other("no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_millis(10)))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}
