//! Realistic, messy, multi-source customer data for `tessera demo`.
//!
//! [`generate`] simulates `customers` people (plus ~30% as many anonymous web
//! visitors) over the three years before a fixed reference date
//! (2026-11-01T00:00:00Z) and writes what seven typical source systems would
//! have recorded about them:
//!
//! | file                     | format  | keyed by            |
//! |--------------------------|---------|---------------------|
//! | `crm_contacts.csv`       | CSV     | `contact_id`        |
//! | `shop_orders.parquet`    | Parquet | `order_id`          |
//! | `pos_orders.parquet`     | Parquet | `receipt_id`        |
//! | `web_events.ndjson`      | NDJSON  | `event_id`          |
//! | `email_engagement.csv`   | CSV     | `send_id`           |
//! | `support_tickets.csv`    | CSV     | `ticket_id`         |
//! | `consent_changes.csv`    | CSV     | `change_id`         |
//!
//! plus `ground_truth.csv` (`source,record_key,person_id`), which maps every
//! record of every file to the person who produced it, so identity resolution
//! can be scored.
//!
//! The data is deliberately dirty in the ways real data is: emails with random
//! case, whitespace, `+tags`, gmail dots, `googlemail.com` and misspelt domains;
//! one phone number written in many national and international formats (and
//! junk such as `n/a`); nicknames, typos, stripped accents and `LAST, First`
//! names; duplicate CRM contacts; households sharing an address and sometimes
//! a family mailbox; several devices per person; visitors who never log in.
//!
//! Conventions:
//! - timestamps are ISO-8601 UTC (`2025-03-14T09:26:53Z`; Parquet: µs, UTC),
//!   dates `YYYY-MM-DD`; person ids are `P0000001` (customers) and `V000001`
//!   (anonymous-only visitors);
//! - `web_events.user_id` is the CRM `contact_id`, set from a `login`/`signup`
//!   event (inclusive) to the end of that session or its `logout` (inclusive);
//!   `email` is only present on `login`/`signup`;
//! - `pos_orders.loyalty_id` and `consent_changes.contact_id` are CRM
//!   `contact_id`s — sometimes of the person's duplicate contact;
//! - `email_engagement.send_id` is `<12 hex digits of the send>-<event>`, unique
//!   per row; strip the suffix to group a send's events;
//! - empty CSV fields and Parquet nulls both mean "not captured";
//!   `shop_orders.customer_email` is an empty string when left blank.
//!
//! Output is a pure function of `(customers, seed)`: the same options produce
//! byte-identical files. People are simulated in batches of 2,048 (bounding
//! memory); each batch's records are sorted by time before ids are assigned, so
//! row order and ids reveal at most which batch a record came from.

mod commerce;
mod crm;
mod email;
mod engagement;
mod geo;
mod install;
mod names;
mod output;
mod person;
mod phone;
mod records;
mod sinks;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dataset;
mod text;
mod time;
mod web;

pub use install::{apply_model, Demo};

use indicatif::{ProgressBar, ProgressStyle};
use output::Outputs;
use person::{IdScrambler, Person, PersonFactory};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use records::Batch;
use std::path::PathBuf;

/// People simulated (and held in memory) at a time.
const BATCH_PEOPLE: usize = 2048;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Output directory; created if missing. Existing files are overwritten.
    pub dir: PathBuf,
    /// Number of known customers to simulate.
    pub customers: usize,
    /// Seed of the deterministic random generator.
    pub seed: u64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// One generated source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSource {
    /// Source name as used in `ground_truth.csv`, e.g. `crm_contacts`.
    pub name: &'static str,
    pub file: PathBuf,
    /// `"csv"`, `"parquet"` or `"json"` (newline-delimited).
    pub format: &'static str,
    pub rows: usize,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sources: Vec<GeneratedSource>,
    pub ground_truth: PathBuf,
    /// Distinct people in the ground truth: customers plus anonymous visitors.
    pub people: usize,
}

/// Failure while writing the demo data set; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write Parquet file {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot build Arrow batch for {}: {source}", path.display())]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
}

/// Anonymous-only visitors that belong to the first `customers` customers (30%).
fn visitors_before(customers: usize) -> u64 {
    // u128: no overflow for any usize.
    (customers as u128 * 3 / 10) as u64
}

/// Generates the full demo data set into `opts.dir`.
pub fn generate(opts: &GenerateOptions) -> Result<Summary, GenerateError> {
    std::fs::create_dir_all(&opts.dir).map_err(|source| GenerateError::Io {
        path: opts.dir.clone(),
        source,
    })?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let stores = geo::stores();
    let campaigns = engagement::campaigns(&mut rng);
    let contacts = IdScrambler::new(
        (opts.customers as u64).saturating_mul(2).saturating_add(2),
        &mut rng,
    );
    let mut send_ids = engagement::SendIds::new(rng.random());
    let mut factory = PersonFactory {
        emails: Default::default(),
        contacts: &contacts,
        stores: &stores,
    };
    let mut out = Outputs::create(&opts.dir)?;

    let bar = if opts.progress {
        ProgressBar::new(opts.customers as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} generating demo data [{elapsed_precise}] [{wide_bar}] {human_pos}/{human_len} customers (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }

    let mut start = 0usize;
    while start < opts.customers {
        let end = start.saturating_add(BATCH_PEOPLE).min(opts.customers);
        let mut people: Vec<Person> = Vec::with_capacity(end - start);
        for i in start..end {
            let mut p = factory.make(i as u64, people.last(), &mut rng);
            if let Some(prev) = people.last_mut() {
                factory.link_household(prev, &mut p, &mut rng);
            }
            people.push(p);
        }
        let mut batch = Batch::default();
        for p in &people {
            crm::contacts(p, &mut rng, &mut batch);
            let orders = commerce::shop_orders(p, &mut rng, &mut batch);
            commerce::pos_orders(p, &stores, &mut rng, &mut batch);
            web::sessions(p, &orders, &mut rng, &mut batch);
            engagement::engagement(p, &campaigns, &mut send_ids, &mut rng, &mut batch);
            crm::tickets(p, &orders, &mut rng, &mut batch);
        }
        for v in visitors_before(start)..visitors_before(end) {
            web::visitor(v, &mut rng, &mut batch);
        }
        out.write(batch, &stores)?;
        bar.inc((end - start) as u64);
        start = end;
    }
    bar.finish_and_clear();
    out.finish(
        opts.customers
            .saturating_add(visitors_before(opts.customers) as usize),
    )
}
