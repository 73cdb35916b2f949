//! Walks a parsed TOML document table by table, turning every problem into a
//! [`Diagnostic`] that names the dotted key and its line.
//!
//! The walk reads each known key of a table once, deserialising its value on its own, so
//! one bad value does not hide the next: the loader reports every problem it can find in
//! one pass. Whatever the walk did not read is an unknown key.

use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Diagnostic;

/// The text being checked and the diagnostics found in it so far.
pub(super) struct Report<'s> {
    text: &'s str,
    diagnostics: Vec<Diagnostic>,
}

impl<'s> Report<'s> {
    pub(super) fn new(text: &'s str) -> Self {
        Report {
            text,
            diagnostics: Vec::new(),
        }
    }

    /// Records a problem with `key`, located at the start of `span`.
    pub(super) fn error(&mut self, key: String, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = position(self.text, span.start);
        self.diagnostics.push(Diagnostic {
            key,
            line,
            column,
            message: message.into(),
        });
    }

    /// Records a TOML syntax error, naming the key whose value holds it (or the key
    /// written on its line). When the value began on an earlier line (an unclosed array
    /// or multi-line string, which the parser only notices later) the message says so.
    pub(super) fn syntax_error(&mut self, error: &toml::de::Error) {
        let offset = error.span().map_or(0, |span| span.start);
        let start = enclosing_value_start(self.text, offset).unwrap_or(offset);
        let mut message = error.message().trim_end().to_owned();
        let start_line = self.line_of(start..start);
        if start_line != self.line_of(offset..offset) {
            message.push_str(&format!(" (in the value that starts on line {start_line})"));
        }
        self.error(key_written_at(self.text, start), offset..offset, message);
    }

    /// The 1-based line where `span` starts.
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
        position(self.text, span.start).0
    }

    pub(super) fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The diagnostics in file order.
    pub(super) fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics
    }
}

/// The 1-based line and character column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The dotted key being written on the line that holds `offset`, found from the text
/// alone (the document did not parse): the nearest `[table]` header above, plus the
/// `key =` on that line if there is one.
fn key_written_at(text: &str, offset: usize) -> String {
    let (line_number, _) = position(text, offset);
    let mut table = String::new();
    let mut key = None;
    for (index, line) in text.lines().take(line_number).enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            table = normalize_key(header.split([']', '#']).next().unwrap_or(header));
        } else if index + 1 == line_number {
            key = line
                .split_once('=')
                .map(|(k, _)| normalize_key(k))
                .filter(|k| !k.is_empty());
        }
    }
    match key {
        Some(key) if table.is_empty() => key,
        Some(key) => format!("{table}.{key}"),
        None if table.is_empty() => "(document)".to_owned(),
        None => table,
    }
}

/// The offset where the string, array or inline table around `offset` opens (the
/// outermost, for nested ones); `None` when `offset` is outside any.
fn enclosing_value_start(text: &str, offset: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let end = offset.min(bytes.len());
    let skip_line = |i: usize| {
        bytes[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |n| i + n)
    };
    let mut open = Vec::new();
    let mut line_start = true;
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'\n' => line_start = true,
            b' ' | b'\t' | b'\r' => {}
            b'#' => i = skip_line(i) - 1,
            // A table header; its brackets open no value.
            b'[' if open.is_empty() && line_start => i = skip_line(i) - 1,
            b'[' | b'{' => open.push(i),
            b']' | b'}' => {
                open.pop();
            }
            quote @ (b'"' | b'\'') => {
                let start = i;
                let delimiter: &[u8] = match (quote, bytes[i..].starts_with(&[quote; 3])) {
                    (b'"', true) => b"\"\"\"",
                    (_, true) => b"\'\'\'",
                    (b'"', false) => b"\"",
                    (_, false) => b"\'",
                };
                i += delimiter.len();
                loop {
                    if i >= end {
                        return Some(open.first().copied().unwrap_or(start));
                    }
                    if bytes[i..].starts_with(delimiter) {
                        i += delimiter.len() - 1;
                        break;
                    }
                    if delimiter.len() == 1 && bytes[i] == b'\n' {
                        // An unclosed one-line string: the parser reports it on its own line.
                        i -= 1;
                        break;
                    }
                    i += if quote == b'"' && bytes[i] == b'\\' {
                        2
                    } else {
                        1
                    };
                }
                line_start = false;
            }
            _ => line_start = false,
        }
        i += 1;
    }
    open.first().copied()
}

/// `a . "b"` becomes `a.b`.
fn normalize_key(raw: &str) -> String {
    let parts: Vec<&str> = raw
        .split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect();
    if parts.iter().any(|part| part.is_empty()) {
        String::new()
    } else {
        parts.join(".")
    }
}

/// One TOML table being read, with the dotted path it sits at.
pub(super) struct Table<'a, 'i> {
    path: String,
    entries: &'a DeTable<'i>,
    /// The table's header (or the whole inline table), where a missing key is reported.
    span: Range<usize>,
    /// The keys read so far; [`Table::finish`] reports every other key.
    read: Vec<&'a str>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// The document's top-level table.
    pub(super) fn root(document: &'a Spanned<DeTable<'i>>) -> Self {
        Table {
            path: String::new(),
            entries: document.get_ref(),
            span: document.span(),
            read: Vec::new(),
        }
    }

    /// The dotted path of `name` in this table.
    pub(super) fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn get(&mut self, name: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.read.push(name);
        self.entries.get(name)
    }

    fn missing(&self, report: &mut Report<'_>, name: &str, what: &str) {
        report.error(
            self.key(name),
            self.span.clone(),
            format!("missing required {what}"),
        );
    }

    /// Reads the value of a key that must be present.
    pub(super) fn required<T: DeserializeOwned>(
        &mut self,
        report: &mut Report<'_>,
        name: &'static str,
    ) -> Option<Spanned<T>> {
        let value = self.get(name);
        if value.is_none() {
            self.missing(report, name, "key");
        }
        self.deserialize(report, name, value?)
    }

    /// Reads the value of a key that may be absent; `None` when absent or invalid.
    pub(super) fn optional<T: DeserializeOwned>(
        &mut self,
        report: &mut Report<'_>,
        name: &'static str,
    ) -> Option<Spanned<T>> {
        let value = self.get(name)?;
        self.deserialize(report, name, value)
    }

    fn deserialize<T: DeserializeOwned>(
        &self,
        report: &mut Report<'_>,
        name: &str,
        value: &Spanned<DeValue<'i>>,
    ) -> Option<Spanned<T>> {
        let span = value.span();
        match T::deserialize(value.clone().into_deserializer()) {
            Ok(parsed) => Some(Spanned::new(span, parsed)),
            Err(error) => {
                report.error(
                    self.key(name),
                    error.span().unwrap_or(span),
                    error.message(),
                );
                None
            }
        }
    }

    /// Reads a sub-table that must be present.
    pub(super) fn required_table(
        &mut self,
        report: &mut Report<'_>,
        name: &'static str,
    ) -> Option<Table<'a, 'i>> {
        let value = self.get(name);
        if value.is_none() {
            self.missing(report, name, "table");
        }
        self.table(report, name, value?)
    }

    /// Every key of this table with the sub-table under it (`None` when the value is not
    /// a table, which is reported), in file order; each key counts as read.
    pub(super) fn tables(
        &mut self,
        report: &mut Report<'_>,
    ) -> Vec<(&'a str, Range<usize>, Option<Table<'a, 'i>>)> {
        let entries = self.entries;
        let mut found = Vec::new();
        for (key, value) in entries {
            let name: &'a str = key.get_ref().as_ref();
            self.read.push(name);
            found.push((name, key.span(), self.table(report, name, value)));
        }
        found
    }

    /// Reads a sub-table that may be absent; `None` when absent or not a table.
    pub(super) fn optional_table(
        &mut self,
        report: &mut Report<'_>,
        name: &'static str,
    ) -> Option<Table<'a, 'i>> {
        let value = self.get(name)?;
        self.table(report, name, value)
    }

    fn table(
        &self,
        report: &mut Report<'_>,
        name: &str,
        value: &'a Spanned<DeValue<'i>>,
    ) -> Option<Table<'a, 'i>> {
        match value.get_ref() {
            DeValue::Table(entries) => Some(Table {
                path: self.key(name),
                entries,
                span: value.span(),
                read: Vec::new(),
            }),
            other => {
                report.error(
                    self.key(name),
                    value.span(),
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Reports every key of this table that was not read; `what` names such a key in
    /// the message ("key", "resource kind").
    pub(super) fn finish(&self, report: &mut Report<'_>, what: &str) {
        for (key, _) in self.entries {
            let name = key.get_ref().as_ref();
            if !self.read.contains(&name) {
                let message = format!(
                    "unknown {what} `{name}` (expected one of: {})",
                    self.read.join(", ")
                );
                report.error(self.key(name), key.span(), message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\n# é é\nb = 2";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 4), (1, 5));
        assert_eq!(position(text, 6), (2, 1));
        assert_eq!(
            position(text, text.find('b').expect("b is in the text")),
            (3, 1)
        );
        assert_eq!(position(text, "a = 1\n# é ".len()), (2, 5));
        assert_eq!(position(text, 1_000), (3, 6));
    }

    #[test]
    fn syntax_errors_name_the_key_on_their_line() {
        let text = "top = 1\n[ kinds . \"render_cache\" ]\npriority = = 3\n\n[[x.y]]\ngarbage\n[unclosed # 7\n";
        let at =
            |needle: &str| key_written_at(text, text.find(needle).expect("needle is in the text"));
        assert_eq!(at("top"), "top");
        assert_eq!(at("= 3"), "kinds.render_cache.priority");
        assert_eq!(at("render_cache"), "kinds.render_cache");
        assert_eq!(at("garbage"), "x.y");
        assert_eq!(at("# 7"), "unclosed");
        assert_eq!(key_written_at("!!!", 0), "(document)");
    }

    #[test]
    fn values_that_span_lines_are_found_from_inside() {
        let text = "[t] # [\na = [1, # ]\n  { b = \"]\" },\n  2 ]\nc = \"\"\"x\n]\n\"\"\" # '\nd = 'it''s'\n[[u]]\ne = 1\n";
        let inside = |needle: &str| {
            enclosing_value_start(text, text.find(needle).expect("needle is in the text"))
        };
        let a = text.find("[1");
        assert_eq!(inside("a ="), None);
        assert_eq!(inside("1,"), a);
        assert_eq!(inside("b ="), a);
        assert_eq!(inside("2 ]"), a);
        assert_eq!(inside("c ="), None);
        assert_eq!(inside("x\n"), text.find("\"\"\"x"));
        assert_eq!(inside("]\n\""), text.find("\"\"\"x"));
        assert_eq!(inside("d ="), None);
        assert_eq!(inside("e ="), None);
        assert_eq!(enclosing_value_start(text, text.len()), None);
    }
}
