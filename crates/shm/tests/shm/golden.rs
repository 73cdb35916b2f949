//! The transform against pyts 0.14.1's own output (fixtures from `make_golden.py`).

use memwarden_sched::ParallelScheduler;
use memwarden_shm::npy::{NpyData, NpyFile};
use memwarden_shm::{Float, Gaf, GafConfig, ImageSize, Method};

use crate::fixtures;

/// One line of `cases.txt`.
struct Case {
    name: String,
    config: GafConfig,
    image_size: usize,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("cases.txt")).expect("cases.txt");
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(parse_case)
        .collect();
    assert!(cases.len() >= 20, "only {} golden cases", cases.len());
    cases
}

fn parse_case(line: &str) -> Case {
    let mut words = line.split_whitespace();
    let name = words.next().expect("case name").to_owned();
    let mut config = GafConfig::default();
    let mut image_size = 0;
    for word in words {
        let (key, value) = word.split_once('=').expect("key=value");
        match key {
            "image_size" => {
                config.image_size = if value.contains('.') {
                    ImageSize::Fraction(value.parse().expect("fraction"))
                } else {
                    ImageSize::Fixed(value.parse().expect("size"))
                };
            }
            "sample_range" => {
                config.sample_range = (value != "none").then(|| {
                    let (a, b) = value.split_once(',').expect("a,b");
                    (a.parse().expect("a"), b.parse().expect("b"))
                });
            }
            "overlapping" => config.overlapping = value == "1",
            "S" => image_size = value.parse().expect("S"),
            other => panic!("unknown key {other} in {line}"),
        }
    }
    Case {
        name,
        config,
        image_size,
    }
}

fn load_f64(file: &str) -> (Vec<usize>, Vec<f64>) {
    let npy = NpyFile::open(fixtures().join(file)).expect(file);
    let data = npy.data_as::<f64>().expect("float64 fixture").into_owned();
    (npy.shape().to_vec(), data)
}

/// What pyts would output for `method`: its GASF, its GADF, or the two stacked per sample.
fn expected(case: &Case, method: Method) -> Vec<f64> {
    let (_, gasf) = load_f64(&format!("{}_gasf.npy", case.name));
    let (_, gadf) = load_f64(&format!("{}_gadf.npy", case.name));
    match method {
        Method::Summation => gasf,
        Method::Difference => gadf,
        Method::Both => {
            let plane = case.image_size * case.image_size;
            gasf.chunks(plane)
                .zip(gadf.chunks(plane))
                .flat_map(|(s, d)| s.iter().chain(d).copied())
                .collect()
        }
    }
}

fn assert_close<F: Float>(case: &str, what: &str, got: &[F], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{case} {what}: length");
    let (worst, at) = got
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| ((g.to_f64() - w).abs(), i))
        .fold((0.0, 0), |acc, x| if x.0 > acc.0 { x } else { acc });
    assert!(
        worst <= tol,
        "{case} {what}: |got - pyts| = {worst:e} at {at} (tolerance {tol:e})"
    );
}

/// Runs one case through every entry point that computes images.
fn check_case<I: Float, F: Float>(case: &Case, input: &[I], n: usize, tol: f64) {
    let sched = ParallelScheduler::builder()
        .jobs(2)
        .chunk_size(1)
        .build()
        .expect("scheduler");
    for method in [Method::Summation, Method::Difference, Method::Both] {
        for flatten in [false, true] {
            let config = GafConfig {
                method,
                flatten,
                ..case.config.clone()
            };
            let gaf = Gaf::new(config, input.len() / n).expect(&case.name);
            assert_eq!(
                gaf.image_size(),
                case.image_size,
                "{}: image size",
                case.name
            );
            let want = expected(case, method);
            let what = format!(
                "{method:?} flatten={flatten} {}",
                std::any::type_name::<F>()
            );

            let got: Vec<F> = gaf.transform(input, n).expect(&case.name);
            assert_close(&case.name, &what, &got, &want, tol);

            let mut serial = vec![F::default(); want.len()];
            gaf.transform_into_chunked(input, n, &mut serial, usize::MAX)
                .expect(&case.name);
            assert_close(&case.name, &format!("{what} serial"), &serial, &want, tol);

            let mut scheduled = vec![F::default(); want.len()];
            gaf.transform_into_with(&sched, input, n, &mut scheduled)
                .expect(&case.name);
            assert_close(
                &case.name,
                &format!("{what} scheduled"),
                &scheduled,
                &want,
                tol,
            );

            let shape = gaf.output_shape(n);
            assert_eq!(
                shape.iter().product::<usize>(),
                want.len(),
                "{}: shape",
                case.name
            );
            assert_eq!(
                shape.len(),
                if flatten {
                    2
                } else if method == Method::Both {
                    4
                } else {
                    3
                }
            );
        }
    }
}

#[test]
fn every_case_matches_pyts_in_f64_and_f32() {
    for case in cases() {
        let x = NpyFile::open(fixtures().join(format!("{}_x.npy", case.name))).expect("input");
        let n = x.shape()[0];
        match x.data() {
            NpyData::F64(data) => {
                check_case::<f64, f64>(&case, &data, n, 1e-12);
                check_case::<f64, f32>(&case, &data, n, 1e-6);
            }
            NpyData::F32(data) => {
                check_case::<f32, f64>(&case, &data, n, 1e-12);
                check_case::<f32, f32>(&case, &data, n, 1e-6);
            }
        }
    }
}

#[test]
fn the_fixtures_cover_what_they_claim() {
    let cases = cases();
    let series_len = |c: &Case| {
        let x = NpyFile::open(fixtures().join(format!("{}_x.npy", c.name))).expect("x");
        x.shape()[1]
    };
    let has = |pred: &dyn Fn(&Case, usize) -> bool| cases.iter().any(|c| pred(c, series_len(c)));
    assert!(has(&|c, t| c.image_size == t), "T = S");
    assert!(has(&|c, t| t % c.image_size != 0), "T not divisible by S");
    assert!(has(&|c, _| c.config.overlapping), "overlapping windows");
    assert!(
        has(&|c, _| matches!(c.config.image_size, ImageSize::Fraction(_))),
        "fractions"
    );
    assert!(
        has(&|c, _| c.config.sample_range.is_none()),
        "no sample range"
    );
    // A pair where integer bounds j*T/S and NumPy's trunc(j*(T/S)) differ.
    let differs = |t: usize, s: usize| {
        (0..=s).any(|j| j * t / s != (j as f64 * (t as f64 / s as f64)) as usize)
    };
    assert!(has(&|c, t| c.image_size < t
        && !c.config.overlapping
        && differs(t, c.image_size)));
}

#[test]
fn paa_windows_follow_numpy_linspace() {
    // The golden cases check the values; this checks the windows themselves: a partition
    // of 0..T whose bounds are trunc(j × (T/S)) with the step rounded first, as NumPy does.
    for (t, s) in [(30, 22), (50, 7), (100, 33), (68, 28), (10, 1)] {
        let gaf = Gaf::new(
            GafConfig {
                image_size: ImageSize::Fixed(s),
                ..GafConfig::default()
            },
            t,
        )
        .expect("valid");
        let w = gaf.windows().expect("PAA applies");
        assert_eq!(w.len(), s);
        assert_eq!(w[0].0, 0);
        assert_eq!(w[s - 1].1, t);
        assert!(
            w.windows(2).all(|p| p[0].1 == p[1].0),
            "{t}/{s}: contiguous"
        );
        let step = t as f64 / s as f64;
        for (j, &(start, _)) in w.iter().enumerate() {
            assert_eq!(start, (j as f64 * step) as usize, "{t}/{s} bound {j}");
        }
    }
    // Overlapping: fixed window ceil(T/S), first at 0, last ending at T.
    let gaf = Gaf::new(
        GafConfig {
            image_size: ImageSize::Fixed(33),
            overlapping: true,
            ..GafConfig::default()
        },
        100,
    )
    .expect("valid");
    let w = gaf.windows().expect("PAA applies");
    assert!(w.iter().all(|&(a, b)| b - a == 4));
    assert_eq!((w[0].0, w[32].1), (0, 100));
    // No PAA when the image is as long as the series.
    let full = Gaf::new(GafConfig::default(), 16).expect("valid");
    assert!(full.windows().is_none());
}
