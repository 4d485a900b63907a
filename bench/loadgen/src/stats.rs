//! Latency histogram and process figures from /proc.

use std::io;

/// Log-linear histogram of microseconds: exact below 32, then 32 buckets
/// per power of two (about 3 % precision).
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB: u32 = 5; // 2^5 = 32 sub-buckets

impl Default for Histogram {
    fn default() -> Self {
        Self { counts: vec![0; 32 + 64 * 32], total: 0 }
    }
}

impl Histogram {
    #[inline]
    fn index(v: u64) -> usize {
        if v < 32 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= 5
        let sub = (v >> (e - SUB)) & 31;
        32 + ((e - SUB) as usize) * 32 + sub as usize
    }

    fn value(index: usize) -> u64 {
        if index < 32 {
            return index as u64;
        }
        let i = index - 32;
        let e = (i / 32) as u32 + SUB;
        let sub = (i % 32) as u64;
        (32 + sub) << (e - SUB)
    }

    #[inline]
    pub fn record(&mut self, micros: u64) {
        let i = Self::index(micros).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i);
            }
        }
        Self::value(self.counts.len() - 1)
    }
}

/// CPU time of every thread of `pid` (`self` for this process), in
/// nanoseconds, from `/proc/PID/task/*/schedstat`.
pub fn cpu_ns(pids: &str) -> io::Result<u64> {
    // Several processes (the nodes of a cluster): `P1,P2`, summed.
    let mut total = 0u64;
    for pid in pids.split(',').filter(|p| !p.is_empty()) {
        total += cpu_ns_of(pid)?;
    }
    Ok(total)
}

fn cpu_ns_of(pid: &str) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        assert!((480..=520).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((960..=1000).contains(&p99), "{p99}");
        assert_eq!(Histogram::value(Histogram::index(31)), 31);
        for v in [32u64, 100, 12345, 1 << 30] {
            let back = Histogram::value(Histogram::index(v));
            assert!(back <= v && v - back <= v / 32, "{v} {back}");
        }
    }
}
