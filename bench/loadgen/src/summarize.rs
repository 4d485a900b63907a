//! Medians per (cell, server) and roomwire/peer ratios from the `RESULT`
//! lines a bench run collected.
//!
//! Each line: `RESULT cell=NAME server=NAME round=N key=value …`, or
//! `FAIL cell=NAME server=NAME round=N reason…` for a run that failed.

use std::collections::BTreeMap;
use std::io;

/// The figure a cell is judged on, and whether higher is better.
fn primary(mode: &str, cell: &str) -> (&'static str, bool) {
    match mode {
        "echo" => ("msg_per_core_s", true),
        "fanout" if cell.contains("rate") => ("us_per_delivery", false),
        "fanout" => ("deliv_per_s", true),
        _ => ("bytes_per_conn", false),
    }
}

/// Secondary figures shown beside the primary one.
fn secondary(mode: &str) -> &'static [&'static str] {
    match mode {
        "echo" => &["msg_per_s", "server_cpu", "gen_cpu", "p50_us", "p99_us"],
        "fanout" => &[
            "deliv_per_s",
            "us_per_delivery",
            "server_cpu",
            "gen_cpu",
            "p50_us",
            "p99_us",
            "wire_bytes_per_delivery",
            "rss_kib",
            "redis_us_per_msg",
        ],
        _ => &["rss_before_kib", "rss_after_kib"],
    }
}

/// A server that is a floor to read figures against (`*-floor`: the least
/// a runtime holds), not a peer roomwire competes with.
fn is_reference(server: &str) -> bool {
    server.ends_with("-floor")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[derive(Default)]
struct Cell {
    mode: String,
    /// server → key → values over rounds
    servers: Vec<(String, BTreeMap<String, Vec<f64>>, usize)>,
}

pub fn run(file: &str, markdown: bool) -> io::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let mut cells: Vec<(String, Cell)> = Vec::new();
    let mut failures = Vec::new();
    for line in text.lines() {
        let (ok, rest) = if let Some(r) = line.strip_prefix("RESULT ") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("FAIL ") {
            (false, r)
        } else {
            continue;
        };
        let mut kv = BTreeMap::new();
        for word in rest.split_whitespace() {
            if let Some((k, v)) = word.split_once('=') {
                kv.insert(k.to_owned(), v.to_owned());
            }
        }
        let (Some(cell), Some(server)) = (kv.get("cell").cloned(), kv.get("server").cloned()) else { continue };
        if !ok {
            failures.push(line.to_owned());
        }
        let idx = match cells.iter().position(|(c, _)| *c == cell) {
            Some(i) => i,
            None => {
                cells.push((cell.clone(), Cell::default()));
                cells.len() - 1
            }
        };
        let c = &mut cells[idx].1;
        if let Some(mode) = kv.get("mode") {
            c.mode = mode.clone();
        }
        let si = match c.servers.iter().position(|(s, _, _)| *s == server) {
            Some(i) => i,
            None => {
                c.servers.push((server.clone(), BTreeMap::new(), 0));
                c.servers.len() - 1
            }
        };
        let entry = &mut c.servers[si];
        if !ok {
            entry.2 += 1;
            continue;
        }
        for (k, v) in kv {
            if let Ok(x) = v.parse::<f64>() {
                entry.1.entry(k).or_default().push(x);
            }
        }
    }
    if markdown {
        println!("| cell | figure | server | median | rounds | roomwire / this |");
        println!("|---|---|---|---|---|---|");
    }
    for (cell, c) in &mut cells {
        let (key, higher) = primary(&c.mode, cell);
        let mut medians: Vec<(String, f64, usize, usize)> = Vec::new();
        for (server, values, fails) in &mut c.servers {
            let n = values.get(key).map_or(0, Vec::len);
            let m = values.get_mut(key).map_or(f64::NAN, |v| median(v));
            medians.push((server.clone(), m, n, *fails));
        }
        let base = medians.iter().find(|(s, ..)| s.starts_with("roomwire")).map(|(_, m, ..)| *m);
        if markdown {
            for (server, m, n, fails) in &medians {
                let ratio = match base {
                    Some(b) if !server.starts_with("roomwire") && !m.is_nan() => {
                        format!("{:.2}×{}", b / m, if is_reference(server) { " (reference)" } else { "" })
                    }
                    _ => String::new(),
                };
                let failed = if *fails > 0 { format!(" ({fails} FAILED)") } else { String::new() };
                println!("| {cell} | {key} | {server} | {} | {n}{failed} | {ratio} |", fmt(*m));
            }
            continue;
        }
        println!("\n== {cell}  ({key}, {} is better)", if higher { "higher" } else { "lower" });
        for (i, (server, m, n, fails)) in medians.iter().enumerate() {
            let values = &mut c.servers[i].1;
            let mut extra = String::new();
            for k in secondary(&c.mode) {
                if *k == key {
                    continue;
                }
                if let Some(v) = values.get_mut(*k) {
                    extra.push_str(&format!("  {k}={}", fmt(median(v))));
                }
            }
            let failed = if *fails > 0 { format!("  FAILED {fails}x") } else { String::new() };
            println!("  {server:<20} {:>10}  (n={n}){failed}{extra}", fmt(*m));
        }
        if let Some(b) = base {
            for (server, m, ..) in &medians {
                if !server.starts_with("roomwire") {
                    let ratio = b / m;
                    let wins = if higher { ratio >= 1.0 } else { ratio <= 1.0 };
                    let verdict = if is_reference(server) {
                        "a reference, not a peer"
                    } else if wins {
                        "roomwire better"
                    } else {
                        "peer better"
                    };
                    println!("  roomwire/{server}: {ratio:.2}  ({verdict})");
                }
            }
        }
    }
    if !failures.is_empty() {
        println!("\n{} failed run(s):", failures.len());
        for f in &failures {
            println!("  {f}");
        }
    }
    Ok(())
}
