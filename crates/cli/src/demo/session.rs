//! One demo session: the steps of the script run against a [`Runtime`], each lookup
//! counted as a hit, a restore or a reload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use memwarden::Fetched;
use memwarden::core::{ByteSize, ManualClock, ResourceKind};
use memwarden::governor::{OsRss, RssSource};
use memwarden::runtime::Runtime;
use memwarden::tracker::{ResourceSpec, Tracker, TrackerError};
use parking_lot::Mutex;

use super::models;
use super::overhead;
use super::report::{Access, Outcome, Series};
use super::timeline::Point;
use super::workload::{self, Clip, Scratch, Script, Step, SubtitleTrack};

/// Simulated time per step.
pub(crate) const STEP: Duration = Duration::from_millis(50);
/// Steps between sweeps of due resources (one simulated second).
const SWEEP_EVERY: u64 = 20;

/// The session's state: the runtime it runs on, its simulated clock, and what each
/// lookup found.
pub(crate) struct Session {
    runtime: Runtime,
    clock: ManualClock,
    access: BTreeMap<ResourceKind, Access>,
    fill: u8,
}

impl Session {
    /// A session on `runtime`, whose tracker runs on `clock`.
    pub(crate) fn new(runtime: Runtime, clock: ManualClock) -> Self {
        Session {
            runtime,
            clock,
            access: BTreeMap::new(),
            fill: 0,
        }
    }

    fn tracker(&self) -> &Arc<Tracker> {
        self.runtime.tracker()
    }

    fn count(&mut self, kind: &ResourceKind) -> &mut Access {
        self.access.entry(kind.clone()).or_default()
    }

    /// The value of `spec.id`: held, restored from its snapshot, or loaded with `load`.
    /// Before anything is restored or loaded the governor makes room for `admit` bytes.
    fn fetch<T: Send + Sync + 'static>(
        &mut self,
        spec: ResourceSpec,
        admit: u64,
        load: impl FnOnce(u8) -> T,
    ) -> anyhow::Result<Arc<T>> {
        if let Some(value) = self.tracker().get::<T>(spec.id.as_str())? {
            self.count(&spec.kind).hits += 1;
            return Ok(value);
        }
        self.runtime.make_room(&spec.kind, admit);
        match self.runtime.lifecycle().get_or_restore::<T>(&spec)? {
            Some(Fetched::Held(value)) => {
                self.count(&spec.kind).hits += 1;
                return Ok(value);
            }
            Some(Fetched::Restored(value)) => {
                self.count(&spec.kind).restores += 1;
                return Ok(value);
            }
            None => {}
        }
        self.count(&spec.kind).reloads += 1;
        self.fill = self.fill.wrapping_add(1);
        Ok(self.tracker().register(spec, load(self.fill))?)
    }

    fn step(&mut self, step: Step, n: u64) -> anyhow::Result<()> {
        match step {
            Step::Frame(i) => {
                let bytes = workload::FRAME_BYTES as u64;
                let spec =
                    ResourceSpec::new(workload::frame_id(i), ResourceKind::RenderCache, bytes);
                // A restore reads the snapshot and decodes it: twice the frame, briefly.
                let frame = self.fetch(spec, 2 * bytes, |fill| workload::render_frame(i, fill))?;
                workload::consume(workload::luminance(&frame));
            }
            Step::Clip(i) => {
                let bytes = workload::CLIP_BYTES as u64;
                let spec = ResourceSpec::new(workload::clip_id(i), ResourceKind::AudioCache, bytes);
                let clip = self.fetch(spec, bytes, |fill| Clip::decode(i, fill))?;
                workload::consume(clip.level());
            }
            Step::Subtitle { track, at_ms } => {
                let id = workload::track_id(track);
                let kind = ResourceKind::SubtitleIndex;
                if let Some(held) = self.tracker().get::<SubtitleTrack>(id.as_str())? {
                    self.count(&kind).hits += 1;
                    workload::consume(held.lookup(at_ms));
                    return Ok(());
                }
                self.count(&kind).reloads += 1;
                self.fill = self.fill.wrapping_add(1);
                let estimate = (workload::TRACK_CUES * 400) as u64;
                self.runtime.make_room(&kind, estimate);
                let parsed = SubtitleTrack::parse(track, self.fill);
                let spec = ResourceSpec::new(id, kind, parsed.bytes());
                workload::consume(
                    self.tracker()
                        .register_shrinkable(spec, parsed)?
                        .lookup(at_ms),
                );
            }
            Step::Inference(m) => self.inference(m, n)?,
        }
        Ok(())
    }

    fn inference(&mut self, m: usize, n: u64) -> anyhow::Result<()> {
        // Scratch space first, pinned while the inference runs: it is resident when the
        // model is admitted, and nothing releases it from under the step. It is handed
        // back (through the reaper, like every release) when the step ends.
        let scratch_id = format!("scratch-{n}");
        let bytes = workload::SCRATCH_BYTES as u64;
        let spec =
            ResourceSpec::new(scratch_id.as_str(), ResourceKind::TempBuffers, bytes).pinned(true);
        let scratch = self.fetch(spec, bytes, |fill| Mutex::new(Scratch::new(fill)))?;
        let result = self.run_model(&models::MODELS[m], &scratch);
        drop(scratch);
        if self.tracker().contains(&scratch_id) {
            self.tracker().set_pinned(&scratch_id, false)?;
            self.runtime.lifecycle().reaper().release(&scratch_id);
        }
        result
    }

    /// Loads (if need be) and runs one model. The registry admits a load through the
    /// governor (its admission hook), so the file's bytes are counted before inference
    /// makes its pages resident.
    fn run_model(
        &mut self,
        model: &models::DemoModel,
        scratch: &Mutex<Scratch>,
    ) -> anyhow::Result<()> {
        let held = self.tracker().contains(model.name);
        // The monitor may release the model between `get` and the pin: then get it again
        // (the registry re-admits the mapping it still has).
        for _ in 0..3 {
            let weights = self
                .runtime
                .registry()
                .get(model.name)
                .with_context(|| format!("loading model {}", model.name))?;
            match self.tracker().set_pinned(model.name, true) {
                Ok(()) => {}
                Err(TrackerError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            let count = self.count(&model.kind);
            if held {
                count.hits += 1;
            } else {
                count.reloads += 1;
            }
            workload::consume(workload::run_model(
                weights.as_bytes(),
                &mut scratch.lock().0,
            ));
            // Released meanwhile is fine: unpinned is what it would be.
            let _ = self.tracker().set_pinned(model.name, false);
            return Ok(());
        }
        anyhow::bail!(
            "model {} was released between loading and use three times in a row",
            model.name
        )
    }

    /// Runs `steps` steps of `script`, reading the RSS after each, with a progress bar
    /// unless `quiet`; returns the runtime (still running) and what the session saw.
    pub(crate) fn run(
        mut self,
        script: &mut Script,
        steps: u64,
        quiet: bool,
    ) -> anyhow::Result<(Runtime, Outcome)> {
        let progress = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(steps)
        };
        progress.set_style(
            ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} steps {msg}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        let budget = self.runtime.lifecycle().budget();
        let reader = OsRss::new();
        let started = Instant::now();
        let cpu_started = overhead::cpu_seconds();
        let mut series = Series::new();
        for n in 0..steps {
            self.clock.advance(STEP);
            if n % SWEEP_EVERY == 0 {
                self.runtime.lifecycle().sweep();
            }
            let step = script.next_step();
            self.step(step, n)?;
            let tracked = self.tracker().totals().bytes;
            let rss = reader.resident_bytes().unwrap_or(0);
            series.push(Point {
                step: n,
                at_s: STEP.as_secs_f64() * (n + 1) as f64,
                rss,
                tracked,
            });
            if n % 20 == 0 {
                progress.set_message(format!("RSS {} of {budget}", ByteSize::b(rss)));
            }
            progress.inc(1);
        }
        progress.finish_and_clear();
        let outcome = Outcome {
            access: self.access,
            series,
            tracked_final: self.runtime.tracker().totals().bytes,
            simulated_seconds: STEP.as_secs_f64() * steps as f64,
            wall_seconds: started.elapsed().as_secs_f64(),
            cpu_seconds: overhead::cpu_seconds()
                .zip(cpu_started)
                .map(|(end, start)| end - start),
        };
        Ok((self.runtime, outcome))
    }
}
