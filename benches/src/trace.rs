//! Seeded request traces over keys of variable size: [`Trace`], [`Pattern`], [`TraceConfig`].

use std::fmt;

use memwarden::core::ResourceId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Smallest item size: 1 KiB.
pub const MIN_ITEM_BYTES: u32 = 1 << 10;
/// Largest item size: 256 KiB.
pub const MAX_ITEM_BYTES: u32 = 256 << 10;

/// How a trace picks its keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// Independent draws from a Zipf distribution with this exponent over all keys.
    Zipf {
        /// The Zipf exponent (0.8 is web-cache-like, 1.0 more skewed).
        exponent: f64,
    },
    /// Zipf draws, interrupted every `period` requests by a scan: `scan_len` keys read
    /// once each in id order, from a random start (a table scan over the same key space).
    ZipfWithScans {
        /// The Zipf exponent of the background traffic.
        exponent: f64,
        /// Zipf requests between two scans.
        period: usize,
        /// Keys per scan.
        scan_len: usize,
    },
    /// Zipf draws whose popularity order is re-drawn `phases - 1` times at even intervals:
    /// the hot set moves, and what was hot is cold from then on.
    ShiftingZipf {
        /// The Zipf exponent.
        exponent: f64,
        /// Number of popularity orders the trace goes through.
        phases: usize,
    },
    /// Every key in id order, over and over: a loop ten times larger than a cache of a
    /// tenth of the distinct bytes, which defeats LRU completely.
    Loop,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Zipf { exponent } => write!(f, "zipf-{exponent:.1}"),
            Pattern::ZipfWithScans { exponent, .. } => write!(f, "zipf-{exponent:.1}+scan"),
            Pattern::ShiftingZipf { exponent, phases } => {
                write!(f, "zipf-{exponent:.1}-shift{phases}")
            }
            Pattern::Loop => f.write_str("loop"),
        }
    }
}

/// The size and seed of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceConfig {
    /// Number of distinct keys.
    pub keys: usize,
    /// Number of requests.
    pub requests: usize,
    /// Seed of the key sizes, the popularity order and the requests.
    pub seed: u64,
}

impl TraceConfig {
    /// The full-size traces `cargo bench` replays: 200k requests over 20k keys.
    pub const BENCH: TraceConfig = TraceConfig {
        keys: 20_000,
        requests: 200_000,
        seed: 0x6d65_6d77_6172_6465,
    };

    /// Short traces for `cargo test --benches` and unit tests.
    pub const QUICK: TraceConfig = TraceConfig {
        keys: 1_000,
        requests: 20_000,
        seed: 0x6d65_6d77_6172_6465,
    };
}

/// A replayable request trace.
///
/// Every key has a size, drawn once per key from a log-uniform distribution between
/// [`MIN_ITEM_BYTES`] and [`MAX_ITEM_BYTES`] with the config's seed, so every trace of
/// one config shares the same keys and sizes. Sizes are accounted, never allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The pattern it was drawn from.
    pub pattern: Pattern,
    /// The key universe, as ids (`obj-00042`); both engines are keyed by these.
    pub keys: Vec<ResourceId>,
    /// The size of each key, in bytes.
    pub sizes: Vec<u32>,
    /// The requests, as indices into `keys`.
    pub requests: Vec<u32>,
}

impl Trace {
    /// Draws a trace of `pattern` with `config`; the same arguments give the same trace.
    pub fn generate(pattern: Pattern, config: TraceConfig) -> Trace {
        let n = config.keys.max(1);
        let mut rng = StdRng::seed_from_u64(config.seed);
        let (lo, hi) = (
            f64::from(MIN_ITEM_BYTES).ln(),
            f64::from(MAX_ITEM_BYTES).ln(),
        );
        let sizes = (0..n)
            .map(|_| rng.random_range(lo..=hi).exp().round() as u32)
            .collect();
        let keys = (0..n)
            .map(|i| ResourceId::from(format!("obj-{i:06}")))
            .collect();
        // Popularity rank -> key, shuffled so that rank says nothing about id or size.
        let mut by_rank: Vec<u32> = (0..n as u32).collect();
        by_rank.shuffle(&mut rng);

        let mut rng = StdRng::seed_from_u64(config.seed ^ pattern_tag(pattern));
        let mut requests = Vec::with_capacity(config.requests);
        match pattern {
            Pattern::Zipf { exponent } => {
                let zipf = zipf(n, exponent);
                requests.extend(
                    (0..config.requests).map(|_| by_rank[zipf.sample(&mut rng) as usize - 1]),
                );
            }
            Pattern::ZipfWithScans {
                exponent,
                period,
                scan_len,
            } => {
                let zipf = zipf(n, exponent);
                while requests.len() < config.requests {
                    for _ in 0..period {
                        requests.push(by_rank[zipf.sample(&mut rng) as usize - 1]);
                    }
                    let start = rng.random_range(0..n);
                    requests.extend((0..scan_len).map(|i| ((start + i) % n) as u32));
                }
                requests.truncate(config.requests);
            }
            Pattern::ShiftingZipf { exponent, phases } => {
                let zipf = zipf(n, exponent);
                let per_phase = config.requests.div_ceil(phases.max(1));
                while requests.len() < config.requests {
                    if !requests.is_empty() {
                        by_rank.shuffle(&mut rng);
                    }
                    for _ in 0..per_phase {
                        requests.push(by_rank[zipf.sample(&mut rng) as usize - 1]);
                    }
                }
                requests.truncate(config.requests);
            }
            Pattern::Loop => {
                requests.extend((0..config.requests).map(|i| (i % n) as u32));
            }
        }
        Trace {
            pattern,
            keys,
            sizes,
            requests,
        }
    }

    /// The five traces of the benchmark: Zipf 0.8, Zipf 1.0, scans mixed into Zipf 0.8
    /// (a scan of a quarter of the keys after every twelfth of the requests' worth of Zipf
    /// traffic, so about 17% of the requests are scan), a loop over all keys, and Zipf 1.0
    /// whose hot set moves three times (a check that a policy tuned on the stationary
    /// traces still adapts).
    pub fn standard(config: TraceConfig) -> Vec<Trace> {
        let period = (config.requests / 12).max(1);
        let scan_len = (config.keys / 4).max(1);
        [
            Pattern::Zipf { exponent: 0.8 },
            Pattern::Zipf { exponent: 1.0 },
            Pattern::ZipfWithScans {
                exponent: 0.8,
                period,
                scan_len,
            },
            Pattern::Loop,
            Pattern::ShiftingZipf {
                exponent: 1.0,
                phases: 4,
            },
        ]
        .into_iter()
        .map(|pattern| Trace::generate(pattern, config))
        .collect()
    }

    /// Bytes of the keys the trace requests at least once.
    pub fn distinct_bytes(&self) -> u64 {
        let mut seen = vec![false; self.keys.len()];
        let mut bytes = 0;
        for &k in &self.requests {
            if !std::mem::replace(&mut seen[k as usize], true) {
                bytes += u64::from(self.sizes[k as usize]);
            }
        }
        bytes
    }

    /// Number of keys the trace requests at least once.
    pub fn distinct_keys(&self) -> usize {
        let mut seen = vec![false; self.keys.len()];
        self.requests
            .iter()
            .filter(|&&k| !std::mem::replace(&mut seen[k as usize], true))
            .count()
    }

    /// The id and size of each request, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceId, u32)> + '_ {
        self.requests
            .iter()
            .map(|&k| (&self.keys[k as usize], self.sizes[k as usize]))
    }
}

fn zipf(n: usize, exponent: f64) -> Zipf<f64> {
    Zipf::new(n as f64, exponent).expect("n >= 1 and the exponents used are positive")
}

/// A per-pattern seed offset, so that the traces of one config draw different requests.
fn pattern_tag(pattern: Pattern) -> u64 {
    match pattern {
        Pattern::Zipf { exponent } => 0x1000 ^ exponent.to_bits(),
        Pattern::ZipfWithScans { exponent, .. } => 0x2000 ^ exponent.to_bits().rotate_left(7),
        Pattern::ShiftingZipf { exponent, phases } => {
            0x4000 ^ exponent.to_bits().rotate_left(13) ^ phases as u64
        }
        Pattern::Loop => 0x3000,
    }
}
