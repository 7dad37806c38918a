//! In-memory rows of one batch of people, before ids are assigned and they hit disk,
//! plus the RFC 4180 / JSON encoding helpers used to build them.

use super::person::Owner;

/// A CSV or NDJSON row whose id column is filled in at write time
/// (unless `key` is already known, as for CRM contacts and email sends).
#[derive(Debug)]
pub struct TextRow {
    pub ts: i64,
    pub owner: Owner,
    pub key: Option<String>,
    /// Encoded remainder of the row after the id column (CSV fields, or JSON members).
    pub body: String,
}

/// One web-shop order (`shop_orders.parquet`).
#[derive(Debug)]
pub struct ShopRow {
    pub ts: i64,
    pub owner: Owner,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub total: f64,
    pub currency: &'static str,
    pub status: &'static str,
    pub items: i32,
}

/// One till receipt (`pos_orders.parquet`).
#[derive(Debug)]
pub struct PosRow {
    pub ts: i64,
    pub owner: Owner,
    pub store: usize,
    pub loyalty_id: Option<String>,
    pub phone: Option<String>,
    pub total: f64,
    pub items: i32,
}

/// Every record produced for one batch of people, per source.
#[derive(Debug, Default)]
pub struct Batch {
    pub crm: Vec<TextRow>,
    pub shop: Vec<ShopRow>,
    pub pos: Vec<PosRow>,
    pub web: Vec<TextRow>,
    pub email: Vec<TextRow>,
    pub support: Vec<TextRow>,
    pub consent: Vec<TextRow>,
}

/// Appends one CSV field, quoted per RFC 4180 when it contains a comma, quote,
/// line break or leading/trailing whitespace (so readers cannot trim it away).
pub fn push_csv(out: &mut String, field: &str) {
    let needs_quotes = field.contains([',', '"', '\n', '\r'])
        || field.starts_with([' ', '\t'])
        || field.ends_with([' ', '\t']);
    if needs_quotes {
        out.push('"');
        for ch in field.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Builds the CSV remainder of a row: `a,b,c` (no leading separator, no newline).
pub fn csv_body(fields: &[&str]) -> String {
    let mut out = String::with_capacity(fields.iter().map(|f| f.len() + 1).sum::<usize>() + 8);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv(&mut out, f);
    }
    out
}

/// Appends a JSON string literal with all required escapes.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a JSON member `,"name":value` where `None` becomes `null`.
pub fn push_json_member(out: &mut String, name: &str, value: Option<&str>) {
    out.push(',');
    push_json_str(out, name);
    out.push(':');
    match value {
        Some(v) => push_json_str(out, v),
        None => out.push_str("null"),
    }
}

/// Splits CSV text into records of fields (RFC 4180), for tests.
#[cfg(test)]
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\r' => {}
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                _ => field.push(c),
            }
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_round_trip() {
        let tricky = [
            "plain",
            "Müller, Anna",
            "say \"hi\"",
            "two\nlines",
            " padded ",
            "",
            "a,\"b\",\r\nc",
        ];
        let line = format!("{}\n", csv_body(&tricky));
        assert!(line.starts_with(
            "plain,\"Müller, Anna\",\"say \"\"hi\"\"\",\"two\nlines\",\" padded \",,"
        ));
        let parsed = parse_csv(&line);
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0],
            tricky.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn json_escaping_round_trip() {
        let mut s = String::from("{\"a\":1");
        push_json_member(
            &mut s,
            "x",
            Some("quote \" slash \\ nl \n tab \t bell \u{7} é"),
        );
        push_json_member(&mut s, "y", None);
        s.push('}');
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid json");
        assert_eq!(v["x"], "quote \" slash \\ nl \n tab \t bell \u{7} é");
        assert!(v["y"].is_null());
    }
}
