//! The function reference, `udfs/FUNCTIONS.md`, rendered from the functions' own
//! `#[user_doc]` documentation so that code and docs cannot drift apart.
//!
//! A unit test renders the reference and compares it with the committed file; run
//! `TESSERA_BLESS=1 cargo test -p tessera-udfs function_reference` to rewrite the file
//! after changing a function's documentation. Another test runs every SQL example of the
//! documentation and checks that its output is the one shown.

use std::fmt::Write as _;

use datafusion::logical_expr::{AggregateUDF, Documentation, ScalarUDF};

/// A function as the reference shows it: its name and documentation.
struct Entry<'a> {
    name: &'a str,
    doc: Option<&'a Documentation>,
}

/// Render the Markdown reference of `scalars` and then `aggregates`, grouped by
/// documentation section in the order the sections first appear, functions in the given
/// order within a section.
pub fn function_reference(scalars: &[ScalarUDF], aggregates: &[AggregateUDF]) -> String {
    let entries = scalars
        .iter()
        .map(|f| Entry {
            name: f.name(),
            doc: f.documentation(),
        })
        .chain(aggregates.iter().map(|f| Entry {
            name: f.name(),
            doc: f.documentation(),
        }));
    let mut sections: Vec<(&str, Vec<Entry>)> = Vec::new();
    for entry in entries {
        let label = entry.doc.map_or("Other Functions", |d| d.doc_section.label);
        match sections.iter_mut().find(|(l, _)| *l == label) {
            Some((_, members)) => members.push(entry),
            None => sections.push((label, vec![entry])),
        }
    }

    let mut md = String::new();
    md.push_str(
        "<!-- Generated from the functions' #[user_doc] attributes by\n     \
         `TESSERA_BLESS=1 cargo test -p tessera-udfs function_reference`: do not edit. -->\n\n",
    );
    md.push_str("# tessera SQL functions\n\n");
    md.push_str(
        "The functions tessera adds to DataFusion's own. The identity-matching (scalar) \
         functions return NULL when an argument is NULL, and take text of any string type \
         (`Utf8`, `LargeUtf8`, `Utf8View`). The survivorship functions are aggregates that \
         build golden records: they skip NULL values and settle ties by the values \
         themselves, so their results do not depend on the order of the rows.\n\n",
    );
    for (label, members) in &sections {
        let _ = write!(md, "- [{label}](#{}):", anchor(label));
        for (i, entry) in members.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(md, "{sep}[{0}](#{0})", entry.name);
        }
        md.push('\n');
    }
    for (label, members) in &sections {
        let _ = write!(md, "\n## {label}\n");
        for entry in members {
            render_function(&mut md, entry);
        }
    }
    md
}

fn render_function(md: &mut String, entry: &Entry) {
    let _ = write!(md, "\n### `{}`\n\n", entry.name);
    let Some(doc) = entry.doc else {
        md.push_str("Undocumented.\n");
        return;
    };
    let _ = write!(
        md,
        "{}\n\n```sql\n{}\n```\n",
        doc.description.trim(),
        doc.syntax_example
    );
    if let Some(alternatives) = &doc.alternative_syntax {
        for alternative in alternatives {
            let _ = write!(md, "\n```sql\n{alternative}\n```\n");
        }
    }
    if let Some(arguments) = doc.arguments.as_ref().filter(|a| !a.is_empty()) {
        md.push_str("\n#### Arguments\n\n");
        for (name, description) in arguments {
            let _ = writeln!(md, "- **{name}**: {}", description.trim());
        }
    }
    if let Some(example) = &doc.sql_example {
        let _ = write!(md, "\n#### Example\n\n{}\n", example.trim());
    }
    if let Some(related) = doc.related_udfs.as_ref().filter(|r| !r.is_empty()) {
        md.push_str("\n#### Related functions\n\n");
        for name in related {
            let _ = writeln!(md, "- [{name}](#{name})");
        }
    }
}

/// GitHub's heading anchor: lowercase, spaces to hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::{all_aggregate_udfs, all_scalar_udfs, register_all};

    fn reference() -> String {
        function_reference(&all_scalar_udfs(), &all_aggregate_udfs())
    }

    /// The name and documentation of every function.
    fn documented() -> Vec<(String, Option<Documentation>)> {
        all_scalar_udfs()
            .iter()
            .map(|f| (f.name().to_owned(), f.documentation().cloned()))
            .chain(
                all_aggregate_udfs()
                    .iter()
                    .map(|f| (f.name().to_owned(), f.documentation().cloned())),
            )
            .collect()
    }

    #[test]
    fn function_reference_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("FUNCTIONS.md");
        let rendered = reference();
        if std::env::var("TESSERA_BLESS").is_ok_and(|v| v == "1") {
            if let Err(e) = std::fs::write(&path, &rendered) {
                panic!("cannot write {}: {e}", path.display());
            }
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != rendered {
            let first_difference = committed
                .lines()
                .zip(rendered.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
            panic!(
                "{} is out of date with the functions' #[user_doc] (first difference at line {}).\n\
                 Regenerate it with: TESSERA_BLESS=1 cargo test -p tessera-udfs function_reference",
                path.display(),
                first_difference + 1
            );
        }
    }

    #[test]
    fn reference_lists_every_function_under_its_section() {
        let md = reference();
        for (name, _) in documented() {
            assert!(md.contains(&format!("\n### `{name}`\n")), "{name}");
            assert!(md.contains(&format!("[{name}](#{name})")), "{name}");
        }
        assert!(md.contains("\n## Normalisation Functions\n"));
        assert!(md.contains("](#normalisation-functions)"));
        assert!(md.contains("- **default_region**: "));
        assert!(md.contains("\n## Survivorship Functions\n"));
    }

    /// Every `> query` line of every SQL example, with the table shown after it.
    fn examples() -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (name, doc) in documented() {
            let Some(example) = doc.and_then(|d| d.sql_example) else {
                continue;
            };
            let body = example
                .trim()
                .trim_start_matches("```sql")
                .trim_end_matches("```")
                .trim();
            for line in body.lines() {
                if let Some(query) = line.strip_prefix("> ") {
                    out.push((name.clone(), query.trim().to_owned(), String::new()));
                } else if let Some((_, _, table)) = out.last_mut() {
                    table.push_str(line);
                    table.push('\n');
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn sql_examples_show_real_output() -> datafusion::common::Result<()> {
        let ctx = SessionContext::new();
        register_all(&ctx);
        let examples = examples();
        assert!(examples.len() >= documented().len());
        for (name, query, expected) in examples {
            let batches = ctx.sql(&query).await?.collect().await?;
            let actual = pretty_format_batches(&batches)?.to_string();
            assert_eq!(actual.trim(), expected.trim(), "example of {name}: {query}");
        }
        Ok(())
    }
}
