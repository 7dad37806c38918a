//! The HTTP endpoint: Segment's tracking API (`POST /v1/track`, `/v1/identify`,
//! `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`, `/v1/batch`) and `GET /health`.
//!
//! A request is authenticated by its write key, sent as the HTTP basic-auth user name
//! (or, as analytics.js does, as `writeKey` in the body), read within the size limits
//! (gzip bodies too), checked whole, and answered `{"success": true}` once its events
//! are committed. Every refusal is a JSON `{"success": false, "error": "..."}`: 400 bad
//! input, 401 unknown key, 413 too large, 415 unknown encoding, 500/503 storage trouble.
//! Responses allow any origin (CORS), so browsers can send events from any site.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use base64::Engine as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::net::TcpListener;

use super::event::MAX_EVENT_BYTES;
use super::event::{parse_batch, parse_call, CallType, InputError, MAX_BATCH_BYTES};
use super::log::StoreError;
use super::{now_micros, Collector};

/// Serve the collection API on `listener` until `shutdown` completes; requests in flight
/// are answered before it returns.
pub async fn serve(
    listener: TcpListener,
    collector: Arc<Collector>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(collector))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The routes of the collection API.
pub fn router(collector: Arc<Collector>) -> Router {
    let mut router = Router::new()
        .route("/health", get(|| async { reply(StatusCode::OK, None) }))
        .route("/v1/batch", endpoint(None));
    for call in CallType::ALL {
        router = router.route(&format!("/v1/{}", call.as_str()), endpoint(Some(call)));
    }
    router
        .fallback(|| async { reply(StatusCode::NOT_FOUND, Some("no such endpoint".into())) })
        .with_state(collector)
}

/// `POST` for a call (`None`: a batch), and `OPTIONS` for browsers' CORS preflight.
fn endpoint(call: Option<CallType>) -> MethodRouter<Arc<Collector>> {
    post(
        move |State(c): State<Arc<Collector>>, headers: HeaderMap, body: Body| async move {
            match collect(&c, &headers, body, call).await {
                Ok(()) => reply(StatusCode::OK, None),
                Err(refused) => refused.into_response(),
            }
        },
    )
    .options(|| async {
        with_headers(
            StatusCode::NO_CONTENT.into_response(),
            &[
                (header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "Authorization, Content-Type, Content-Encoding",
                ),
            ],
        )
    })
}

async fn collect(
    c: &Collector,
    headers: &HeaderMap,
    body: Body,
    call: Option<CallType>,
) -> Result<(), Refusal> {
    let received_at = now_micros();
    // A key in the header is checked before the body is read.
    let source = match basic_user(headers)? {
        Some(key) => Some(authenticate(c, &key)?),
        None => None,
    };
    let limit = if call.is_some() {
        MAX_EVENT_BYTES
    } else {
        MAX_BATCH_BYTES
    };
    let body = read_body(headers, body, limit).await?;
    let parsed = match call {
        Some(call) => parse_call(call, &body, received_at),
        None => parse_batch(&body, received_at),
    }
    .map_err(|e| match e {
        InputError::Invalid(m) => refuse(StatusCode::BAD_REQUEST, m),
        InputError::TooLarge(m) => refuse(StatusCode::PAYLOAD_TOO_LARGE, m),
    })?;
    let source = match (source, parsed.write_key) {
        (Some(source), _) => source,
        (None, Some(key)) => authenticate(c, &key)?,
        (None, None) => {
            return Err(unauthorized(
                "missing write key: send it as the user name of HTTP basic authentication",
            ))
        }
    };
    if parsed.events.is_empty() {
        return Ok(());
    }
    c.events().store(source, parsed.events).await.map_err(|e| {
        let status = match e {
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        refuse(status, e.to_string())
    })
}

/// The user name of a basic Authorization header: the write key.
fn basic_user(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || unauthorized("use HTTP basic authentication with the write key as user name");
    let text = value.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = text.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let credentials = String::from_utf8(decoded).map_err(|_| bad())?;
    let user = credentials
        .split_once(':')
        .map_or(&*credentials, |(u, _)| u);
    Ok(Some(user.to_string()))
}

fn authenticate(c: &Collector, key: &str) -> Result<Arc<str>, Refusal> {
    c.keys()
        .authenticate(key)
        .ok_or_else(|| unauthorized("invalid write key"))
}

/// The body, at most `limit` bytes once decompressed.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let too_large = || {
        let what = if limit == MAX_EVENT_BYTES {
            "event"
        } else {
            "batch"
        };
        let limit = limit / 1024;
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is over the limit of {limit} KB"),
        )
    };
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => false,
        Some(Ok(e)) if e.eq_ignore_ascii_case("identity") => false,
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") => true,
        Some(_) => {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported Content-Encoding: send gzip or plain JSON",
            ))
        }
    };
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            ))
        }
    };
    if !gzip {
        return Ok(bytes);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad gzip body: {e}")))?;
    if plain.len() > limit {
        return Err(too_large());
    }
    Ok(plain.into())
}

fn unauthorized(message: &str) -> Refusal {
    refuse(StatusCode::UNAUTHORIZED, message)
}

/// A request refused: its status and the reason given in the JSON answer.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: String,
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let response = reply(self.status, Some(self.reason));
        if unauthorized {
            with_headers(
                response,
                &[(header::WWW_AUTHENTICATE, "Basic realm=\"tessera\"")],
            )
        } else {
            response
        }
    }
}

/// `{"success": true}`, or `{"success": false, "error": ...}` with `error`.
fn reply(status: StatusCode, error: Option<String>) -> Response {
    let body = match error {
        None => serde_json::json!({ "success": true }),
        Some(e) => serde_json::json!({ "success": false, "error": e }),
    };
    with_headers(
        (status, body.to_string()).into_response(),
        &[(header::CONTENT_TYPE, "application/json")],
    )
}

/// `response` with `headers` added, allowing any origin (CORS).
fn with_headers(mut response: Response, headers: &[(HeaderName, &'static str)]) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    for (name, value) in headers {
        h.insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}
