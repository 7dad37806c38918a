//! `explain_identity('<unified_id>')`: the records of one profile and every identifier
//! they carry, with what each identifier did:
//!
//! - `linked`: shared with another record of the profile (it joined them);
//! - `unique`: carried by this record only;
//! - `blocked`: a value that never links (placeholder, fake phone, test address, a
//!   rules pattern);
//! - `refused`: it would have joined this profile to another one but a limit stopped it
//!   (the reason is in `tessera.identity_refusals`);
//! - `none`: the record has no identifier.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{exec_datafusion_err, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{collect, execute_stream, ExecutionPlan};
use futures::StreamExt;

use super::graph::pair_hash;
use super::rules::Rules;
use super::state::{decode_id, space_dir, SpaceState};
use super::IdentityStore;

pub fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("record_key", DataType::Utf8, false),
        Field::new("id_type", DataType::Utf8, true),
        Field::new("id_value", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("records", DataType::Int64, false),
    ]))
}

struct Row {
    source: String,
    key: String,
    ident: Option<(String, String)>,
}

pub async fn run(
    store: &IdentityStore,
    space: &str,
    unified_id: &str,
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    context: Arc<TaskContext>,
) -> Result<Vec<RecordBatch>> {
    let meta = store
        .meta(space)
        .ok_or_else(|| exec_datafusion_err!("explain_identity: no identity space \"{space}\""))?;
    let Some(seq) = decode_id(unified_id, meta.salt).filter(|s| *s < meta.next_seq) else {
        return Ok(vec![RecordBatch::new_empty(output_schema())]);
    };
    let dir = space_dir(store.root(), space);
    let state = tokio::task::spawn_blocking(move || SpaceState::load(&dir, true))
        .await
        .map_err(|e| exec_datafusion_err!("explain_identity: {e}"))?
        .map_err(|e| exec_datafusion_err!("explain_identity: {e}"))?
        .unwrap_or_default();
    let records = &state.records;
    let members: HashSet<u128> = (0..records.len())
        .filter(|i| records.seqs()[*i] == seq)
        .map(|i| records.hash(i))
        .collect();
    let refused: HashSet<u128> = store.refused_hashes(space);
    let rules = match inputs.get(1) {
        Some(plan) => {
            let name = meta.rules.clone().unwrap_or_default();
            Rules::from_batches(&name, &collect(plan.clone(), context.clone()).await?)?
        }
        None => Rules::default(),
    };

    let mut rows = Vec::new();
    let mut buf = Vec::new();
    let mut stream = execute_stream(inputs[0].clone(), context)?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let cols = (0..4)
            .map(|i| {
                Ok(datafusion::arrow::compute::cast(
                    batch.column(i),
                    &DataType::Utf8,
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        let text: Vec<&datafusion::arrow::array::StringArray> = cols
            .iter()
            .map(|c| datafusion::arrow::array::AsArray::as_string::<i32>(c.as_ref()))
            .collect();
        for i in 0..batch.num_rows() {
            use datafusion::arrow::array::Array;
            if text[0].is_null(i) || text[1].is_null(i) {
                continue;
            }
            let (source, key) = (text[0].value(i), text[1].value(i));
            if !members.contains(&pair_hash(&mut buf, source, key)) {
                continue;
            }
            let ident = (!text[2].is_null(i) && !text[3].is_null(i)).then(|| {
                (
                    text[2].value(i).trim().to_lowercase(),
                    text[3].value(i).to_string(),
                )
            });
            rows.push(Row {
                source: source.into(),
                key: key.into(),
                ident,
            });
        }
    }
    rows.sort_by(|a, b| (&a.source, &a.key, &a.ident).cmp(&(&b.source, &b.key, &b.ident)));
    rows.dedup_by(|a, b| a.source == b.source && a.key == b.key && a.ident == b.ident);

    let mut carriers: HashMap<&(String, String), HashSet<(&str, &str)>> = HashMap::new();
    for r in &rows {
        if let Some(id) = &r.ident {
            carriers
                .entry(id)
                .or_default()
                .insert((r.source.as_str(), r.key.as_str()));
        }
    }
    let (mut s, mut k, mut t, mut v, mut st, mut n) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
    );
    for r in &rows {
        s.append_value(&r.source);
        k.append_value(&r.key);
        match &r.ident {
            None => {
                t.append_null();
                v.append_null();
                st.append_value("none");
                n.append_value(1);
            }
            Some(id) => {
                let count = carriers.get(id).map_or(1, HashSet::len);
                let status = if rules.is_blocked(&id.0, &id.1) {
                    "blocked"
                } else if refused.contains(&pair_hash(&mut buf, &id.0, &id.1)) {
                    "refused"
                } else if count >= 2 {
                    "linked"
                } else {
                    "unique"
                };
                t.append_value(&id.0);
                v.append_value(&id.1);
                st.append_value(status);
                n.append_value(count as i64);
            }
        }
    }
    Ok(vec![RecordBatch::try_new(
        output_schema(),
        vec![
            Arc::new(s.finish()),
            Arc::new(k.finish()),
            Arc::new(t.finish()),
            Arc::new(v.finish()),
            Arc::new(st.finish()),
            Arc::new(n.finish()),
        ],
    )?])
}
