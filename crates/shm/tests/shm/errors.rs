//! Bad parameters and bad input give the documented errors, naming what is wrong.

use memwarden_shm::{Gaf, GafConfig, ImageSize, Method, ShmError};

fn config(image_size: ImageSize, sample_range: Option<(f64, f64)>) -> GafConfig {
    GafConfig {
        image_size,
        sample_range,
        ..GafConfig::default()
    }
}

#[test]
fn bad_parameters_are_refused_by_new() {
    let unit = Some((-1.0, 1.0));
    let check =
        |series_len: usize, config: GafConfig, matches: fn(&ShmError) -> bool, text: &str| {
            let err = Gaf::new(config.clone(), series_len).expect_err(&format!("{config:?}"));
            assert!(matches(&err), "{config:?} on T={series_len}: got {err:?}");
            assert!(
                err.to_string().contains(text),
                "{err} should mention {text:?}"
            );
        };
    check(
        1,
        GafConfig::default(),
        |e| matches!(e, ShmError::SeriesTooShort { len: 1 }),
        "at least 2",
    );
    check(
        0,
        GafConfig::default(),
        |e| matches!(e, ShmError::SeriesTooShort { len: 0 }),
        "got 0",
    );
    check(
        10,
        config(ImageSize::Fixed(0), unit),
        |e| matches!(e, ShmError::ImageSizeOutOfRange { image_size: 0, .. }),
        "1..=10",
    );
    check(
        10,
        config(ImageSize::Fixed(11), unit),
        |e| {
            matches!(
                e,
                ShmError::ImageSizeOutOfRange {
                    image_size: 11,
                    series_len: 10
                }
            )
        },
        "got 11",
    );
    check(
        10,
        config(ImageSize::Fraction(0.0), unit),
        |e| matches!(e, ShmError::ImageFractionOutOfRange { .. }),
        "(0, 1]",
    );
    check(
        10,
        config(ImageSize::Fraction(1.01), unit),
        |e| matches!(e, ShmError::ImageFractionOutOfRange { .. }),
        "1.01",
    );
    check(
        10,
        config(ImageSize::Fraction(f64::NAN), unit),
        |e| matches!(e, ShmError::ImageFractionOutOfRange { .. }),
        "NaN",
    );
    check(
        10,
        config(ImageSize::Fixed(5), Some((1.0, 1.0))),
        |e| matches!(e, ShmError::InvalidSampleRange { .. }),
        "min < max",
    );
    check(
        10,
        config(ImageSize::Fixed(5), Some((0.5, -0.5))),
        |e| matches!(e, ShmError::InvalidSampleRange { .. }),
        "(0.5, -0.5)",
    );
    check(
        10,
        config(ImageSize::Fixed(5), Some((-2.0, 1.0))),
        |e| matches!(e, ShmError::InvalidSampleRange { .. }),
        "-1 <= min",
    );
    check(
        10,
        config(ImageSize::Fixed(5), Some((f64::NAN, 1.0))),
        |e| matches!(e, ShmError::InvalidSampleRange { .. }),
        "NaN",
    );
    // The edges are fine.
    assert_eq!(
        Gaf::new(config(ImageSize::Fixed(10), unit), 10)
            .expect("S = T")
            .image_size(),
        10
    );
    assert_eq!(
        Gaf::new(config(ImageSize::Fixed(1), unit), 2)
            .expect("S = 1")
            .image_size(),
        1
    );
    assert_eq!(
        Gaf::new(config(ImageSize::Fraction(1.0), None), 2)
            .expect("fraction 1")
            .image_size(),
        2
    );
}

#[test]
fn non_finite_values_name_the_first_bad_sample_and_timestamp() {
    let (n, t) = (40, 16);
    let gaf = Gaf::new(config(ImageSize::Fixed(4), Some((-1.0, 1.0))), t).expect("valid");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut x = crate::random_walks(n, t, 3);
        x[31 * t + 9] = bad;
        x[7 * t + 5] = bad; // the lower index must win, whichever task fails first
        for chunk in [1, 3, 1000] {
            let mut out = vec![0f32; n * 16];
            let err = gaf
                .transform_into_chunked(&x, n, &mut out, chunk)
                .expect_err("not finite");
            assert!(
                matches!(
                    err,
                    ShmError::NonFinite {
                        sample: 7,
                        timestamp: 5,
                        ..
                    }
                ),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains("sample 7") && text.contains("timestamp 5"),
                "{text}"
            );
        }
    }
    // f32 input too.
    let mut x: Vec<f32> = crate::random_walks(3, t, 4)
        .iter()
        .map(|&v| v as f32)
        .collect();
    x[2 * t] = f32::NAN;
    let err = gaf.transform::<f32, f64>(&x, 3).expect_err("NaN");
    assert!(
        matches!(
            err,
            ShmError::NonFinite {
                sample: 2,
                timestamp: 0,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn values_outside_unit_range_need_a_sample_range() {
    let t = 8;
    let gaf = Gaf::new(config(ImageSize::Fixed(8), None), t).expect("valid");
    let mut x = vec![0.5; 3 * t];
    x[t] = -1.0;
    x[t + 1] = 1.0;
    assert!(
        gaf.transform::<f64, f64>(&x, 3).is_ok(),
        "both ends are allowed"
    );
    x[2 * t + 3] = 1.0 + 1e-9;
    let err = gaf.transform::<f64, f64>(&x, 3).expect_err("out of range");
    assert!(
        matches!(err, ShmError::ValueOutOfUnitRange { sample: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("sample 2"), "{err}");
    // The check applies after PAA, as in pyts: a window mean inside [-1, 1] passes.
    let paa = Gaf::new(config(ImageSize::Fixed(4), None), t).expect("valid");
    let y = [1.5, 0.0, 0.2, 0.2, 0.1, 0.1, 0.0, 0.0];
    assert!(paa.transform::<f64, f64>(&y, 1).is_ok());
}

#[test]
fn buffer_lengths_must_fit_the_shape() {
    let gaf = Gaf::new(config(ImageSize::Fixed(4), Some((-1.0, 1.0))), 8).expect("valid");
    let x = vec![0.0; 16];
    let mut out = vec![0.0f64; 2 * 16];
    let err = gaf
        .transform_into(&x[..15], 2, &mut out)
        .expect_err("short input");
    assert!(
        matches!(
            err,
            ShmError::LengthMismatch {
                what: "input",
                expected: 16,
                actual: 15
            }
        ),
        "{err:?}"
    );
    let err = gaf
        .transform_into(&x, 2, &mut out[..31])
        .expect_err("short output");
    assert!(
        matches!(
            err,
            ShmError::LengthMismatch {
                what: "output",
                expected: 32,
                actual: 31
            }
        ),
        "{err:?}"
    );
    assert!(
        gaf.transform_into::<f64, f64>(&[], 0, &mut []).is_ok(),
        "no samples is fine"
    );
    // A sample count whose buffers would overflow the address space matches no buffer.
    let err = gaf
        .transform_into(&x, usize::MAX / 4, &mut out)
        .expect_err("overflowing count");
    assert!(
        matches!(err, ShmError::LengthMismatch { what: "input", .. }),
        "{err:?}"
    );
}

#[test]
fn images_too_large_for_memory_are_refused_by_new() {
    // A header may claim any length (a 0-sample `.npy` of shape (0, 2^40) is 128
    // bytes), and by default the image is as long as the series: S² values overflow.
    for (method, series_len) in [(Method::Summation, 1usize << 40), (Method::Both, 1 << 31)] {
        let config = GafConfig {
            method,
            ..GafConfig::default()
        };
        let err = Gaf::new(config, series_len).expect_err("too large");
        assert!(matches!(err, ShmError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("address space"), "{err}");
    }
    // A fixed, small image of such a series is fine.
    let small = GafConfig {
        image_size: ImageSize::Fixed(4),
        ..GafConfig::default()
    };
    let gaf = Gaf::new(small, 1 << 40).expect("a 4 × 4 image");
    assert_eq!(gaf.output_shape(0), [0, 4, 4]);
}

#[test]
fn methods_parse_from_their_usual_spellings() {
    for (text, method) in [
        ("summation", Method::Summation),
        ("s", Method::Summation),
        ("GASF", Method::Summation),
        ("difference", Method::Difference),
        ("d", Method::Difference),
        ("gadf", Method::Difference),
        ("both", Method::Both),
    ] {
        assert_eq!(text.parse::<Method>(), Ok(method), "{text}");
    }
    assert!(
        "sum"
            .parse::<Method>()
            .unwrap_err()
            .contains("summation, difference or both")
    );
    assert_eq!(Method::Both.channels(), 2);
}

#[test]
fn constant_series_map_to_the_low_end_of_the_range() {
    // sklearn's zero-range rule: scale = (b - a) / 1, so every value becomes a (up to
    // rounding) and GASF = cos(2·acos(a)).
    let gaf = Gaf::new(config(ImageSize::Fixed(4), Some((0.0, 1.0))), 8).expect("valid");
    let out: Vec<f64> = gaf.transform(&[3.5; 8], 1).expect("constant");
    // cos = 0, sin = 1: GASF = 0·0 − 1·1 = −1 everywhere.
    assert!(out.iter().all(|&v| (v + 1.0).abs() < 1e-15), "{out:?}");
}
