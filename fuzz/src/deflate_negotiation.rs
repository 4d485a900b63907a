//! `deflate_negotiation`: permessage-deflate offers and answers
//! ([`roomwire_core::deflate`]) on arbitrary header values.
//!
//! Input: byte 0 picks the settings (context takeover both ways, bits
//! 0–1; the windows, bits 2–4 and 5–7, as 8 plus the value), the rest is a
//! `Sec-WebSocket-Extensions` value, cut into header lines at `\n`.
//! Asserted:
//!
//! * a server's answer stays within the settings and what the offer asked,
//!   fits [`MAX_HEADER_VALUE`], and is what a client that sent that offer
//!   reads back (same windows, same context takeover);
//! * it keeps the server's duties to the offer it took (RFC 7692 §7.1),
//!   read by a parser of this harness's own: `server_no_context_takeover`
//!   echoed, `server_max_window_bits` no larger than asked,
//!   `client_max_window_bits` only if offered and no larger than offered;
//! * a client's reading of any answer stays within its own offer;
//! * splitting the value into more header lines between extensions never
//!   changes a verdict (when no quoted string runs past a line's end).

use roomwire_core::deflate::{Deflate, DeflateConfig, MAX_HEADER_VALUE, accept_response, negotiate};

/// The settings byte 0 selects.
pub fn settings(sel: u8) -> DeflateConfig {
    DeflateConfig {
        send_context_takeover: sel & 1 != 0,
        receive_context_takeover: sel & 2 != 0,
        send_max_window_bits: 8 + ((sel >> 2) & 7),
        receive_max_window_bits: 8 + (sel >> 5),
        ..DeflateConfig::DEFAULT
    }
}

/// The extensions of one header line (commas outside quotes).
fn items(line: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (at, &b) in line.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(&line[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    out.push(&line[start..]);
    out
}

/// The parameters of one extension (after its name), value unquoted and
/// read as a number where it is one.
fn params(item: &[u8]) -> std::collections::HashMap<String, Option<u8>> {
    let text = String::from_utf8_lossy(item);
    text.split(';')
        .skip(1)
        .map(|param| {
            let (name, value) = param.split_once('=').map_or((param, None), |(n, v)| (n, Some(v)));
            let value = value.and_then(|v| v.trim().trim_matches('"').parse().ok());
            (name.trim().to_owned(), value)
        })
        .collect()
}

fn within(agreed: &Deflate, config: &DeflateConfig) {
    assert!((8..=config.send_max_window_bits).contains(&agreed.send_window_bits), "{agreed:?} {config:?}");
    assert!((8..=config.receive_max_window_bits).contains(&agreed.receive_window_bits), "{agreed:?} {config:?}");
    assert!(agreed.send_no_context_takeover || config.send_context_takeover);
    assert!(agreed.receive_no_context_takeover || config.receive_context_takeover);
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&sel, value)) = data.split_first() else {
        return;
    };
    let config = settings(sel);
    let lines: Vec<&[u8]> = value.split(|&b| b == b'\n').collect();
    let joined: Vec<u8> = lines.join(&b","[..]);
    // A quoted string ends with its header line; joined, it would run on.
    let balanced = lines.iter().all(|line| line.iter().filter(|&&b| b == b'"').count() % 2 == 0);

    // Server side.
    let agreed = negotiate(lines.iter().copied(), &config);
    if balanced {
        assert_eq!(agreed, negotiate([joined.as_slice()], &config), "header lines changed the server's choice");
    }
    if let Some(agreed) = agreed {
        within(&agreed, &config);
        let mut out = [0u8; MAX_HEADER_VALUE];
        let n = agreed.write_response(&mut out).expect("an answer fits MAX_HEADER_VALUE");
        // The offer taken: the first that is acceptable on its own.
        let taken = lines
            .iter()
            .flat_map(|line| items(line))
            .find(|item| negotiate([*item], &config).is_some())
            .expect("an agreement comes from one of the offers");
        let (offer, answer) = (params(taken), params(&out[..n]));
        if offer.contains_key("server_no_context_takeover") {
            assert!(answer.contains_key("server_no_context_takeover"), "not echoed: {answer:?} for {offer:?}");
        }
        if let Some(Some(asked)) = offer.get("server_max_window_bits") {
            let given = answer.get("server_max_window_bits").cloned().flatten().expect("the window named");
            assert!(given <= *asked, "{given} over the {asked} asked");
        }
        match (offer.get("client_max_window_bits"), answer.get("client_max_window_bits")) {
            (None, Some(_)) => panic!("client_max_window_bits answered, not offered: {offer:?}"),
            (Some(Some(limit)), Some(given)) => assert!(given.is_some_and(|g| g <= *limit), "{given:?} over {limit}"),
            _ => {}
        }
        // A client whose offer was the one accepted reads the same agreement back:
        // it offered at least what the server took.
        let client = DeflateConfig {
            send_context_takeover: !agreed.receive_no_context_takeover,
            receive_context_takeover: true,
            send_max_window_bits: 15,
            receive_max_window_bits: 15,
            ..DeflateConfig::DEFAULT
        };
        let seen = accept_response([&out[..n]], &client).expect("a client reads the server's answer");
        let seen = seen.expect("the answer names the extension");
        assert_eq!(seen.receive_window_bits, agreed.send_window_bits);
        assert_eq!(seen.receive_no_context_takeover, agreed.send_no_context_takeover);
        assert!(seen.send_window_bits <= 15);
        if agreed.receive_window_bits < 15 {
            assert_eq!(seen.send_window_bits, agreed.receive_window_bits);
        }
        assert_eq!(seen.send_no_context_takeover, agreed.receive_no_context_takeover);
    }

    // Client side: the value as the server's answer.
    let answer = accept_response(lines.iter().copied(), &config);
    if balanced {
        let joined = accept_response([joined.as_slice()], &config);
        assert_eq!(answer, joined, "header lines changed the client's verdict");
    }
    if let Ok(Some(seen)) = answer {
        within(&seen, &config);
    }
    let mut offer = [0u8; MAX_HEADER_VALUE];
    config.write_offer(&mut offer).expect("an offer fits MAX_HEADER_VALUE");
}
