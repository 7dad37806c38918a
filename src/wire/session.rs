//! `SHOW`: a session's settings, as `SET` left them or as the server defaults say.

use std::sync::Arc;

use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;

/// The value `SHOW name` reports, or `None` for a setting tessera does not know.
pub fn show_value<C: ClientInfo + ?Sized>(client: &C, name: &str) -> Option<String> {
    let meta = client.metadata();
    // datafusion-postgres' SET hook keeps these two under its own keys.
    if name == "statement_timeout" {
        return Some(
            meta.get("statement_timeout_ms")
                .map_or("0".into(), |ms| format!("{ms}ms")),
        );
    }
    meta.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .or_else(|| crate::pg::setting(name).map(str::to_string))
}

pub fn show_fields(name: &str) -> Vec<FieldInfo> {
    vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]
}

pub fn show_response(name: &str, value: &str) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(show_fields(name));
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(QueryResponse::new(
        fields,
        futures::stream::once(async move { Ok(row) }),
    ))
}
