//! A copy of the `phonenumber` crate's metadata database for each thread.
//!
//! The crate's database keeps its compiled regular expressions in one cache behind one
//! mutex, held while each expression runs: parsing, validating and formatting a number
//! takes dozens of them, so threads normalising phones at the same time mostly waited
//! for each other (two cores did the work of about one). Each thread gets its own copy,
//! rebuilt from the shared database's metadata, with a cache of its own.

use std::cell::RefCell;

use phonenumber::metadata::{loader, Database, Descriptor, Format, Metadata, DATABASE};

/// How many compiled patterns a database keeps: the metadata has about 5,000, and the
/// crate's default of 100 recompiled patterns on almost every number (about 40 µs each).
const COMPILED_PATTERNS: usize = 16_384;

thread_local! {
    static OWN: RefCell<Option<Database>> = RefCell::new(own_copy());
}

/// Run `f` with this thread's database (the shared one if the copy could not be built).
/// A copy whose cache lock was poisoned (the parser panicked while a pattern ran: the
/// caller turns that into a NULL) is built again; otherwise every later number on this
/// thread would fail on the lock and come out NULL too.
pub fn with_database<T>(f: impl FnOnce(&Database) -> T) -> T {
    OWN.with(|own| {
        if own
            .borrow()
            .as_ref()
            .is_some_and(|db| db.cache().is_poisoned())
        {
            *own.borrow_mut() = own_copy();
        }
        match own.borrow().as_ref() {
            Some(db) => f(db),
            None => {
                keep_compiled(&DATABASE);
                f(&DATABASE)
            }
        }
    })
}

fn keep_compiled(db: &Database) {
    if let Ok(mut cache) = db.cache().lock() {
        if cache.capacity() < COMPILED_PATTERNS {
            cache.set_capacity(COMPILED_PATTERNS);
        }
    }
}

fn own_copy() -> Option<Database> {
    // Every entry, in the order the shared database ranks the regions of one country
    // code (the main region first), so the copy ranks them the same.
    let entries: Vec<loader::Metadata> = (1..=999u16)
        .filter_map(|code| DATABASE.by_code(&code))
        .flatten()
        .map(entry)
        .collect();
    let db = Database::from(entries).ok()?;
    keep_compiled(&db);
    Some(db)
}

fn entry(m: &Metadata) -> loader::Metadata {
    let d = m.descriptors();
    loader::Metadata {
        general: Some(descriptor(d.general())),
        fixed_line: d.fixed_line().map(descriptor),
        mobile: d.mobile().map(descriptor),
        toll_free: d.toll_free().map(descriptor),
        premium_rate: d.premium_rate().map(descriptor),
        shared_cost: d.shared_cost().map(descriptor),
        personal_number: d.personal_number().map(descriptor),
        voip: d.voip().map(descriptor),
        pager: d.pager().map(descriptor),
        uan: d.uan().map(descriptor),
        emergency: d.emergency().map(descriptor),
        voicemail: d.voicemail().map(descriptor),
        short_code: d.short_code().map(descriptor),
        standard_rate: d.standard_rate().map(descriptor),
        carrier: d.carrier().map(descriptor),
        no_international: d.no_international().map(descriptor),
        id: Some(m.id().to_string()),
        country_code: Some(m.country_code()),
        international_prefix: m.international_prefix().map(|r| pattern(r.as_str())),
        preferred_international_prefix: m.preferred_international_prefix().map(str::to_string),
        national_prefix: m.national_prefix().map(str::to_string),
        preferred_extension_prefix: m.preferred_extension_prefix().map(str::to_string),
        national_prefix_for_parsing: m.national_prefix_for_parsing().map(|r| pattern(r.as_str())),
        national_prefix_transform_rule: m.national_prefix_transform_rule().map(str::to_string),
        formats: m.formats().iter().map(format).collect(),
        international_formats: m.international_formats().iter().map(format).collect(),
        main_country_for_code: m.is_main_country_for_code(),
        leading_digits: m.leading_digits().map(|r| pattern(r.as_str())),
        mobile_number_portable: m.is_mobile_number_portable(),
        ..Default::default()
    }
}

/// A pattern without its layout. The metadata's patterns are written over several
/// indented lines and compiled ignoring whitespace (none stands in a character class or
/// is escaped: see the tests); the cache hashes a pattern's whole text on every use, and
/// the layout made it 3.5 times longer.
fn pattern(source: &str) -> String {
    source.split_ascii_whitespace().collect()
}

fn descriptor(d: &Descriptor) -> loader::Descriptor {
    loader::Descriptor {
        national_number: Some(pattern(d.national_number().as_str())),
        possible_length: d.possible_length().to_vec(),
        possible_local_length: d.possible_local_length().to_vec(),
        example: d.example().map(str::to_string),
    }
}

fn format(f: &Format) -> loader::Format {
    loader::Format {
        pattern: Some(pattern(f.pattern().as_str())),
        format: Some(f.format().to_string()),
        leading_digits: f
            .leading_digits()
            .iter()
            .map(|r| pattern(r.as_str()))
            .collect(),
        national_prefix_formatting_rule: f.national_prefix().map(str::to_string),
        national_prefix_optional_when_formatting: f.is_national_prefix_optional(),
        domestic_carrier: f.domestic_carrier().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::Mode;

    /// Parse, validate and format with `db`.
    fn e164(db: &Database, region: Option<phonenumber::country::Id>, s: &str) -> Option<String> {
        let n = phonenumber::parse_with(db, region, s).ok()?;
        phonenumber::is_valid_with(db, &n).then(|| n.format_with(db).mode(Mode::E164).to_string())
    }

    /// Every pattern of a database's entries, as written.
    fn patterns(db: &Database) -> Vec<String> {
        let mut out = Vec::new();
        for code in 1..=999u16 {
            for m in db.by_code(&code).unwrap_or_default() {
                let d = m.descriptors();
                let descriptors = [
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.personal_number(),
                    d.voip(),
                    d.pager(),
                    d.uan(),
                    d.emergency(),
                    d.voicemail(),
                    d.short_code(),
                    d.standard_rate(),
                    d.carrier(),
                    d.no_international(),
                    Some(d.general()),
                ];
                let regexes = descriptors
                    .into_iter()
                    .flatten()
                    .map(|d| d.national_number())
                    .chain(
                        m.formats()
                            .iter()
                            .chain(m.international_formats())
                            .flat_map(|f| std::iter::once(f.pattern()).chain(f.leading_digits())),
                    )
                    .chain(m.international_prefix())
                    .chain(m.national_prefix_for_parsing())
                    .chain(m.leading_digits());
                out.extend(regexes.map(|r| r.as_str().to_string()));
            }
        }
        out
    }

    #[test]
    fn layout_is_all_the_whitespace_the_patterns_have() {
        let raw = patterns(&DATABASE);
        assert!(raw.len() > 2000, "{} patterns", raw.len());
        assert!(
            raw.iter().any(|p| p.contains('\n')),
            "the metadata has layout"
        );
        for p in &raw {
            // Whitespace matters only inside a class, escaped, or after `#` (a comment).
            let mut in_class = false;
            let mut escaped = false;
            for c in p.chars() {
                assert!(c != '#', "{p}");
                assert!(!(c.is_whitespace() && (in_class || escaped)), "{p}");
                match c {
                    '\\' if !escaped => escaped = true,
                    '[' if !escaped => in_class = true,
                    ']' if !escaped => in_class = false,
                    _ => escaped = false,
                }
                if c != '\\' {
                    escaped = false;
                }
            }
        }
        let own = own_copy().expect("copy");
        let stripped = patterns(&own);
        assert_eq!(stripped.len(), raw.len());
        assert!(stripped.iter().all(|p| !p.contains(char::is_whitespace)));
    }

    #[test]
    fn a_copy_poisoned_by_a_panic_is_built_again() {
        let panicked = std::panic::catch_unwind(|| {
            with_database(|db| {
                let cache = db.cache();
                let _held = cache.lock();
                panic!("a pattern panicked");
            })
        });
        assert!(panicked.is_err());
        let number = "+44 20 7946 0958";
        let (poisoned, formatted) =
            with_database(|db| (db.cache().is_poisoned(), e164(db, None, number)));
        assert!(!poisoned, "the copy is built again");
        assert_eq!(formatted.as_deref(), Some("+442079460958"));
    }

    #[test]
    fn the_copy_answers_as_the_shared_database() {
        use phonenumber::country::Id;
        let own = own_copy().expect("copy");
        assert_eq!(own.iter().count(), DATABASE.iter().count());
        for code in 1..=999u16 {
            let ids = |db: &Database| db.region(&code).map(|r| r.join(","));
            assert_eq!(ids(&own), ids(&DATABASE), "country code {code}");
        }
        let numbers = [
            (None, "+44 20 7946 0958"),
            (None, "+1 (202) 555-0143 ext. 12"),
            (None, "+49 151 23456789"),
            (None, "+800 1234 5678"),
            (None, "+33 1 42 68 53 00"),
            (None, "+7 912 345 67 89"),
            (None, "+61 2 9374 4000"),
            (None, "+1 268 464 1234"),
            (Some(Id::US), "(202) 555-0143"),
            (Some(Id::DE), "0151 23456789"),
            (Some(Id::GB), "020 7946 0958"),
            (Some(Id::FR), "01 42 68 53 00"),
            (Some(Id::IT), "06 6982 1234"),
            (None, "+49 000000000"),
            (None, "12345"),
        ];
        let mut valid = 0;
        for (region, s) in numbers {
            let expected = e164(&DATABASE, region, s);
            valid += usize::from(expected.is_some());
            assert_eq!(e164(&own, region, s), expected, "{s}");
        }
        assert!(valid >= 12, "only {valid} valid numbers");
    }

    /// With the crate's cache of 100, numbers from many countries compiled their
    /// patterns again on every parse (slow, and memory grew with the churn).
    #[test]
    fn each_thread_keeps_its_compiled_patterns() {
        let (own, capacity) = with_database(|db| {
            let shared = std::ptr::eq(db, &*DATABASE);
            (
                !shared,
                db.cache().lock().map(|c| c.capacity()).unwrap_or(0),
            )
        });
        assert!(own, "this thread uses its own copy");
        assert_eq!(capacity, COMPILED_PATTERNS);
    }
}
