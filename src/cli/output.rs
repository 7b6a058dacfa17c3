//! What the client prints on stdout: a table with a header for a list, `name: value`
//! lines for one object, and with `-o json` the daemon's answer, whole and pretty.
//! Progress and errors go to stderr, never here.

use serde_json::Value;

/// The answer as JSON, pretty (nothing for an empty answer).
pub(super) fn json(v: &Value) {
    if !v.is_null() {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

/// A JSON string as text; a number as its digits; anything else as nothing.
pub(super) fn str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `1.2 MB`, decimal units as registries and `docker images` show sizes.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Columns padded to their widest cell, two spaces apart; the last one not padded.
pub(super) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(super) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i == last {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub(super) fn print(&self) {
        print!("{}", self.render());
    }
}

/// `name: value` lines, values aligned; empty values left out.
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(super) fn new() -> Fields {
        Fields(Vec::new())
    }

    /// The fields `names` of `object`, as text.
    pub(super) fn of(object: &Value, names: &[&str]) -> Fields {
        let mut f = Fields::new();
        f.push_from(object, names);
        f
    }

    pub(super) fn push_from(&mut self, object: &Value, names: &[&str]) {
        for name in names {
            self.push(name, str(&object[*name]));
        }
    }

    pub(super) fn push(&mut self, name: &str, value: String) {
        if !value.is_empty() {
            self.0.push((name.to_string(), value));
        }
    }

    pub(super) fn print(&self) {
        let width = self.0.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 1;
        for (name, value) in &self.0 {
            println!("{:<width$} {value}", format!("{name}:"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_a_header_and_aligned_columns() {
        let mut t = Table::new(&["ID", "STATUS", "IMAGE"]);
        t.row(vec!["abc".into(), "succeeded".into(), "x".into()]);
        t.row(vec!["d".into(), "failed".into(), "".into()]);
        assert_eq!(
            t.render(),
            "ID   STATUS     IMAGE\nabc  succeeded  x\nd    failed\n"
        );
    }

    #[test]
    fn sizes_are_decimal_units() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1.0 kB");
        assert_eq!(bytes(1_234_567), "1.2 MB");
    }
}
