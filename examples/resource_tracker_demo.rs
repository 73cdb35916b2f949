//! The resource tracker: what is held, how big it is, how it is used, and what is due.
//!
//! Registers resources of all six built-in kinds (real `Vec<u8>` buffers, plus a plain
//! `HashMap` subtitle index: the tracker holds any `Send + Sync` value, so a value that
//! could not be weakly referenced in other runtimes needs nothing special here), reads
//! some of them back, and moves a [`ManualClock`] forward so that TTLs and idle limits
//! run out the same way on every run. Along the way it prints the per-kind totals, the
//! expired resources (by TTL and by idle limit), the release candidates, and shows that
//! a value the caller still holds survives its release from the registry.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example resource_tracker_demo
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use memwarden::core::{ByteSize, Clock, ManualClock, Priority, ResourceKind};
use memwarden::reaper::Reaper;
use memwarden::tracker::{KindPolicy, ResourceSpec, Tracker};

const MIB: usize = 1 << 20;

/// A buffer of `bytes` real bytes, every page written so that it is resident.
fn buffer(bytes: usize, fill: u8) -> Vec<u8> {
    vec![fill; bytes]
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();

    let clock = ManualClock::new();
    let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));

    // A kind policy applies to every resource of the kind that does not override it.
    tracker.set_kind_policy(
        ResourceKind::TempBuffers,
        KindPolicy {
            priority: Priority::MIN,
            ttl: Some(Duration::from_secs(120)),
            max_idle: Some(Duration::from_secs(30)),
        },
    );

    println!(
        "== registering one resource of each kind (clock at {}) ==",
        clock.now()
    );
    let shard = tracker.register(
        ResourceSpec::new("llama/shard-0", ResourceKind::ModelShards, (8 * MIB) as u64)
            .max_idle(Duration::from_secs(600)),
        buffer(8 * MIB, 0x11),
    )?;
    tracker.register(
        ResourceSpec::new(
            "whisper/weights",
            ResourceKind::ModelWeightsCache,
            (6 * MIB) as u64,
        )
        .max_idle(Duration::from_secs(900)),
        buffer(6 * MIB, 0x22),
    )?;
    let mut first_frame = None;
    for n in 1..=3 {
        let frame = tracker.register(
            ResourceSpec::new(
                format!("frame-{n:04}"),
                ResourceKind::RenderCache,
                (2 * MIB) as u64,
            )
            .max_idle(Duration::from_secs(60)),
            buffer(2 * MIB, n),
        )?;
        first_frame.get_or_insert(frame);
    }
    let first_frame = first_frame.context("three frames were registered")?;
    tracker.register(
        ResourceSpec::new("scratch/fft", ResourceKind::TempBuffers, MIB as u64),
        buffer(MIB, 0x33),
    )?;
    tracker.register(
        ResourceSpec::new("clip/intro", ResourceKind::AudioCache, (3 * MIB) as u64)
            .ttl(Duration::from_secs(90)),
        buffer(3 * MIB, 0x44),
    )?;
    // A plain map: its size is the caller's estimate, as for any value.
    let subtitles: HashMap<u32, String> = (0..2_000)
        .map(|i| (i, format!("line {i}: subtitle text for cue number {i}")))
        .collect();
    let subtitle_bytes: u64 = subtitles
        .values()
        .map(|line| (line.capacity() + std::mem::size_of::<(u32, String)>()) as u64)
        .sum();
    tracker.register(
        ResourceSpec::new("subs/en", ResourceKind::SubtitleIndex, subtitle_bytes)
            .max_idle(Duration::from_secs(600)),
        subtitles,
    )?;
    println!(
        "registered {} resources holding {}",
        tracker.len(),
        ByteSize::b(tracker.totals().bytes)
    );
    print_kind_totals(&tracker);

    println!("\n== reading resources back ==");
    let cue = tracker
        .get::<HashMap<u32, String>>("subs/en")?
        .context("subs/en is registered")?;
    println!(
        "subs/en is a plain HashMap<u32, String> ({} cues), held like any other value; cue 42 -> {:?}",
        cue.len(),
        cue[&42]
    );
    drop(cue);
    let mismatch = tracker.get::<Vec<u8>>("subs/en").unwrap_err();
    println!("asking for the wrong type is an error: {mismatch}");
    println!(
        "an unknown id is simply absent: get(\"frame-9999\") = {:?}",
        tracker.get::<Vec<u8>>("frame-9999")?.map(|v| v.len())
    );

    clock.advance(Duration::from_secs(20));
    println!(
        "\n== clock at {}: the editor scrubs frame-0001 and plays the intro ==",
        clock.now()
    );
    for _ in 0..3 {
        tracker.touch("frame-0001");
    }
    tracker.touch("clip/intro");
    tracker.touch("scratch/fft");
    println!(
        "frame-0001 has {} accesses (registration counts as one)",
        tracker.info("frame-0001").context("registered")?.accesses
    );

    clock.advance(Duration::from_secs(45));
    println!(
        "\n== clock at {}: frames 2 and 3 have not been used for 65 s ==",
        clock.now()
    );
    tracker.touch("frame-0001");
    print_expired(&tracker);

    clock.advance(Duration::from_secs(40));
    println!(
        "\n== clock at {}: 105 s in, the intro clip is past its 90 s TTL ==",
        clock.now()
    );
    print_expired(&tracker);
    print_candidates(&tracker);

    println!("\n== releasing a frame the caller still holds ==");
    let frame = first_frame;
    println!(
        "caller holds frame-0001 ({} bytes, first byte {:#04x}); Arc strong count {}",
        frame.len(),
        frame[0],
        Arc::strong_count(&frame)
    );
    let reaper = Reaper::new(Arc::clone(&tracker));
    let report = reaper.release("frame-0001");
    ensure!(report.released.len() == 1, "frame-0001 was released");
    println!(
        "released frame-0001: {} freed from the registry; tracker.contains = {}",
        ByteSize::b(report.bytes_freed),
        tracker.contains("frame-0001")
    );
    println!(
        "the caller's handle is still valid: {} bytes, first byte {:#04x}, strong count {}",
        frame.len(),
        frame[0],
        Arc::strong_count(&frame)
    );
    drop(frame);
    println!("its 2 MiB are freed when the caller drops that last clone, as it just did");

    println!("\n== what the tracker refuses ==");
    tracker.set_pinned("llama/shard-0", true)?;
    println!(
        "release of pinned llama/shard-0: {:?}",
        reaper.release("llama/shard-0").skipped[0].reason
    );
    let again = tracker.register(
        ResourceSpec::new("llama/shard-0", ResourceKind::ModelShards, 1),
        (),
    );
    println!(
        "registering llama/shard-0 twice: {}",
        again.map(|_| ()).unwrap_err()
    );
    println!("(the shard stays usable: {} bytes)", shard.len());

    println!("\n== after the release ==");
    print_kind_totals(&tracker);
    let stats = tracker.stats();
    println!(
        "stats: {} registered, {} released, {} hits, {} misses, {} live ({})",
        stats.registered,
        stats.detached,
        stats.hits,
        stats.misses,
        stats.live.count,
        ByteSize::b(stats.live.bytes)
    );
    Ok(())
}

fn print_kind_totals(tracker: &Tracker) {
    println!("{:<22} {:>5} {:>12}", "kind", "count", "bytes");
    for (kind, totals) in tracker.kind_totals() {
        println!(
            "{:<22} {:>5} {:>12}",
            kind.as_str(),
            totals.count,
            ByteSize::b(totals.bytes).to_string()
        );
    }
    let total = tracker.totals();
    println!(
        "{:<22} {:>5} {:>12}",
        "total",
        total.count,
        ByteSize::b(total.bytes).to_string()
    );
}

fn print_expired(tracker: &Tracker) {
    let now = tracker.now();
    let expired = tracker.expired();
    if expired.is_empty() {
        println!("expired: none");
    }
    for id in expired {
        let Some(info) = tracker.info(id.as_str()) else {
            continue;
        };
        let why = if info.is_expired(now) {
            format!(
                "TTL {}s ran out (age {}s)",
                info.ttl.unwrap_or_default().as_secs(),
                info.age(now).as_secs()
            )
        } else {
            format!(
                "idle {}s, limit {}s",
                info.idle(now).as_secs(),
                info.max_idle.unwrap_or_default().as_secs()
            )
        };
        println!("expired: {id:<16} ({}) {why}", info.kind);
    }
}

fn print_candidates(tracker: &Tracker) {
    let set = tracker.candidates();
    let mut candidates = set.candidates;
    candidates.sort_by(|a, b| a.id.cmp(&b.id));
    println!(
        "\ncandidates at {}:\n{:<16} {:<20} {:>10} {:>4} {:>7} {:>8}  due",
        set.now, "id", "kind", "bytes", "prio", "idle", "accesses"
    );
    for c in candidates {
        let due = if c.is_expired(set.now) {
            "ttl"
        } else if c.is_idle_past_limit(set.now) {
            "idle"
        } else {
            "-"
        };
        println!(
            "{:<16} {:<20} {:>10} {:>4} {:>6}s {:>8}  {due}",
            c.id.as_str(),
            c.kind.as_str(),
            ByteSize::b(c.bytes).to_string(),
            c.effective_priority().get(),
            c.idle(set.now).as_secs(),
            c.accesses,
        );
    }
}
