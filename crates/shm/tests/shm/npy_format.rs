//! `.npy` writing, reading and header validation.

use std::path::Path;

use memwarden_shm::npy::{self, Dtype, NpyData, NpyFile, NpyHeader};
use memwarden_shm::{NpyProblem, ShmError};
use proptest::prelude::*;

#[test]
fn round_trips_both_dtypes_and_several_ranks() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shape in [
        vec![],
        vec![5],
        vec![3, 4],
        vec![2, 3, 4],
        vec![0, 3],
        vec![1, 2, 1, 2],
    ] {
        let len: usize = shape.iter().product();
        let f64s: Vec<f64> = (0..len).map(|i| i as f64 * 0.25 - 1.0).collect();
        let f32s: Vec<f32> = f64s.iter().map(|&v| v as f32).collect();
        let p64 = dir.path().join("a64.npy");
        let p32 = dir.path().join("a32.npy");
        npy::write(&p64, &shape, &f64s).expect("write f64");
        npy::write(&p32, &shape, &f32s).expect("write f32");

        let a = NpyFile::open(&p64).expect("open f64");
        assert_eq!(a.shape(), &shape[..]);
        assert_eq!(a.header().dtype, Dtype::F64);
        assert_eq!(a.header().data_offset % npy::ALIGN, 0);
        assert!(matches!(a.data(), NpyData::F64(ref d) if d[..] == f64s[..]));
        assert!(
            matches!(a.data_as::<f64>(), Ok(std::borrow::Cow::Borrowed(_))),
            "zero-copy"
        );

        let b = NpyFile::open(&p32).expect("open f32");
        assert!(matches!(b.data(), NpyData::F32(ref d) if d[..] == f32s[..]));
        let err = b.data_as::<f64>().expect_err("wrong dtype");
        assert!(
            err.to_string().contains("a32.npy") && err.to_string().contains("<f4"),
            "{err}"
        );
    }
    let err = npy::write(&dir.path().join("bad.npy"), &[2, 2], &[1.0f64; 3]).expect_err("3 != 4");
    assert!(
        matches!(
            err,
            ShmError::LengthMismatch {
                expected: 4,
                actual: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn headers_look_like_numpys() {
    let header = npy::encode_header(Dtype::F64, &[3, 4]);
    let text = String::from_utf8_lossy(&header[10..]);
    assert!(
        text.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }"),
        "{text}"
    );
    assert!(text.ends_with(" \n"));
    assert_eq!(&header[..8], b"\x93NUMPY\x01\x00");
    assert_eq!(header.len() % 64, 0);
    assert_eq!(header.len(), npy::header_len(Dtype::F64, &[3, 4]));
    let one = npy::encode_header(Dtype::F32, &[7]);
    assert!(String::from_utf8_lossy(&one).contains("'shape': (7,), }"));
    let zero = npy::encode_header(Dtype::F32, &[]);
    assert!(String::from_utf8_lossy(&zero).contains("'shape': (), }"));
}

#[test]
fn headers_past_64_kib_use_version_2() {
    // As NumPy does, a dictionary too long for the 16-bit length of version 1.0
    // switches to version 2.0 instead of failing.
    let shape = vec![1usize; 30_000];
    let header = npy::encode_header(Dtype::F32, &shape);
    assert_eq!(&header[..8], b"\x93NUMPY\x02\x00");
    assert_eq!(header.len(), npy::header_len(Dtype::F32, &shape));
    assert_eq!(header.len() % 64, 0);
    let parsed = npy::parse_header(&header, Path::new("wide.npy")).expect("parses");
    assert_eq!((parsed.shape, parsed.data_offset), (shape, header.len()));
    // Just under the limit stays 1.0.
    let short = npy::encode_header(Dtype::F32, &[1; 20_000]);
    assert_eq!(&short[..8], b"\x93NUMPY\x01\x00");
}

#[test]
fn only_regular_files_are_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("series.npy");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Held open for reading and writing, so that an open of the FIFO for reading
    // cannot block (were the check missing, the test would fail, not hang).
    let _held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open the fifo");
    for path in [fifo.as_path(), dir.path()] {
        let err = NpyFile::open(path).expect_err("not a regular file");
        assert!(
            matches!(&err, ShmError::Io { op: "open", source, .. } if source.kind() == std::io::ErrorKind::InvalidInput),
            "{}: {err:?}",
            path.display()
        );
    }
}

#[test]
fn shapes_whose_size_overflows_are_refused_not_multiplied() {
    let huge = 1usize << 62;
    let header = npy::encode_header(Dtype::F32, &[huge, huge]);
    // The parser reads any shape; the sizes saturate, and the size check refuses it.
    let parsed = npy::parse_header(&header, Path::new("huge.npy")).expect("syntax is fine");
    assert_eq!(
        (parsed.elements(), parsed.data_bytes()),
        (usize::MAX, usize::MAX)
    );
    let err = npy::check_size(&parsed, 1 << 20, Path::new("huge.npy")).expect_err("too large");
    assert!(
        matches!(&err, ShmError::Npy { problem: NpyProblem::MalformedHeader(why), .. } if why.contains("too large")),
        "{err:?}"
    );
    // A zero extent holds nothing, however large the others (the product of the
    // leading extents overflows before the zero is reached).
    let shape = [huge, huge, 0];
    let header = npy::encode_header(Dtype::F32, &shape);
    let parsed = npy::parse_header(&header, Path::new("empty.npy")).expect("an empty array");
    assert_eq!((parsed.elements(), parsed.data_bytes()), (0, 0));
    npy::check_size(&parsed, header.len() as u64, Path::new("empty.npy")).expect("no data");
    let hand = NpyHeader {
        dtype: Dtype::F64,
        shape: shape.to_vec(),
        data_offset: 128,
    };
    assert_eq!(hand.elements(), 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let err = npy::write::<f32>(&dir.path().join("w.npy"), &[huge, huge], &[])
        .expect_err("shape and data disagree");
    assert!(matches!(err, ShmError::LengthMismatch { .. }), "{err:?}");
}

#[test]
fn reads_what_numpy_wrote() {
    // Every golden fixture was written by numpy.save (with its own header padding).
    let x = NpyFile::open(crate::fixtures().join("walk_t50_s7_x.npy")).expect("numpy file");
    assert_eq!(x.shape(), &[4, 50]);
    let g = NpyFile::open(crate::fixtures().join("walk_t50_s7_gasf.npy")).expect("numpy file");
    assert_eq!(g.shape(), &[4, 7, 7]);
    let f = NpyFile::open(crate::fixtures().join("walk_f32_t48_s12_x.npy")).expect("numpy file");
    assert_eq!(f.header().dtype, Dtype::F32);
}

/// A file made of `header_text` (the dictionary) behind a v1.0 prefix, plus `data` bytes.
fn file_with(
    dir: &Path,
    name: &str,
    version: [u8; 2],
    header_text: &str,
    data: usize,
) -> std::path::PathBuf {
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend_from_slice(&version);
    let mut text = header_text.to_owned();
    let prefix = if version[0] == 1 { 10 } else { 12 };
    while !(prefix + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    if version[0] == 1 {
        bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    } else {
        bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    bytes.extend_from_slice(text.as_bytes());
    bytes.resize(bytes.len() + data, 0);
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn bad_files_are_refused_with_the_file_and_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ok = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    type Check = fn(&NpyProblem) -> bool;
    let cases: Vec<(std::path::PathBuf, Check, &str)> = vec![
        (
            {
                let p = d.join("magic.npy");
                std::fs::write(&p, b"PK\x03\x04 not numpy at all").expect("w");
                p
            },
            |p| *p == NpyProblem::BadMagic,
            "bad magic",
        ),
        (
            {
                let p = d.join("short.npy");
                std::fs::write(&p, b"\x93NUM").expect("w");
                p
            },
            |p| *p == NpyProblem::Truncated,
            "truncated",
        ),
        (
            {
                let p = d.join("empty.npy");
                std::fs::write(&p, b"").expect("w");
                p
            },
            |p| *p == NpyProblem::Truncated,
            "truncated",
        ),
        (
            file_with(d, "v4.npy", [4, 0], ok, 48),
            |p| matches!(p, NpyProblem::UnsupportedVersion { major: 4, minor: 0 }),
            "version 4.0",
        ),
        (
            file_with(
                d,
                "int.npy",
                [1, 0],
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }",
                48,
            ),
            |p| matches!(p, NpyProblem::UnsupportedDtype(d) if d == "<i8"),
            "<i8",
        ),
        (
            file_with(
                d,
                "big.npy",
                [1, 0],
                "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3), }",
                48,
            ),
            |p| matches!(p, NpyProblem::UnsupportedDtype(d) if d == ">f8"),
            ">f8",
        ),
        (
            file_with(
                d,
                "struct.npy",
                [1, 0],
                "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,), }",
                16,
            ),
            |p| matches!(p, NpyProblem::UnsupportedDtype(_)),
            "[('a', '<f8')]",
        ),
        (
            file_with(
                d,
                "fortran.npy",
                [1, 0],
                "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                48,
            ),
            |p| *p == NpyProblem::FortranOrder,
            "Fortran",
        ),
        (
            file_with(d, "long.npy", [1, 0], ok, 49),
            |p| {
                matches!(
                    p,
                    NpyProblem::SizeMismatch {
                        expected: 48,
                        actual: 49
                    }
                )
            },
            "49 bytes",
        ),
        (
            file_with(d, "cut.npy", [1, 0], ok, 40),
            |p| {
                matches!(
                    p,
                    NpyProblem::SizeMismatch {
                        expected: 48,
                        actual: 40
                    }
                )
            },
            "48",
        ),
        (
            file_with(
                d,
                "nokey.npy",
                [1, 0],
                "{'descr': '<f8', 'shape': (2, 3), }",
                48,
            ),
            |p| matches!(p, NpyProblem::MalformedHeader(w) if w.contains("fortran_order")),
            "missing key",
        ),
        (
            file_with(
                d,
                "extra.npy",
                [1, 0],
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'x': True}",
                48,
            ),
            |p| matches!(p, NpyProblem::MalformedHeader(_)),
            "unexpected key 'x'",
        ),
        (
            file_with(
                d,
                "garbled.npy",
                [1, 0],
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, three), }",
                48,
            ),
            |p| matches!(p, NpyProblem::MalformedHeader(_)),
            "three",
        ),
        (
            file_with(
                d,
                "notuple.npy",
                [1, 0],
                "{'descr': '<f8', 'fortran_order': False, 'shape': (6), }",
                48,
            ),
            |p| matches!(p, NpyProblem::MalformedHeader(_)),
            "trailing comma",
        ),
        (
            file_with(d, "unterminated.npy", [1, 0], "{'descr': '<f8", 48),
            |p| matches!(p, NpyProblem::MalformedHeader(_)),
            "unterminated",
        ),
    ];
    for (path, check, text) in cases {
        let err = NpyFile::open(&path).expect_err(&path.display().to_string());
        let ShmError::Npy {
            path: named,
            problem,
        } = &err
        else {
            panic!("{}: expected an npy error, got {err:?}", path.display());
        };
        assert_eq!(named, &path);
        assert!(check(problem), "{}: {problem:?}", path.display());
        let message = err.to_string();
        assert!(message.contains(&*path.display().to_string()), "{message}");
        assert!(message.contains(text), "{message} should mention {text:?}");
    }
}

#[test]
fn tolerated_variations_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Version 2.0 and 3.0 prefixes, double quotes, keys in another order, spaces, no
    // trailing comma, Fortran order on a vector (same layout as C order).
    for (name, version, text) in [
        (
            "v2.npy",
            [2, 0],
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
        ),
        (
            "v3.npy",
            [3, 0],
            "{\"shape\": (2, 3), \"descr\": \"<f8\", \"fortran_order\": False}",
        ),
        (
            "spaces.npy",
            [1, 0],
            "{ 'descr' : '<f8' ,'fortran_order':False,'shape':( 2 , 3 ) }",
        ),
    ] {
        let path = file_with(d, name, version, text, 48);
        let a = NpyFile::open(&path).expect(name);
        assert_eq!(a.shape(), &[2, 3], "{name}");
    }
    let path = file_with(
        d,
        "fvec.npy",
        [1, 0],
        "{'descr': '<f4', 'fortran_order': True, 'shape': (6,), }",
        24,
    );
    assert_eq!(NpyFile::open(&path).expect("vector").shape(), &[6]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encoded_headers_parse_back(shape in proptest::collection::vec(0usize..100_000, 0..5), wide in any::<bool>()) {
        let dtype = if wide { Dtype::F64 } else { Dtype::F32 };
        let header = npy::encode_header(dtype, &shape);
        prop_assert_eq!(header.len() % 64, 0);
        let parsed = npy::parse_header(&header, Path::new("prop")).expect("parses");
        prop_assert_eq!(parsed.dtype, dtype);
        prop_assert_eq!(&parsed.shape, &shape);
        prop_assert_eq!(parsed.data_offset, header.len());
    }
}
