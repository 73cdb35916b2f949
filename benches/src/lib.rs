//! Benchmarks of memwarden against moka, as a library so the parts are unit-tested.
//!
//! The `tracker_vs_moka` bench replays the same seeded [`Trace`]s (Zipf 0.8, Zipf 1.0,
//! scans mixed into Zipf, a loop larger than the cache, Zipf with a moving hot set), with
//! item sizes drawn per key
//! from a log-uniform 1 KiB..256 KiB, through three caches of the same byte capacity:
//! memwarden ([`MemwardenEngine`]: tracker, prioritizer and reaper driven by a
//! `Lifecycle`) and `moka::sync::Cache` under LRU and under TinyLFU ([`MokaEngine`]).
//! It prints hit ratios and replay throughput, then measures hit-only lookups.
//!
//! ```
//! use memwarden_benches::{replay, Engine, MemwardenConfig, MemwardenEngine, Pattern, Trace, TraceConfig};
//!
//! let trace = Trace::generate(Pattern::Zipf { exponent: 0.8 }, TraceConfig::QUICK);
//! let capacity = trace.distinct_bytes() / 10;
//! let mut engine = MemwardenEngine::new(capacity, MemwardenConfig::default());
//! let outcome = replay(&mut engine, &trace);
//! assert!(outcome.peak_bytes <= capacity);
//! println!("hit ratio {:.3}", outcome.hit_ratio());
//! ```
//!
//! The key design decision: both engines see the same keys ([`memwarden::core::ResourceId`],
//! looked up as `&str`), the same sizes and the same capacity, and the trace is fixed by
//! its seed, so a difference in hit ratio is a difference in eviction policy and nothing
//! else. memwarden's clock is virtual (one tick per request), which makes its hit
//! ratios reproducible.

mod alloc_trace;
mod cache_trace;
mod engine;
pub mod report;
mod trace;

pub use alloc_trace::{ALIGN, AllocOp, AllocTrace, Malloc, TraceError, replay_pool, touch};
pub use cache_trace::{CacheTrace, CacheTraceError};
pub use engine::{
    Engine, MemwardenConfig, MemwardenEngine, MokaEngine, MokaPolicy, Outcome, Payload,
    PayloadWeighter, QuickCacheEngine, replay, replay_requests,
};
pub use trace::{MAX_ITEM_BYTES, MIN_ITEM_BYTES, Pattern, Trace, TraceConfig};

/// `shared/data/{name}` beside the checkout (the project's real inputs); it may be
/// missing on a bare clone.
pub fn shared_data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_determined_by_their_seed() {
        for pattern in Trace::standard(TraceConfig::QUICK)
            .iter()
            .map(|t| t.pattern)
        {
            let a = Trace::generate(pattern, TraceConfig::QUICK);
            assert_eq!(a, Trace::generate(pattern, TraceConfig::QUICK), "{pattern}");
            let reseeded = TraceConfig {
                seed: TraceConfig::QUICK.seed + 1,
                ..TraceConfig::QUICK
            };
            let b = Trace::generate(pattern, reseeded);
            assert_ne!(a.sizes, b.sizes, "{pattern}: sizes follow the seed");
            assert_eq!(a.requests.len(), TraceConfig::QUICK.requests);
            assert!(
                a.sizes
                    .iter()
                    .all(|s| (MIN_ITEM_BYTES..=MAX_ITEM_BYTES).contains(s))
            );
        }
    }

    #[test]
    fn memwarden_never_holds_more_than_its_capacity() {
        for trace in Trace::standard(TraceConfig::QUICK) {
            let capacity = trace.distinct_bytes() / 10;
            let mut engine = MemwardenEngine::new(capacity, MemwardenConfig::default());
            let mut held = 0;
            for (id, bytes) in trace.iter() {
                engine.access(id, bytes);
                held = held.max(engine.resident_bytes());
            }
            assert!(held <= capacity, "{}: {held} > {capacity}", trace.pattern);
            assert_eq!(held, engine.peak_bytes(), "{}", trace.pattern);
            // It does fill up: eviction frees about 1% per round, not everything.
            assert!(
                engine.resident_bytes() > capacity * 9 / 10,
                "{}",
                trace.pattern
            );
            assert!(engine.rounds() > 0, "{}", trace.pattern);
        }
    }

    #[test]
    fn hits_and_misses_add_up_in_both_engines() {
        let trace = Trace::generate(Pattern::Zipf { exponent: 1.0 }, TraceConfig::QUICK);
        let capacity = trace.distinct_bytes() / 10;
        let requests = trace.requests.len() as u64;

        let mut memwarden = MemwardenEngine::new(capacity, MemwardenConfig::default());
        let outcome = replay(&mut memwarden, &trace);
        assert_eq!(outcome.hits + outcome.misses, requests);
        let stats = memwarden.tracker().stats();
        assert_eq!((stats.hits, stats.misses), (outcome.hits, outcome.misses));
        assert_eq!(stats.registered, outcome.misses, "every miss inserts");
        assert_eq!(stats.registered - stats.detached, stats.live.count);
        // Cold misses alone: every distinct key misses at least once.
        assert!(outcome.misses >= trace.distinct_keys() as u64);
        assert!(outcome.hits > 0);

        for policy in [MokaPolicy::Lru, MokaPolicy::TinyLfu] {
            let mut moka = MokaEngine::new(capacity, policy, 1);
            let outcome = replay(&mut moka, &trace);
            assert_eq!(outcome.hits + outcome.misses, requests, "{policy}");
            assert!(outcome.misses >= trace.distinct_keys() as u64, "{policy}");
            assert!(outcome.peak_bytes <= capacity, "{policy}");
            moka.cache().run_pending_tasks();
            assert!(moka.cache().entry_count() <= outcome.misses, "{policy}");
        }
    }
}
