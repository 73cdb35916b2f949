//! The session's resources and what each step does with them.
//!
//! Every payload is real memory and every step does real work on it: a scrubbed frame's
//! pixels are read for a luminance figure, a played clip's samples for a level, a model's
//! weights (mapped from its file) for a checksum standing in for inference, so the pages
//! the budget is about are resident for real and the work is not optimised away.

use std::collections::BTreeMap;

use memwarden::core::ResourceId;
use memwarden::snapshot::{PixelFormat, RenderFrame};
use memwarden::tracker::Shrink;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Zipf};

/// Zipf exponent of every access pattern.
const ZIPF_EXPONENT: f64 = 1.0;

pub(crate) const FRAMES: usize = 480;
pub(crate) const FRAME_WIDTH: u32 = 1280;
pub(crate) const FRAME_HEIGHT: u32 = 720;
pub(crate) const FRAME_BYTES: usize = FRAME_WIDTH as usize * FRAME_HEIGHT as usize * 4;
pub(crate) const CLIPS: usize = 48;
/// Ten seconds of 48 kHz stereo f32.
pub(crate) const CLIP_BYTES: usize = 10 * 48_000 * 2 * 4;
pub(crate) const TRACKS: usize = 6;
pub(crate) const TRACK_CUES: usize = 4000;
pub(crate) const SCRATCH_BYTES: usize = 8 << 20;

/// A frame rendered anew: a gradient that differs per frame and per render.
pub(crate) fn render_frame(n: usize, fill: u8) -> RenderFrame {
    let mut pixels = vec![0u8; FRAME_BYTES];
    for (row, line) in pixels.chunks_mut(FRAME_WIDTH as usize * 4).enumerate() {
        let shade = (row as u8).wrapping_add(n as u8).wrapping_add(fill) | 1;
        line.fill(shade);
    }
    RenderFrame {
        width: FRAME_WIDTH,
        height: FRAME_HEIGHT,
        stride: FRAME_WIDTH * 4,
        format: PixelFormat::Rgba8,
        index: n as u64,
        pts_us: n as i64 * 40_000,
        pixels,
    }
}

/// Scrubbing: the mean of one channel over the whole frame (every pixel is read).
pub(crate) fn luminance(frame: &RenderFrame) -> u64 {
    frame
        .pixels
        .chunks_exact(4)
        .map(|p| u64::from(p[1]))
        .sum::<u64>()
        / (frame.pixels.len() as u64 / 4).max(1)
}

/// A decoded audio clip: interleaved stereo f32 samples.
pub(crate) struct Clip(pub(crate) Box<[f32]>);

impl Clip {
    /// "Decodes" clip `n`: a tone whose pitch depends on `n`, one period computed and
    /// repeated (decoding cost is not what the demo measures; the memory is).
    pub(crate) fn decode(n: usize, fill: u8) -> Self {
        let period = 96 + 8 * (n % 13);
        let gain = 0.5 + f32::from(fill % 16) / 64.0;
        let wave: Vec<f32> = (0..period)
            .map(|i| gain * (i as f32 / period as f32 * std::f32::consts::TAU).sin())
            .collect();
        Clip(wave.iter().copied().cycle().take(CLIP_BYTES / 4).collect())
    }

    /// Playing: the level (mean square) over every sample.
    pub(crate) fn level(&self) -> f32 {
        self.0.iter().map(|s| s * s).sum::<f32>() / self.0.len().max(1) as f32
    }
}

/// One subtitle cue.
pub(crate) struct Cue {
    pub(crate) end_ms: u64,
    pub(crate) text: String,
    pub(crate) hits: u32,
}

/// A searchable subtitle index (start time → cue) whose coldest cues can be dropped while
/// the rest stays usable.
pub(crate) struct SubtitleTrack {
    cues: Mutex<BTreeMap<u64, Cue>>,
}

impl SubtitleTrack {
    pub(crate) fn parse(track: usize, fill: u8) -> Self {
        let cues = (0..TRACK_CUES as u64)
            .map(|i| {
                let start = i * 2_500;
                let text = format!(
                    "[{track}:{i:04}] {} line of dialogue, revision {fill}",
                    ["first", "second", "third", "fourth"][i as usize % 4]
                )
                .repeat(4);
                (
                    start,
                    Cue {
                        end_ms: start + 2_000,
                        text,
                        hits: 0,
                    },
                )
            })
            .collect();
        SubtitleTrack {
            cues: Mutex::new(cues),
        }
    }

    /// The index's size estimate: map nodes plus text.
    pub(crate) fn bytes(&self) -> u64 {
        let cues = self.cues.lock();
        cues.values()
            .map(|c| (c.text.capacity() + std::mem::size_of::<(u64, Cue)>() + 16) as u64)
            .sum()
    }

    /// Looks up the cue showing at `at_ms`; its text length (0 between cues or when the
    /// cue was dropped).
    pub(crate) fn lookup(&self, at_ms: u64) -> usize {
        let mut cues = self.cues.lock();
        match cues.range_mut(..=at_ms).next_back() {
            Some((_, cue)) if cue.end_ms >= at_ms => {
                cue.hits += 1;
                cue.text.len()
            }
            _ => 0,
        }
    }
}

impl Shrink for SubtitleTrack {
    fn shrink(&self, fraction: f64) -> u64 {
        let mut cues = self.cues.lock();
        let drop = (cues.len() as f64 * fraction).round() as usize;
        let mut by_heat: Vec<(u32, u64)> = cues.iter().map(|(&k, c)| (c.hits, k)).collect();
        by_heat.sort_unstable(); // coldest first; the hot part stays
        by_heat
            .into_iter()
            .take(drop)
            .filter_map(|(_, key)| cues.remove(&key))
            .map(|c| (c.text.capacity() + std::mem::size_of::<(u64, Cue)>() + 16) as u64)
            .sum()
    }
}

/// Scratch space for one inference.
pub(crate) struct Scratch(pub(crate) Box<[u8]>);

impl Scratch {
    pub(crate) fn new(fill: u8) -> Self {
        Scratch(vec![fill | 1; SCRATCH_BYTES].into_boxed_slice())
    }
}

/// Inference stand-in: reads every page of the weights (so all of them are resident, as
/// a forward pass makes them) and folds them into a checksum.
pub(crate) fn run_model(weights: &[u8], scratch: &mut [u8]) -> u64 {
    let mut acc = 0u64;
    for (i, page) in weights.chunks(4096).enumerate() {
        let word = u64::from_le_bytes(page[..8.min(page.len())].try_into().unwrap_or([0; 8]));
        acc = acc.rotate_left(5) ^ word;
        if let Some(slot) = scratch.get_mut((i * 4096) % scratch.len().max(1)) {
            *slot = acc as u8;
        }
    }
    acc
}

/// One step of the session.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Scrub to a frame.
    Frame(usize),
    /// Play a clip.
    Clip(usize),
    /// Look up the subtitle showing at a time in a track.
    Subtitle { track: usize, at_ms: u64 },
    /// Run a model.
    Inference(usize),
}

/// The session's script: which step comes next, drawn from seeded Zipf laws.
pub(crate) struct Script {
    rng: StdRng,
    frames: Popularity,
    clips: Popularity,
    tracks: Popularity,
    cues: Popularity,
    models: Popularity,
}

impl Script {
    pub(crate) fn new(mut rng: StdRng, models: usize) -> anyhow::Result<Self> {
        Ok(Script {
            frames: Popularity::new(FRAMES, &mut rng)?,
            clips: Popularity::new(CLIPS, &mut rng)?,
            tracks: Popularity::new(TRACKS, &mut rng)?,
            cues: Popularity::new(TRACK_CUES, &mut rng)?,
            models: Popularity::new(models, &mut rng)?,
            rng,
        })
    }

    pub(crate) fn next_step(&mut self) -> Step {
        let roll: f64 = rand::Rng::random(&mut self.rng);
        match roll {
            r if r < 0.45 => Step::Frame(self.frames.pick(&mut self.rng)),
            r if r < 0.65 => Step::Clip(self.clips.pick(&mut self.rng)),
            r if r < 0.75 => Step::Subtitle {
                track: self.tracks.pick(&mut self.rng),
                at_ms: self.cues.pick(&mut self.rng) as u64 * 2_500 + 1_000,
            },
            _ => Step::Inference(self.models.pick(&mut self.rng)),
        }
    }
}

/// A Zipf-distributed index into `n` items, with the popular items shuffled by the seed.
struct Popularity {
    zipf: Zipf<f64>,
    order: Vec<usize>,
}

impl Popularity {
    fn new(n: usize, rng: &mut StdRng) -> anyhow::Result<Self> {
        use anyhow::Context;
        let zipf = Zipf::new(n as f64, ZIPF_EXPONENT).context("Zipf parameters")?;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        Ok(Popularity { zipf, order })
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let rank = self.zipf.sample(rng) as usize;
        self.order[rank.clamp(1, self.order.len()) - 1]
    }
}

/// The ids the session uses.
pub(crate) fn frame_id(n: usize) -> ResourceId {
    ResourceId::from(format!("frame-{n:04}"))
}
pub(crate) fn clip_id(n: usize) -> ResourceId {
    ResourceId::from(format!("audio-{n:02}"))
}
pub(crate) fn track_id(n: usize) -> ResourceId {
    ResourceId::from(format!("subs-{n}"))
}

/// Keeps values alive past the optimiser.
pub(crate) fn consume<T>(value: T) {
    std::hint::black_box(value);
}
