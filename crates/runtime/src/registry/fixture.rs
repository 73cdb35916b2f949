//! Writers of sample model files, for demos, tests and benchmarks (feature `fixtures`).

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

use memwarden_core::fs::{AtomicFile, Durability};

use super::safetensors::{Dtype, len_u64};

// ---------------------------------------------------------------------------------------
// Writing model files
// ---------------------------------------------------------------------------------------

/// Columns of a generated `F32` layer: rows of 4 KiB.
const LAYER_COLS: usize = 1024;
/// The most bytes of one generated `F32` layer.
const LAYER_BYTES: u64 = 4 << 20;
/// Columns of the generated `F16` embedding: rows of 512 bytes.
const EMBED_COLS: usize = 256;
/// The generator's write buffer.
const WRITE_CHUNK: usize = 256 << 10;

/// A tensor [`write_model_file`] will write.
struct Planned {
    name: String,
    dtype: Dtype,
    shape: [usize; 2],
    bytes: u64,
}

/// Splits `data_len` (a multiple of 8) into an `F16` embedding of up to an eighth of it,
/// `F32` layers of up to 4 MiB, and an `F32` tail.
fn plan_tensors(data_len: u64) -> Vec<Planned> {
    let row = |cols: usize, dtype: Dtype| len_u64(cols * dtype.size());
    let mut planned = Vec::new();
    let mut rest = data_len;
    let embed_row = row(EMBED_COLS, Dtype::F16);
    let embed = (rest / 8).min(LAYER_BYTES) / embed_row * embed_row;
    if embed > 0 {
        planned.push(Planned {
            name: "embed.weight".into(),
            dtype: Dtype::F16,
            shape: [(embed / embed_row) as usize, EMBED_COLS],
            bytes: embed,
        });
        rest -= embed;
    }
    let layer_row = row(LAYER_COLS, Dtype::F32);
    while rest >= layer_row {
        let bytes = rest.min(LAYER_BYTES) / layer_row * layer_row;
        planned.push(Planned {
            name: format!("layers.{}.weight", planned.len() - usize::from(embed > 0)),
            dtype: Dtype::F32,
            shape: [(bytes / layer_row) as usize, LAYER_COLS],
            bytes,
        });
        rest -= bytes;
    }
    if rest > 0 {
        planned.push(Planned {
            name: "head.bias".into(),
            dtype: Dtype::F32,
            shape: [1, (rest / 4) as usize],
            bytes: rest,
        });
    }
    planned
}

fn header_json(tensors: &[Planned], seed: u64) -> String {
    let mut json =
        format!(r#"{{"__metadata__":{{"format":"pt","generator":"memwarden","seed":"{seed}"}}"#);
    let mut offset = 0;
    for t in tensors {
        json.push_str(&format!(
            r#","{}":{{"dtype":"{}","shape":[{},{}],"data_offsets":[{},{}]}}"#,
            t.name,
            t.dtype,
            t.shape[0],
            t.shape[1],
            offset,
            offset + t.bytes
        ));
        offset += t.bytes;
    }
    json.push('}');
    json
}

/// The header (padded with spaces) and tensors of a `total`-byte file, if one fits.
fn layout(total: u64, seed: u64) -> Result<(String, Vec<Planned>), u64> {
    let minimum = 8 + len_u64(header_json(&[], seed).len());
    if total < minimum {
        return Err(minimum);
    }
    let mut data_len = (total - minimum) / 8 * 8;
    loop {
        let tensors = plan_tensors(data_len);
        let mut json = header_json(&tensors, seed);
        let room = total - 8 - data_len;
        let len = len_u64(json.len());
        if len <= room {
            // Room is below `total`, and the header is built in memory: it fits a usize.
            json.extend(std::iter::repeat_n(' ', (room - len) as usize));
            return Ok((json, tensors));
        }
        data_len = data_len.saturating_sub((len - room).div_ceil(8) * 8);
    }
}

/// Writes a valid safetensors model file of exactly `total_bytes` bytes at `path`, with
/// pseudo-random weights determined by `seed`.
///
/// The tensors are an `F16` embedding `embed.weight` (`[rows, 256]`, about an eighth of the
/// data, at most 4 MiB), `F32` layers `layers.{i}.weight` (`[rows, 1024]`, 4 MiB each but
/// the last) and, when bytes are left, an `F32` `head.bias` (`[1, n]`); values are in
/// `-0.5..0.5`. The header is padded with spaces so that the file has the size asked for;
/// when `total_bytes` is a multiple of 8, so is the data's offset. The file is streamed
/// (no buffer of its size is built), written to a temporary name in the same directory,
/// synced and renamed over `path`, so no reader ever sees half a file.
///
/// Fails with an [`io::ErrorKind::InvalidInput`] error below the size of a header with no
/// tensors (about 80 bytes), and with the error of the write that failed otherwise (which
/// leaves `path` as it was).
pub fn write_model_file(path: impl AsRef<Path>, total_bytes: u64, seed: u64) -> io::Result<()> {
    let path = path.as_ref();
    let (header, tensors) = layout(total_bytes, seed).map_err(|minimum| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a model file of {total_bytes} bytes at {} cannot hold its header: {minimum} bytes at least",
                path.display()
            ),
        )
    })?;
    let mut out = AtomicFile::create(path)?;
    write_to(out.file(), &header, &tensors, seed).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", out.temp_path().display()),
        )
    })?;
    Ok(out.commit(Durability::Crash)?)
}

fn write_to(file: &mut File, header: &str, tensors: &[Planned], seed: u64) -> io::Result<()> {
    file.write_all(&len_u64(header.len()).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    let mut chunk = vec![0u8; WRITE_CHUNK];
    for (i, t) in tensors.iter().enumerate() {
        let mut rng = SplitMix(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut left = t.bytes;
        while left > 0 {
            // Below WRITE_CHUNK, a usize.
            let n = left.min(len_u64(chunk.len())) as usize;
            fill(&mut chunk[..n], t.dtype, &mut rng);
            file.write_all(&chunk[..n])?;
            left -= len_u64(n);
        }
    }
    Ok(())
}

/// Fills `out` (a multiple of 8 bytes) with little-endian values in `-0.5..0.5`.
fn fill(out: &mut [u8], dtype: Dtype, rng: &mut SplitMix) {
    for word in out.chunks_exact_mut(8) {
        let r = rng.next();
        let floats = [r >> 41, (r >> 9) & 0x7f_ffff].map(|m| {
            // 23 random mantissa bits: a float in 1..2, moved to -0.5..0.5.
            f32::from_bits(0x3f80_0000 | m as u32) - 1.5
        });
        match dtype {
            Dtype::F16 => {
                let r2 = rng.next();
                let more = [r2 >> 41, (r2 >> 9) & 0x7f_ffff]
                    .map(|m| f32::from_bits(0x3f80_0000 | m as u32) - 1.5);
                for (bytes, x) in word.chunks_exact_mut(2).zip(floats.into_iter().chain(more)) {
                    bytes.copy_from_slice(&f16_bits(x).to_le_bytes());
                }
            }
            _ => {
                for (bytes, x) in word.chunks_exact_mut(4).zip(floats) {
                    bytes.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
}

/// `x` as IEEE half-precision bits, truncating the mantissa; magnitudes below the
/// smallest normal half flush to zero (`x` is in `-0.5..0.5`, so nothing overflows).
fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    if exponent <= 0 {
        return sign;
    }
    sign | ((exponent as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
}

/// The splitmix64 generator: fast, and fully determined by its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fill_the_size_asked_for() {
        for total in [
            88,
            89,
            100,
            4096,
            4097,
            (1 << 20) + 3,
            (3 << 20) + 8,
            64 << 20,
        ] {
            let Ok((header, tensors)) = layout(total, 7) else {
                panic!("{total} bytes should fit a header");
            };
            let data: u64 = tensors.iter().map(|t| t.bytes).sum();
            assert_eq!(8 + len_u64(header.len()) + data, total, "{total}");
            assert_eq!(data % 8, 0, "{total}");
            for t in &tensors {
                let elements = len_u64(t.shape[0] * t.shape[1]);
                assert_eq!(elements * len_u64(t.dtype.size()), t.bytes, "{}", t.name);
            }
            // Padding is at most what dropping the last tensor's entry freed.
            assert!(header.len() - header.trim_end().len() < 128, "{total}");
        }
        assert_eq!(
            layout(10, 0).err(),
            Some(8 + len_u64(header_json(&[], 0).len()))
        );
    }

    #[test]
    fn f16_conversion_matches_known_values() {
        for (x, bits) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (0.5, 0x3800),
            (-0.25, 0xb400),
            (0.333_333_34, 0x3555),
            (1e-9, 0x0000),
        ] {
            assert_eq!(f16_bits(x), bits, "{x}");
        }
    }
}
