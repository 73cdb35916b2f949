//! The release prioritizer: which resources go, in what order, and why.
//!
//! Builds a tracker holding a mix of resources (real `Vec<u8>` buffers) that differ in
//! kind, priority, size, idle time and use, with a dependency chain (a decoder state uses
//! a model shard, which uses its weights), a mutual-exclusion group (two detector
//! variants, one in use), pinned resources, and resources past their idle limit. Then it
//! asks [`memwarden::prioritizer::select`] (the planner the lifecycle and the governor
//! use: it walks the tracker's release order) for the same byte target at each urgency
//! (low, medium, high, critical) and prints every plan: each victim with its one-line
//! explanation (reason, then its standing: segment, frequency, priority, size, idle time),
//! and each resource kept back because of what depends on it. Planning releases nothing;
//! a [`ManualClock`] makes the idle times, and so the output, the same on every run.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example release_prioritizer_demo
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use memwarden::core::{ByteSize, ManualClock, Priority, ResourceId, ResourceKind};
use memwarden::prioritizer::{Policy, ReleasePlan, Request, Urgency, select};
use memwarden::tracker::{Candidate, ResourceSpec, Tracker};

const MIB: u64 = 1 << 20;

/// Registers a real buffer of `mib` MiB under `spec`, setting the spec's byte count.
fn hold(tracker: &Tracker, spec: ResourceSpec, mib: u64) -> anyhow::Result<()> {
    let bytes = mib * MIB;
    let spec = ResourceSpec { bytes, ..spec };
    let fill = spec.id.as_str().len() as u8;
    tracker.register(spec, vec![fill; bytes as usize])?;
    Ok(())
}

/// A spec whose size [`hold`] fills in.
fn spec(id: &str, kind: ResourceKind) -> ResourceSpec {
    ResourceSpec::new(id, kind, 0)
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();

    let clock = ManualClock::new();
    let tracker = Tracker::with_clock(Arc::new(clock.clone()));
    let minutes = |m: u64| Duration::from_secs(60 * m);

    // Registered first, so they have been idle the longest.
    hold(
        &tracker,
        spec("transcriber/weights", ResourceKind::ModelWeightsCache),
        12,
    )?;
    hold(
        &tracker,
        spec("transcriber/shard-0", ResourceKind::ModelShards).depends_on(["transcriber/weights"]),
        8,
    )?;
    hold(
        &tracker,
        spec("transcriber/decoder-state", ResourceKind::TempBuffers)
            .depends_on(["transcriber/shard-0"]),
        2,
    )?;
    hold(
        &tracker,
        spec("encoder/weights", ResourceKind::ModelWeightsCache),
        10,
    )?;
    hold(
        &tracker,
        spec("encoder/shard-0", ResourceKind::ModelShards)
            .depends_on(["encoder/weights"])
            .pinned(true),
        6,
    )?;
    hold(
        &tracker,
        spec("detector-l/weights", ResourceKind::ModelWeightsCache),
        8,
    )?;
    hold(
        &tracker,
        spec("ui/thumbnail-atlas", ResourceKind::RenderCache).pinned(true),
        4,
    )?;
    hold(
        &tracker,
        spec("detector-s", ResourceKind::ModelShards).group("detector"),
        6,
    )?;
    hold(
        &tracker,
        spec("detector-m", ResourceKind::ModelShards).group("detector"),
        10,
    )?;
    hold(
        &tracker,
        spec("clip/theme", ResourceKind::AudioCache).priority(Priority::new(9)?),
        5,
    )?;
    hold(
        &tracker,
        spec("clip/voiceover", ResourceKind::AudioCache),
        5,
    )?;
    hold(&tracker, spec("subs/en", ResourceKind::SubtitleIndex), 2)?;
    hold(&tracker, spec("scratch/a", ResourceKind::TempBuffers), 4)?;
    hold(&tracker, spec("scratch/b", ResourceKind::TempBuffers), 1)?;
    for n in 1..=6 {
        hold(
            &tracker,
            spec(&format!("frame-{n:04}"), ResourceKind::RenderCache).max_idle(minutes(5)),
            3,
        )?;
    }

    // Twenty minutes of editing: the medium detector replaces the small one, the theme
    // plays often, the newest frames are scrubbed.
    for minute in 1..=20 {
        clock.advance(minutes(1));
        tracker.touch("detector-m");
        if minute == 2 {
            tracker.touch("detector-s"); // tried once, then replaced by the medium variant
        }
        tracker.touch("clip/theme");
        if minute % 5 == 0 {
            tracker.touch("subs/en");
            tracker.touch("transcriber/decoder-state");
        }
        if minute >= 17 {
            for frame in ["frame-0004", "frame-0005", "frame-0006"] {
                tracker.touch(frame);
            }
        }
    }
    clock.advance(Duration::from_secs(30));

    let set = tracker.candidates();
    let mut sorted = set.candidates.clone();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    println!(
        "{} candidates holding {} at {}:",
        sorted.len(),
        ByteSize::b(tracker.totals().bytes),
        set.now
    );
    println!(
        "  {:<26} {:<20} {:>7} {:>4} {:>7} {:>4}  notes",
        "id", "kind", "bytes", "prio", "idle", "uses"
    );
    for c in &sorted {
        let mut notes = Vec::new();
        if c.pinned {
            notes.push("pinned".to_owned());
        }
        if c.is_idle_past_limit(set.now) {
            notes.push("idle past limit".to_owned());
        }
        if let Some(group) = &c.group {
            notes.push(format!("group {group}"));
        }
        if !c.depends_on.is_empty() {
            let deps: Vec<&str> = c.depends_on.iter().map(ResourceId::as_str).collect();
            notes.push(format!("uses {}", deps.join(", ")));
        }
        println!(
            "  {:<26} {:<20} {:>7} {:>4} {:>6}s {:>4}  {}",
            c.id.as_str(),
            c.kind.as_str(),
            ByteSize::b(c.bytes).to_string(),
            c.effective_priority().get(),
            c.idle(set.now).as_secs(),
            c.accesses,
            notes.join("; ")
        );
    }

    let policy = Policy::default();
    let target = 48 * MIB;
    println!(
        "\nThe same request at each urgency: free {} (medium allows priority <= {}, high <= {}).",
        ByteSize::b(target),
        policy.medium_max_priority,
        policy.high_max_priority
    );
    println!(
        "Each victim line reads: id (kind): why it may go; where it stood in the release order\n\
         (lowest priority first, then W-TinyLFU: window overflow the sketch does not admit,\n\
         then probation, then protected), and the facts behind it."
    );
    for urgency in [
        Urgency::Low,
        Urgency::Medium,
        Urgency::High,
        Urgency::Critical,
    ] {
        let plan = select(&tracker, &policy, &Request::new(urgency, target), &|_| {
            false
        });
        print!("\n{plan}");
        check_order(&plan, &set.candidates)?;
        if !plan.covers_target() {
            println!(
                "  (falls short by {}: nothing else may go at {urgency} urgency)",
                ByteSize::b(plan.target_bytes - plan.planned_bytes)
            );
        }
    }

    let all_weights = tracker.kind_total(&ResourceKind::ModelWeightsCache).bytes;
    println!(
        "\nDependency ordering: free all {} of model_weights_cache at critical urgency\n\
         (a request limited to one kind, as a kind's byte cap makes).",
        ByteSize::b(all_weights)
    );
    let weights = select(
        &tracker,
        &policy,
        &Request::new(Urgency::Critical, all_weights).of_kind(ResourceKind::ModelWeightsCache),
        &|_| false,
    );
    print!("{weights}");
    check_order(&weights, &set.candidates)?;
    println!(
        "transcriber/weights goes after the decoder state and the shard that use it, and\n\
         encoder/weights stays because its shard is pinned. Every plan above passed the\n\
         check that no resource is released before those that depend on it."
    );
    Ok(())
}

/// Checks the plan's promise: every victim comes after the victims that depend on it.
fn check_order(plan: &ReleasePlan, candidates: &[Candidate]) -> anyhow::Result<()> {
    for (position, victim) in plan.victims.iter().enumerate() {
        for dependent in candidates
            .iter()
            .filter(|c| c.depends_on.contains(&victim.id))
        {
            let dependent_position = plan.victims.iter().position(|v| v.id == dependent.id);
            ensure!(
                dependent_position.is_some_and(|p| p < position),
                "{} is planned before its dependent {}",
                victim.id,
                dependent.id
            );
        }
    }
    Ok(())
}
