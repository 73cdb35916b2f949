//! Ready codecs for in-memory kinds: [`RenderFrame`] (render_cache), [`AudioClip`] (audio_cache) and [`SubtitleIndex`] (subtitle_index).
//!
//! All three write little-endian fixed-width fields and length-prefixed sequences, and
//! reject truncated input, trailing bytes, unknown tags and invalid UTF-8 on decode.

use serde::{Deserialize, Serialize};

use crate::codec::{Reader, check_version, len_u64};
use crate::{Snapshot, SnapshotError};

/// How the pixels of a [`RenderFrame`] are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PixelFormat {
    /// 8-bit red, green, blue, alpha; 4 bytes per pixel.
    Rgba8,
    /// 8-bit blue, green, red, alpha; 4 bytes per pixel.
    Bgra8,
    /// 8-bit red, green, blue; 3 bytes per pixel.
    Rgb8,
    /// 8-bit luma only; 1 byte per pixel.
    Gray8,
    /// Planar YUV 4:2:0 (I420): a full luma plane then quarter-size U and V planes.
    Yuv420p,
    /// Semi-planar YUV 4:2:0: a full luma plane then one interleaved UV plane.
    Nv12,
}

impl PixelFormat {
    /// Every format, in tag order.
    pub const ALL: [PixelFormat; 6] = [
        PixelFormat::Rgba8,
        PixelFormat::Bgra8,
        PixelFormat::Rgb8,
        PixelFormat::Gray8,
        PixelFormat::Yuv420p,
        PixelFormat::Nv12,
    ];

    fn tag(self) -> u8 {
        match self {
            PixelFormat::Rgba8 => 0,
            PixelFormat::Bgra8 => 1,
            PixelFormat::Rgb8 => 2,
            PixelFormat::Gray8 => 3,
            PixelFormat::Yuv420p => 4,
            PixelFormat::Nv12 => 5,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.get(usize::from(tag)).copied()
    }
}

/// One rendered video frame (kind `render_cache`): the raw pixel bytes and their metadata.
///
/// The codec stores the frame as it is; it does not check that `pixels` matches the
/// dimensions, stride and format (a frame may carry padding or several planes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from the start of one row to the next (of the first plane).
    pub stride: u32,
    /// Pixel layout.
    pub format: PixelFormat,
    /// The frame's index in its stream.
    pub index: u64,
    /// Presentation timestamp in microseconds (may be negative, as in most containers).
    pub pts_us: i64,
    /// The raw pixel bytes.
    pub pixels: Vec<u8>,
}

impl Snapshot for RenderFrame {
    const VERSION: u32 = 1;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        out.reserve(41 + self.pixels.len());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.stride.to_le_bytes());
        out.push(self.format.tag());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.pts_us.to_le_bytes());
        out.extend_from_slice(&len_u64(self.pixels.len()).to_le_bytes());
        out.extend_from_slice(&self.pixels);
        Ok(())
    }

    fn decode(bytes: &[u8], version: u32) -> Result<Self, SnapshotError> {
        const NAME: &str = "RenderFrame";
        check_version::<Self>(NAME, version)?;
        let mut r = Reader::new(bytes, NAME);
        let width = r.u32("width")?;
        let height = r.u32("height")?;
        let stride = r.u32("stride")?;
        let tag = r.u8("pixel format")?;
        let format = PixelFormat::from_tag(tag)
            .ok_or_else(|| SnapshotError::malformed(NAME, format!("unknown pixel format {tag}")))?;
        let index = r.u64("frame index")?;
        let pts_us = r.i64("timestamp")?;
        let n = r.len("pixels", 1)?;
        let pixels = r.take(n, "pixels")?.to_vec();
        r.finish()?;
        Ok(RenderFrame {
            width,
            height,
            stride,
            format,
            index,
            pts_us,
            pixels,
        })
    }
}

/// Decoded audio (kind `audio_cache`): interleaved `f32` samples.
///
/// Samples round-trip bit for bit (NaN payloads and signed zeros included). `channels`
/// must be at least 1 and divide the number of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioClip {
    /// Samples per second, per channel.
    pub sample_rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Interleaved samples: frame after frame, one sample per channel in each.
    pub samples: Vec<f32>,
}

impl AudioClip {
    fn check(channels: u16, samples: usize) -> Result<(), SnapshotError> {
        if channels == 0 {
            return Err(SnapshotError::malformed("AudioClip", "zero channels"));
        }
        if !samples.is_multiple_of(usize::from(channels)) {
            return Err(SnapshotError::malformed(
                "AudioClip",
                format!("{samples} samples do not divide into {channels} channels"),
            ));
        }
        Ok(())
    }
}

impl Snapshot for AudioClip {
    const VERSION: u32 = 1;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        Self::check(self.channels, self.samples.len())?;
        out.reserve(14 + 4 * self.samples.len());
        out.extend_from_slice(&self.sample_rate.to_le_bytes());
        out.extend_from_slice(&self.channels.to_le_bytes());
        out.extend_from_slice(&len_u64(self.samples.len()).to_le_bytes());
        for s in &self.samples {
            out.extend_from_slice(&s.to_bits().to_le_bytes());
        }
        Ok(())
    }

    fn decode(bytes: &[u8], version: u32) -> Result<Self, SnapshotError> {
        const NAME: &str = "AudioClip";
        check_version::<Self>(NAME, version)?;
        let mut r = Reader::new(bytes, NAME);
        let sample_rate = r.u32("sample rate")?;
        let channels = r.u16("channels")?;
        let n = r.len("samples", 4)?;
        Self::check(channels, n)?;
        let samples = r
            .take(n * 4, "samples")?
            .chunks_exact(4)
            .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        r.finish()?;
        Ok(AudioClip {
            sample_rate,
            channels,
            samples,
        })
    }
}

/// One subtitle: when it shows and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtitleEntry {
    /// Start, in milliseconds from the beginning of the media.
    pub start_ms: u64,
    /// End, in milliseconds from the beginning of the media.
    pub end_ms: u64,
    /// The text shown.
    pub text: String,
}

/// A subtitle index (kind `subtitle_index`): its entries, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtitleIndex {
    /// The entries.
    pub entries: Vec<SubtitleEntry>,
}

impl Snapshot for SubtitleIndex {
    const VERSION: u32 = 1;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        out.extend_from_slice(&len_u64(self.entries.len()).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.start_ms.to_le_bytes());
            out.extend_from_slice(&e.end_ms.to_le_bytes());
            out.extend_from_slice(&len_u64(e.text.len()).to_le_bytes());
            out.extend_from_slice(e.text.as_bytes());
        }
        Ok(())
    }

    fn decode(bytes: &[u8], version: u32) -> Result<Self, SnapshotError> {
        const NAME: &str = "SubtitleIndex";
        check_version::<Self>(NAME, version)?;
        let mut r = Reader::new(bytes, NAME);
        // Each entry takes at least 24 bytes, which bounds the allocation below.
        let n = r.len("entries", 24)?;
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let start_ms = r.u64("start")?;
            let end_ms = r.u64("end")?;
            let len = r.len("text", 1)?;
            let text = std::str::from_utf8(r.take(len, "text")?)
                .map_err(|e| SnapshotError::malformed(NAME, format!("entry {i}: {e}")))?
                .to_owned();
            entries.push(SubtitleEntry {
                start_ms,
                end_ms,
                text,
            });
        }
        r.finish()?;
        Ok(SubtitleIndex { entries })
    }
}
