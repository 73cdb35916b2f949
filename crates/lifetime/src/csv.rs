//! MiniMalloc's CSV format: buffer lists in ([`read_buffers`], [`plan_buffers`]) and
//! plans out ([`write_plan`]).
//!
//! Google's MiniMalloc (Moffitt, ASPLOS 2023) describes a static allocation problem
//! as one buffer per line: an id, the half-open interval `[lower, upper)` over which
//! it is live, and its size in bytes. Its solutions add an `offset` column.
//!
//! ```text
//! id,lower,upper,size
//! b1,0,3,4
//! b2,3,9,4
//! ```
//!
//! - The header is the first non-empty line. Columns are found by name, in any
//!   order, case-insensitively: `id`, `lower`, `upper`, `size` (or MiniMalloc's older
//!   `buffer`, `start`, `end`, `size`), and an optional `offset`, which is read over
//!   and ignored, so a solution file can be planned again.
//! - Fields are trimmed; blank lines are skipped; CRLF line ends and a leading
//!   byte-order mark are accepted. An id may be quoted CSV-style (`"a,b"`, with `""`
//!   for a quote inside), which is how [`write_plan`] writes ids that need it.
//! - Numbers are whole and non-negative; `upper > lower`; ids are unique and not
//!   empty; a size of 0 is allowed. Every error is [`LifetimeError::Csv`] with the
//!   1-based line it is on.
//!
//! A buffer becomes a planned tensor live over the inclusive steps
//! `lower..=upper - 1`, so `[lower, upper)` and `[upper, ...)` share no step and may
//! share bytes. MiniMalloc's instances are in bytes with no alignment: plan them with
//! `align: 1`.
//!
//! ```
//! use memwarden_lifetime::csv::{plan_buffers, read_buffers, write_plan};
//! use memwarden_lifetime::{PlanOptions, Strategy};
//!
//! // MiniMalloc's example: five buffers whose optimal arena is 12 bytes.
//! let buffers = read_buffers(
//!     "id,lower,upper,size\n\
//!      b1,0,3,4\n\
//!      b2,3,9,4\n\
//!      b3,0,9,4\n\
//!      b4,9,21,4\n\
//!      b5,0,21,4\n",
//! )?;
//! let opts = PlanOptions { strategy: Strategy::Best, align: 1, ..PlanOptions::default() };
//! let plan = plan_buffers("input.12", &buffers, &opts)?;
//! assert_eq!((plan.steps, plan.arena_bytes), (21, 12));
//! assert!(plan.optimal);
//!
//! // The solution, in MiniMalloc's output format, reads back as the same buffers.
//! let out = write_plan(&plan);
//! assert!(out.starts_with("id,lower,upper,size,offset\nb1,0,3,4,"));
//! assert_eq!(read_buffers(&out)?, buffers);
//! # Ok::<(), memwarden_lifetime::LifetimeError>(())
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use crate::error::LifetimeError;
use crate::place::{self, Record};
use crate::plan::{Plan, PlanOptions, PlannedTensor};

/// One buffer of a static allocation problem: live over the half-open interval
/// `[lower, upper)`, `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferSpec {
    /// The buffer's name, unique in its list.
    pub id: String,
    /// The first time step it is live at.
    pub lower: u64,
    /// The first time step after it (exclusive end); above `lower`.
    pub upper: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Reads a buffer list in MiniMalloc's CSV format (see the [module docs](self)).
///
/// # Errors
///
/// [`LifetimeError::Csv`] with the line and what is wrong: no header, an unknown,
/// missing or repeated column, the wrong number of fields, a field that is not a
/// whole non-negative number, `upper <= lower`, an empty or duplicate id, an
/// unclosed quote.
pub fn read_buffers(text: &str) -> Result<Vec<BufferSpec>, LifetimeError> {
    let mut rows = rows(text)?.into_iter();
    let Some(header) = rows.next() else {
        return Err(csv_error(1, "no header (expected id,lower,upper,size)"));
    };
    let columns = Columns::new(&header)?;
    let mut buffers: Vec<BufferSpec> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for row in rows {
        if row.fields.len() != header.fields.len() {
            return Err(csv_error(
                row.line,
                format!(
                    "{} fields, but the header has {}",
                    row.fields.len(),
                    header.fields.len()
                ),
            ));
        }
        let field = |k: usize| row.fields[k].as_str();
        let number = |k: usize| parse_number(field(k), &header.fields[k], row.line);
        let id = field(columns.id);
        if id.is_empty() {
            return Err(csv_error(
                row.line,
                format!("empty {}", header.fields[columns.id]),
            ));
        }
        let (lower, upper, size) = (
            number(columns.lower)?,
            number(columns.upper)?,
            number(columns.size)?,
        );
        if upper <= lower {
            return Err(csv_error(
                row.line,
                format!(
                    "buffer {id:?}: {} {upper} is not above {} {lower} (the interval \
                     [{lower}, {upper}) is empty)",
                    header.fields[columns.upper], header.fields[columns.lower]
                ),
            ));
        }
        if let Some(first) = first_line.insert(id.to_owned(), row.line) {
            return Err(csv_error(
                row.line,
                format!("duplicate id {id:?} (first on line {first})"),
            ));
        }
        buffers.push(BufferSpec {
            id: id.to_owned(),
            lower,
            upper,
            size,
        });
    }
    Ok(buffers)
}

/// Places `buffers` into one arena, as [`plan`](crate::plan) does a graph's tensors:
/// buffer `[lower, upper)` is a tensor live over the steps `lower..=upper - 1`.
///
/// The plan is named `name`, has `steps` = the largest `upper` (0 for no buffers)
/// and no schedule, and lists one tensor per buffer in input order, named by its
/// id. Of the options, `strategy`, `align`, the search budget and `capacity` apply;
/// `dims`, `inplace` and `unknown` concern graphs and are ignored. The plan is
/// validated like any other.
///
/// # Errors
///
/// [`LifetimeError::BadBuffer`] for a buffer with `upper <= lower`, a step that does
/// not fit in `usize`, or an id used twice; otherwise as [`plan`](crate::plan):
/// [`LifetimeError::InvalidAlignment`], [`LifetimeError::SizeOverflow`],
/// [`LifetimeError::NoLayoutWithin`] when a capacity is asked for, and
/// [`LifetimeError::InvalidPlan`] (a bug).
pub fn plan_buffers(
    name: &str,
    buffers: &[BufferSpec],
    opts: &PlanOptions,
) -> Result<Plan, LifetimeError> {
    let started = Instant::now();
    place::check_align(opts.align)?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut records = Vec::with_capacity(buffers.len());
    for (i, b) in buffers.iter().enumerate() {
        let bad = |problem: String| LifetimeError::BadBuffer {
            id: b.id.clone(),
            problem,
        };
        if b.upper <= b.lower {
            return Err(bad(format!(
                "upper {} is not above lower {} (the interval is empty)",
                b.upper, b.lower
            )));
        }
        if let Some(first) = seen.insert(&b.id, i) {
            return Err(bad(format!(
                "the id is used twice (buffers {first} and {i})"
            )));
        }
        let step = |value: u64| {
            usize::try_from(value)
                .map_err(|_| bad(format!("step {value} does not fit in this machine's usize")))
        };
        // `upper` must fit too: `steps` is the largest of them.
        step(b.upper)?;
        records.push(Record::new(b.size, step(b.lower)?, step(b.upper - 1)?));
    }
    let layout = place::compute_layout(&records, opts.strategy, opts.align, &opts.budget())?;
    place::validate_layout(
        &records,
        &layout.offsets,
        opts.align,
        layout.arena_bytes,
        |i| buffers[i].id.clone(),
    )?;
    let tensors = buffers
        .iter()
        .zip(&records)
        .zip(&layout.offsets)
        .map(|((b, r), &offset)| PlannedTensor {
            name: b.id.clone(),
            bytes: b.size,
            first_step: r.first,
            last_step: r.last,
            offset,
            alias_of: None,
            producer_op: None,
        })
        .collect();
    // No aliases: the layout validated above is the plan's whole check.
    Ok(Plan {
        model: name.to_owned(),
        steps: records.iter().map(|r| r.last + 1).max().unwrap_or(0),
        schedule: Vec::new(),
        align: opts.align,
        strategy: opts.strategy,
        method: layout.method,
        naive_bytes: layout.naive_bytes,
        lower_bound_bytes: layout.lower_bound_bytes,
        arena_bytes: layout.arena_bytes,
        optimal: layout.optimal,
        tensors,
        skipped: Vec::new(),
        planning_time: started.elapsed(),
    })
}

/// A plan in MiniMalloc's output format: the header `id,lower,upper,size,offset`,
/// then one line per tensor of [`Plan::tensors`], in order, with `upper` =
/// `last_step + 1`. A name with a comma, a quote, a line break or surrounding
/// spaces is quoted (`"a,b"`, `""` for a quote), so that [`read_buffers`] reads it
/// back as it was. Works for any plan: a graph's tensors become buffers too (aliased
/// tensors share their offset).
pub fn write_plan(plan: &Plan) -> String {
    let mut s = String::from("id,lower,upper,size,offset\n");
    for t in &plan.tensors {
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            quote(&t.name),
            t.first_step,
            t.last_step as u128 + 1,
            t.bytes,
            t.offset
        );
    }
    s
}

/// `name` as one CSV field.
fn quote(name: &str) -> std::borrow::Cow<'_, str> {
    let needs = name.is_empty()
        || name.contains([',', '"', '\n', '\r'])
        || name.trim() != name
        || name.starts_with('\u{feff}');
    if needs {
        format!("\"{}\"", name.replace('"', "\"\"")).into()
    } else {
        name.into()
    }
}

fn csv_error(line: usize, problem: impl Into<String>) -> LifetimeError {
    LifetimeError::Csv {
        line,
        problem: problem.into(),
    }
}

/// A whole non-negative number in the column named `column`.
fn parse_number(text: &str, column: &str, line: usize) -> Result<u64, LifetimeError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if text.is_empty() {
        return Err(csv_error(line, format!("empty {column}")));
    }
    if text.strip_prefix('-').is_some_and(digits) {
        return Err(csv_error(line, format!("{column} is negative: {text}")));
    }
    if !digits(text) {
        return Err(csv_error(
            line,
            format!("{column} is not a whole number: {text:?}"),
        ));
    }
    text.parse()
        .map_err(|_| csv_error(line, format!("{column} {text} does not fit in 64 bits")))
}

/// Where each column is, from the header.
struct Columns {
    id: usize,
    lower: usize,
    upper: usize,
    size: usize,
}

impl Columns {
    fn new(header: &Row) -> Result<Self, LifetimeError> {
        const ROLES: [(&str, &str); 5] = [
            ("id", "buffer"),
            ("lower", "start"),
            ("upper", "end"),
            ("size", "size"),
            ("offset", "offset"),
        ];
        let line = header.line;
        let role = |name: &str| {
            ROLES
                .iter()
                .position(|(a, b)| name.eq_ignore_ascii_case(a) || name.eq_ignore_ascii_case(b))
        };
        if header.fields.iter().all(|f| role(f).is_none()) {
            return Err(csv_error(
                line,
                format!(
                    "no header: the first line must name the columns id,lower,upper,size \
                     (or buffer,start,end,size), not {:?}",
                    header.fields.join(",")
                ),
            ));
        }
        let mut at: [Option<usize>; 5] = [None; 5];
        for (k, name) in header.fields.iter().enumerate() {
            let Some(r) = role(name) else {
                return Err(csv_error(
                    line,
                    format!(
                        "unknown column {name:?} (expected id, lower, upper, size and \
                         optionally offset; or buffer, start, end, size)"
                    ),
                ));
            };
            if let Some(first) = at[r] {
                return Err(csv_error(
                    line,
                    format!(
                        "columns {:?} and {name:?} are the same column",
                        header.fields[first]
                    ),
                ));
            }
            at[r] = Some(k);
        }
        let need = |r: usize| {
            at[r].ok_or_else(|| {
                let (a, b) = ROLES[r];
                csv_error(
                    line,
                    format!(
                        "no {a} column (or {b}): the header must name id, lower, upper and size"
                    ),
                )
            })
        };
        Ok(Self {
            id: need(0)?,
            lower: need(1)?,
            upper: need(2)?,
            size: need(3)?,
        })
    }
}

/// One CSV record: its fields, and the line it starts on.
struct Row {
    line: usize,
    fields: Vec<String>,
}

/// How a field ended.
#[derive(PartialEq, Eq)]
enum End {
    Comma,
    Line,
    Text,
}

/// Splits `text` into records, skipping blank lines. Unquoted fields are trimmed;
/// a quoted field keeps everything between its quotes, line breaks included.
fn rows(text: &str) -> Result<Vec<Row>, LifetimeError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut rows = Vec::new();
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut quoted = false;
        loop {
            while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
            let mut field = String::new();
            let end = if chars.next_if_eq(&'"').is_some() {
                quoted = true;
                let opened = line;
                loop {
                    match chars.next() {
                        None => return Err(csv_error(opened, "a quoted field is not closed")),
                        Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                while chars.next_if(|&c| matches!(c, ' ' | '\t' | '\r')).is_some() {}
                match chars.next() {
                    None => End::Text,
                    Some('\n') => End::Line,
                    Some(',') => End::Comma,
                    Some(c) => {
                        return Err(csv_error(
                            line,
                            format!(
                                "{c:?} after a closing quote (expected a comma or the line's end)"
                            ),
                        ));
                    }
                }
            } else {
                let end = loop {
                    match chars.next() {
                        None => break End::Text,
                        Some('\n') => break End::Line,
                        Some(',') => break End::Comma,
                        Some('"') => {
                            return Err(csv_error(
                                line,
                                "a quote inside an unquoted field (quote the whole field, \
                                 and double the quotes in it)",
                            ));
                        }
                        Some(c) => field.push(c),
                    }
                };
                field = field.trim().to_owned();
                end
            };
            fields.push(field);
            match end {
                End::Comma => {}
                End::Line => {
                    line += 1;
                    break;
                }
                End::Text => break,
            }
        }
        let blank = !quoted && fields.len() == 1 && fields[0].is_empty();
        if !blank {
            rows.push(Row {
                line: start,
                fields,
            });
        }
    }
    Ok(rows)
}
