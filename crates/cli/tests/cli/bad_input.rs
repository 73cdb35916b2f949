//! Bad input for every command that reads a file: empty, truncated, a directory,
//! `/dev/zero`, a FIFO, unreadable, over the size limit, absurd sizes, NaN and
//! infinity, and paths that are not UTF-8. Each must exit 2 with a message naming the
//! file and the problem, never panic or hang, and leave no output behind.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than any of these runs takes, even in a debug build on a loaded machine; a
/// run past it is blocked (on a FIFO) or reading without end (`/dev/zero`).
const DEADLINE: Duration = Duration::from_secs(30);

/// What a run of the binary left: its exit code (`None` when it was killed at the
/// deadline), standard output and standard error.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `memwarden args`, killing it at [`DEADLINE`].
fn run(args: &[&OsStr]) -> Run {
    run_as(args, None).expect("the binary starts")
}

/// Runs `memwarden args` as user and group `id` when given, killing it at [`DEADLINE`];
/// `None` when it cannot be started.
fn run_as(args: &[&OsStr], id: Option<u32>) -> Option<Run> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_memwarden"));
    command
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(id) = id {
        use std::os::unix::process::CommandExt as _;
        command.uid(id).gid(id);
    }
    let mut child = command.spawn().ok()?;
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).expect("the pipe reads");
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("the child waits") {
            break status.code();
        }
        if started.elapsed() > DEADLINE {
            child.kill().expect("the child is killed");
            child.wait().expect("the child is reaped");
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Some(Run {
        code,
        stdout: stdout.join().expect("stdout drained"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr drained")).into_owned(),
    })
}

/// One bad input and what the error must say about it besides the file's name.
struct Case {
    input: PathBuf,
    problem: &'static str,
    /// Run as an unprivileged user: root reads whatever the permission bits say.
    unprivileged: bool,
}

fn case(input: impl Into<PathBuf>, problem: &'static str) -> Case {
    Case {
        input: input.into(),
        problem,
        unprivileged: false,
    }
}

/// The user and group the unprivileged cases run as where the tests run as root.
const NOBODY: u32 = 65534;

/// Checks every case with [`check`]; fails with the list of those that failed.
fn check_all(command: &[&str], cases: &[Case], rest: &[&OsStr], out_dir: &Path) {
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|c| check(command, c, rest, out_dir).err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

/// One bad input: `memwarden command... input rest...` must exit 2 within the
/// deadline, name the input and the problem on stderr, print nothing on stdout, and
/// leave `out_dir` (where any output was asked for) empty: no output, no temporary file.
fn check(command: &[&str], case: &Case, rest: &[&OsStr], out_dir: &Path) -> Result<(), String> {
    let mut args: Vec<&OsStr> = command.iter().map(OsStr::new).collect();
    args.push(case.input.as_os_str());
    args.extend_from_slice(rest);
    let what = format!("{args:?}");
    // Readable whatever its mode: root. Run as nobody, who may not read it.
    let demote = case.unprivileged && std::fs::File::open(&case.input).is_ok();
    let Some(Run {
        code,
        stdout,
        stderr,
    }) = run_as(&args, demote.then_some(NOBODY))
    else {
        eprintln!("note: {what}: skipped, user {NOBODY} cannot run the binary here");
        return Ok(());
    };
    let fail = |why: String| Err(format!("{what}: {why}"));
    // A path that is not UTF-8 is named as `Path::display` shows it.
    let name = case.input.display().to_string();
    let problem = case.problem;
    if code.is_none() {
        return fail(format!("still running after {DEADLINE:?}: killed"));
    }
    if code != Some(2) || stderr.contains("panicked") {
        return fail(format!("exit code {code:?}: {stderr}"));
    }
    if !stderr.contains(&name) || !stderr.contains(problem) {
        return fail(format!("{name:?} or {problem:?} not in: {stderr}"));
    }
    if !stdout.is_empty() {
        return fail(format!("printed {} bytes", stdout.len()));
    }
    let left: Vec<_> = std::fs::read_dir(out_dir)
        .expect("the output directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    if !left.is_empty() {
        // Cleared, so the next case is judged on its own.
        for name in &left {
            let _ = std::fs::remove_file(out_dir.join(name));
        }
        return fail(format!("left {left:?}"));
    }
    Ok(())
}

/// A name that is not UTF-8: `stem\xff.ext`.
fn not_utf8(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    let mut name = stem.as_bytes().to_vec();
    name.push(0xff);
    name.extend_from_slice(format!(".{ext}").as_bytes());
    dir.join(OsStr::from_bytes(&name))
}

/// The inputs every reader must refuse whatever it reads, with `ext` as extension:
/// a directory, `/dev/zero` through a link, a FIFO, a file it may not read, one over
/// `limit` bytes (if the reader has one), and a missing file named in bytes that are not
/// UTF-8. Files are made in `dir`; `readable` is valid content for the unreadable file.
fn files_of_any_kind(dir: &Path, ext: &str, readable: &[u8], limit: Option<u64>) -> Vec<Case> {
    let path = |stem: &str| dir.join(format!("{stem}.{ext}"));
    let mut cases = Vec::new();
    std::fs::create_dir(path("dir")).unwrap();
    cases.push(case(path("dir"), "not a regular file"));
    std::os::unix::fs::symlink("/dev/zero", path("zero")).unwrap();
    cases.push(case(path("zero"), "not a regular file"));
    let fifo = path("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c_path` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    cases.push(case(fifo, "not a regular file"));
    if let Some(limit) = limit {
        // Sparse: nothing is written, and a reader that checks first reads nothing.
        let file = std::fs::File::create(path("big")).unwrap();
        file.set_len(limit + 1).unwrap();
        cases.push(case(path("big"), "too large"));
    }
    let secret = path("secret");
    std::fs::write(&secret, readable).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads it whatever its mode says: this case then runs as nobody, who may
    // enter `dir` but not read the file.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    cases.push(Case {
        unprivileged: true,
        ..case(secret, "Permission denied")
    });
    // Under a file, as if that were a directory: refused to root too.
    let file = dir.join(format!("file.{ext}"));
    std::fs::write(&file, readable).unwrap();
    cases.push(case(file.join(format!("x.{ext}")), "Not a directory"));
    cases.push(case(not_utf8(dir, "missing", ext), "No such file"));
    cases
}

fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = path.as_ref();
    std::fs::write(path, bytes).unwrap();
    path.to_owned()
}

fn shipped_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/releasable_resources.toml"
    ))
    .unwrap()
}

/// The config files `config check` and `demo --config` must refuse.
fn bad_configs(dir: &Path) -> Vec<Case> {
    let shipped = shipped_config();
    let edit = |from: &str, to: &str| {
        assert!(shipped.contains(from), "the shipped config has {from:?}");
        shipped.replacen(from, to, 1)
    };
    let nan = edit("warning_fraction = 0.75", "warning_fraction = nan");
    let cut = shipped.find("budget = \"auto\"").unwrap() + "budget = \"a".len();
    let mut cases = vec![
        case(write(dir.join("empty.toml"), ""), "missing required table"),
        case(
            write(dir.join("truncated.toml"), &shipped[..cut]),
            "invalid basic string",
        ),
        case(write(dir.join("nan.toml"), &nan), "NaN is out of range"),
        case(
            write(
                dir.join("inf.toml"),
                edit("auto_cgroup_share = 0.75", "auto_cgroup_share = inf"),
            ),
            "inf is out of range",
        ),
        case(
            write(
                dir.join("huge.toml"),
                edit(
                    "max_bytes = \"512MiB\"",
                    "max_bytes = \"99999999999999999999PiB\"",
                ),
            ),
            "more than 2^64 - 1 bytes",
        ),
        case(
            write(dir.join("binary.toml"), b"[monitor]\nbudget = \"\xff\"\n"),
            "UTF-8",
        ),
        case(
            write(not_utf8(dir, "bad", "toml"), &nan),
            "NaN is out of range",
        ),
        case(PathBuf::from("/dev/zero"), "not a regular file"),
    ];
    let limit = memwarden::config::MAX_CONFIG_BYTES;
    cases.extend(files_of_any_kind(
        dir,
        "toml",
        shipped.as_bytes(),
        Some(limit),
    ));
    cases
}

#[test]
fn config_check_refuses_bad_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    check_all(
        &["config", "check"],
        &bad_configs(dir.path()),
        &[],
        out.path(),
    );
}

#[test]
fn demo_refuses_bad_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let models = out.path().join("models");
    let timeline = out.path().join("timeline.svg");
    let rest = [
        OsStr::new("--steps"),
        OsStr::new("1"),
        OsStr::new("--small"),
        OsStr::new("--models-dir"),
        models.as_os_str(),
        OsStr::new("--timeline"),
        timeline.as_os_str(),
    ];
    check_all(
        &["demo", "--config"],
        &bad_configs(dir.path()),
        &rest,
        out.path(),
    );
}

/// A protobuf field: `tag` with a varint (`Ok`) or length-delimited (`Err`) value.
fn field(tag: u64, value: Result<u64, &[u8]>) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    match value {
        Ok(v) => {
            varint(tag << 3, &mut out);
            varint(v, &mut out);
        }
        Err(bytes) => {
            varint(tag << 3 | 2, &mut out);
            varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(bytes);
        }
    }
    out
}

/// An ONNX model of one Relu whose float input and output are `side × side`.
fn relu_onnx(side: u64) -> Vec<u8> {
    let value_info = |name: &str| {
        let dim = field(1, Err(&field(1, Ok(side))));
        let shape = [dim.clone(), dim].concat();
        let tensor = [field(1, Ok(1)), field(2, Err(&shape))].concat();
        let ty = field(1, Err(&tensor));
        [field(1, Err(name.as_bytes())), field(2, Err(&ty))].concat()
    };
    let node = [
        field(1, Err(b"x")),
        field(2, Err(b"y")),
        field(3, Err(b"relu")),
        field(4, Err(b"Relu")),
    ]
    .concat();
    let graph = [
        field(1, Err(&node)),
        field(2, Err(b"g")),
        field(11, Err(&value_info("x"))),
        field(12, Err(&value_info("y"))),
    ]
    .concat();
    let opset = [field(1, Err(b"")), field(2, Ok(17))].concat();
    [
        field(1, Ok(8)),
        field(7, Err(&graph)),
        field(8, Err(&opset)),
    ]
    .concat()
}

#[test]
fn plan_refuses_bad_models_and_buffer_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = tempfile::tempdir().unwrap();
    let out_file = out.path().join("plan.json");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../lifetime/tests/data");
    let onnx = std::fs::read(format!("{data}/resnet18.onnx")).unwrap();
    let json = std::fs::read(format!("{data}/resnet18.json")).unwrap();
    let csv = b"id,lower,upper,size\nb0,0,3,4\nb1,2,5,8\n";
    // A Relu graph with tensors `x` and `y` given as JSON.
    let json_graph = |x: &str| {
        format!(
            r#"{{"tensors": [{x}, {{"name": "y", "bytes": 8}}],
                "nodes": [{{"op": "Relu", "inputs": ["x"], "outputs": ["y"]}}],
                "inputs": ["x"], "outputs": ["y"]}}"#
        )
    };
    // Sanity: the valid model the huge one is built like plans.
    let small = write(d.join("small.onnx"), relu_onnx(4));
    let ok = run(&[OsStr::new("plan"), small.as_os_str()]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let mut cases = vec![
        case(write(d.join("empty.onnx"), ""), "not an ONNX model"),
        case(write(d.join("empty.json"), ""), "bad graph"),
        case(write(d.join("empty.csv"), ""), "no header"),
        case(
            write(d.join("truncated.onnx"), &onnx[..onnx.len() / 2]),
            "truncated",
        ),
        case(
            write(d.join("truncated.json"), &json[..json.len() / 2]),
            "bad graph",
        ),
        case(
            write(d.join("truncated.csv"), &csv[..csv.len() - 4]),
            "3 fields, but the header has 4",
        ),
        case(PathBuf::from("/dev/zero"), "not a regular file"),
        // Sizes past 64 bits, however they are given.
        case(
            write(d.join("huge.onnx"), relu_onnx(1 << 62)),
            "overflows 64 bits",
        ),
        case(
            write(
                d.join("huge.json"),
                json_graph(r#"{"name": "x", "shape": [4611686018427387904, 8]}"#),
            ),
            "overflows 64 bits",
        ),
        case(
            write(
                d.join("huge.csv"),
                "id,lower,upper,size\nb0,0,2,18446744073709551615\nb1,1,3,2\n",
            ),
            "overflows 64 bits",
        ),
        // Numbers that are not numbers.
        case(
            write(
                d.join("float.json"),
                json_graph(r#"{"name": "x", "shape": [1e300]}"#),
            ),
            "non-negative integer",
        ),
        case(
            write(
                d.join("nan.json"),
                json_graph(r#"{"name": "x", "bytes": NaN}"#),
            ),
            "bad graph",
        ),
        case(
            write(d.join("nan.csv"), "id,lower,upper,size\nb0,0,3,nan\n"),
            "size is not a whole number: \"nan\"",
        ),
        case(
            write(d.join("inf.csv"), "id,lower,upper,size\nb0,0,inf,4\n"),
            "upper is not a whole number: \"inf\"",
        ),
        case(
            write(d.join("binary.json"), b"{\"name\": \"\xff\"}"),
            "UTF-8",
        ),
        case(write(not_utf8(d, "bad", "onnx"), ""), "not an ONNX model"),
        case(
            write(
                not_utf8(d, "bad", "csv"),
                "id,lower,upper,size\nb0,0,3,nan\n",
            ),
            "not a whole number",
        ),
    ];
    cases.extend(files_of_any_kind(d, "onnx", &onnx, Some(2 << 30)));
    cases.extend(files_of_any_kind(d, "json", &json, Some(256 << 20)));
    cases.extend(files_of_any_kind(d, "csv", csv, Some(64 << 20)));
    let rest = [
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("--out"),
        out_file.as_os_str(),
    ];
    check_all(&["plan"], &cases, &rest, out.path());
}

#[test]
fn gaf_refuses_bad_series() {
    use memwarden::shm::npy::{self, Dtype, encode_header};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = tempfile::tempdir().unwrap();
    let out_file = OsString::from(out.path().join("images.npy"));
    let with = |at: usize, value: f64| {
        let mut data = vec![0.25f64; 3 * 8];
        data[at] = value;
        data
    };
    let nan = d.join("nan.npy");
    npy::write(&nan, &[3, 8], &with(2 * 8 + 5, f64::NAN)).unwrap();
    let inf = d.join("inf.npy");
    let data: Vec<f32> = with(8 + 1, f64::INFINITY)
        .iter()
        .map(|&v| v as f32)
        .collect();
    npy::write(&inf, &[3, 8], &data).unwrap();
    let bad_name = not_utf8(d, "bad", "npy");
    std::fs::copy(&nan, &bad_name).unwrap();
    let valid = std::fs::read(&nan).unwrap();
    let mut truncated = encode_header(Dtype::F64, &[3, 8]);
    truncated.extend_from_slice(&[0; 10 * 8]);
    let mut cases = vec![
        case(write(d.join("empty.npy"), ""), "truncated"),
        case(write(d.join("truncated.npy"), truncated), "data section"),
        case(
            write(
                d.join("huge.npy"),
                encode_header(Dtype::F32, &[1 << 62, 1 << 62]),
            ),
            "too large",
        ),
        case(nan, "sample 2, timestamp 5: the value NaN is not finite"),
        case(inf, "sample 1, timestamp 1: the value inf is not finite"),
        case(bad_name, "sample 2, timestamp 5"),
        case(PathBuf::from("/dev/zero"), "not a regular file"),
    ];
    // No size limit: the series are mapped, not read into memory.
    cases.extend(files_of_any_kind(d, "npy", &valid, None));
    check_all(
        &["gaf"],
        &cases,
        &[OsStr::new("--out"), &out_file],
        out.path(),
    );
}
