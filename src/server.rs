//! Accepting connections: a server takes an already-bound listener and a shutdown
//! future, so tests bind port 0 and stop it cleanly.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::wire::Handlers;

/// Serve PostgreSQL connections on `listener` until `shutdown` completes. Each
/// connection runs in its own task; a client that sends garbage, however malformed, only
/// loses its own connection. A client that
/// never finishes its start-up is dropped after pgwire's start-up timeout (60 s, as
/// PostgreSQL's `authentication_timeout`). With `tls`, clients that ask for TLS get it.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let handlers = handlers.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        // pgwire 0.41 panics on some malformed messages (a Parse or Bind
                        // with a body too short for its fields: see
                        // `wire::robustness`). The task would end anyway; catching it
                        // says which client did it, instead of a bare panic.
                        // A transaction block still open when the client goes is rolled back.
                        let connection = crate::storage::txn::connection(
                            pgwire::tokio::process_socket(socket, tls, handlers),
                        );
                        match AssertUnwindSafe(connection).catch_unwind().await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => warn!(%peer, "connection ended with an error: {e}"),
                            Err(_) => warn!(%peer, "connection closed: the client sent a malformed message"),
                        }
                    });
                }
                Err(e) => warn!("accept failed: {e}"),
            },
            _ = &mut shutdown => {
                info!("shutting down");
                return;
            }
        }
    }
}
