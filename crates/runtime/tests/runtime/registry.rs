//! The lazy model registry, on real safetensors files in temporary directories.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use memwarden_core::{ByteSize, ManualClock, Priority, ResourceId, ResourceKind};
use memwarden_reaper::Hooks;
use memwarden_runtime::Lifecycle;
use memwarden_runtime::registry::{
    Dtype, FormatError, MAX_HEADER_BYTES, Model, ModelDecl, ModelInfo, ModelRegistry,
    RegistryConfig, RegistryError, write_model_file,
};
use memwarden_tracker::{ResourceSpec, Tracker};
use tempfile::TempDir;

const KIB: u64 = 1 << 10;
/// The size of the models in the cap tests.
const MODEL: u64 = 64 * KIB;

struct Fixture {
    dir: TempDir,
    lifecycle: Arc<Lifecycle>,
    clock: ManualClock,
}

impl Fixture {
    fn new(budget: ByteSize) -> Self {
        let clock = ManualClock::new();
        let tracker = Arc::new(Tracker::with_clock(Arc::new(clock.clone())));
        Fixture {
            dir: tempfile::tempdir().expect("a temporary directory"),
            lifecycle: Arc::new(Lifecycle::new(tracker, budget)),
            clock,
        }
    }

    fn tracker(&self) -> &Arc<Tracker> {
        self.lifecycle.tracker()
    }

    fn registry(&self, cap: Option<u64>) -> ModelRegistry {
        let config = RegistryConfig {
            cap: cap.map(ByteSize::b),
            ..RegistryConfig::default()
        };
        ModelRegistry::new(Arc::clone(&self.lifecycle), config)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.safetensors"))
    }

    /// Writes a valid model file for `name` and returns its path.
    fn model(&self, name: &str, bytes: u64) -> PathBuf {
        let path = self.path(name);
        let seed = name.bytes().map(u64::from).sum();
        write_model_file(&path, bytes, seed).expect("the model file is written");
        path
    }

    /// Writes and declares `name` with `decl`'s settings.
    fn declare(&self, registry: &ModelRegistry, name: &str, bytes: u64) {
        let path = self.model(name, bytes);
        registry
            .declare(ModelDecl::new(name, path))
            .expect("a fresh id");
    }
}

fn status(registry: &ModelRegistry, id: &str) -> ModelInfo {
    registry
        .inspect()
        .models
        .into_iter()
        .find(|m| m.id.as_str() == id)
        .expect("a declared model")
}

fn counts(registry: &ModelRegistry, id: &str) -> (u64, u64, u64) {
    let s = status(registry, id);
    (s.hits, s.loads, s.unloads)
}

fn loaded(registry: &ModelRegistry) -> BTreeSet<String> {
    registry
        .inspect()
        .models
        .into_iter()
        .filter(|m| m.loaded)
        .map(|m| m.id.to_string())
        .collect()
}

fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

/// A safetensors file: the header padded with spaces to a multiple of 8, then `data`.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.to_owned();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(data);
    file
}

#[test]
fn declaring_opens_no_file() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    // The file does not exist: declaring does not notice.
    registry
        .declare(ModelDecl::new("ghost", fx.path("ghost")))
        .expect("declaring is metadata only");
    let err = registry
        .declare(ModelDecl::new("ghost", fx.path("other")))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::AlreadyDeclared { id } if id.as_str() == "ghost"),
        "{err}"
    );
    let s = status(&registry, "ghost");
    assert_eq!((s.loaded, s.mapped, s.bytes), (false, false, None));
    assert_eq!((s.hits, s.loads, s.unloads, s.last_error), (0, 0, 0, None));
    assert_eq!(s.kind, ResourceKind::ModelWeightsCache);
    assert_eq!(s.priority.get(), 7, "the kind's priority");
    assert!(fx.tracker().is_empty());

    let err = registry.get("nobody").unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unknown { id } if id.as_str() == "nobody"),
        "{err}"
    );
    assert!(registry.unload("nobody").is_err());
    assert!(registry.set_pinned("nobody", true).is_err());
}

#[test]
fn first_get_maps_and_tracks_the_model() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    let path = fx.model("yolo", 3 << 20);
    registry
        .declare(
            ModelDecl::new("yolo", &path)
                .kind(ResourceKind::ModelShards)
                .priority(Priority::new(9).unwrap()),
        )
        .unwrap();

    let model = registry.get("yolo").expect("a valid file");
    assert_eq!(model.id().as_str(), "yolo");
    assert_eq!(model.path(), path);
    assert_eq!(model.kind(), &ResourceKind::ModelShards);
    assert_eq!(model.bytes(), 3 << 20);
    assert_eq!(model.as_bytes().len(), 3 << 20);
    assert_eq!(model.metadata()["generator"], "memwarden");

    // The tensors tile the data section, in name order, F16 embedding first.
    let tensors: Vec<_> = model.tensors().collect();
    assert!(tensors.len() > 1);
    assert!(tensors.windows(2).all(|w| w[0].name < w[1].name));
    let data: usize = tensors.iter().map(|t| t.data.len()).sum();
    assert!(data as u64 > (3 << 20) - 4 * KIB, "the header is small");
    for t in &tensors {
        assert_eq!(t.data.len(), t.elements() * t.dtype.size(), "{}", t.name);
    }
    let embed = model.tensor("embed.weight").expect("an embedding");
    assert_eq!(embed.dtype, Dtype::F16);
    assert_eq!(embed.shape[1], 256);
    let layer = model.tensor("layers.0.weight").expect("a layer");
    // 3 MiB less the eighth in the embedding: one layer of 2.625 MiB.
    assert_eq!((layer.dtype, layer.shape), (Dtype::F32, &[672, 1024][..]));
    let values = f32s(layer.data);
    assert!(values.iter().all(|x| (-0.5..0.5).contains(x)));
    assert!(values.iter().any(|&x| x != values[0]), "not constant");
    assert!(model.tensor("nope").is_none());

    // Tracked at the file's length, with the declared kind and priority.
    let info = fx.tracker().info("yolo").expect("tracked");
    assert_eq!(info.bytes, 3 << 20);
    assert_eq!(info.kind, ResourceKind::ModelShards);
    assert_eq!(info.effective_priority().get(), 9);
    assert_eq!(counts(&registry, "yolo"), (0, 1, 0));

    let again = registry.get("yolo").unwrap();
    assert!(Arc::ptr_eq(&model, &again));
    assert_eq!(counts(&registry, "yolo"), (1, 1, 0));
    let s = status(&registry, "yolo");
    assert_eq!((s.loaded, s.mapped, s.bytes), (true, true, Some(3 << 20)));
}

#[test]
fn concurrent_first_gets_load_once() {
    const THREADS: usize = 8;
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    let names = ["a", "b", "c", "d"];
    for name in names {
        fx.declare(&registry, name, 256 * KIB);
    }
    // Eight threads race for one model.
    let barrier = Barrier::new(THREADS);
    let models: Vec<Arc<Model>> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    registry.get("a").expect("a valid file")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(models.iter().all(|m| Arc::ptr_eq(m, &models[0])));
    assert_eq!(counts(&registry, "a"), (THREADS as u64 - 1, 1, 0));

    // Eight threads race for the other three, each in its own order.
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (barrier, registry) = (&barrier, &registry);
            s.spawn(move || {
                barrier.wait();
                for i in 0..names.len() * 4 {
                    let name = names[(t + i) % names.len()];
                    registry.get(name).expect("a valid file");
                }
            });
        }
    });
    for name in names {
        let (hits, loads, unloads) = counts(&registry, name);
        assert_eq!((loads, unloads), (1, 0), "{name}");
        let extra = if name == "a" { THREADS as u64 } else { 0 };
        assert_eq!(hits + loads, THREADS as u64 * 4 + extra, "{name}");
    }
    assert_eq!(fx.tracker().len(), names.len());
}

/// A model of a cap test: its name, its priority (else its kind's), whether it is pinned,
/// and whether it is a `model_shards` model.
struct Decl(&'static str, Option<i64>, bool, bool);

/// Declares `decls` (64 KiB each) under a cap of three models, `get`s `gets` in order
/// (dropping each handle at once), and checks which models are loaded at the end.
fn check_cap(decls: &[Decl], gets: &[&str], expected: &[&str]) {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(Some(3 * MODEL));
    for &Decl(name, priority, pinned, shards) in decls {
        let mut decl = ModelDecl::new(name, fx.model(name, MODEL)).pinned(pinned);
        if let Some(p) = priority {
            decl = decl.priority(Priority::new(p).unwrap());
        }
        if shards {
            decl = decl.kind(ResourceKind::ModelShards);
        }
        registry.declare(decl).unwrap();
    }
    for name in gets {
        registry.get(name).expect("a valid file");
        let status = registry.inspect();
        assert!(status.loaded_bytes <= 3 * MODEL, "after {name}");
    }
    let expected: BTreeSet<String> = expected.iter().map(ToString::to_string).collect();
    assert_eq!(loaded(&registry), expected, "after {gets:?}");
    // Every mapping that is not loaded was unmapped: nothing else holds one.
    let mut unloads = 0;
    for m in registry.inspect().models {
        assert_eq!(
            m.loads - m.unloads,
            u64::from(m.loaded),
            "{}: {} loads, {} unloads",
            m.id,
            m.loads,
            m.unloads
        );
        assert!(!m.mapped || m.loaded, "{}", m.id);
        unloads += m.unloads;
    }
    let released = fx.lifecycle.reaper().stats().total.releases;
    assert_eq!(released, unloads, "every unload went through the reaper");
}

#[test]
fn the_cap_unloads_the_least_recently_used_model() {
    let plain = |name| Decl(name, None, false, false);
    let abcd = [plain("a"), plain("b"), plain("c"), plain("d")];
    check_cap(&abcd, &["a", "b", "c"], &["a", "b", "c"]);
    check_cap(&abcd, &["a", "b", "c", "d"], &["b", "c", "d"]);
    // A hit makes a model recent again.
    check_cap(&abcd, &["a", "b", "c", "a", "d"], &["a", "c", "d"]);
    check_cap(&abcd, &["a", "b", "c", "a", "b", "d"], &["a", "b", "d"]);
    // Reloading an unloaded model unloads the next least recent one.
    check_cap(&abcd, &["a", "b", "c", "d", "a"], &["c", "d", "a"]);
    check_cap(
        &abcd,
        &["a", "b", "c", "d", "a", "b", "c"],
        &["a", "b", "c"],
    );
}

#[test]
fn the_cap_spares_pinned_and_higher_priority_models() {
    let plain = |name| Decl(name, None, false, false);
    let pinned_a = [
        Decl("a", None, true, false),
        plain("b"),
        plain("c"),
        plain("d"),
        plain("e"),
    ];
    check_cap(&pinned_a, &["a", "b", "c", "d"], &["a", "c", "d"]);
    check_cap(&pinned_a, &["a", "b", "c", "d", "e"], &["a", "d", "e"]);

    // `a` is the least recently used, but more important than the rest.
    let important_a = [
        Decl("a", Some(9), false, false),
        plain("b"),
        plain("c"),
        plain("d"),
        plain("e"),
    ];
    check_cap(&important_a, &["a", "b", "c", "d"], &["a", "c", "d"]);
    check_cap(&important_a, &["a", "b", "c", "d", "e"], &["a", "d", "e"]);

    // `c` is the most recently used, but the least important: it goes first.
    let cheap_c = [
        plain("a"),
        plain("b"),
        Decl("c", Some(2), false, false),
        plain("d"),
    ];
    check_cap(&cheap_c, &["a", "b", "c", "d"], &["a", "b", "d"]);

    // Without a declared priority the kind's applies: model_shards (8) over
    // model_weights_cache (7).
    let shards_a = [
        Decl("a", None, false, true),
        plain("b"),
        plain("c"),
        plain("d"),
    ];
    check_cap(&shards_a, &["a", "b", "c", "d"], &["a", "c", "d"]);

    // Everything else pinned: the new model goes over the cap rather than failing.
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(Some(2 * MODEL));
    for name in ["a", "b", "c"] {
        fx.declare(&registry, name, MODEL);
    }
    for name in ["a", "b"] {
        registry.get(name).unwrap();
        registry.set_pinned(name, true).unwrap();
    }
    registry.get("c").expect("loaded over the cap");
    assert_eq!(registry.inspect().loaded_bytes, 3 * MODEL);
    assert!(status(&registry, "a").pinned);
    // Unpinned, `a` is the first to go.
    registry.set_pinned("a", false).unwrap();
    registry.unload("c").unwrap();
    registry.get("c").unwrap();
    assert_eq!(loaded(&registry), BTreeSet::from(["b".into(), "c".into()]));
}

#[test]
fn a_held_model_outlives_its_unload_and_is_reused() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(Some(MODEL));
    fx.declare(&registry, "a", MODEL);
    fx.declare(&registry, "b", MODEL);

    let held = registry.get("a").unwrap();
    let before = held.tensor("embed.weight").unwrap().data.to_vec();
    registry.get("b").unwrap();
    let a = status(&registry, "a");
    assert_eq!((a.loaded, a.mapped, a.unloads), (false, true, 0));
    assert!(!fx.tracker().contains("a"));
    assert_eq!(held.tensor("embed.weight").unwrap().data, &before[..]);

    // Still mapped: a get registers the same mapping again instead of mapping twice.
    let again = registry.get("a").unwrap();
    assert!(Arc::ptr_eq(&held, &again));
    assert_eq!(counts(&registry, "a"), (1, 1, 0));
    assert!(!registry.is_loaded("b"));
    assert_eq!(counts(&registry, "b"), (0, 1, 1));

    // Unloaded while nobody holds it: the mapping goes with it.
    drop((held, again));
    registry.get("b").unwrap();
    assert_eq!(counts(&registry, "a"), (1, 1, 1));
    registry.get("a").unwrap();
    assert_eq!(counts(&registry, "a"), (1, 2, 1));
}

#[test]
fn pressure_and_sweeps_release_models_through_the_plan() {
    let fx = Fixture::new(ByteSize::mib(1));
    let registry = fx.registry(None);
    let path = fx.model("a", 512 * KIB);
    registry
        .declare(ModelDecl::new("a", path).max_idle(Duration::from_secs(10)))
        .unwrap();
    registry.get("a").unwrap();

    // Something else needs room past the budget: the plan releases the model.
    let report = fx
        .lifecycle
        .make_room(&ResourceKind::RenderCache, 700 * KIB);
    assert!(
        report.released.iter().any(|r| r.id.as_str() == "a"),
        "{report:?}"
    );
    assert!(!registry.is_loaded("a"));
    assert_eq!(counts(&registry, "a"), (0, 1, 1));

    // The next get loads it again, making room first.
    fx.tracker()
        .register(
            ResourceSpec::new("frame", ResourceKind::RenderCache, 700 * KIB),
            vec![0u8; 16],
        )
        .unwrap();
    registry.get("a").unwrap();
    assert_eq!(counts(&registry, "a"), (0, 2, 1));
    assert!(!fx.tracker().contains("frame"), "released for the model");
    assert!(fx.tracker().totals().bytes <= 1 << 20);

    // Idle past its limit: a sweep releases it.
    fx.clock.advance(Duration::from_secs(11));
    fx.lifecycle.sweep();
    assert!(!registry.is_loaded("a"));
    assert_eq!(counts(&registry, "a"), (0, 2, 2));
}

/// The variant of a format error, by name.
fn variant(problem: &FormatError) -> &'static str {
    match problem {
        FormatError::TooShort { .. } => "TooShort",
        FormatError::HeaderPastEnd { .. } => "HeaderPastEnd",
        FormatError::HeaderTooLarge { .. } => "HeaderTooLarge",
        FormatError::HeaderStart => "HeaderStart",
        FormatError::HeaderJson { .. } => "HeaderJson",
        FormatError::DuplicateTensor { .. } => "DuplicateTensor",
        FormatError::UnknownDtype { .. } => "UnknownDtype",
        FormatError::ReversedOffsets { .. } => "ReversedOffsets",
        FormatError::TensorPastEnd { .. } => "TensorPastEnd",
        FormatError::ShapeMismatch { .. } => "ShapeMismatch",
        FormatError::NotContiguous { .. } => "NotContiguous",
        FormatError::Uncovered { .. } => "Uncovered",
        _ => "new variant",
    }
}

fn tensor(name: &str, dtype: &str, shape: &str, begin: u64, end: u64) -> String {
    format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}"#)
}

#[test]
fn bad_files_are_errors_naming_the_path() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    let valid = fs::read(fx.model("valid", 8 * KIB)).unwrap();
    let one = tensor("w", "F32", "[4]", 0, 16);
    let gguf = [b"GGUF\x03\0\0\0".as_slice(), &[0u8; 1024]].concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "TooShort"),
        ("short", vec![1, 0, 0, 0, 0], "TooShort"),
        ("gguf-magic", gguf, "HeaderPastEnd"),
        ("cut-in-header", valid[..40].to_vec(), "HeaderPastEnd"),
        (
            "cut-in-data",
            valid[..valid.len() - 100].to_vec(),
            "TensorPastEnd",
        ),
        ("not-an-object", safetensors("[1, 2]", &[]), "HeaderStart"),
        ("leading-space", safetensors(" {}", &[]), "HeaderStart"),
        ("not-json", safetensors("{weights: yes}", &[]), "HeaderJson"),
        (
            "not-utf8",
            safetensors("{\"\u{1}\":1}", &[])
                .into_iter()
                .map(|b| if b == 1 { 0xff } else { b })
                .collect(),
            "HeaderJson",
        ),
        (
            "metadata-not-strings",
            safetensors(r#"{"__metadata__":{"epoch":3}}"#, &[]),
            "HeaderJson",
        ),
        (
            "tensor-without-offsets",
            safetensors(r#"{"w":{"dtype":"F32","shape":[1]}}"#, &[0; 4]),
            "HeaderJson",
        ),
        (
            "duplicate",
            safetensors(
                &format!("{{{one},{}}}", tensor("w", "F32", "[4]", 16, 32)),
                &[0; 32],
            ),
            "DuplicateTensor",
        ),
        (
            "unknown-dtype",
            safetensors(
                &format!("{{{}}}", tensor("w", "F128", "[1]", 0, 16)),
                &[0; 16],
            ),
            "UnknownDtype",
        ),
        (
            "reversed",
            safetensors(&format!("{{{}}}", tensor("w", "F32", "[2]", 8, 0)), &[0; 8]),
            "ReversedOffsets",
        ),
        (
            "points-past-end",
            safetensors(
                &format!("{{{}}}", tensor("w", "F32", "[16]", 0, 64)),
                &[0; 16],
            ),
            "TensorPastEnd",
        ),
        (
            "shape-mismatch",
            safetensors(
                &format!("{{{}}}", tensor("w", "F32", "[3]", 0, 16)),
                &[0; 16],
            ),
            "ShapeMismatch",
        ),
        (
            "shape-overflow",
            safetensors(
                &format!(
                    "{{{}}}",
                    tensor("w", "F32", "[4294967296,4294967296]", 0, 16)
                ),
                &[0; 16],
            ),
            "ShapeMismatch",
        ),
        (
            "overlap",
            safetensors(
                &format!("{{{one},{}}}", tensor("v", "F32", "[2]", 8, 16)),
                &[0; 16],
            ),
            "NotContiguous",
        ),
        (
            "gap",
            safetensors(
                &format!(
                    "{{{},{}}}",
                    tensor("v", "F32", "[1]", 0, 4),
                    tensor("w", "F32", "[1]", 8, 12)
                ),
                &[0; 12],
            ),
            "NotContiguous",
        ),
        (
            "trailing-bytes",
            safetensors(&format!("{{{one}}}"), &[0; 24]),
            "Uncovered",
        ),
    ];
    let good = fx.model("good", 16 * KIB);
    registry.declare(ModelDecl::new("good", &good)).unwrap();
    for (name, bytes, expected) in &cases {
        let path = fx.path(name);
        fs::write(&path, bytes).unwrap();
        registry.declare(ModelDecl::new(*name, &path)).unwrap();
        let err = registry.get(name).unwrap_err();
        let RegistryError::Format {
            path: named,
            problem,
        } = &err
        else {
            panic!("{name}: {err}");
        };
        assert_eq!(named, &path, "{name}");
        assert_eq!(variant(problem), *expected, "{name}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(path.to_str().unwrap()),
            "{name}: {message}"
        );
        let s = status(&registry, name);
        assert_eq!(s.last_error.as_deref(), Some(&*message), "{name}");
        assert_eq!(
            (s.loaded, s.mapped, s.loads, s.unloads),
            (false, false, 0, 0),
            "{name}"
        );
        // The registry carries on.
        registry.get("good").expect("a valid model still loads");
    }

    // A header length over the limit, in a sparse file large enough to hold it.
    let huge = fx.path("huge");
    let file = fs::File::create(&huge).unwrap();
    file.set_len(MAX_HEADER_BYTES + 4096).unwrap();
    drop(file);
    let mut start = (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
    start.push(b'{');
    write_at_start(&huge, &start);
    registry.declare(ModelDecl::new("huge", &huge)).unwrap();
    let err = registry.get("huge").unwrap_err();
    assert!(
        matches!(&err, RegistryError::Format { problem: FormatError::HeaderTooLarge { .. }, path } if *path == huge),
        "{err}"
    );

    // A missing file is an I/O error naming the path.
    let missing = fx.path("missing");
    registry
        .declare(ModelDecl::new("missing", &missing))
        .unwrap();
    let err = registry.get("missing").unwrap_err();
    let RegistryError::Io { op, path, source } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (*op, path, source.kind()),
        ("open", &missing, std::io::ErrorKind::NotFound)
    );
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

    // Nothing bad was tracked; fixing a file makes its model load.
    assert_eq!(loaded(&registry), BTreeSet::from(["good".to_string()]));
    assert_eq!(fx.tracker().len(), 1);
    for (name, _, _) in &cases {
        write_model_file(fx.path(name), 4 * KIB, 1).unwrap();
        let model = registry.get(name).expect("a valid file now");
        assert_eq!(model.bytes(), 4 * KIB);
        assert_eq!(status(&registry, name).last_error, None, "{name}");
    }
    assert_eq!(counts(&registry, "good").1, 1);
}

fn write_at_start(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn a_file_written_by_the_spec_reads_back() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    let header = format!(
        r#"{{"weight":{{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}},{},{},"__metadata__":{{"format":"pt"}}}}"#,
        tensor("bias", "I16", "[3]", 16, 22),
        tensor("empty", "BF16", "[0,4]", 22, 22),
    );
    let mut data = Vec::new();
    for x in [1.0f32, -2.0, 0.5, 4.0] {
        data.extend_from_slice(&x.to_le_bytes());
    }
    for x in [1i16, -1, 300] {
        data.extend_from_slice(&x.to_le_bytes());
    }
    let path = fx.path("spec");
    fs::write(&path, safetensors(&header, &data)).unwrap();
    registry.declare(ModelDecl::new("spec", &path)).unwrap();

    let model = registry.get("spec").unwrap();
    let names: Vec<_> = model.tensors().map(|t| t.name).collect();
    assert_eq!(names, ["bias", "empty", "weight"]);
    let weight = model.tensor("weight").unwrap();
    assert_eq!((weight.dtype, weight.shape), (Dtype::F32, &[2, 2][..]));
    assert_eq!(f32s(weight.data), [1.0, -2.0, 0.5, 4.0]);
    let bias = model.tensor("bias").unwrap();
    let bias: Vec<i16> = bias
        .data
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(bias, [1, -1, 300]);
    let empty = model.tensor("empty").unwrap();
    assert_eq!((empty.elements(), empty.data.len()), (0, 0));
    assert_eq!(model.metadata()["format"], "pt");
    assert_eq!(Dtype::from_name("F8_E4M3").map(Dtype::size), Some(1));
    assert_eq!(Dtype::BF16.to_string(), "BF16");
}

/// The header `safetensors.numpy.save_file` (safetensors 0.8.0) wrote for the tensors of
/// `the_reference_writers_files_read_back`, byte for byte (it pads with spaces to 8).
const REFERENCE_HEADER: &str = r#"{"__metadata__":{"format":"np","author":"reference"},"steps":{"dtype":"I64","shape":[3],"data_offsets":[0,24]},"scalar":{"dtype":"F64","shape":[],"data_offsets":[24,32]},"conv.weight":{"dtype":"F32","shape":[2,3,4],"data_offsets":[32,128]},"empty":{"dtype":"I32","shape":[0,5],"data_offsets":[128,128]},"conv.bias":{"dtype":"F16","shape":[2],"data_offsets":[128,132]},"bytes":{"dtype":"U8","shape":[3],"data_offsets":[132,135]},"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[135,138]}}       "#;

#[test]
fn the_reference_writers_files_read_back() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    let mut data = Vec::new();
    for x in [7i64, -9, 1 << 40] {
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.extend_from_slice(&3.0f64.to_le_bytes());
    for i in 0..24u8 {
        data.extend_from_slice(&(f32::from(i) / 8.0).to_le_bytes());
    }
    data.extend_from_slice(&[0x00, 0x3e, 0x80, 0xc0]); // F16 1.5 and -2.25
    data.extend_from_slice(&[1, 2, 255, 1, 0, 1]);
    let file = safetensors(REFERENCE_HEADER, &data);
    assert_eq!(file.len(), 8 + 496 + 138, "the reference file's length");
    let path = fx.path("reference");
    fs::write(&path, file).unwrap();
    registry
        .declare(ModelDecl::new("reference", &path))
        .unwrap();

    let model = registry.get("reference").unwrap();
    let described: Vec<_> = model
        .tensors()
        .map(|t| (t.name, t.dtype, t.shape.to_vec(), t.data.len()))
        .collect();
    assert_eq!(
        described,
        [
            ("bytes", Dtype::U8, vec![3], 3),
            ("conv.bias", Dtype::F16, vec![2], 4),
            ("conv.weight", Dtype::F32, vec![2, 3, 4], 96),
            ("empty", Dtype::I32, vec![0, 5], 0),
            ("mask", Dtype::Bool, vec![3], 3),
            ("scalar", Dtype::F64, vec![], 8),
            ("steps", Dtype::I64, vec![3], 24),
        ]
    );
    let scalar = model.tensor("scalar").unwrap();
    assert_eq!(scalar.elements(), 1, "a scalar has one element");
    assert_eq!(f64::from_le_bytes(scalar.data.try_into().unwrap()), 3.0);
    assert_eq!(f32s(model.tensor("conv.weight").unwrap().data)[9], 1.125);
    assert_eq!(model.tensor("mask").unwrap().data, [1, 0, 1]);
    assert_eq!(model.metadata()["author"], "reference");
}

#[test]
fn written_model_files_are_exact_deterministic_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    for size in [96, 1000, 4096, 100_003, 5 << 20] {
        write_model_file(&path, size, 3).unwrap();
        let first = fs::read(&path).unwrap();
        assert_eq!(first.len() as u64, size);
        write_model_file(&path, size, 3).unwrap();
        assert_eq!(fs::read(&path).unwrap(), first, "same seed, same bytes");
        write_model_file(&path, size, 4).unwrap();
        let other = fs::read(&path).unwrap();
        assert_eq!(other.len(), first.len());
        if size > 1000 {
            assert_ne!(other, first, "another seed, other weights");
        }
        let header_len = u64::from_le_bytes(first[..8].try_into().unwrap());
        if size % 8 == 0 {
            assert_eq!((8 + header_len) % 8, 0, "{size}: the data is aligned");
        }
    }
    let err = write_model_file(&path, 20, 0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("of 20 bytes"), "{err}");
    let missing = dir.path().join("no/such/dir/m");
    let err = write_model_file(&missing, 4096, 0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("cannot create"), "{err}");
    // Only the final file: no temporary file is left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["m.safetensors"]);

    // F16 values decode into the generator's range.
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    fx.declare(&registry, "m", 1 << 20);
    let model = registry.get("m").unwrap();
    let embed = model.tensor("embed.weight").unwrap();
    assert_eq!(embed.dtype, Dtype::F16);
    for half in embed.data.chunks_exact(2) {
        let bits = u16::from_le_bytes([half[0], half[1]]);
        let exponent = (bits >> 10) & 0x1f;
        assert!(exponent < 15, "|x| < 1: {bits:#06x}"); // 0.5 has exponent 14
    }
}

#[test]
fn status_reports_every_model_and_serialises() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(Some(2 * MODEL));
    for name in ["a", "b", "c"] {
        fx.declare(&registry, name, MODEL);
    }
    registry
        .declare(ModelDecl::new("bad", fx.path("missing")).kind(ResourceKind::ModelShards))
        .unwrap();
    for name in ["a", "a", "b", "c", "a"] {
        registry.get(name).unwrap();
    }
    assert!(registry.get("bad").is_err());

    let status = registry.inspect();
    assert_eq!(status.cap, Some(ByteSize::b(2 * MODEL)));
    assert_eq!(status.loaded_bytes, 2 * MODEL);
    let rows: Vec<_> = status
        .models
        .iter()
        .map(|m| (m.id.as_str(), m.loaded, m.hits, m.loads, m.unloads))
        .collect();
    // a, a (hit), b, c (unloads a), a (unloads b).
    assert_eq!(
        rows,
        [
            ("a", true, 1, 2, 1),
            ("b", false, 0, 1, 1),
            ("c", true, 0, 1, 0),
            ("bad", false, 0, 0, 0),
        ]
    );
    assert_eq!(status.models[1].bytes, Some(MODEL), "known after its load");
    assert_eq!(status.models[3].bytes, None);
    assert_eq!(status.models[3].priority.get(), 8, "model_shards' priority");

    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["cap"], 2 * MODEL);
    assert_eq!(json["loaded_bytes"], 2 * MODEL);
    let a = &json["models"][0];
    assert_eq!(a["id"], "a");
    assert_eq!(a["kind"], "model_weights_cache");
    assert_eq!(a["path"], fx.path("a").to_str().unwrap());
    assert_eq!((&a["loaded"], &a["mapped"]), (&true.into(), &true.into()));
    assert_eq!(
        (&a["hits"], &a["loads"], &a["unloads"]),
        (&1.into(), &2.into(), &1.into())
    );
    assert_eq!(a["bytes"], MODEL);
    assert!(a["last_error"].is_null());
    let bad = &json["models"][3];
    assert_eq!(bad["kind"], "model_shards");
    assert!(bad["last_error"].as_str().unwrap().contains("missing"));
}

#[test]
fn preload_loads_in_the_background() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    for name in ["a", "b", "c"] {
        fx.declare(&registry, name, 256 * KIB);
    }
    registry
        .declare(ModelDecl::new("bad", fx.path("missing")))
        .unwrap();
    assert!(
        matches!(
            registry.preload(["a", "nobody"]),
            Err(RegistryError::Unknown { .. })
        ),
        "an unknown id starts nothing"
    );
    registry.get("b").unwrap();
    registry.preload(["a", "b", "bad"]).unwrap();
    let report = registry.wait_preload();
    let ids = |v: &[ResourceId]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(ids(&report.loaded), ["a", "b"]);
    assert!(report.skipped.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0.as_str(), "bad");
    assert!(matches!(
        report.failed[0].1,
        RegistryError::Io { op: "open", .. }
    ));
    assert!(status(&registry, "bad").last_error.is_some());
    // Preloading counts a load, never a hit; "b" was loaded already.
    assert_eq!(counts(&registry, "a"), (0, 1, 0));
    assert_eq!(counts(&registry, "b"), (0, 1, 0));
    assert!(!registry.is_loaded("c"));
    registry.get("a").unwrap();
    assert_eq!(counts(&registry, "a"), (1, 1, 0));
    assert!(
        registry.wait_preload().loaded.is_empty(),
        "nothing left to wait for"
    );
}

/// A lifecycle whose next release of a render frame blocks until told to go on: the
/// preload thread stops inside it, so the tests know where it is.
struct Gate {
    entered: mpsc::Receiver<()>,
    go: mpsc::Sender<()>,
}

fn gated(fx: &Fixture) -> Gate {
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    fx.lifecycle.reaper().set_handler(
        ResourceKind::RenderCache,
        Hooks::new().before_drop(move |_| {
            let _ = entered_tx.send(());
            let _ = go_rx.lock().unwrap().recv();
            Ok(())
        }),
    );
    // Past the warning line (768 KiB of 1 MiB) with any model: loading one releases it.
    fx.tracker()
        .register(
            ResourceSpec::new("frame", ResourceKind::RenderCache, 720 * KIB),
            vec![0u8; 16],
        )
        .unwrap();
    Gate { entered, go }
}

#[test]
fn a_cancelled_preload_stops_after_the_model_in_progress() {
    let fx = Fixture::new(ByteSize::mib(1));
    let registry = fx.registry(None);
    for name in ["a", "b", "c"] {
        fx.declare(&registry, name, MODEL);
    }
    let gate = gated(&fx);
    registry.preload(["a", "b", "c"]).unwrap();
    gate.entered.recv().unwrap(); // loading "a", making room
    registry.cancel_preload();
    gate.go.send(()).unwrap();
    let report = registry.wait_preload();
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(report.loaded[0].as_str(), "a");
    let skipped: Vec<_> = report.skipped.iter().map(ResourceId::as_str).collect();
    assert_eq!(skipped, ["b", "c"]);
    assert!(registry.is_loaded("a") && !registry.is_loaded("b"));
    assert!(!fx.tracker().contains("frame"));
}

#[test]
fn dropping_the_registry_mid_preload_returns() {
    let fx = Fixture::new(ByteSize::mib(1));
    let registry = fx.registry(None);
    for name in ["a", "b", "c"] {
        fx.declare(&registry, name, MODEL);
    }
    let Gate { entered, go } = gated(&fx);
    registry.preload(["a", "b", "c"]).unwrap();
    entered.recv().unwrap();
    let dropper = thread::spawn(move || drop(registry));
    go.send(()).unwrap();
    drop(go); // any later release of a frame goes straight through
    dropper.join().expect("the drop returns");
    // The dropped registry had the reaper release whatever it had loaded.
    assert!(fx.tracker().is_empty(), "{:?}", fx.tracker().candidates());
}

#[test]
fn dropping_the_registry_releases_its_models() {
    let fx = Fixture::new(ByteSize::mib(64));
    let registry = fx.registry(None);
    fx.declare(&registry, "a", MODEL);
    registry
        .declare(ModelDecl::new("b", fx.model("b", MODEL)).pinned(true))
        .unwrap();
    fx.tracker()
        .register(
            ResourceSpec::new("other", ResourceKind::TempBuffers, 10),
            0u8,
        )
        .unwrap();
    let held = registry.get("a").unwrap();
    registry.get("b").unwrap();
    // Pinned behind the registry's back, as a caller does while a model is in use.
    fx.tracker().set_pinned("a", true).unwrap();
    assert_eq!(fx.tracker().len(), 3);
    drop(registry);
    let left: Vec<_> = fx
        .tracker()
        .candidates()
        .candidates
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(left, ["other"]);
    let embed = held.tensor("embed.weight").unwrap();
    assert!(
        embed.data.iter().any(|&b| b != 0),
        "still mapped and readable"
    );
}

#[test]
fn ids_taken_by_others_are_refused() {
    let fx = Fixture::new(ByteSize::mib(64));
    fx.tracker()
        .register(ResourceSpec::new("a", ResourceKind::RenderCache, 10), 0u8)
        .unwrap();
    let first = fx.registry(None);
    let second = fx.registry(None);
    fx.declare(&first, "a", MODEL);
    fx.declare(&first, "b", MODEL);
    second.declare(ModelDecl::new("b", fx.path("b"))).unwrap();
    let err = first.get("a").unwrap_err();
    assert!(
        matches!(&err, RegistryError::IdTaken { id } if id.as_str() == "a"),
        "{err}"
    );
    first.get("b").unwrap();
    // Another registry's model under the same id is not this one's.
    let err = second.get("b").unwrap_err();
    assert!(matches!(&err, RegistryError::IdTaken { .. }), "{err}");
    assert!(!second.is_loaded("b") && first.is_loaded("b"));
    assert_eq!(second.unload("b").unwrap().released.len(), 0);
    assert!(first.is_loaded("b"));
}

#[test]
fn a_path_that_is_not_a_regular_file_is_refused_without_blocking() {
    let fx = Fixture::new(ByteSize::gib(1));
    let registry = fx.registry(None);
    let fifo = fx.path("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return; // no mkfifo on this system
    }
    registry.declare(ModelDecl::new("fifo", &fifo)).unwrap();
    registry
        .declare(ModelDecl::new("dir", fx.dir.path()))
        .unwrap();
    for id in ["fifo", "dir"] {
        // Opening a FIFO for reading would wait for a writer forever.
        let err = registry.get(id).expect_err("not a model file");
        assert!(
            matches!(&err, RegistryError::Io { op: "open", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn loads_are_admitted_through_the_hook() {
    let fx = Fixture::new(ByteSize::gib(1));
    let registry = fx.registry(None);
    let seen: Arc<Mutex<Vec<(ResourceKind, u64)>>> = Arc::default();
    let sink = Arc::clone(&seen);
    registry.set_admission(move |kind, bytes| sink.lock().unwrap().push((kind.clone(), bytes)));
    let path = fx.path("m");
    write_model_file(&path, 1 << 20, 1).unwrap();
    registry
        .declare(ModelDecl::new("m", &path).kind(ResourceKind::ModelShards))
        .unwrap();
    registry.get("m").unwrap();
    registry.get("m").unwrap(); // a hit: no admission
    assert_eq!(
        *seen.lock().unwrap(),
        [(ResourceKind::ModelShards, 1 << 20)]
    );
}

#[test]
fn a_preloaded_model_nobody_used_is_the_first_to_go_under_the_cap() {
    let fx = Fixture::new(ByteSize::gib(1));
    let registry = fx.registry(Some(2 * MODEL));
    for name in ["used", "preloaded", "new"] {
        fx.declare(&registry, name, MODEL);
    }
    registry.get("used").unwrap();
    // Preloaded after the use: were a preload a use, it would now be the most recent.
    registry.preload(["preloaded"]).unwrap();
    registry.wait_preload();
    registry.get("new").unwrap();
    assert!(registry.is_loaded("used"), "used, so kept");
    assert!(
        !registry.is_loaded("preloaded"),
        "never used: unloaded first"
    );
}
