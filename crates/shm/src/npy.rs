//! Reading and writing NumPy `.npy` files (format 1.0; 2.0 and 3.0 are read too).
//!
//! Only what this crate needs: C-ordered little-endian `f32` / `f64` arrays. Headers are
//! padded so the data starts at a multiple of 64 bytes, as NumPy itself does, which
//! keeps the data aligned for zero-copy views when the file is memory-mapped. Input
//! arrays are read through `mmap`, so a multi-gigabyte series file costs no copy.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{NpyProblem, Result, ShmError};
use crate::float::{self, Float};
use crate::mapped::{Claim, FileId};

/// The magic string every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Data offsets are multiples of this many bytes (NumPy's `ARRAY_ALIGN`).
pub const ALIGN: usize = 64;

/// Length of the fixed prefix of a version 1.0 file: magic, version, header length.
const PREFIX_V1: usize = 10;

/// Length of the fixed prefix of a version 2.0 file (a 4-byte header length), used,
/// as NumPy does, when a header does not fit version 1.0's 16-bit length.
const PREFIX_V2: usize = 12;

/// The element types this crate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// `<f4`, 32-bit float.
    F32,
    /// `<f8`, 64-bit float.
    F64,
}

impl Dtype {
    /// NumPy's `descr` string for this type.
    pub fn descr(self) -> &'static str {
        match self {
            Self::F32 => "<f4",
            Self::F64 => "<f8",
        }
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    fn from_descr(descr: &str) -> Option<Self> {
        match descr {
            "<f4" => Some(Self::F32),
            "<f8" => Some(Self::F64),
            _ => None,
        }
    }
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The element type.
    pub dtype: Dtype,
    /// The array's shape (C order).
    pub shape: Vec<usize>,
    /// Byte offset of the first element from the start of the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements (the product of the shape; 1 for a 0-d array). Saturates at
    /// `usize::MAX` for a shape too large to exist (which [`check_size`] refuses).
    pub fn elements(&self) -> usize {
        if self.shape.contains(&0) {
            return 0;
        }
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Bytes in the data section (saturating, as [`elements`](Self::elements)).
    pub fn data_bytes(&self) -> usize {
        data_len(self.dtype, &self.shape).unwrap_or(usize::MAX)
    }
}

/// Bytes of the data of an array of this dtype and shape; `None` when the product
/// overflows. A shape with a zero extent holds nothing, however large the others.
pub(crate) fn data_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
}

fn dict_text(dtype: Dtype, shape: &[usize]) -> String {
    let mut shape_text = String::from("(");
    for (i, dim) in shape.iter().enumerate() {
        if i > 0 {
            shape_text.push_str(", ");
        }
        let _ = write!(shape_text, "{dim}");
    }
    if shape.len() == 1 {
        shape_text.push(',');
    }
    shape_text.push(')');
    format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        dtype.descr()
    )
}

/// The prefix length and the total header length (prefix + dictionary + padding) of
/// a header whose dictionary is `dict_len` bytes: version 1.0 when its length fits 16
/// bits, else version 2.0, as NumPy chooses.
fn layout(dict_len: usize) -> (usize, usize) {
    let text = dict_len + 1; // the closing newline
    let padded = |prefix: usize| {
        let unpadded = prefix + text;
        // NumPy always pads, by a full ALIGN when the length is already a multiple.
        unpadded + (ALIGN - unpadded % ALIGN)
    };
    let v1 = padded(PREFIX_V1);
    if v1 - PREFIX_V1 <= usize::from(u16::MAX) {
        (PREFIX_V1, v1)
    } else {
        (PREFIX_V2, padded(PREFIX_V2))
    }
}

/// Total header length (prefix + dictionary + padding) for an array of this dtype and
/// shape; the data starts at this offset, a multiple of [`ALIGN`].
pub fn header_len(dtype: Dtype, shape: &[usize]) -> usize {
    layout(dict_text(dtype, shape).len()).1
}

/// The complete header for an array of this dtype and shape: magic, version, length,
/// the dictionary, spaces and a newline, [`header_len`] bytes in all. Version 1.0,
/// or 2.0 for a shape with so many dimensions that the header passes 64 KiB.
pub fn encode_header(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let dict = dict_text(dtype, shape);
    let (prefix, total) = layout(dict.len());
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    if prefix == PREFIX_V1 {
        let hlen = u16::try_from(total - prefix).expect("layout chose 1.0 because it fits");
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&hlen.to_le_bytes());
    } else {
        // A header of 4 GiB would need a shape of hundreds of millions of dimensions.
        let hlen = u32::try_from(total - prefix).unwrap_or(u32::MAX);
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&hlen.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Parses the header at the start of `bytes` (the file's first bytes, at least the whole
/// header). `path` only names the source in errors. The data size is not checked here;
/// see [`check_size`].
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<NpyHeader> {
    let fail = |problem| ShmError::npy(path, problem);
    let magic_seen = &bytes[..bytes.len().min(MAGIC.len())];
    if magic_seen != &MAGIC[..magic_seen.len()] {
        return Err(fail(NpyProblem::BadMagic));
    }
    if bytes.len() < PREFIX_V1 {
        return Err(fail(NpyProblem::Truncated));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (start, hlen) = match (major, minor) {
        (1, 0) => (
            PREFIX_V1,
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
        ),
        (2 | 3, 0) => {
            if bytes.len() < 12 {
                return Err(fail(NpyProblem::Truncated));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (
                12,
                usize::try_from(len).map_err(|_| fail(NpyProblem::Truncated))?,
            )
        }
        _ => return Err(fail(NpyProblem::UnsupportedVersion { major, minor })),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| fail(NpyProblem::Truncated))?;
    let raw = &bytes[start..end];
    let text: String = if major == 3 {
        std::str::from_utf8(raw)
            .map_err(|_| fail(NpyProblem::MalformedHeader("header is not UTF-8".into())))?
            .to_owned()
    } else {
        // Versions 1 and 2 are latin-1: every byte is the code point of the same value.
        raw.iter().map(|&b| char::from(b)).collect()
    };
    let dict = parse_dict(&text).map_err(|why| fail(NpyProblem::MalformedHeader(why)))?;
    let (descr, fortran, shape) = dict.into_fields().map_err(fail)?;
    let dtype =
        Dtype::from_descr(&descr).ok_or_else(|| fail(NpyProblem::UnsupportedDtype(descr)))?;
    if fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(fail(NpyProblem::FortranOrder));
    }
    Ok(NpyHeader {
        dtype,
        shape,
        data_offset: end,
    })
}

/// Checks that `file_len` bytes hold exactly the header plus its data.
pub fn check_size(header: &NpyHeader, file_len: u64, path: &Path) -> Result<()> {
    let expected = data_len(header.dtype, &header.shape)
        .map(|bytes| bytes as u64)
        .ok_or_else(|| {
            ShmError::npy(
                path,
                NpyProblem::MalformedHeader(format!("shape {:?} is too large", header.shape)),
            )
        })?;
    let actual = file_len.saturating_sub(header.data_offset as u64);
    if file_len < header.data_offset as u64 || actual != expected {
        return Err(ShmError::npy(
            path,
            NpyProblem::SizeMismatch { expected, actual },
        ));
    }
    Ok(())
}

/// Writes `data`, shaped as `shape`, to a new `.npy` file at `path`.
pub fn write<F: Float>(path: &Path, shape: &[usize], data: &[F]) -> Result<()> {
    let expected = data_len(F::DTYPE, shape).map(|bytes| bytes / F::DTYPE.size());
    if expected != Some(data.len()) {
        return Err(ShmError::LengthMismatch {
            what: "data",
            expected: expected.unwrap_or(usize::MAX),
            actual: data.len(),
        });
    }
    let mut file = File::create(path).map_err(|e| ShmError::io("create", path, e))?;
    file.write_all(&encode_header(F::DTYPE, shape))
        .and_then(|()| file.write_all(float::as_bytes(data)))
        .map_err(|e| ShmError::io("write", path, e))
}

/// An `.npy` file mapped read-only into memory.
///
/// Its views borrow the mapping, so the file must keep its length and bytes while the
/// value lives. Within this process that is enforced: a file a
/// [`SharedSegment`](crate::SharedSegment) maps cannot be opened as an `NpyFile` (nor a
/// segment opened over a file an `NpyFile` maps), see [`ShmError::AlreadyMapped`]; several
/// `NpyFile`s of one file are fine. For other processes it is a contract this crate cannot
/// enforce:
///
/// - **Truncation kills the reader.** A file cut short under the mapping makes any read
///   past its new end fault with `SIGBUS`, which ends the process; no Rust code can catch
///   it. [`open`](Self::open) checks the file against its header, so a file that was
///   already short is an error; a truncation after that cannot be caught.
/// - **Rewriting in place is a data race.** Bytes another process writes while a view is
///   borrowed change under a `&[u8]` that Rust assumes fixed: stale or torn values in
///   practice (every bit pattern is a valid `f32` / `f64`), undefined by the letter of
///   Rust's rules. Replace a file by renaming a new one over its path instead: an open
///   mapping keeps the old file.
#[derive(Debug)]
pub struct NpyFile {
    path: PathBuf,
    map: Mmap,
    header: NpyHeader,
    /// This process's right to map the file read-only; after `map`, so released after it.
    _claim: Claim,
}

/// The data of an [`NpyFile`], borrowed in place when aligned (always, for files NumPy
/// or this crate wrote), copied otherwise.
#[derive(Debug)]
pub enum NpyData<'a> {
    /// `<f4` data.
    F32(Cow<'a, [f32]>),
    /// `<f8` data.
    F64(Cow<'a, [f64]>),
}

impl NpyFile {
    /// Opens and maps `path` (a regular file), parsing and checking its header and size.
    ///
    /// The file must not be truncated or rewritten by another process while this value
    /// lives: as with any memory-mapped file, reading past a new end faults (`SIGBUS`),
    /// and rewritten bytes change under the borrowed data (see the type's docs). A file a
    /// [`SharedSegment`](crate::SharedSegment) of this process maps is
    /// [`ShmError::AlreadyMapped`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Checked before opening: opening a FIFO for reading would block until some
        // writer appears, and devices have no size to check against the header.
        let not_regular = || {
            ShmError::io(
                "open",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (a directory, device or FIFO)",
                ),
            )
        };
        let meta = std::fs::metadata(path).map_err(|e| ShmError::io("open", path, e))?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        // Non-blocking and checked again on the opened file: a FIFO swapped in for the
        // file since the check neither blocks the open nor gets mapped.
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|e| ShmError::io("open", path, e))?
        };
        let meta = file.metadata().map_err(|e| ShmError::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        if meta.len() == 0 {
            return Err(ShmError::npy(path, NpyProblem::Truncated));
        }
        let claim = Claim::shared(FileId::of(&meta)).map_err(|holder| ShmError::AlreadyMapped {
            name: path.display().to_string(),
            holder,
        })?;
        // SAFETY: a read-only shared mapping of the regular file we just opened, of its
        // current length; we only ever read it as bytes (or as f32/f64, valid for any
        // bits). No writable mapping of the file exists in this process while it lives:
        // `claim` shares the file's device and inode with read-only mappings only.
        // Truncation or rewriting by another process while it is mapped is excluded by
        // the documented contract of `NpyFile` (nothing here can prevent it).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ShmError::io("map", path, e))?;
        let header = parse_header(&map, path)?;
        // The mapping's length, not the `stat` above: the file may have changed in
        // between, and the data views are cut from the mapping.
        check_size(&header, map.len() as u64, path)?;
        Ok(Self {
            path: path.to_owned(),
            map,
            header,
            _claim: claim,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.header.shape
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bytes(&self) -> &[u8] {
        &self.map[self.header.data_offset..]
    }

    /// The data, typed by the header's dtype.
    pub fn data(&self) -> NpyData<'_> {
        match self.header.dtype {
            Dtype::F32 => NpyData::F32(typed(self.bytes())),
            Dtype::F64 => NpyData::F64(typed(self.bytes())),
        }
    }

    /// The data as `F`; an error when the file holds the other dtype.
    pub fn data_as<F: Float>(&self) -> Result<Cow<'_, [F]>> {
        if self.header.dtype != F::DTYPE {
            return Err(ShmError::npy(
                &self.path,
                NpyProblem::WrongArray(format!(
                    "holds {} data, {} was asked for",
                    self.header.dtype.descr(),
                    F::DTYPE.descr()
                )),
            ));
        }
        Ok(typed(self.bytes()))
    }
}

fn typed<F: Float>(bytes: &[u8]) -> Cow<'_, [F]> {
    match float::from_bytes(bytes) {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(float::decode(bytes)),
    }
}

// --- a parser for the small Python-literal dictionary in the header -------------------

enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// A list (a structured dtype's descr), kept as raw text for the error message.
    Other(String),
}

struct Dict(Vec<(String, Value)>);

impl Dict {
    fn into_fields(self) -> std::result::Result<(String, bool, Vec<usize>), NpyProblem> {
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        for (key, value) in self.0 {
            let slot_taken = match (key.as_str(), value) {
                ("descr", Value::Str(s)) => descr.replace(s).is_some(),
                ("descr", Value::Other(raw)) => return Err(NpyProblem::UnsupportedDtype(raw)),
                ("descr", _) => {
                    return Err(NpyProblem::MalformedHeader(
                        "'descr' has the wrong type".into(),
                    ));
                }
                ("fortran_order", Value::Bool(b)) => fortran.replace(b).is_some(),
                ("shape", Value::Tuple(t)) => shape.replace(t).is_some(),
                ("fortran_order" | "shape", _) => {
                    return Err(NpyProblem::MalformedHeader(format!(
                        "'{key}' has the wrong type"
                    )));
                }
                _ => {
                    return Err(NpyProblem::MalformedHeader(format!(
                        "unexpected key '{key}'"
                    )));
                }
            };
            if slot_taken {
                return Err(NpyProblem::MalformedHeader(format!(
                    "key '{key}' appears twice"
                )));
            }
        }
        let missing = |k: &str| NpyProblem::MalformedHeader(format!("missing key '{k}'"));
        Ok((
            descr.ok_or_else(|| missing("descr"))?,
            fortran.ok_or_else(|| missing("fortran_order"))?,
            shape.ok_or_else(|| missing("shape"))?,
        ))
    }
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{c}' at {:?}", self.snippet()))
        }
    }

    fn snippet(&self) -> &'a str {
        let end = self
            .rest
            .char_indices()
            .nth(20)
            .map_or(self.rest.len(), |(i, _)| i);
        &self.rest[..end]
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_ws();
        let Some(quote @ ('\'' | '"')) = self.rest.chars().next() else {
            return Err(format!("expected a quoted string at {:?}", self.snippet()));
        };
        let body = &self.rest[1..];
        let close = body
            .find(quote)
            .ok_or_else(|| "unterminated string".to_owned())?;
        let text = body[..close].to_owned();
        self.rest = &body[close + 1..];
        Ok(text)
    }

    fn word(&mut self) -> &'a str {
        self.skip_ws();
        let end = self
            .rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                return Ok(dims);
            }
            let word = self.word();
            // Python 2 wrote long integers with an `L` suffix.
            let digits = word.strip_suffix('L').unwrap_or(word);
            let dim = digits
                .parse::<usize>()
                .map_err(|_| format!("bad dimension {word:?} in shape"))?;
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')')?;
                if dims.len() == 1 {
                    // `(5)` is the integer 5 in Python, not a tuple.
                    return Err("a one-element shape needs a trailing comma".into());
                }
                return Ok(dims);
            }
        }
    }

    /// A bracketed list, returned as its raw text (quotes are not special-cased: the
    /// result only names the dtype in an error).
    fn list(&mut self) -> std::result::Result<String, String> {
        let mut depth = 0usize;
        for (i, c) in self.rest.char_indices() {
            match c {
                '[' | '(' => depth += 1,
                ']' | ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 {
                let (raw, rest) = self.rest.split_at(i + 1);
                self.rest = rest;
                return Ok(raw.to_owned());
            }
        }
        Err("unterminated list".into())
    }

    fn value(&mut self) -> std::result::Result<Value, String> {
        self.skip_ws();
        match self.rest.chars().next() {
            Some('\'' | '"') => self.string().map(Value::Str),
            Some('(') => self.tuple().map(Value::Tuple),
            Some('[') => self.list().map(Value::Other),
            _ => match self.word() {
                "True" => Ok(Value::Bool(true)),
                "False" => Ok(Value::Bool(false)),
                other => Err(format!("unexpected value {other:?}")),
            },
        }
    }
}

fn parse_dict(text: &str) -> std::result::Result<Dict, String> {
    let mut cur = Cursor { rest: text };
    cur.expect('{')?;
    let mut entries = Vec::new();
    loop {
        if cur.eat('}') {
            break;
        }
        let key = cur.string()?;
        cur.expect(':')?;
        let value = cur.value()?;
        entries.push((key, value));
        if !cur.eat(',') {
            cur.expect('}')?;
            break;
        }
    }
    cur.skip_ws();
    if !cur.rest.is_empty() {
        return Err(format!(
            "trailing text {:?} after the dictionary",
            cur.snippet()
        ));
    }
    Ok(Dict(entries))
}
