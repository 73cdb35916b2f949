//! The memory profiler: records a window of pool events and explains it afterwards.
//!
//! A [`Profiler`] is shared with the pool (`MemoryPool::set_profiler`). Between
//! [`Profiler::start`] and [`Profiler::stop`] the pool reports every block it hands out
//! or takes back, every segment or reservation it maps or returns, and every page range
//! it commits or decommits as an [`Event`]; the profiler stamps each with the time since
//! the window opened.
//! [`Profiler::stop`] closes the window and returns its [`Timeline`], which
//!
//! - exports itself as JSON ([`Timeline::to_json`]; it also deserializes, so a saved
//!   timeline can be examined later) and as an SVG plot of the pool's allocated and
//!   reserved bytes over time ([`Timeline::write_svg`]);
//! - finds the blocks allocated in the window and still live at its end, grouped by the
//!   caller's label ([`Timeline::leaks`]);
//! - lists the blocks at or above a size ([`Timeline::large_allocations`]).
//!
//! ```
//! use memwarden_pool::profiler::{Event, EventKind, Profiler};
//! use std::sync::Arc;
//!
//! let profiler = Profiler::new();
//! profiler.start();
//! // The pool does this on every allocation while the profiler is recording.
//! if profiler.is_recording() {
//!     profiler.record(Event {
//!         kind: EventKind::Alloc,
//!         addr: 0x1000,
//!         size: 4096,
//!         requested: 4000,
//!         label: Some(Arc::from("decoder")),
//!         allocated: 4096,
//!         reserved: 2 << 20,
//!     });
//! }
//! let timeline = profiler.stop();
//! let leaks = timeline.leaks();
//! assert_eq!((leaks.blocks, leaks.bytes), (1, 4096));
//! assert_eq!(leaks.groups[0].label.as_deref(), Some("decoder"));
//! assert_eq!(timeline.large_allocations(4096).len(), 1);
//! ```
//!
//! # Cost
//!
//! When no window is open, the pool pays one relaxed atomic load per allocation and per
//! free ([`Profiler::is_recording`]) and builds no event. While recording, an event is
//! one uncontended lock, one clock read and a push onto a vector; the window keeps at
//! most [`Profiler::max_events`] events (by default [`DEFAULT_MAX_EVENTS`], about 20 MiB)
//! and counts the ones it had to drop ([`Timeline::dropped`]). Dropped events make the
//! leak report approximate (a dropped free looks like a leak), which the report says.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use memwarden_core::fs::{Durability, write_atomic};
use parking_lot::Mutex;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// How many events a window keeps unless told otherwise ([`Profiler::with_max_events`]):
/// 262 144, about 20 MiB of events (more with long labels, which are shared).
pub const DEFAULT_MAX_EVENTS: usize = 1 << 18;

/// What happened in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A block was handed out to a caller.
    Alloc,
    /// A block came back from its caller.
    Free,
    /// The pool reserved a segment from the system.
    SegmentAlloc,
    /// The pool returned a segment to the system.
    SegmentFree,
    /// The pool's reserved bytes grew by `size`: pages of a reservation handed out
    /// for the first time, or again after a decommit.
    Commit,
    /// The pool gave `size` bytes of free pages of a reservation back to the system,
    /// keeping the address space.
    Decommit,
}

/// One pool event, as the pool reports it to [`Profiler::record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The block's address (block events), the segment's or reservation's (segment
    /// events), or the first page's (commit and decommit events).
    pub addr: usize,
    /// The block's size as the pool rounded it; for segment events the bytes charged
    /// for it (a whole segment's size; for a reservation what it held charged, usually
    /// 0); for commit and decommit events the bytes charged or given back.
    pub size: u64,
    /// The bytes the caller asked for; 0 for segment, commit and decommit events.
    pub requested: u64,
    /// The caller's label, if it gave one (`allocate_labeled`).
    pub label: Option<Arc<str>>,
    /// The pool's allocated bytes after the event.
    pub allocated: u64,
    /// The pool's reserved bytes after the event.
    pub reserved: u64,
}

/// An [`Event`] with the time it was recorded. In JSON the event's fields sit beside
/// `at_ns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedEvent {
    /// Nanoseconds from [`Profiler::start`] to the event.
    pub at_ns: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Records windows of pool events. Share it with the pool in an `Arc`.
///
/// One window is open at a time: [`start`](Self::start) opens one (discarding a window
/// still open), [`stop`](Self::stop) closes it and returns what it recorded.
pub struct Profiler {
    /// Whether a window is open; the fast path for the pool. [`Window::open`] decides.
    recording: AtomicBool,
    max_events: usize,
    window: Mutex<Window>,
}

/// The open window, or the last one's leftovers.
struct Window {
    open: bool,
    start: Instant,
    events: Vec<TimedEvent>,
    dropped: u64,
}

impl Profiler {
    /// A profiler that is not recording, keeping at most [`DEFAULT_MAX_EVENTS`] per
    /// window.
    pub fn new() -> Self {
        Self::with_max_events(DEFAULT_MAX_EVENTS)
    }

    /// A profiler that keeps at most `max_events` events per window; later events of the
    /// window are dropped and counted ([`Timeline::dropped`]).
    pub fn with_max_events(max_events: usize) -> Self {
        Profiler {
            recording: AtomicBool::new(false),
            max_events,
            window: Mutex::new(Window {
                open: false,
                start: Instant::now(),
                events: Vec::new(),
                dropped: 0,
            }),
        }
    }

    /// The most events one window keeps.
    pub fn max_events(&self) -> usize {
        self.max_events
    }

    /// Opens a window: from now on [`record`](Self::record) keeps events, stamped with
    /// the time since this call. A window already open is discarded.
    pub fn start(&self) {
        let mut window = self.window.lock();
        window.open = true;
        window.start = Instant::now();
        window.events = Vec::new();
        window.dropped = 0;
        self.recording.store(true, Ordering::Relaxed);
        log::debug!("profiler: window opened");
    }

    /// Closes the window and returns its timeline. Without an open window the timeline
    /// is empty.
    pub fn stop(&self) -> Timeline {
        let mut window = self.window.lock();
        self.recording.store(false, Ordering::Relaxed);
        if !window.open {
            return Timeline::default();
        }
        window.open = false;
        let timeline = Timeline {
            duration_ns: nanos_since(window.start),
            dropped: std::mem::take(&mut window.dropped),
            events: std::mem::take(&mut window.events),
        };
        log::debug!(
            "profiler: window closed, {} events, {} dropped",
            timeline.events.len(),
            timeline.dropped
        );
        if timeline.dropped > 0 {
            log::warn!(
                "profiler: the window dropped {} events past its limit of {}",
                timeline.dropped,
                self.max_events
            );
        }
        timeline
    }

    /// Whether a window is open. One relaxed atomic load: the pool asks on every
    /// allocation and free, and builds no [`Event`] when the answer is `false`.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Records `event`, stamped with the time since [`start`](Self::start). Does nothing
    /// when no window is open; counts the event as dropped when the window is full.
    pub fn record(&self, event: Event) {
        if !self.is_recording() {
            return;
        }
        let mut window = self.window.lock();
        // The flag is a hint read without the lock; a `stop` may have closed the window
        // since. The stamp is taken under the lock, so stamps follow the events' order.
        if !window.open {
            return;
        }
        if window.events.len() >= self.max_events {
            window.dropped += 1;
            return;
        }
        let at_ns = nanos_since(window.start);
        window.events.push(TimedEvent { at_ns, event });
    }
}

impl Default for Profiler {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Profiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = self.window.lock();
        f.debug_struct("Profiler")
            .field("recording", &self.is_recording())
            .field("max_events", &self.max_events)
            .field("events", &window.events.len())
            .field("dropped", &window.dropped)
            .finish()
    }
}

fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The events of one recording window, in the order they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    duration_ns: u64,
    dropped: u64,
    events: Vec<TimedEvent>,
}

impl Timeline {
    /// A timeline of `events` (in time order) over `duration_ns`, as if recorded; for
    /// events that come from elsewhere, and for tests.
    pub fn from_events(events: Vec<TimedEvent>, duration_ns: u64) -> Self {
        Timeline {
            duration_ns,
            dropped: 0,
            events,
        }
    }

    /// The recorded events, oldest first.
    pub fn events(&self) -> &[TimedEvent] {
        &self.events
    }

    /// Nanoseconds from [`Profiler::start`] to [`Profiler::stop`].
    pub fn duration_ns(&self) -> u64 {
        self.duration_ns
    }

    /// Events the window could not keep because it was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The most bytes the pool had allocated after any event of the window.
    pub fn peak_allocated(&self) -> u64 {
        self.events
            .iter()
            .map(|e| e.event.allocated)
            .max()
            .unwrap_or(0)
    }

    /// The most bytes the pool had reserved after any event of the window.
    pub fn peak_reserved(&self) -> u64 {
        self.events
            .iter()
            .map(|e| e.event.reserved)
            .max()
            .unwrap_or(0)
    }

    /// The timeline as JSON: `{"duration_ns", "dropped", "events": [{"at_ns", "kind",
    /// "addr", "size", "requested", "label", "allocated", "reserved"}, ...]}`, `kind`
    /// in snake case (`"segment_alloc"`). [`Timeline`] deserializes from the same text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a timeline is plain data with string keys")
    }

    /// Blocks allocated in the window and not freed by its end, grouped by label.
    ///
    /// Frees of blocks allocated before the window are ignored; an address the pool
    /// reuses after a free counts as a new block. Segments are not blocks and never
    /// appear here.
    pub fn leaks(&self) -> LeakReport {
        let mut live: HashMap<usize, &TimedEvent> = HashMap::new();
        for e in &self.events {
            match e.event.kind {
                EventKind::Alloc => {
                    live.insert(e.event.addr, e);
                }
                EventKind::Free => {
                    live.remove(&e.event.addr);
                }
                EventKind::SegmentAlloc
                | EventKind::SegmentFree
                | EventKind::Commit
                | EventKind::Decommit => {}
            }
        }
        let mut groups: HashMap<Option<Arc<str>>, LeakGroup> = HashMap::new();
        for e in live.into_values() {
            let group = groups
                .entry(e.event.label.clone())
                .or_insert_with(|| LeakGroup {
                    label: e.event.label.clone(),
                    ..LeakGroup::default()
                });
            group.blocks.push(LeakedBlock {
                at_ns: e.at_ns,
                addr: e.event.addr,
                size: e.event.size,
                requested: e.event.requested,
            });
            group.bytes += e.event.size;
            group.requested += e.event.requested;
        }
        let mut groups: Vec<LeakGroup> = groups.into_values().collect();
        for group in &mut groups {
            group.blocks.sort_by_key(|b| (b.at_ns, b.addr));
        }
        groups.sort_by(|a, b| (Reverse(a.bytes), &a.label).cmp(&(Reverse(b.bytes), &b.label)));
        LeakReport {
            blocks: groups.iter().map(|g| g.blocks.len()).sum(),
            bytes: groups.iter().map(|g| g.bytes).sum(),
            dropped_events: self.dropped,
            groups,
        }
    }

    /// The blocks of at least `threshold` bytes (the pool's rounded size) allocated in the
    /// window, largest first (then oldest first), with when each was freed, if it was.
    pub fn large_allocations(&self, threshold: u64) -> Vec<LargeAllocation> {
        let mut large: Vec<LargeAllocation> = Vec::new();
        // Index in `large` of the live large block at each address.
        let mut live: HashMap<usize, usize> = HashMap::new();
        for e in &self.events {
            match e.event.kind {
                EventKind::Alloc if e.event.size >= threshold => {
                    live.insert(e.event.addr, large.len());
                    large.push(LargeAllocation {
                        at_ns: e.at_ns,
                        addr: e.event.addr,
                        size: e.event.size,
                        requested: e.event.requested,
                        label: e.event.label.clone(),
                        freed_at_ns: None,
                    });
                }
                EventKind::Alloc => {
                    live.remove(&e.event.addr);
                }
                EventKind::Free => {
                    if let Some(i) = live.remove(&e.event.addr) {
                        large[i].freed_at_ns = Some(e.at_ns);
                    }
                }
                EventKind::SegmentAlloc
                | EventKind::SegmentFree
                | EventKind::Commit
                | EventKind::Decommit => {}
            }
        }
        large.sort_by_key(|l| (Reverse(l.size), l.at_ns));
        large
    }

    /// Draws the pool's allocated and reserved bytes over the window as an SVG plot
    /// into `path`, through a temporary file in the same directory renamed into place
    /// ([`memwarden_core::fs::write_atomic`]): a reader sees the old picture or the new
    /// one, never half of one.
    ///
    /// Long timelines are thinned to a few points per horizontal pixel, keeping each
    /// pixel column's first, last, lowest and highest values, so peaks stay visible.
    ///
    /// # Errors
    ///
    /// A drawing error, or the I/O error of the write, which says what failed
    /// (`create`, `write`, `rename`) and on which file.
    pub fn write_svg(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let svg = self.render_svg()?;
        // A picture a user can draw again: it has to survive the process, not a crash.
        write_atomic(path, svg.as_bytes(), Durability::Process).map_err(io::Error::from)
    }

    fn render_svg(&self) -> io::Result<String> {
        let draw_err = |e: DrawingAreaErrorKind<io::Error>| {
            io::Error::other(format!("cannot draw the timeline: {e}"))
        };
        let end_ms = self
            .events
            .last()
            .map_or(0, |e| e.at_ns)
            .max(self.duration_ns) as f64
            / 1e6;
        let end_ms = end_ms.max(1e-3);
        let top = self.peak_allocated().max(self.peak_reserved()).max(1);
        let (unit, per_unit) = unit_for(top);
        let allocated = thin_steps(&self.events, end_ms, per_unit, |e| e.allocated);
        let reserved = thin_steps(&self.events, end_ms, per_unit, |e| e.reserved);

        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (SVG_WIDTH, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                        "memory pool: {} events, peak allocated {}, peak reserved {}",
                        self.events.len(),
                        Bytes(self.peak_allocated()),
                        Bytes(self.peak_reserved())
                    ),
                    ("sans-serif", 20),
                )
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..end_ms, 0.0..top as f64 / per_unit * 1.1)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("time since start (ms)")
                .y_desc(unit)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(draw_err)?;
            // Reserved is never below allocated and often equal: a wide, light line
            // under the allocated one keeps both visible.
            let reserved_style = RED.mix(0.45).stroke_width(6);
            chart
                .draw_series(LineSeries::new(reserved, reserved_style))
                .map_err(draw_err)?
                .label("reserved")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], reserved_style));
            chart
                .draw_series(LineSeries::new(allocated, BLUE.stroke_width(2)))
                .map_err(draw_err)?
                .label("allocated")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(draw_err)?;
            root.present().map_err(draw_err)?;
        }
        Ok(svg)
    }
}

/// Width of the SVG plot in pixels.
const SVG_WIDTH: u32 = 1000;
/// Timelines with more events than this are thinned per pixel column; shorter ones are
/// drawn as exact steps.
const MAX_EXACT_STEPS: usize = 4 * SVG_WIDTH as usize;

/// The unit to plot values up to `top` bytes in, and its size in bytes.
fn unit_for(top: u64) -> (&'static str, f64) {
    match top {
        t if t >= 1 << 30 => ("GiB", (1u64 << 30) as f64),
        t if t >= 1 << 20 => ("MiB", (1u64 << 20) as f64),
        t if t >= 1 << 10 => ("KiB", 1024.0),
        _ => ("bytes", 1.0),
    }
}

/// The points of `value` over time (x in ms, y in units of `per_unit` bytes): exact steps
/// (the value holds until the next event) for short timelines, otherwise per pixel column
/// the first, lowest, highest and last values in time order, then the last value held to
/// `end_ms`.
fn thin_steps(
    events: &[TimedEvent],
    end_ms: f64,
    per_unit: f64,
    value: impl Fn(&Event) -> u64,
) -> Vec<(f64, f64)> {
    let point = |e: &TimedEvent| (e.at_ns as f64 / 1e6, value(&e.event) as f64 / per_unit);
    let mut points = Vec::new();
    if events.len() <= MAX_EXACT_STEPS {
        for e in events {
            let (x, y) = point(e);
            if let Some(&(_, previous)) = points.last() {
                points.push((x, previous));
            }
            points.push((x, y));
        }
    } else {
        let column = |e: &TimedEvent| {
            ((e.at_ns as f64 / 1e6 / end_ms * f64::from(SVG_WIDTH)) as u64)
                .min(u64::from(SVG_WIDTH))
        };
        let mut rest = events;
        while let Some(first) = rest.first() {
            let col = column(first);
            let len = rest.iter().take_while(|e| column(e) == col).count();
            let (bucket, tail) = rest.split_at(len);
            let key = |i: &usize| value(&bucket[*i].event);
            let all = 0..bucket.len();
            let lowest = all.clone().min_by_key(key).unwrap_or(0);
            let highest = all.max_by_key(key).unwrap_or(0);
            let mut picks = [0, lowest, highest, bucket.len() - 1];
            picks.sort_unstable();
            let mut previous = None;
            for i in picks {
                if previous != Some(i) {
                    points.push(point(&bucket[i]));
                    previous = Some(i);
                }
            }
            rest = tail;
        }
    }
    if let Some(&(_, last)) = points.last() {
        points.push((end_ms, last));
    }
    points
}

/// Blocks allocated in a window and still live at its end ([`Timeline::leaks`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeakReport {
    /// One group per label, the most bytes first (then by label, unlabelled first).
    pub groups: Vec<LeakGroup>,
    /// Live blocks in all groups.
    pub blocks: usize,
    /// Their bytes (the pool's rounded sizes).
    pub bytes: u64,
    /// Events the window dropped; when not 0 the report is approximate (a dropped free
    /// shows as a leak, a dropped allocation hides one).
    pub dropped_events: u64,
}

impl LeakReport {
    /// Whether no block leaked.
    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }
}

/// The live blocks of one label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeakGroup {
    /// The label the blocks were allocated with; `None` for unlabelled blocks.
    pub label: Option<Arc<str>>,
    /// The blocks, oldest first.
    pub blocks: Vec<LeakedBlock>,
    /// Their bytes (the pool's rounded sizes).
    pub bytes: u64,
    /// The bytes their callers asked for.
    pub requested: u64,
}

/// One block still live at the end of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeakedBlock {
    /// When it was allocated, in nanoseconds since the window opened.
    pub at_ns: u64,
    /// Its address.
    pub addr: usize,
    /// Its size as the pool rounded it.
    pub size: u64,
    /// The bytes its caller asked for.
    pub requested: u64,
}

impl fmt::Display for LeakReport {
    /// A table: one line per label with its block count, bytes and block sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            writeln!(f, "no leaks: every block allocated in the window was freed")?;
        } else {
            writeln!(
                f,
                "{} blocks, {} still live at the end of the window",
                self.blocks,
                Bytes(self.bytes)
            )?;
            writeln!(
                f,
                "{:<24} {:>7} {:>11} {:>11}  sizes",
                "label", "blocks", "bytes", "requested"
            )?;
            for group in &self.groups {
                const SHOWN: usize = 6;
                let mut sizes: Vec<String> = group
                    .blocks
                    .iter()
                    .take(SHOWN)
                    .map(|b| Bytes(b.size).to_string())
                    .collect();
                if group.blocks.len() > SHOWN {
                    sizes.push(format!("... {} more", group.blocks.len() - SHOWN));
                }
                writeln!(
                    f,
                    "{:<24} {:>7} {:>11} {:>11}  {}",
                    group.label.as_deref().unwrap_or("(unlabelled)"),
                    group.blocks.len(),
                    Bytes(group.bytes).to_string(),
                    Bytes(group.requested).to_string(),
                    sizes.join(", ")
                )?;
            }
        }
        if self.dropped_events > 0 {
            writeln!(
                f,
                "approximate: the window dropped {} events",
                self.dropped_events
            )?;
        }
        Ok(())
    }
}

/// A block at or above the threshold of [`Timeline::large_allocations`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LargeAllocation {
    /// When it was allocated, in nanoseconds since the window opened.
    pub at_ns: u64,
    /// Its address.
    pub addr: usize,
    /// Its size as the pool rounded it.
    pub size: u64,
    /// The bytes its caller asked for.
    pub requested: u64,
    /// The caller's label.
    pub label: Option<Arc<str>>,
    /// When it was freed, if it was freed in the window.
    pub freed_at_ns: Option<u64>,
}

impl fmt::Display for LargeAllocation {
    /// `4.0 MiB (asked 4000000 B) "weights" at 1.250 ms, freed at 3.000 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (asked {} B) {} at {:.3} ms, ",
            Bytes(self.size),
            self.requested,
            self.label
                .as_deref()
                .map_or_else(|| "(unlabelled)".to_owned(), |l| format!("{l:?}")),
            self.at_ns as f64 / 1e6
        )?;
        match self.freed_at_ns {
            Some(at) => write!(f, "freed at {:.3} ms", at as f64 / 1e6),
            None => write!(f, "still live"),
        }
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `4.0 MiB`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, per_unit) = unit_for(self.0);
        if self.0 < 1024 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{:.1} {unit}", self.0 as f64 / per_unit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Builds events the way a pool would report them, keeping its running totals.
    #[derive(Default)]
    struct Script {
        events: Vec<TimedEvent>,
        allocated: u64,
        reserved: u64,
    }

    impl Script {
        fn push(&mut self, kind: EventKind, addr: usize, size: u64, label: Option<&str>) {
            match kind {
                EventKind::Alloc => self.allocated += size,
                EventKind::Free => self.allocated -= size,
                EventKind::SegmentAlloc | EventKind::Commit => self.reserved += size,
                EventKind::SegmentFree | EventKind::Decommit => self.reserved -= size,
            }
            let block = matches!(kind, EventKind::Alloc | EventKind::Free);
            self.events.push(TimedEvent {
                at_ns: 1_000 * self.events.len() as u64,
                event: Event {
                    kind,
                    addr,
                    size,
                    requested: if block { size - size / 8 } else { 0 },
                    label: label.map(Arc::from),
                    allocated: self.allocated,
                    reserved: self.reserved,
                },
            });
        }

        fn alloc(&mut self, addr: usize, size: u64, label: Option<&str>) -> &mut Self {
            self.push(EventKind::Alloc, addr, size, label);
            self
        }

        fn free(&mut self, addr: usize, size: u64) -> &mut Self {
            self.push(EventKind::Free, addr, size, None);
            self
        }

        fn segment(&mut self, addr: usize, size: u64) -> &mut Self {
            self.push(EventKind::SegmentAlloc, addr, size, None);
            self
        }

        fn timeline(&self) -> Timeline {
            let end = self.events.last().map_or(0, |e| e.at_ns) + 1_000;
            Timeline::from_events(self.events.clone(), end)
        }
    }

    fn event(kind: EventKind, addr: usize, size: u64) -> Event {
        Event {
            kind,
            addr,
            size,
            requested: size,
            label: None,
            allocated: 0,
            reserved: 0,
        }
    }

    #[test]
    fn leaks_are_grouped_by_label_largest_first() {
        let timeline = Script::default()
            .segment(0x10_0000, 8 * MIB)
            .alloc(0x10_0000, 4096, Some("decoder"))
            .alloc(0x10_1000, 512, None)
            .alloc(0x10_1200, MIB, Some("weights"))
            .alloc(0x20_1200, 2048, Some("decoder"))
            // Freed in the window: not a leak.
            .alloc(0x20_1a00, 1024, Some("scratch"))
            .free(0x20_1a00, 1024)
            // Freed, and its address reused by a block that stays live.
            .free(0x10_1000, 512)
            .alloc(0x10_1000, 256, Some("decoder"))
            // A block from before the window: its free is ignored.
            .free(0x70_0000, 64)
            .timeline();
        let leaks = timeline.leaks();
        let summary: Vec<(Option<&str>, usize, u64)> = leaks
            .groups
            .iter()
            .map(|g| (g.label.as_deref(), g.blocks.len(), g.bytes))
            .collect();
        assert_eq!(
            summary,
            [
                (Some("weights"), 1, MIB),
                (Some("decoder"), 3, 4096 + 2048 + 256)
            ]
        );
        assert_eq!(leaks.blocks, 4);
        assert_eq!(leaks.bytes, MIB + 4096 + 2048 + 256);
        let decoder = &leaks.groups[1];
        let sizes: Vec<u64> = decoder.blocks.iter().map(|b| b.size).collect();
        assert_eq!(sizes, [4096, 2048, 256], "oldest first");
        assert_eq!(decoder.requested, 3584 + 1792 + 224);
        assert_eq!(decoder.blocks[2].addr, 0x10_1000);
        let table = leaks.to_string();
        assert!(table.contains("weights"), "{table}");
        assert!(table.contains("4.0 KiB, 2.0 KiB, 256 B"), "{table}");
    }

    #[test]
    fn a_window_that_frees_everything_has_no_leaks() {
        let timeline = Script::default()
            .alloc(0x1000, 64, Some("a"))
            .alloc(0x2000, 64, None)
            .free(0x2000, 64)
            .free(0x1000, 64)
            .timeline();
        let leaks = timeline.leaks();
        assert!(leaks.is_empty());
        assert_eq!(leaks, LeakReport::default());
        assert!(leaks.to_string().starts_with("no leaks"));
        assert!(Timeline::default().leaks().is_empty());
    }

    #[test]
    fn large_allocations_are_those_at_or_above_the_threshold() {
        let timeline = Script::default()
            .alloc(0x1000, MIB - 1, Some("just under"))
            .alloc(0x10_0000, MIB, Some("at"))
            .alloc(0x20_0000, 4 * MIB, Some("weights"))
            .free(0x10_0000, MIB)
            // A small block at a freed large block's address does not free it again.
            .alloc(0x10_0000, 64, None)
            .free(0x10_0000, 64)
            .alloc(0x80_0000, MIB, None)
            .timeline();
        let large = timeline.large_allocations(MIB);
        let found: Vec<(Option<&str>, u64, Option<u64>)> = large
            .iter()
            .map(|l| (l.label.as_deref(), l.size, l.freed_at_ns))
            .collect();
        assert_eq!(
            found,
            [
                (Some("weights"), 4 * MIB, None),
                (Some("at"), MIB, Some(3_000)),
                (None, MIB, None),
            ]
        );
        assert_eq!(large[0].requested, 4 * MIB - MIB / 2);
        assert!(large[1].to_string().contains("\"at\""), "{}", large[1]);
        assert!(large[1].to_string().ends_with("freed at 0.003 ms"));
        assert_eq!(timeline.large_allocations(MIB + 1).len(), 1);
        assert_eq!(timeline.large_allocations(0).len(), 5);
        assert!(timeline.large_allocations(u64::MAX).is_empty());
    }

    #[test]
    fn json_carries_every_field_and_reads_back() {
        let timeline = Script::default()
            .segment(0x4000, 2 * MIB)
            .alloc(0x4000, 512, Some("kv cache"))
            .free(0x4000, 512)
            .timeline();
        let json = timeline.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["duration_ns"], 3_000);
        assert_eq!(value["dropped"], 0);
        let events = value["events"].as_array().expect("an array");
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[1],
            serde_json::json!({
                "at_ns": 1_000,
                "kind": "alloc",
                "addr": 0x4000,
                "size": 512,
                "requested": 448,
                "label": "kv cache",
                "allocated": 512,
                "reserved": 2 * MIB,
            })
        );
        assert_eq!(events[0]["kind"], "segment_alloc");
        assert_eq!(events[0]["label"], serde_json::Value::Null);
        assert_eq!(events[2]["kind"], "free");
        assert_eq!(events[2]["allocated"], 0);

        let back: Timeline = serde_json::from_str(&json).expect("a timeline");
        assert_eq!(back, timeline);
    }

    #[test]
    fn svg_is_written_through_a_temporary_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("timeline.svg");
        let mut script = Script::default();
        script.segment(0x10_0000, 4 * MIB);
        for i in 0..20 {
            script.alloc(0x10_0000 + i * 0x1_0000, 64 << 10, Some("tile"));
        }
        script.free(0x10_0000, 64 << 10);
        script.timeline().write_svg(&path).expect("written");
        let svg = std::fs::read_to_string(&path).expect("readable");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("allocated") && svg.contains("reserved"));
        assert!(svg.trim_end().ends_with("</svg>"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("listable")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(names, ["timeline.svg"], "no temporary file left behind");

        // An empty window still draws, and a path into a missing directory fails
        // without leaving anything.
        let empty = dir.path().join("empty.svg");
        Timeline::default().write_svg(&empty).expect("written");
        assert!(
            std::fs::read_to_string(&empty)
                .expect("readable")
                .starts_with("<svg")
        );
        let missing = dir.path().join("no such dir").join("t.svg");
        let err = Timeline::default()
            .write_svg(&missing)
            .expect_err("no directory");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("t.svg"), "{err}");
    }

    #[test]
    fn long_timelines_are_thinned_but_keep_their_peaks() {
        let mut script = Script::default();
        // 20 000 events; one spike of 64 MiB in the middle, freed at once.
        for i in 0..10_000usize {
            let size = if i == 5_000 { 64 * MIB } else { 64 };
            script.alloc(i * 0x100, size, None).free(i * 0x100, size);
        }
        let timeline = script.timeline();
        let end_ms = timeline.duration_ns() as f64 / 1e6;
        let points = thin_steps(timeline.events(), end_ms, MIB as f64, |e| e.allocated);
        assert!(
            points.len() <= 4 * (SVG_WIDTH as usize + 1) + 1,
            "{}",
            points.len()
        );
        assert!(points.iter().any(|&(_, y)| y >= 64.0), "the spike is kept");
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0), "time order");

        let short = Script::default()
            .alloc(0x1000, MIB, None)
            .free(0x1000, MIB)
            .timeline();
        let steps = thin_steps(short.events(), 0.003, MIB as f64, |e| e.allocated);
        assert_eq!(
            steps,
            [(0.0, 1.0), (0.001, 1.0), (0.001, 0.0), (0.003, 0.0)]
        );
    }

    #[test]
    fn nothing_is_recorded_outside_a_window() {
        let profiler = Profiler::new();
        assert!(!profiler.is_recording());
        profiler.record(event(EventKind::Alloc, 0x1000, 64));
        profiler.start();
        assert!(profiler.is_recording());
        profiler.record(event(EventKind::Alloc, 0x2000, 64));
        profiler.record(event(EventKind::Free, 0x2000, 64));
        let timeline = profiler.stop();
        assert!(!profiler.is_recording());
        profiler.record(event(EventKind::Alloc, 0x3000, 64));
        let addrs: Vec<usize> = timeline.events().iter().map(|e| e.event.addr).collect();
        assert_eq!(addrs, [0x2000, 0x2000]);
        assert!(timeline.events()[0].at_ns <= timeline.events()[1].at_ns);
        assert!(timeline.events()[1].at_ns <= timeline.duration_ns());
        // After a stop, a second stop has nothing, and a new window starts empty.
        assert_eq!(profiler.stop(), Timeline::default());
        profiler.start();
        assert!(profiler.stop().events().is_empty());
    }

    #[test]
    fn a_full_window_counts_what_it_drops() {
        let profiler = Profiler::with_max_events(3);
        profiler.start();
        for i in 0..5 {
            profiler.record(event(EventKind::Alloc, 0x1000 * i, 64));
        }
        let timeline = profiler.stop();
        assert_eq!(timeline.events().len(), 3);
        assert_eq!(timeline.dropped(), 2);
        let leaks = timeline.leaks();
        assert_eq!((leaks.blocks, leaks.dropped_events), (3, 2));
        assert!(leaks.to_string().contains("approximate"));
        // A new window starts with a clean count.
        profiler.start();
        assert_eq!(profiler.stop().dropped(), 0);
    }

    #[test]
    fn restarting_discards_the_open_window() {
        let profiler = Profiler::new();
        profiler.start();
        profiler.record(event(EventKind::Alloc, 0x1000, 64));
        profiler.start();
        profiler.record(event(EventKind::Alloc, 0x2000, 64));
        let timeline = profiler.stop();
        let addrs: Vec<usize> = timeline.events().iter().map(|e| e.event.addr).collect();
        assert_eq!(addrs, [0x2000]);
        assert!(format!("{profiler:?}").contains("recording: false"));
    }

    #[test]
    fn peaks_are_the_highest_totals() {
        let timeline = Script::default()
            .segment(0x1000, 2 * MIB)
            .alloc(0x1000, MIB, None)
            .alloc(0x2000, 512, None)
            .free(0x1000, MIB)
            .timeline();
        assert_eq!(timeline.peak_allocated(), MIB + 512);
        assert_eq!(timeline.peak_reserved(), 2 * MIB);
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(3 << 30).to_string(), "3.0 GiB");
    }
}
