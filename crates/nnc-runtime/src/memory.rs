//! How much memory a command may plan to use, so that a model too large for
//! the machine is refused with its sizes named before anything is
//! allocated, instead of being found out by the allocator (an abort) or by
//! the kernel's out-of-memory killer (a `SIGKILL`, no message at all).
//!
//! On Linux, allocations are granted lazily (overcommit): a 16 GB buffer is
//! "allocated" at once and the process dies later, while a kernel writes
//! it. So the limit comes from what the system reports as available, not
//! from whether an allocation succeeds.

use std::fmt;

/// The environment variable that caps the memory nnc plans to use, in
/// bytes, with an optional `K`, `M`, `G` or `T` suffix (powers of 1024).
pub const LIMIT_VAR: &str = "NNC_MAX_MEMORY";

/// A byte count printed in the largest binary unit that keeps it ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

/// Where the limit came from, for the message that quotes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// `NNC_MAX_MEMORY`.
    Variable,
    /// The system's available memory (MemAvailable, or a cgroup's headroom).
    System,
}

/// The most a command may plan to allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub bytes: Bytes,
    pub source: LimitSource,
}

impl Limit {
    /// The limit in force: `NNC_MAX_MEMORY` if set, else what the system
    /// has available; `None` where neither is known (no limit is checked).
    pub fn current() -> Result<Option<Limit>, String> {
        if let Some(text) = std::env::var_os(LIMIT_VAR) {
            let text = text.to_string_lossy();
            let bytes = parse_size(&text)
                .ok_or_else(|| format!("{LIMIT_VAR}={text}: expected a byte count such as 4G, 512M or 1000000"))?;
            return Ok(Some(Limit {
                bytes: Bytes(bytes),
                source: LimitSource::Variable,
            }));
        }
        Ok(system_available().map(|bytes| Limit {
            bytes: Bytes(bytes),
            source: LimitSource::System,
        }))
    }

    /// `Err` with a message naming `what` needs `need` when it exceeds the
    /// limit.
    pub fn check(&self, need: Bytes, what: impl FnOnce() -> String) -> Result<(), String> {
        if need <= self.bytes {
            return Ok(());
        }
        let source = match self.source {
            LimitSource::Variable => format!("the {LIMIT_VAR} limit of {}", self.bytes),
            LimitSource::System => format!("the {} of memory available to it here", self.bytes),
        };
        Err(format!("{} needs {need} of memory, more than {source}", what()))
    }
}

/// `4G`, `512M`, `64k`, `1000000`: bytes, with binary suffixes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        (i, 't' | 'T') => (&text[..i], 40),
        _ => (text, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The smallest of the kernel's estimate of memory available without
/// swapping (`MemAvailable`), the headroom of this process's cgroup, and
/// the headroom under its address-space limit (`ulimit -v`), where the
/// allocator fails at once rather than the kernel killing later.
fn system_available() -> Option<u64> {
    [physical_available(), address_space_headroom()]
        .into_iter()
        .flatten()
        .min()
}

/// `Max address space` of /proc/self/limits less the address space in use
/// (`VmSize`); `None` when unlimited or unknown.
fn address_space_headroom() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let used_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(soft.saturating_sub(used_kib.saturating_mul(1024)))
}

fn physical_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let mem_available = meminfo.as_deref().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    let read = |name: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{name}")).ok();
    // cgroup v2: `memory.max` is "max" when unlimited.
    let cgroup = read("memory.max")
        .and_then(|max| max.trim().parse::<u64>().ok())
        .map(|max| {
            let current = read("memory.current")
                .and_then(|c| c.trim().parse::<u64>().ok())
                .unwrap_or(0);
            max.saturating_sub(current)
        });
    match (mem_available, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Bytes {
    /// `count` f32 values.
    pub fn of_f32(count: usize) -> Bytes {
        Bytes((count as u64).saturating_mul(4))
    }
}

impl std::ops::Add for Bytes {
    type Output = Bytes;
    fn add(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(other.0))
    }
}

impl std::iter::Sum for Bytes {
    fn sum<I: Iterator<Item = Bytes>>(iter: I) -> Bytes {
        iter.fold(Bytes(0), |a, b| a + b)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} bytes", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1000000"), Some(1_000_000));
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size(" 64 K "), Some(64 << 10));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn bytes_print_in_the_largest_unit() {
        assert_eq!(Bytes(512).to_string(), "512 bytes");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes::of_f32(4_100_000_000).to_string(), "15.3 GiB");
    }

    #[test]
    fn the_limit_refuses_only_what_exceeds_it() {
        let limit = Limit {
            bytes: Bytes(1 << 30),
            source: LimitSource::Variable,
        };
        assert!(limit.check(Bytes(1 << 30), || "x".into()).is_ok());
        let message = limit.check(Bytes((1 << 30) + 1), || "layer `a`".into()).unwrap_err();
        assert!(message.starts_with("layer `a` needs 1.0 GiB"), "{message}");
        assert!(message.contains("NNC_MAX_MEMORY limit of 1.0 GiB"), "{message}");
    }

    #[test]
    fn this_machine_reports_some_memory() {
        if cfg!(target_os = "linux") {
            assert!(system_available().is_some_and(|b| b > 0));
        }
    }
}
