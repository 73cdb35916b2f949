//! Gramian Angular Fields, computed exactly as pyts 0.14.1's `GramianAngularField`.
//!
//! Per series: piecewise aggregate approximation (PAA) down to the image size, min-max
//! scaling into `sample_range` the way scikit-learn's `MinMaxScaler` does it, then
//! `cos = x`, `sin = sqrt(clip(1 - x², 0, 1))` and the outer products
//! `GASF[i][j] = cos_i·cos_j − sin_i·sin_j`, `GADF[i][j] = sin_i·cos_j − cos_i·sin_j`.
//! Everything up to the angles runs in `f64`; the outer product runs in the output type,
//! one contiguous row at a time, so the compiler vectorises it and the work stays a small
//! constant factor above writing the output bytes.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use memwarden_sched::ParallelScheduler;
use rayon::prelude::*;

use crate::error::{Result, ShmError};
use crate::float::Float;

/// How large the square image is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageSize {
    /// Exactly this many pixels per side, `1..=series_len`.
    Fixed(usize),
    /// This fraction of the series length, in (0, 1]: `ceil(fraction × series_len)`
    /// (computed in `f64`, as pyts does, so `0.14 × 50` gives 8).
    Fraction(f64),
}

impl ImageSize {
    /// The side length for series of `series_len` timestamps, or why there is none.
    pub fn resolve(self, series_len: usize) -> Result<usize> {
        let size = match self {
            Self::Fixed(size) => size,
            Self::Fraction(fraction) => {
                if !(fraction > 0.0 && fraction <= 1.0) {
                    return Err(ShmError::ImageFractionOutOfRange { fraction });
                }
                // In (0, series_len] by the check above, so the cast is exact.
                (fraction * series_len as f64).ceil() as usize
            }
        };
        if size == 0 || size > series_len {
            return Err(ShmError::ImageSizeOutOfRange {
                image_size: size,
                series_len,
            });
        }
        Ok(size)
    }
}

/// Which field to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// GASF, pyts's `method='summation'`.
    #[default]
    Summation,
    /// GADF, pyts's `method='difference'`.
    Difference,
    /// Both, stacked as two channels `[GASF, GADF]` per sample (not in pyts; the
    /// "DualGAF" input of two-channel image models).
    Both,
}

impl Method {
    /// Images per sample: 1, or 2 for [`Method::Both`].
    pub fn channels(self) -> usize {
        match self {
            Self::Summation | Self::Difference => 1,
            Self::Both => 2,
        }
    }
}

impl FromStr for Method {
    type Err = String;

    /// Accepts pyts's spellings (`summation`/`s`, `difference`/`d`), the acronyms
    /// (`gasf`, `gadf`) and `both`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "summation" | "s" | "gasf" => Ok(Self::Summation),
            "difference" | "d" | "gadf" => Ok(Self::Difference),
            "both" | "dual" => Ok(Self::Both),
            _ => Err(format!(
                "unknown GAF method {s:?}: expected summation, difference or both"
            )),
        }
    }
}

/// The parameters of a GAF transform, named and defaulted as in pyts.
#[derive(Debug, Clone, PartialEq)]
pub struct GafConfig {
    /// Output side length. Default: the whole series (`Fraction(1.0)`).
    pub image_size: ImageSize,
    /// Range each series is min-max scaled into; `None` to use the values as they are
    /// (they must then lie in [-1, 1]). Default `Some((-1.0, 1.0))`.
    pub sample_range: Option<(f64, f64)>,
    /// Which field. Default [`Method::Summation`].
    pub method: Method,
    /// PAA with fixed-size, possibly overlapping windows instead of variable-size
    /// disjoint ones. Default `false`.
    pub overlapping: bool,
    /// Describe the output as `(n, S·S)` (or `(n, 2·S·S)`) instead of `(n, S, S)`
    /// (`(n, 2, S, S)`); the bytes are the same. Default `false`.
    pub flatten: bool,
}

impl Default for GafConfig {
    fn default() -> Self {
        Self {
            image_size: ImageSize::Fraction(1.0),
            sample_range: Some((-1.0, 1.0)),
            method: Method::Summation,
            overlapping: false,
            flatten: false,
        }
    }
}

/// A GAF transform for series of one length: validated parameters and precomputed PAA
/// windows. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Gaf {
    config: GafConfig,
    series_len: usize,
    image_size: usize,
    /// `(start, end)` of each PAA window; `None` when the image is as long as the series.
    windows: Option<Vec<(usize, usize)>>,
}

/// A per-sample callback run on the worker right after the sample's image is written.
pub(crate) type SampleHook<'h, F> = &'h (dyn Fn(usize, &mut [F]) + Sync);

impl Gaf {
    /// Validates `config` for series of `series_len` timestamps.
    pub fn new(config: GafConfig, series_len: usize) -> Result<Self> {
        if series_len < 2 {
            return Err(ShmError::SeriesTooShort { len: series_len });
        }
        let image_size = config.image_size.resolve(series_len)?;
        // Every later size computation multiplies by the image's values and their
        // element size (at most 8 bytes): check once here that one image's bytes fit.
        let channels = config.method.channels();
        if channels
            .checked_mul(image_size)
            .and_then(|v| v.checked_mul(image_size))
            .and_then(|v| v.checked_mul(std::mem::size_of::<f64>()))
            .is_none()
        {
            return Err(ShmError::TooLarge {
                what: format!("a {channels} × {image_size} × {image_size} image"),
            });
        }
        if let Some((min, max)) = config.sample_range {
            // Written to reject NaN as well.
            if !(-1.0 <= min && min < max && max <= 1.0) {
                return Err(ShmError::InvalidSampleRange { min, max });
            }
        }
        let windows = (image_size < series_len).then(|| {
            if config.overlapping {
                overlapping_windows(series_len, image_size)
            } else {
                disjoint_windows(series_len, image_size)
            }
        });
        Ok(Self {
            config,
            series_len,
            image_size,
            windows,
        })
    }

    /// The parameters.
    pub fn config(&self) -> &GafConfig {
        &self.config
    }

    /// Timestamps per input series.
    pub fn series_len(&self) -> usize {
        self.series_len
    }

    /// Output side length `S`.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// The PAA windows as `(start, end)` index pairs; `None` when no PAA is applied.
    pub fn windows(&self) -> Option<&[(usize, usize)]> {
        self.windows.as_deref()
    }

    /// Output values per sample: `channels × S × S` ([`Gaf::new`] checked that it
    /// fits, in bytes of either element type).
    pub fn output_len_per_sample(&self) -> usize {
        self.config.method.channels() * self.image_size * self.image_size
    }

    /// The output array's shape for `n` samples, honouring `flatten` and the method.
    pub fn output_shape(&self, n: usize) -> Vec<usize> {
        let s = self.image_size;
        match (self.config.flatten, self.config.method) {
            (true, _) => vec![n, self.output_len_per_sample()],
            (false, Method::Both) => vec![n, 2, s, s],
            (false, _) => vec![n, s, s],
        }
    }

    /// Transforms `n` series laid out row by row in `samples` (`n × series_len` values)
    /// into `out` (`n × output_len_per_sample()` values), each image written straight into
    /// its place. Runs in parallel over samples on the current rayon pool (call it inside
    /// `ThreadPool::install` to choose the threads).
    ///
    /// On bad input the error names the lowest-index offending sample; `out` is then
    /// partly written.
    pub fn transform_into<I: Float, F: Float>(
        &self,
        samples: &[I],
        n: usize,
        out: &mut [F],
    ) -> Result<()> {
        let chunk = self.auto_chunk(n, rayon::current_num_threads());
        self.run(samples, n, out, chunk)
    }

    /// As [`Gaf::transform_into`] with an explicit number of samples per parallel task;
    /// `chunk_size >= n` runs on the calling thread alone.
    pub fn transform_into_chunked<I: Float, F: Float>(
        &self,
        samples: &[I],
        n: usize,
        out: &mut [F],
        chunk_size: usize,
    ) -> Result<()> {
        self.run(samples, n, out, chunk_size)
    }

    /// Allocates the output and transforms into it.
    pub fn transform<I: Float, F: Float>(&self, samples: &[I], n: usize) -> Result<Vec<F>> {
        let len = self.output_len(n)?;
        let mut out = vec![F::default(); len];
        self.transform_into(samples, n, &mut out)?;
        Ok(out)
    }

    /// As [`Gaf::transform_into`], on the threads of `sched` and with its chunking (a
    /// chunk is a run of whole samples).
    pub fn transform_into_with<I: Float, F: Float>(
        &self,
        sched: &ParallelScheduler,
        samples: &[I],
        n: usize,
        out: &mut [F],
    ) -> Result<()> {
        self.run_scheduled(sched, samples, n, out, 0, None)
    }

    /// The scheduler-driven engine (the loader's): each worker claims runs of whole
    /// samples and writes their images in place.
    pub(crate) fn run_scheduled<I: Float, F: Float>(
        &self,
        sched: &ParallelScheduler,
        samples: &[I],
        n: usize,
        out: &mut [F],
        first_index: usize,
        hook: Option<SampleHook<'_, F>>,
    ) -> Result<()> {
        let (t, o) = (self.series_len, self.output_len_per_sample());
        check_len("input", n, t, samples.len())?;
        check_len("output", n, o, out.len())?;
        if n == 0 {
            return Ok(());
        }
        let mut images: Vec<&mut [F]> = out.chunks_exact_mut(o).collect();
        let failed = AtomicBool::new(false);
        sched.for_each_chunk_mut(&mut images, |first, chunk| {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let inputs = &samples[first * t..(first + chunk.len()) * t];
            let images = chunk.iter_mut().map(|image| &mut **image);
            if self
                .run_serial(inputs, images, first_index + first, hook)
                .is_err()
            {
                failed.store(true, Ordering::Relaxed);
            }
        });
        if failed.into_inner() {
            return Err(self
                .first_error(samples, first_index)
                .expect("a failed chunk has a failing sample"));
        }
        Ok(())
    }

    /// Output values for `n` samples, or [`ShmError::TooLarge`] when they overflow.
    pub(crate) fn output_len(&self, n: usize) -> Result<usize> {
        n.checked_mul(self.output_len_per_sample())
            .ok_or_else(|| ShmError::TooLarge {
                what: format!("the images of {n} samples ({:?})", self.output_shape(n)),
            })
    }

    /// Samples per task when nothing else says: a few tasks per thread for balance, each
    /// writing at most about 1 MiB so tasks stay short.
    fn auto_chunk(&self, n: usize, threads: usize) -> usize {
        let per_sample = (self.output_len_per_sample() * 8).max(1);
        let by_balance = n.div_ceil(threads.max(1) * 4);
        let by_size = ((1 << 20) / per_sample).max(1);
        by_balance.min(by_size).max(1)
    }

    /// The rayon engine behind the public transforms.
    fn run<I: Float, F: Float>(
        &self,
        samples: &[I],
        n: usize,
        out: &mut [F],
        chunk_size: usize,
    ) -> Result<()> {
        let (t, o) = (self.series_len, self.output_len_per_sample());
        check_len("input", n, t, samples.len())?;
        check_len("output", n, o, out.len())?;
        if n == 0 {
            return Ok(());
        }
        let chunk = chunk_size.clamp(1, n);
        let outcome = if chunk >= n {
            self.run_serial(samples, out.chunks_exact_mut(o), 0, None)
        } else {
            out.par_chunks_mut(chunk * o)
                .zip(samples.par_chunks(chunk * t))
                .enumerate()
                .try_for_each(|(k, (out, inp))| {
                    self.run_serial(inp, out.chunks_exact_mut(o), k * chunk, None)
                })
        };
        match outcome {
            Ok(()) => Ok(()),
            // Parallel tasks fail in any order; report the first bad sample instead.
            Err(err) => Err(self.first_error(samples, 0).unwrap_or(err)),
        }
    }

    /// Transforms consecutive samples into `images` (one slice per sample) on this thread.
    fn run_serial<'o, I: Float, F: Float>(
        &self,
        samples: &[I],
        images: impl Iterator<Item = &'o mut [F]>,
        first_index: usize,
        hook: Option<SampleHook<'_, F>>,
    ) -> Result<()> {
        let s = self.image_size;
        let mut angles = vec![0.0f64; 2 * s];
        let mut narrow = vec![F::default(); 2 * s];
        let rows = samples.chunks_exact(self.series_len);
        for (i, (series, image)) in rows.zip(images).enumerate() {
            let (cos, sin) = angles.split_at_mut(s);
            self.angles(series, first_index + i, cos, sin)?;
            for (n, &a) in narrow.iter_mut().zip(angles.iter()) {
                *n = F::from_f64(a);
            }
            let (cos, sin) = narrow.split_at(s);
            self.write_image(cos, sin, image);
            if let Some(hook) = hook {
                hook(first_index + i, image);
            }
        }
        Ok(())
    }

    /// Runs the validation part of the pipeline serially and returns the first error.
    fn first_error<I: Float>(&self, samples: &[I], first_index: usize) -> Option<ShmError> {
        let s = self.image_size;
        let (mut cos, mut sin) = (vec![0.0; s], vec![0.0; s]);
        samples
            .chunks_exact(self.series_len)
            .enumerate()
            .find_map(|(i, x)| self.angles(x, first_index + i, &mut cos, &mut sin).err())
    }

    /// PAA, scaling, and the two angle vectors of one series, in `f64`.
    fn angles<I: Float>(
        &self,
        series: &[I],
        sample: usize,
        cos: &mut [f64],
        sin: &mut [f64],
    ) -> Result<()> {
        if let Some((timestamp, value)) = series
            .iter()
            .map(|v| v.to_f64())
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(ShmError::NonFinite {
                sample,
                timestamp,
                value,
            });
        }
        match &self.windows {
            None => {
                for (c, v) in cos.iter_mut().zip(series) {
                    *c = v.to_f64();
                }
            }
            Some(windows) => {
                for (c, &(start, end)) in cos.iter_mut().zip(windows) {
                    // pyts's PAA is numba's np.mean: a sequential sum, then one division.
                    let mut sum = 0.0;
                    for v in &series[start..end] {
                        sum += v.to_f64();
                    }
                    *c = sum / (end - start) as f64;
                }
            }
        }
        match self.config.sample_range {
            Some((low, high)) => {
                let (min, max) = cos
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                // scikit-learn's `_handle_zeros_in_scale`: a near-zero range counts as 1,
                // so a constant series lands on the low end of the range.
                let range = max - min;
                let range = if range < 10.0 * f64::EPSILON {
                    1.0
                } else {
                    range
                };
                let scale = (high - low) / range;
                let offset = low - min * scale;
                for c in cos.iter_mut() {
                    *c = *c * scale + offset;
                }
            }
            None => {
                if let Some(&value) = cos.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
                    return Err(ShmError::ValueOutOfUnitRange { sample, value });
                }
            }
        }
        for (s, &c) in sin.iter_mut().zip(cos.iter()) {
            *s = (1.0 - c * c).clamp(0.0, 1.0).sqrt();
        }
        Ok(())
    }

    fn write_image<F: Float>(&self, cos: &[F], sin: &[F], image: &mut [F]) {
        let plane = self.image_size * self.image_size;
        match self.config.method {
            Method::Summation => outer_difference(cos, cos, sin, sin, image),
            Method::Difference => outer_difference(sin, cos, cos, sin, image),
            Method::Both => {
                let (gasf, gadf) = image.split_at_mut(plane);
                outer_difference(cos, cos, sin, sin, gasf);
                outer_difference(sin, cos, cos, sin, gadf);
            }
        }
    }
}

/// `out[i][j] = a[i]·b[j] − c[i]·d[j]`, row by row; `out` is `a.len() × b.len()`.
///
/// The inner loop runs over equal-length contiguous slices, so it compiles to bounds-check
/// free SIMD multiplies and subtractions (no fused multiply-add, matching NumPy's rounding).
#[inline]
fn outer_difference<F: Float>(a: &[F], b: &[F], c: &[F], d: &[F], out: &mut [F]) {
    let s = b.len();
    let d = &d[..s];
    for ((row, &ai), &ci) in out.chunks_exact_mut(s).zip(a).zip(c) {
        for ((o, &bj), &dj) in row.iter_mut().zip(b).zip(d) {
            *o = ai * bj - ci * dj;
        }
    }
}

/// Checks that a buffer of `actual` values holds `n` rows of `per_row` values; a
/// product that overflows can match no buffer.
pub(crate) fn check_len(what: &'static str, n: usize, per_row: usize, actual: usize) -> Result<()> {
    match n.checked_mul(per_row) {
        Some(expected) if expected == actual => Ok(()),
        expected => Err(ShmError::LengthMismatch {
            what,
            expected: expected.unwrap_or(usize::MAX),
            actual,
        }),
    }
}

/// `linspace(0, stop, num)` truncated to integers, as NumPy computes it: the step
/// `stop / (num - 1)` first, in `f64`, then `j × step`, and the last point exactly `stop`.
fn linspace_trunc(stop: usize, num: usize) -> Vec<usize> {
    if num == 1 {
        return vec![0];
    }
    let step = stop as f64 / (num - 1) as f64;
    let mut points: Vec<usize> = (0..num)
        .map(|j| {
            if step == 0.0 {
                0
            } else {
                // Non-negative and at most `stop`, so truncation is the int64 cast.
                (j as f64 * step) as usize
            }
        })
        .collect();
    points[num - 1] = stop;
    points
}

/// pyts's `segmentation(..., overlapping=False)`: `size` variable-length disjoint windows.
fn disjoint_windows(len: usize, size: usize) -> Vec<(usize, usize)> {
    let bounds = linspace_trunc(len, size + 1);
    bounds.windows(2).map(|w| (w[0], w[1])).collect()
}

/// pyts's `segmentation(..., overlapping=True)`: windows of `ceil(len / size)` timestamps,
/// shifted left by evenly spread overlaps so the last one ends at `len`.
fn overlapping_windows(len: usize, size: usize) -> Vec<(usize, usize)> {
    let window = len.div_ceil(size);
    let overlaps = linspace_trunc(size * window - len, size);
    overlaps
        .iter()
        .enumerate()
        .map(|(j, &shift)| (j * window - shift, (j + 1) * window - shift))
        .collect()
}
