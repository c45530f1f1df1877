use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Identifies one invocation end to end: in the response header, the guest's
/// request header, the logs and the metering record.
///
/// 32 lowercase hex digits: 48 bits of milliseconds since the epoch (so ids
/// sort by time), then 80 bits unique to this process and request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn process_seed() -> u64 {
    use std::sync::OnceLock;
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    })
}

impl RequestId {
    pub fn generate() -> Self {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // A cheap bijective mix of the counter keeps ids unguessable-looking
        // without a random number generator on the hot path.
        let mixed = (n ^ process_seed()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let high = (process_seed() >> 48) as u16;
        Self(format!("{:012x}{:04x}{:016x}", millis & 0xFFFF_FFFF_FFFF, high, mixed))
    }

    /// Wraps an id that came from storage or a client; no validation.
    pub fn from_string(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| RequestId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.as_str().len(), 32);
            assert!(id.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        }
    }
}
