//! Segment tracking API messages: reading a JSON body into [`Event`]s, with the checks
//! each call type needs. A body is accepted or refused whole: the first bad event of a
//! batch refuses the batch, naming its position.

use serde_json::{Map, Value};

/// The largest event, measured on its JSON (for a batch, each event re-serialised
/// compactly), as Segment's API allows.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// The largest `/v1/batch` body.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// The six Segment calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl CallType {
    pub const ALL: [CallType; 6] = [
        CallType::Track,
        CallType::Identify,
        CallType::Page,
        CallType::Screen,
        CallType::Group,
        CallType::Alias,
    ];

    /// The name in the `type` field and in the path (`/v1/track`).
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Track => "track",
            CallType::Identify => "identify",
            CallType::Page => "page",
            CallType::Screen => "screen",
            CallType::Group => "group",
            CallType::Alias => "alias",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        CallType::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// One event, ready to be stored (times in microseconds since the Unix epoch, UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub message_id: String,
    pub call: CallType,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub event: Option<String>,
    pub name: Option<String>,
    pub group_id: Option<String>,
    pub previous_id: Option<String>,
    pub timestamp: i64,
    pub sent_at: Option<i64>,
    pub received_at: i64,
    /// JSON text of the `properties`, `traits` and `context` objects.
    pub properties: Option<String>,
    pub traits: Option<String>,
    pub context: Option<String>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Malformed JSON or a missing or mistyped field (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// Over the size limits (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
}

/// A body read: its events and the `writeKey` it carries, if any (analytics.js puts it
/// in the body rather than in an Authorization header).
#[derive(Debug)]
pub struct Parsed {
    pub events: Vec<Event>,
    pub write_key: Option<String>,
}

/// Read the body of `/v1/<call>`.
pub fn parse_call(call: CallType, body: &[u8], received_at: i64) -> Result<Parsed, InputError> {
    let object = parse_object(body)?;
    let write_key = string_field(&object, "writeKey")?;
    let event = read_event(call, &object, &Defaults::default(), received_at)?;
    Ok(Parsed {
        events: vec![event],
        write_key,
    })
}

/// Read the body of `/v1/batch`: `{"batch": [{"type": "track", ...}, ...]}`. A `sentAt`
/// or `context` at the top applies to every event that lacks its own (context keys are
/// merged, the event's own keys winning).
pub fn parse_batch(body: &[u8], received_at: i64) -> Result<Parsed, InputError> {
    let object = parse_object(body)?;
    let write_key = string_field(&object, "writeKey")?;
    let items = match object.get("batch") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("\"batch\" must be an array of events")),
        None => return Err(invalid("missing \"batch\": an array of events")),
    };
    let defaults = Defaults {
        sent_at: time_field(&object, "sentAt")?,
        context: match object.get("context") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => Some(c),
            Some(_) => return Err(invalid("\"context\" must be a JSON object")),
        },
    };
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |e: InputError| match e {
            InputError::Invalid(m) => InputError::Invalid(format!("batch[{i}]: {m}")),
            InputError::TooLarge(m) => InputError::TooLarge(format!("batch[{i}]: {m}")),
        };
        let Value::Object(item) = item else {
            return Err(at(invalid("an event must be a JSON object")));
        };
        let size = compact_size(item);
        if size > MAX_EVENT_BYTES {
            return Err(at(too_large_event(size)));
        }
        let call = match item.get("type") {
            Some(Value::String(t)) => CallType::from_name(t).ok_or_else(|| {
                at(invalid(&format!(
                    "unknown type \"{t}\" (expected track, identify, page, screen, group or alias)"
                )))
            })?,
            _ => return Err(at(invalid("missing \"type\""))),
        };
        events.push(read_event(call, item, &defaults, received_at).map_err(at)?);
    }
    Ok(Parsed { events, write_key })
}

/// The length of `item` serialised compactly, counted without building the text.
fn compact_size(item: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail (keys are strings).
    let _ = serde_json::to_writer(&mut count, item);
    count.0
}

/// The message of an event of a batch over the limit.
fn too_large_event(size: usize) -> InputError {
    InputError::TooLarge(format!(
        "event of {size} bytes is over the limit of {} KB",
        MAX_EVENT_BYTES / 1024
    ))
}

/// What a batch gives the events it holds.
#[derive(Default)]
struct Defaults<'a> {
    sent_at: Option<i64>,
    context: Option<&'a Map<String, Value>>,
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, InputError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(invalid("the body must be a JSON object")),
        Err(e) => Err(invalid(&format!("malformed JSON: {e}"))),
    }
}

fn read_event(
    call: CallType,
    o: &Map<String, Value>,
    defaults: &Defaults,
    received_at: i64,
) -> Result<Event, InputError> {
    let user_id = id_field(o, "userId")?;
    let anonymous_id = id_field(o, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(invalid(&format!(
            "{} needs \"userId\" or \"anonymousId\"",
            call.as_str()
        )));
    }
    let event = string_field(o, "event")?;
    let group_id = id_field(o, "groupId")?;
    let previous_id = id_field(o, "previousId")?;
    let required = match call {
        CallType::Track if event.is_none() => Some("event"),
        CallType::Group if group_id.is_none() => Some("groupId"),
        CallType::Alias if previous_id.is_none() => Some("previousId"),
        _ => None,
    };
    if let Some(field) = required {
        return Err(invalid(&format!("{} needs \"{field}\"", call.as_str())));
    }
    let timestamp = match time_field(o, "timestamp")? {
        Some(t) => Some(t),
        None => time_field(o, "originalTimestamp")?,
    };
    Ok(Event {
        message_id: id_field(o, "messageId")?.unwrap_or_else(new_message_id),
        call,
        user_id,
        anonymous_id,
        event,
        name: string_field(o, "name")?,
        group_id,
        previous_id,
        timestamp: timestamp.unwrap_or(received_at),
        sent_at: time_field(o, "sentAt")?.or(defaults.sent_at),
        received_at,
        properties: object_field(o, "properties")?,
        traits: object_field(o, "traits")?,
        context: context(o, defaults.context)?,
    })
}

fn invalid(message: &str) -> InputError {
    InputError::Invalid(message.to_string())
}

/// An identifier: a non-empty string, or a number (some SDKs send numeric user ids).
fn id_field(o: &Map<String, Value>, key: &str) -> Result<Option<String>, InputError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(invalid(&format!("\"{key}\" must be a string"))),
    }
}

fn string_field(o: &Map<String, Value>, key: &str) -> Result<Option<String>, InputError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&format!("\"{key}\" must be a string"))),
    }
}

fn object_field(o: &Map<String, Value>, key: &str) -> Result<Option<String>, InputError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.to_string())),
        Some(_) => Err(invalid(&format!("\"{key}\" must be a JSON object"))),
    }
}

fn context(
    o: &Map<String, Value>,
    batch: Option<&Map<String, Value>>,
) -> Result<Option<String>, InputError> {
    let Some(shared) = batch else {
        return object_field(o, "context");
    };
    let mut merged = shared.clone();
    match o.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Object(own)) => merged.extend(own.clone()),
        Some(_) => return Err(invalid("\"context\" must be a JSON object")),
    }
    Ok(Some(Value::Object(merged).to_string()))
}

/// An ISO-8601 time (`2026-01-31T12:00:00.123Z`, an offset, or none meaning UTC), in
/// microseconds since the epoch.
fn time_field(o: &Map<String, Value>, key: &str) -> Result<Option<i64>, InputError> {
    let text = match o.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid(&format!("\"{key}\" must be an ISO-8601 string"))),
    };
    parse_time(text)
        .map(Some)
        .ok_or_else(|| invalid(&format!("\"{key}\" is not an ISO-8601 time: \"{text}\"")))
}

fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|t| t.and_utc().timestamp_micros())
}

/// A message id for an event sent without one (it cannot be deduplicated).
fn new_message_id() -> String {
    let bits: u128 = rand::random();
    format!("tessera-{bits:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(call: CallType, body: &str) -> Result<Event, InputError> {
        parse_call(call, body.as_bytes(), 7).map(|mut p| p.events.remove(0))
    }

    #[test]
    fn track_reads_the_common_fields() {
        let e = one(
            CallType::Track,
            r#"{"messageId":"m1","userId":42,"event":"Order Completed",
                "properties":{"total":9.5},"context":{"ip":"1.2.3.4"},
                "timestamp":"2026-01-31T12:00:00.5Z","sentAt":"2026-01-31T12:00:01+01:00"}"#,
        )
        .expect("valid");
        assert_eq!(e.message_id, "m1");
        assert_eq!(e.user_id.as_deref(), Some("42"));
        assert_eq!(e.event.as_deref(), Some("Order Completed"));
        assert_eq!(e.properties.as_deref(), Some(r#"{"total":9.5}"#));
        assert_eq!(e.timestamp, 1_769_860_800_500_000);
        assert_eq!(e.sent_at, Some(1_769_857_201_000_000));
        assert_eq!(e.received_at, 7);
    }

    #[test]
    fn each_call_checks_its_required_fields() {
        let missing = |call, body: &str| match one(call, body) {
            Err(InputError::Invalid(m)) => m,
            other => panic!("{body}: {other:?}"),
        };
        assert!(missing(CallType::Track, r#"{"userId":"u"}"#).contains("\"event\""));
        assert!(missing(CallType::Page, r#"{"name":"Home"}"#).contains("anonymousId"));
        assert!(missing(CallType::Group, r#"{"userId":"u"}"#).contains("groupId"));
        assert!(missing(CallType::Alias, r#"{"userId":"u"}"#).contains("previousId"));
        assert!(missing(CallType::Identify, r#"{"userId":"u","traits":[1]}"#).contains("traits"));
        assert!(missing(CallType::Track, "{nope").starts_with("malformed JSON"));
        let e = one(CallType::Identify, r#"{"anonymousId":"a"}"#).expect("valid");
        assert!(e.message_id.starts_with("tessera-"), "{}", e.message_id);
        assert_eq!(e.timestamp, 7, "no timestamp: the time it was received");
    }

    #[test]
    fn a_batch_is_refused_whole_naming_the_bad_event() {
        let body = r#"{"batch":[{"type":"track","userId":"u","event":"e"},
                                 {"type":"track","userId":"u"}]}"#;
        let err = parse_batch(body.as_bytes(), 0).expect_err("second event lacks event");
        assert_eq!(
            err,
            InputError::Invalid("batch[1]: track needs \"event\"".into())
        );
        let big = format!(
            r#"{{"batch":[{{"type":"track","userId":"u","event":"e","properties":{{"x":"{}"}}}}]}}"#,
            "y".repeat(MAX_EVENT_BYTES)
        );
        assert!(matches!(
            parse_batch(big.as_bytes(), 0),
            Err(InputError::TooLarge(m)) if m.starts_with("batch[0]")
        ));
    }

    #[test]
    fn a_batch_shares_its_context_and_sent_at() {
        let body = r#"{"writeKey":"k","sentAt":"2026-01-01T00:00:00Z","context":{"a":1,"b":1},
                       "batch":[{"type":"identify","userId":"u","context":{"b":2}}]}"#;
        let p = parse_batch(body.as_bytes(), 0).expect("valid");
        assert_eq!(p.write_key.as_deref(), Some("k"));
        assert_eq!(p.events[0].context.as_deref(), Some(r#"{"a":1,"b":2}"#));
        assert_eq!(p.events[0].sent_at, Some(1_767_225_600_000_000));
    }
}
