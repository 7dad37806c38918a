//! The memory limit of queries: one DataFusion memory pool for the whole server.
//!
//! Operators that can spill (sorts, grouped aggregations, joins) write to temporary
//! files when their share of the pool runs out; those that cannot (an `array_agg` or
//! `string_agg` over everything, a hash join's build side) fail the query with
//! DataFusion's `ResourcesExhausted`, which the wire layer reports as SQLSTATE 53200
//! (`out of memory`). The connection and the server go on.
//!
//! The limit is `--memory-limit` (`TESSERA_MEMORY_LIMIT`): a size (`4GiB`, `512MB`; units
//! are binary as in PostgreSQL, so `1GB` = `1GiB`) or a share of the machine's memory
//! (`50%`). The default is [`DEFAULT_SHARE`] percent of the memory the process may use:
//! physical memory, or the cgroup's limit when that is lower (containers). Only what
//! DataFusion's operators account for is limited: the tables and caches of the server
//! itself, and the Delta Lake writer, come on top.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};

/// The default limit, in percent of the memory the process may use.
pub const DEFAULT_SHARE: u64 = 50;

/// A byte count read from `--memory-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimitSpec {
    Bytes(u64),
    /// Percent of the memory available to the process.
    Share(u64),
}

impl MemoryLimitSpec {
    /// Parse `4GiB`, `512MB`, `1048576`, `50%`.
    pub fn parse(text: &str) -> Result<MemoryLimitSpec, String> {
        let t = text.trim();
        if let Some(pct) = t.strip_suffix('%') {
            return match pct.trim().parse::<u64>() {
                Ok(p) if (1..=100).contains(&p) => Ok(MemoryLimitSpec::Share(p)),
                _ => Err(format!(
                    "memory limit \"{text}\": a share must be 1% to 100%"
                )),
            };
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| {
            format!("memory limit \"{text}\" is not a size (write 4GiB, 512MiB or 50%)")
        })?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "memory limit \"{text}\": unknown unit \"{other}\" (use KiB, MiB, GiB or TiB)"
                ))
            }
        };
        let bytes = number * scale as f64;
        if !bytes.is_finite() || bytes < (1 << 20) as f64 || bytes > u64::MAX as f64 {
            return Err(format!("memory limit \"{text}\" must be at least 1MiB"));
        }
        Ok(MemoryLimitSpec::Bytes(bytes as u64))
    }

    /// The limit in bytes, given the memory the process may use (`None`: unknown).
    pub fn bytes(self, available: Option<u64>) -> Option<u64> {
        match self {
            MemoryLimitSpec::Bytes(b) => Some(b),
            MemoryLimitSpec::Share(p) => available.map(|a| a / 100 * p),
        }
    }
}

impl Default for MemoryLimitSpec {
    fn default() -> Self {
        MemoryLimitSpec::Share(DEFAULT_SHARE)
    }
}

/// The memory the process may use: physical memory (`/proc/meminfo`), or the cgroup's
/// limit when lower. `None` where neither can be read.
pub fn available_memory() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    });
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .find_map(|s| s.trim().parse::<u64>().ok());
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// `20.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The pool for a limit of `bytes`: fair between spilling operators, naming the largest
/// consumers and the server's limit (with how to raise it) when a query runs out.
pub fn pool(bytes: usize) -> Arc<dyn MemoryPool> {
    let top = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
    Arc::new(LimitedPool {
        inner: TrackConsumersPool::new(FairSpillPool::new(bytes), top),
        bytes,
    })
}

/// A pool whose "resources exhausted" errors say which limit was hit.
#[derive(Debug)]
struct LimitedPool {
    inner: TrackConsumersPool<FairSpillPool>,
    bytes: usize,
}

impl fmt::Display for LimitedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tessera query memory pool of {}",
            human(self.bytes as u64)
        )
    }
}

impl MemoryPool for LimitedPool {
    fn name(&self) -> &str {
        "tessera"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.inner
            .try_grow(reservation, additional)
            .map_err(|e| match e {
                DataFusionError::ResourcesExhausted(m) => {
                    DataFusionError::ResourcesExhausted(format!(
                        "the query needs more memory than the server's limit of {} for queries (raise it with --memory-limit or TESSERA_MEMORY_LIMIT): {m}",
                        human(self.bytes as u64)
                    ))
                }
                other => other,
            })
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_shares_parse() {
        let b = |t: &str| MemoryLimitSpec::parse(t);
        assert_eq!(b("4GiB"), Ok(MemoryLimitSpec::Bytes(4 << 30)));
        assert_eq!(b("4GB"), Ok(MemoryLimitSpec::Bytes(4 << 30)));
        assert_eq!(b("512MiB"), Ok(MemoryLimitSpec::Bytes(512 << 20)));
        assert_eq!(b(" 1.5 gib "), Ok(MemoryLimitSpec::Bytes(3 << 29)));
        assert_eq!(b("2097152"), Ok(MemoryLimitSpec::Bytes(2 << 20)));
        assert_eq!(b("50%"), Ok(MemoryLimitSpec::Share(50)));
        for bad in ["", "lots", "4XB", "0%", "101%", "12", "-1GiB", "1e999GiB"] {
            assert!(b(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(MemoryLimitSpec::Share(50).bytes(Some(1000)), Some(500));
        assert_eq!(MemoryLimitSpec::Share(50).bytes(None), None);
        assert_eq!(human(20 << 20), "20.0 MiB");
    }

    #[test]
    fn running_out_names_the_limit() {
        let pool = pool(1 << 20);
        let r = MemoryConsumer::new("test").register(&pool);
        let e = r.try_grow(2 << 20).expect_err("over the limit");
        let m = e.to_string();
        assert!(matches!(e, DataFusionError::ResourcesExhausted(_)), "{e:?}");
        assert!(m.contains("1.0 MiB") && m.contains("--memory-limit"), "{m}");
        r.try_grow(1 << 10).expect("under the limit");
    }
}
