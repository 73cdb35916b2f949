//! Cache traces read from files: [`CacheTrace`], from an ARC `.lis` block trace (plain
//! or zstd-compressed) or a CSV of `key,bytes` requests.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use memwarden::core::ResourceId;

/// A request trace over keys of known sizes, as the replay engines take it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTrace {
    /// The file's name, for reports.
    pub name: String,
    /// The key universe, in order of first request.
    pub keys: Vec<ResourceId>,
    /// The requests, as indices into `keys`.
    pub requests: Vec<u32>,
    /// Each request's size in bytes: an engine that misses inserts the key at this size
    /// (a CSV may give one key different sizes over time; a hit is a hit whatever the
    /// size).
    pub sizes: Vec<u32>,
    /// Whether the trace is one of fixed-size blocks (an ARC trace), whose capacities
    /// are given in blocks.
    pub blocks: bool,
}

/// A trace file that could not be read, naming the file and, for bad content, the line.
#[derive(Debug)]
pub enum CacheTraceError {
    /// The file could not be opened, read or decompressed.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A line that does not parse.
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

impl fmt::Display for CacheTraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheTraceError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            CacheTraceError::Line {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
        }
    }
}

impl std::error::Error for CacheTraceError {}

impl CacheTrace {
    /// Reads `path`: an ARC trace when it ends in `.lis` or `.lis.zst` (each block one key
    /// of `item_bytes` bytes), else a CSV of `key,bytes` lines (`#` comments and blank
    /// lines skipped). `limit` keeps the first requests only.
    pub fn load(
        path: &Path,
        item_bytes: u32,
        limit: Option<usize>,
    ) -> Result<Self, CacheTraceError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let io = |error| CacheTraceError::Io {
            path: path.to_owned(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        let reader: Box<dyn Read> = if name.ends_with(".zst") {
            Box::new(
                ruzstd::decoding::StreamingDecoder::new(BufReader::new(file))
                    .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            )
        } else {
            Box::new(file)
        };
        let blocks = name.trim_end_matches(".zst").ends_with(".lis");
        let mut trace = CacheTrace {
            name,
            keys: Vec::new(),
            sizes: Vec::new(),
            requests: Vec::new(),
            blocks,
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut index: HashMap<String, u32> = HashMap::new();
        let bad = |line: usize, message: String| CacheTraceError::Line {
            path: path.to_owned(),
            line,
            message,
        };
        for (n, line) in BufReader::new(reader).lines().enumerate() {
            if trace.requests.len() >= limit {
                break;
            }
            let line = line.map_err(io)?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if blocks {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [start, count, ..] = fields[..] else {
                    return Err(bad(
                        n + 1,
                        format!("expected `start_block n_blocks ignored request_no`, got {line:?}"),
                    ));
                };
                let start: u64 = start
                    .parse()
                    .map_err(|_| bad(n + 1, format!("start block {start:?} is not a number")))?;
                let count: u64 = count
                    .parse()
                    .map_err(|_| bad(n + 1, format!("block count {count:?} is not a number")))?;
                for block in start..start.saturating_add(count) {
                    if trace.requests.len() >= limit {
                        break;
                    }
                    trace.request(&mut index, block.to_string(), item_bytes);
                }
            } else {
                let Some((key, bytes)) = line.split_once(',') else {
                    return Err(bad(n + 1, format!("expected `key,bytes`, got {line:?}")));
                };
                let key = key.trim();
                if key.is_empty() {
                    return Err(bad(n + 1, "empty key".to_owned()));
                }
                let bytes: u32 = bytes.trim().parse().map_err(|_| {
                    bad(
                        n + 1,
                        format!("size {:?} is not a byte count below 4 GiB", bytes.trim()),
                    )
                })?;
                trace.request(&mut index, key.to_owned(), bytes);
            }
        }
        if trace.requests.is_empty() {
            return Err(bad(0, "the trace holds no requests".to_owned()));
        }
        Ok(trace)
    }

    fn request(&mut self, index: &mut HashMap<String, u32>, key: String, bytes: u32) {
        let next = self.keys.len() as u32;
        let i = *index.entry(key).or_insert_with_key(|key| {
            self.keys.push(ResourceId::from(key.as_str()));
            next
        });
        self.requests.push(i);
        self.sizes.push(bytes);
    }

    /// The requests as (key, bytes).
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceId, u32)> + '_ {
        self.requests
            .iter()
            .zip(&self.sizes)
            .map(|(&k, &bytes)| (&self.keys[k as usize], bytes))
    }
}
