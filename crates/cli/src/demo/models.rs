//! The session's models: weight files generated once into a cache directory, declared in
//! a [`ModelRegistry`] and mapped on first use.

use std::path::{Path, PathBuf};

use anyhow::Context;
use memwarden::core::ResourceKind;
use memwarden::registry::{ModelDecl, ModelRegistry};

/// One model of the session.
#[derive(Debug, Clone)]
pub(crate) struct DemoModel {
    pub(crate) name: &'static str,
    pub(crate) kind: ResourceKind,
    /// File size in MiB at the default size and with `--small`.
    mib: (u64, u64),
}

/// Two detector variants, a transcriber and a rarely used upscaler kept as a weights cache.
pub(crate) const MODELS: [DemoModel; 4] = [
    DemoModel {
        name: "detector-s",
        kind: ResourceKind::ModelShards,
        mib: (48, 12),
    },
    DemoModel {
        name: "detector-m",
        kind: ResourceKind::ModelShards,
        mib: (96, 24),
    },
    DemoModel {
        name: "transcriber",
        kind: ResourceKind::ModelShards,
        mib: (128, 32),
    },
    DemoModel {
        name: "upscaler",
        kind: ResourceKind::ModelWeightsCache,
        mib: (64, 16),
    },
];

impl DemoModel {
    pub(crate) fn bytes(&self, small: bool) -> u64 {
        (if small { self.mib.1 } else { self.mib.0 }) << 20
    }

    pub(crate) fn file_name(&self, small: bool) -> String {
        format!("{}-{}MiB.safetensors", self.name, self.bytes(small) >> 20)
    }
}

/// Where model files are cached when `--models-dir` is not given: the user's cache
/// directory (`$XDG_CACHE_HOME` or `~/.cache`), else the temp directory.
pub(crate) fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("memwarden").join("demo-models")
}

/// Writes the model files that are not in `dir` yet; returns how many it wrote.
///
/// Each file is written to a temporary name and renamed, so an interrupted run leaves no
/// half-written model behind.
pub(crate) fn ensure_files(dir: &Path, small: bool) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the model cache directory {}", dir.display()))?;
    let mut written = 0;
    for (seed, model) in MODELS.iter().enumerate() {
        let path = dir.join(model.file_name(small));
        if path.exists() {
            continue;
        }
        log::info!(
            "writing model weights {} ({} MiB)",
            path.display(),
            model.bytes(small) >> 20
        );
        memwarden::registry::write_model_file(&path, model.bytes(small), seed as u64)
            .with_context(|| format!("cannot write the model file {}", path.display()))?;
        written += 1;
    }
    Ok(written)
}

/// Declares every model in `registry` (nothing is loaded).
pub(crate) fn declare(registry: &ModelRegistry, dir: &Path, small: bool) -> anyhow::Result<()> {
    for model in &MODELS {
        let decl =
            ModelDecl::new(model.name, dir.join(model.file_name(small))).kind(model.kind.clone());
        registry
            .declare(decl)
            .with_context(|| format!("cannot declare model {}", model.name))?;
    }
    Ok(())
}
