//! Writes batches of records in time order, assigns sequential ids and records
//! the ground truth of every row.

use super::geo::Store;
use super::person::Owner;
use super::records::{push_csv, push_json_str, Batch, TextRow};
use super::sinks::{PosSink, ShopSink, TextSink};
use super::{crm, engagement, GenerateError, GeneratedSource, Summary};
use std::path::Path;

/// A CSV or NDJSON source file and the numbering of its rows.
struct TextSource {
    sink: TextSink,
    name: &'static str,
    /// Id prefix for rows without a key of their own, e.g. `T` → `T000000001`.
    prefix: &'static str,
    json: bool,
    next: u64,
}

impl TextSource {
    fn create(
        dir: &Path,
        name: &'static str,
        ext: &str,
        header: Option<&str>,
        prefix: &'static str,
    ) -> Result<Self, GenerateError> {
        let sink = TextSink::create(dir.join(format!("{name}.{ext}")), header)?;
        Ok(TextSource {
            sink,
            name,
            prefix,
            json: ext == "ndjson",
            next: 0,
        })
    }

    /// Writes `rows` sorted by time, numbering those without a key.
    fn write(&mut self, mut rows: Vec<TextRow>, truth: &mut Truth) -> Result<(), GenerateError> {
        rows.sort_by_key(|r| r.ts);
        for r in rows {
            let key = match r.key {
                Some(k) => k,
                None => {
                    self.next += 1;
                    format!("{}{:09}", self.prefix, self.next)
                }
            };
            let line = &mut truth.line;
            line.clear();
            if self.json {
                line.push_str("{\"event_id\":");
                push_json_str(line, &key);
            } else {
                push_csv(line, &key);
            }
            line.push(',');
            line.push_str(&r.body);
            line.push('\n');
            self.sink.record(line)?;
            truth.row(self.name, &key, r.owner)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<GeneratedSource, GenerateError> {
        let rows = self.sink.rows;
        let format = if self.json { "json" } else { "csv" };
        Ok(GeneratedSource {
            name: self.name,
            file: self.sink.finish()?,
            format,
            rows,
        })
    }
}

/// `ground_truth.csv` plus a reusable line buffer.
struct Truth {
    sink: TextSink,
    line: String,
}

impl Truth {
    fn row(&mut self, source: &str, key: &str, owner: Owner) -> Result<(), GenerateError> {
        let line = &mut self.line;
        line.clear();
        line.push_str(source);
        line.push(',');
        push_csv(line, key);
        line.push(',');
        owner.push_id(line);
        line.push('\n');
        self.sink.record(line)
    }
}

/// All open output files.
pub struct Outputs {
    crm: TextSource,
    shop: ShopSink,
    pos: PosSink,
    web: TextSource,
    email: TextSource,
    support: TextSource,
    consent: TextSource,
    truth: Truth,
    next_order: u64,
    next_receipt: u64,
}

impl Outputs {
    /// Creates every file in `dir` and writes the CSV headers.
    pub fn create(dir: &Path) -> Result<Self, GenerateError> {
        Ok(Outputs {
            crm: TextSource::create(dir, "crm_contacts", "csv", Some(crm::CRM_HEADER), "C")?,
            shop: ShopSink::create(dir.join("shop_orders.parquet"))?,
            pos: PosSink::create(dir.join("pos_orders.parquet"))?,
            web: TextSource::create(dir, "web_events", "ndjson", None, "E")?,
            email: TextSource::create(
                dir,
                "email_engagement",
                "csv",
                Some(engagement::EMAIL_HEADER),
                "M",
            )?,
            support: TextSource::create(
                dir,
                "support_tickets",
                "csv",
                Some(crm::SUPPORT_HEADER),
                "T",
            )?,
            consent: TextSource::create(
                dir,
                "consent_changes",
                "csv",
                Some(engagement::CONSENT_HEADER),
                "CC",
            )?,
            truth: Truth {
                sink: TextSink::create(
                    dir.join("ground_truth.csv"),
                    Some("source,record_key,person_id"),
                )?,
                line: String::with_capacity(512),
            },
            next_order: 0,
            next_receipt: 0,
        })
    }

    /// Writes one batch: each source in time order, with its ground truth.
    pub fn write(&mut self, batch: Batch, stores: &[Store]) -> Result<(), GenerateError> {
        let Batch {
            crm,
            mut shop,
            mut pos,
            web,
            email,
            support,
            consent,
        } = batch;
        let truth = &mut self.truth;
        self.crm.write(crm, truth)?;
        shop.sort_by_key(|r| r.ts);
        for r in &shop {
            self.next_order += 1;
            let id = format!("SO{:08}", self.next_order);
            self.shop.push(&id, r)?;
            truth.row("shop_orders", &id, r.owner)?;
        }
        pos.sort_by_key(|r| r.ts);
        for r in &pos {
            self.next_receipt += 1;
            let id = format!("R{:09}", self.next_receipt);
            let store = stores.get(r.store).map_or("S000", |s| s.id.as_str());
            self.pos.push(&id, store, r)?;
            truth.row("pos_orders", &id, r.owner)?;
        }
        self.web.write(web, truth)?;
        self.email.write(email, truth)?;
        self.support.write(support, truth)?;
        self.consent.write(consent, truth)
    }

    /// Flushes and closes everything.
    pub fn finish(self, people: usize) -> Result<Summary, GenerateError> {
        let crm = self.crm.finish()?;
        let (file, rows) = self.shop.finish()?;
        let shop = GeneratedSource {
            name: "shop_orders",
            file,
            format: "parquet",
            rows,
        };
        let (file, rows) = self.pos.finish()?;
        let pos = GeneratedSource {
            name: "pos_orders",
            file,
            format: "parquet",
            rows,
        };
        let sources = vec![
            crm,
            shop,
            pos,
            self.web.finish()?,
            self.email.finish()?,
            self.support.finish()?,
            self.consent.finish()?,
        ];
        Ok(Summary {
            sources,
            ground_truth: self.truth.sink.finish()?,
            people,
        })
    }
}
