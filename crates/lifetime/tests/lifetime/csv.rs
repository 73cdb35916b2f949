//! MiniMalloc's CSV format: what is read, what is refused (and on which line), the
//! round trip through `write_plan`, and MiniMalloc's example.

use memwarden_lifetime::csv::{BufferSpec, plan_buffers, read_buffers, write_plan};
use memwarden_lifetime::{LifetimeError, PlanOptions, Strategy};

/// MiniMalloc's example (`input.12.csv`): its optimal arena is 12 bytes.
const EXAMPLE: &str = "id,lower,upper,size
b1,0,3,4
b2,3,9,4
b3,0,9,4
b4,9,21,4
b5,0,21,4
";

fn buffer(id: &str, lower: u64, upper: u64, size: u64) -> BufferSpec {
    BufferSpec {
        id: id.to_owned(),
        lower,
        upper,
        size,
    }
}

fn bytes_align_1() -> PlanOptions {
    PlanOptions {
        strategy: Strategy::Best,
        align: 1,
        ..PlanOptions::default()
    }
}

#[test]
fn reads_every_accepted_form() {
    let b1 = || vec![buffer("b1", 0, 3, 4)];
    let cases: &[(&str, Vec<BufferSpec>)] = &[
        ("id,lower,upper,size\nb1,0,3,4\n", b1()),
        ("id,lower,upper,size\nb1,0,3,4", b1()),
        ("buffer,start,end,size\nb1,0,3,4\n", b1()),
        ("ID,Lower,UPPER,Size\nb1,0,3,4\n", b1()),
        ("size,upper,id,lower\n4,3,b1,0\n", b1()),
        ("id,lower,upper,size,offset\nb1,0,3,4,128\n", b1()),
        ("id,lower,upper,size,offset\nb1,0,3,4,\n", b1()),
        ("\n\n  id , lower,upper ,size \n\n b1 ,\t0, 3 ,4\n\n", b1()),
        ("id,lower,upper,size\r\nb1,0,3,4\r\n", b1()),
        ("\u{feff}id,lower,upper,size\nb1,0,3,4\n", b1()),
        ("id,lower,upper,size\n\"b1\",0,3,4\n", b1()),
        ("id,lower,upper,size\n  \"b1\"  ,0,3,4\n", b1()),
        ("id,lower,upper,size\n", vec![]),
        (
            "id,lower,upper,size\n\"a,\"\"b\"\"\nc\",0,1,0\nd,7,8,9\n",
            vec![buffer("a,\"b\"\nc", 0, 1, 0), buffer("d", 7, 8, 9)],
        ),
        (
            "id,lower,upper,size\nbig,1000000,18446744073709551615,18446744073709551615\n",
            vec![buffer("big", 1_000_000, u64::MAX, u64::MAX)],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&read_buffers(text).unwrap(), expected, "{text:?}");
    }
}

/// Each bad input: the line the error names, and a fragment of what it says.
#[test]
fn refuses_bad_input_naming_the_line() {
    const H: &str = "id,lower,upper,size\n";
    let cases: &[(String, usize, &str)] = &[
        (String::new(), 1, "no header"),
        ("\n \n\r\n".into(), 1, "no header"),
        ("b1,0,3,4\n".into(), 1, "no header"),
        ("\nid,lower,upper\nb1,0,3\n".into(), 2, "no size column"),
        ("buffer,start,size\n".into(), 1, "no upper column (or end)"),
        (
            "id,lower,upper,size,color\n".into(),
            1,
            "unknown column \"color\"",
        ),
        (
            "id,lower,upper,size,buffer\n".into(),
            1,
            "\"id\" and \"buffer\"",
        ),
        (format!("{H}b1,0,3\n"), 2, "3 fields, but the header has 4"),
        (
            format!("{H}\nb1,0,3,4,5\n"),
            3,
            "5 fields, but the header has 4",
        ),
        (format!("{H}b1,0,3,4,\n"), 2, "5 fields"),
        (format!("{H},0,3,4\n"), 2, "empty id"),
        (format!("{H}b1,,3,4\n"), 2, "empty lower"),
        (
            format!("{H}b1,zero,3,4\n"),
            2,
            "lower is not a whole number: \"zero\"",
        ),
        (
            format!("{H}b1,0,3,4.5\n"),
            2,
            "size is not a whole number: \"4.5\"",
        ),
        (
            format!("{H}b1,0,3,+4\n"),
            2,
            "size is not a whole number: \"+4\"",
        ),
        (format!("{H}b1,-1,3,4\n"), 2, "lower is negative: -1"),
        (format!("{H}b1,0,3,-4\n"), 2, "size is negative: -4"),
        (
            format!("{H}b1,0,18446744073709551616,4\n"),
            2,
            "upper 18446744073709551616 does not fit in 64 bits",
        ),
        (format!("{H}b1,3,3,4\n"), 2, "upper 3 is not above lower 3"),
        (
            format!("{H}b1,0,3,4\nb2,5,3,4\n"),
            3,
            "upper 3 is not above lower 5",
        ),
        (
            "buffer,start,end,size\nb1,4,2,1\n".into(),
            2,
            "end 2 is not above start 4",
        ),
        (
            format!("{H}b1,0,3,4\nb2,0,3,4\n\nb1,4,5,1\n"),
            5,
            "duplicate id \"b1\" (first on line 2)",
        ),
        (
            "id,lower,upper,size\r\nb1,0,3,4\r\nb1,0,3,4\r\n".into(),
            3,
            "duplicate id \"b1\" (first on line 2)",
        ),
        // A quoted id spans two lines: line numbers keep counting inside it.
        (format!("{H}\"a\nb\",0,3,4\nc,1,1,1\n"), 4, "not above"),
        (
            format!("{H}\"b1,0,3,4\n"),
            2,
            "a quoted field is not closed",
        ),
        (
            format!("{H}b\"1,0,3,4\n"),
            2,
            "a quote inside an unquoted field",
        ),
        (
            format!("{H}\"b1\"x,0,3,4\n"),
            2,
            "'x' after a closing quote",
        ),
    ];
    for (text, line, fragment) in cases {
        match read_buffers(text) {
            Err(LifetimeError::Csv {
                line: got,
                ref problem,
            }) => {
                assert_eq!(got, *line, "{text:?}: {problem}");
                assert!(problem.contains(fragment), "{text:?}: {problem}");
            }
            other => panic!("{text:?}: expected a CSV error, got {other:?}"),
        }
    }
    // The message is the line and the problem.
    let e = read_buffers("id,lower,upper,size\nb1,0,0,4\n").unwrap_err();
    assert!(e.to_string().starts_with("line 2: "), "{e}");
}

#[test]
fn plans_minimallocs_example_to_its_optimum() {
    let buffers = read_buffers(EXAMPLE).unwrap();
    let plan = plan_buffers("input.12", &buffers, &bytes_align_1()).unwrap();
    assert_eq!(plan.model, "input.12");
    assert_eq!((plan.steps, plan.tensors.len()), (21, 5));
    assert_eq!(
        (plan.naive_bytes, plan.lower_bound_bytes, plan.arena_bytes),
        (20, 12, 12)
    );
    assert!(plan.optimal);
    assert!(plan.schedule.is_empty() && plan.skipped.is_empty());
    // One tensor per buffer, in input order, live over lower..=upper - 1.
    for (t, b) in plan.tensors.iter().zip(&buffers) {
        assert_eq!(
            (t.name.as_str(), t.bytes, t.first_step, t.last_step),
            (
                b.id.as_str(),
                b.size,
                b.lower as usize,
                b.upper as usize - 1
            )
        );
        assert_eq!((t.alias_of.as_ref(), t.producer_op.as_ref()), (None, None));
    }
}

#[test]
fn plans_the_shared_copy_of_input_12() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minimalloc/input.12.csv"
    );
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text, EXAMPLE, "the copy is MiniMalloc's example");
    let plan = plan_buffers("input.12", &read_buffers(&text).unwrap(), &bytes_align_1()).unwrap();
    assert_eq!(plan.arena_bytes, 12);
    assert!(plan.optimal);
}

#[test]
fn capacity_is_met_or_proved_impossible() {
    let buffers = read_buffers(EXAMPLE).unwrap();
    for strategy in [Strategy::Best, Strategy::Exact] {
        let within = |capacity| PlanOptions {
            strategy,
            capacity: Some(capacity),
            ..bytes_align_1()
        };
        let plan = plan_buffers("x", &buffers, &within(12)).unwrap();
        assert!(plan.arena_bytes <= 12);
        match plan_buffers("x", &buffers, &within(11)) {
            Err(e @ LifetimeError::NoLayoutWithin { proved: true, .. }) => {
                assert_eq!(
                    e.to_string(),
                    "proved infeasible: the lower bound is 12 > 11"
                );
            }
            other => panic!("{strategy}: expected NoLayoutWithin, got {other:?}"),
        }
    }
}

#[test]
fn write_then_read_round_trips() {
    let buffers = vec![
        buffer("plain", 0, 3, 100),
        buffer("with,comma", 1, 4, 50),
        buffer("with \"quotes\"", 2, 6, 70),
        buffer("two\nlines", 3, 5, 0),
        buffer("  padded ", 4, 9, 30),
        buffer("far", 1_000_000, 2_000_000, 8),
    ];
    let plan = plan_buffers("mixed", &buffers, &bytes_align_1()).unwrap();
    let text = write_plan(&plan);
    assert!(text.starts_with("id,lower,upper,size,offset\nplain,0,3,100,"));
    assert!(text.contains("\"with,comma\",1,4,50,"), "{text}");
    assert!(text.contains("\"with \"\"quotes\"\"\",2,6,70,"), "{text}");
    assert_eq!(read_buffers(&text).unwrap(), buffers);
    // The offset column is the plan's offsets, in the same order.
    let offsets: Vec<u64> = text
        .lines()
        .filter_map(|l| l.rsplit_once(',').map(|(_, o)| o))
        .skip(1)
        .map(|o| o.parse().unwrap())
        .collect();
    let planned: Vec<u64> = plan.tensors.iter().map(|t| t.offset).collect();
    assert_eq!(offsets, planned);
    assert_eq!(plan.steps, 2_000_000);
}

#[test]
fn plan_buffers_checks_hand_made_lists() {
    let opts = bytes_align_1();
    let empty = plan_buffers("none", &[], &opts).unwrap();
    assert_eq!(
        (empty.steps, empty.arena_bytes, empty.tensors.len()),
        (0, 0, 0)
    );
    for (buffers, id, fragment) in [
        (
            vec![buffer("a", 5, 5, 1)],
            "a",
            "upper 5 is not above lower 5",
        ),
        (
            vec![buffer("a", 0, 2, 1), buffer("a", 1, 3, 1)],
            "a",
            "used twice (buffers 0 and 1)",
        ),
    ] {
        match plan_buffers("bad", &buffers, &opts) {
            Err(LifetimeError::BadBuffer { id: got, problem }) => {
                assert_eq!(got, id);
                assert!(problem.contains(fragment), "{problem}");
            }
            other => panic!("expected BadBuffer, got {other:?}"),
        }
    }
    let bad_align = PlanOptions { align: 3, ..opts };
    assert!(matches!(
        plan_buffers("x", &[buffer("a", 0, 1, 1)], &bad_align),
        Err(LifetimeError::InvalidAlignment { align: 3 })
    ));
}
