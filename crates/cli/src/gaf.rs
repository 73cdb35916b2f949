//! `memwarden gaf INPUT.npy --out OUTPUT.npy`: time series to Gramian Angular Field
//! images, streamed through a ring of shared-memory slots into an `.npy` file, or
//! written whole into a named shared-memory segment (`--shm NAME`).

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use memwarden::shm::npy::{self, NpyData, NpyFile};
use memwarden::shm::{
    Backing, Float, Gaf, GafConfig, GafLoader, ImageSize, LoaderConfig, Method, SegmentOptions,
    SharedSegment,
};

/// Arguments of `memwarden gaf`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The series: a 2-D `.npy` of float32 or float64, one series per row.
    input: PathBuf,
    /// Write the images to this `.npy` file (through a temporary name).
    #[arg(long, required_unless_present = "shm", conflicts_with = "shm")]
    out: Option<PathBuf>,
    /// Write the images, as a complete `.npy`, into this named shared-memory segment
    /// (`/dev/shm/NAME`), which stays for another process to read.
    #[arg(long, value_name = "NAME")]
    shm: Option<String>,
    /// Side of each image: a whole number, or a fraction of the series length (`0.5`).
    #[arg(long, default_value = "1.0", value_parser = parse_image_size)]
    image_size: ImageSize,
    /// GASF (`summation`), GADF (`difference`), or both as two channels.
    #[arg(long, default_value = "summation", value_parser = parse_method)]
    method: Method,
    /// The range each series is scaled into (`A,B`), or `none` when the values already
    /// lie in [-1, 1].
    #[arg(long, default_value = "-1,1", value_parser = parse_range, allow_hyphen_values = true)]
    sample_range: SampleRange,
    /// Overlapping PAA windows of a fixed width, as pyts's `overlapping=True`.
    #[arg(long)]
    overlapping: bool,
    /// Store each image as one flat row.
    #[arg(long)]
    flatten: bool,
    /// Element type of the images.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Worker threads, 1 to 4096 (default: the CPUs this process may use).
    #[arg(long, value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// Samples per parallel task (default: from the cache size and the image size).
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Samples per batch of the ring (default: from a 16 MiB ring).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Keep the ring's slots on the heap instead of in `/dev/shm`.
    #[arg(long, conflicts_with = "shm")]
    no_shared_memory: bool,
    /// Process only shard I of N equal ranges of samples (`I/N`, I counted from 0), so a
    /// batch system can fan a dataset out; the output holds just that range.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Dtype {
    F32,
    F64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct SampleRange(Option<(f64, f64)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The samples of `n` this shard covers.
    fn range(self, n: usize) -> std::ops::Range<usize> {
        let at = |i: usize| (n as u128 * i as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

fn parse_image_size(s: &str) -> Result<ImageSize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return Ok(ImageSize::Fixed(n));
    }
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(ImageSize::Fraction(f)),
        _ => Err(format!(
            "`{s}` is neither a whole number nor a fraction in (0, 1]"
        )),
    }
}

/// Most worker threads `--jobs` accepts: the scheduler's limit.
const MAX_JOBS: usize = memwarden::sched::MAX_JOBS;

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(jobs @ 1..=MAX_JOBS) => Ok(jobs),
        _ => Err(format!("`{s}` is not a thread count in 1..={MAX_JOBS}")),
    }
}

fn parse_method(s: &str) -> Result<Method, String> {
    s.parse::<Method>().map_err(|e| e.to_string())
}

fn parse_range(s: &str) -> Result<SampleRange, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(SampleRange(None));
    }
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}` is not A,B or none"))?;
    let num = |t: &str| {
        t.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{t}` in `{s}` is not a finite number"))
    };
    Ok(SampleRange(Some((num(a)?, num(b)?))))
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not I/N"))?;
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{t}` in `{s}` is not a whole number"))
    };
    let (index, count) = (num(i)?, num(n)?);
    if count == 0 || index >= count {
        return Err(format!(
            "shard `{s}`: I counts from 0 and must be below N (N at least 1)"
        ));
    }
    Ok(Shard { index, count })
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if args.chunk_size == Some(0) || args.batch_size == Some(0) {
        bail!("--chunk-size and --batch-size must be at least 1");
    }
    let input = NpyFile::open(&args.input)?;
    let (n, t) = match *input.shape() {
        [n, t] => (n, t),
        [t] => (1, t),
        ref other => bail!(
            "{}: expected a 2-D array (samples, timestamps), found shape {other:?}",
            args.input.display()
        ),
    };
    let config = GafConfig {
        image_size: args.image_size,
        sample_range: args.sample_range.0,
        method: args.method,
        overlapping: args.overlapping,
        flatten: args.flatten,
    };
    let gaf = Gaf::new(config, t).with_context(|| format!("{}", args.input.display()))?;
    let samples = args.shard.map_or(0..n, |s| s.range(n));
    match (input.data(), args.dtype) {
        (NpyData::F32(x), Dtype::F32) => run_typed::<f32, f32>(args, gaf, &x, t, samples),
        (NpyData::F32(x), Dtype::F64) => run_typed::<f32, f64>(args, gaf, &x, t, samples),
        (NpyData::F64(x), Dtype::F32) => run_typed::<f64, f32>(args, gaf, &x, t, samples),
        (NpyData::F64(x), Dtype::F64) => run_typed::<f64, f64>(args, gaf, &x, t, samples),
    }
}

fn run_typed<I: Float, F: Float>(
    args: &Args,
    gaf: Gaf,
    data: &[I],
    t: usize,
    samples: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    // In range: the file holds `n × t` values (its size was checked against the
    // shape) and the shard's samples lie within `0..n`.
    let rows = &data[samples.start * t..samples.end * t];
    let count = samples.len();
    let shape = gaf.output_shape(count);
    if let Some(name) = &args.shm {
        return into_segment::<I, F>(args, &gaf, rows, count, samples.start, name, &shape);
    }
    let out = args
        .out
        .as_deref()
        .expect("clap requires --out without --shm");
    let mut loader_config = LoaderConfig::new();
    if let Some(jobs) = args.jobs {
        loader_config = loader_config.with_workers(jobs);
    }
    if let Some(chunk) = args.chunk_size {
        loader_config = loader_config.with_chunk_size(chunk);
    }
    if let Some(batch) = args.batch_size {
        loader_config = loader_config.with_batch_size(batch);
    }
    if args.no_shared_memory {
        loader_config =
            loader_config.with_segment_options(SegmentOptions::new().with_start(Backing::Heap));
    }
    let first = samples.start;
    let loader = GafLoader::<I, F>::new(gaf, rows, count, loader_config)
        .with_context(|| format!("{}", args.input.display()))?;
    let plan = *loader.plan();
    log::info!(
        "{count} samples of {t} -> {shape:?}: {} workers, {} samples per task, {} per batch, {} slots",
        plan.workers,
        plan.chunk_size,
        plan.batch_size,
        plan.ring_slots
    );
    let progress = progress_bar(count as u64);
    let header = npy::encode_header(F::DTYPE, &shape);
    // Neither product overflows: `Gaf::new` checked one image's bytes and the loader a
    // batch's; the whole output is checked here, before anything is created.
    let image_bytes = loader.gaf().output_len_per_sample() * std::mem::size_of::<F>();
    let total = (count as u64)
        .checked_mul(image_bytes as u64)
        .and_then(|data| data.checked_add(header.len() as u64))
        .with_context(|| {
            format!(
                "{}: {count} images of shape {shape:?} do not fit in a file",
                args.input.display()
            )
        })?;
    crate::output::write_atomic(out, |tmp| {
        let file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.set_len(total)
            .and_then(|()| file.write_all_at(&header, 0))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        for batch in loader.batches() {
            let batch = batch.map_err(|e| in_input(args, e, first))?;
            let at = header.len() + batch.samples().start * image_bytes;
            file.write_all_at(memwarden::shm::as_bytes(batch.images()), at as u64)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            progress.inc(batch.len() as u64);
        }
        // No fsync: the rename makes the output whole-or-absent for any reader; waiting
        // for gigabytes to reach the disk would only slow the command down.
        Ok(())
    })?;
    progress.finish_and_clear();
    eprintln!(
        "wrote {} ({} images, shape {shape:?}, {}, slots in {})",
        out.display(),
        count,
        F::DTYPE.descr(),
        loader
            .backing()
            .map_or("nowhere (no samples)", Backing::as_str)
    );
    Ok(())
}

/// `--shm NAME`: the whole output as one `.npy` in a named segment, kept after exit.
fn into_segment<I: Float, F: Float>(
    args: &Args,
    gaf: &Gaf,
    rows: &[I],
    count: usize,
    first: usize,
    name: &str,
    shape: &[usize],
) -> anyhow::Result<()> {
    let options = SegmentOptions::new().with_fallback(false);
    let mut segment = SharedSegment::create_npy::<F>(name, shape, &options).map_err(|e| {
        let exists = matches!(&e, memwarden::shm::ShmError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists);
        let e = anyhow::Error::from(e);
        if exists {
            // Never overwritten: it may be another run's output, still being read.
            e.context(format!(
                "segment {name:?} already exists; remove it or choose another --shm name"
            ))
        } else {
            e
        }
    })?;
    let mut builder = memwarden::sched::ParallelScheduler::builder();
    if let Some(jobs) = args.jobs {
        builder = builder.jobs(jobs);
    }
    if let Some(chunk) = args.chunk_size {
        builder = builder.chunk_size(chunk);
    }
    let sched = builder.build()?;
    gaf.transform_into_with(&sched, rows, count, segment.npy_data_mut::<F>()?)
        .map_err(|e| in_input(args, e, first))?;
    // On an error above, `segment` drops here and its owner unlinks it.
    let path = segment.persist()?;
    eprintln!(
        "wrote {count} images, shape {shape:?}, into {}; read it with numpy.load({:?}, mmap_mode=\"r\") and remove it when done",
        path.display(),
        path.display().to_string()
    );
    Ok(())
}

/// A transform error, named by the input file. Within a shard, sample indices count
/// from the shard's first row; the user thinks in rows of the file, so say where that is.
fn in_input(args: &Args, e: memwarden::shm::ShmError, first: usize) -> anyhow::Error {
    let shard = if first == 0 {
        String::new()
    } else {
        format!(" (sample indices count from row {first}, where this shard starts)")
    };
    anyhow::Error::from(e).context(format!("{}{shard}", args.input.display()))
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_sample_once() {
        for n in [0, 1, 7, 100, 4001] {
            for count in 1..=9 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard { index, count }.range(n);
                    assert_eq!(r.start, next, "n={n} shard {index}/{count}");
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse_shard("3/3").is_err());
        assert!(parse_shard("0/0").is_err());
        assert!(parse_shard("1").is_err());
        assert_eq!(parse_shard("2/5"), Ok(Shard { index: 2, count: 5 }));
        assert!(parse_range("1").is_err());
        assert!(parse_range("a,1").is_err());
        assert_eq!(parse_range("none"), Ok(SampleRange(None)));
        assert_eq!(parse_range("-1,1"), Ok(SampleRange(Some((-1.0, 1.0)))));
        assert!(parse_image_size("0").is_ok()); // refused by Gaf::new, with its message
        assert_eq!(parse_jobs("4096"), Ok(4096));
        for jobs in ["0", "4097", "18446744073709551615", "-1", "two"] {
            assert!(parse_jobs(jobs).is_err(), "{jobs}");
        }
        assert!(parse_image_size("1.5").is_err());
        assert_eq!(parse_image_size("0.5"), Ok(ImageSize::Fraction(0.5)));
    }
}
