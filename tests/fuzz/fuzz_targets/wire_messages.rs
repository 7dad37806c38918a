//! pgwire's frontend message decoding, the path a client's bytes take before anyone
//! has logged in: the input is decoded in each of the three states a connection goes
//! through (awaiting an SSL/GSS request or the startup message, awaiting the startup
//! message, after startup), message after message until the buffer is used up, the
//! decoder refuses it, or waits for more bytes. A panic is a crash.
//!
//! The same loop as `decode_all` in src/wire/robustness.rs, the deterministic test that
//! runs with the tests; kept separate so this crate needs pgwire alone.
//!
//! Known panics. After startup, pgwire 0.41.1 panics on messages whose length leaves no
//! room for their fields, down to 5-byte frames at the end of the buffer such as
//! `43 00000004` (a Close with no body): Parse, Bind, Execute, Close and Describe read
//! past the end ("advance out of bounds", from `bytes`' `get_u8`/`get_u16`/`get_i32`);
//! Bind takes a parameter's length as given, past its message and the buffer ("split_to
//! out of bounds", `42 0000000e 00 00 0000 0001 7fffffff`); CopyData and the
//! password/SASL message underflow `len - 4` ("attempt to subtract with overflow"; a
//! wrapped length, then "split_to out of bounds", in release builds). The server catches
//! these and closes only that connection (src/server.rs). So that fuzzing gets past
//! them, a panic of one of those shapes while decoding a message of one of those types
//! after startup ends the input like a refused message; any other panic, and any panic
//! in the startup states, still aborts. `TESSERA_FUZZ_STRICT=1` tolerates none (to check
//! a newer pgwire).

#![no_main]

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};

/// (awaiting SSL request, awaiting startup message)
const STATES: [(bool, bool); 3] = [(true, true), (false, true), (false, false)];

/// At most this many messages per input and state, as in src/wire/robustness.rs.
const MAX_MESSAGES: usize = 64;

/// Message types (first byte) whose decoding pgwire 0.41.1 is known to panic on.
const KNOWN_TYPES: &[u8] = b"PBECDdp";

/// How those panics begin.
const KNOWN_PANICS: &[&str] = &[
    "advance out of bounds",
    "split_to out of bounds",
    "attempt to subtract with overflow",
];

thread_local! {
    /// Set while decoding a message of a known type after startup.
    static TOLERATE: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Wraps libFuzzer's panic hook (which aborts): known panics pass silently and unwind.
fn install_hook() {
    HOOK.call_once(|| {
        if std::env::var_os("TESSERA_FUZZ_STRICT").is_some_and(|v| v != "0") {
            return;
        }
        let abort = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            let known =
                TOLERATE.with(Cell::get) && KNOWN_PANICS.iter().any(|p| message.starts_with(p));
            if !known {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    for (ssl, startup) in STATES {
        let mut ctx = DecodeContext::default();
        ctx.awaiting_frontend_ssl = ssl;
        ctx.awaiting_frontend_startup = startup;
        let mut buf = BytesMut::from(data);
        for _ in 0..MAX_MESSAGES {
            let before = buf.len();
            let known = !startup && buf.first().is_some_and(|t| KNOWN_TYPES.contains(t));
            TOLERATE.with(|t| t.set(known));
            let decoded = panic::catch_unwind(AssertUnwindSafe(|| {
                PgWireFrontendMessage::decode(&mut buf, &ctx)
            }));
            TOLERATE.with(|t| t.set(false));
            match decoded {
                // A message that consumed bytes: go on with the rest.
                Ok(Ok(Some(_))) if buf.len() < before => continue,
                // Used up, refused, waiting for more bytes, nothing consumed (the SSL
                // state only tells the caller to switch to the startup state), or a
                // known panic (the server would close the connection).
                _ => break,
            }
        }
    }
});
