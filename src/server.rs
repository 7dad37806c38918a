//! Accepting connections: a server takes an already-bound listener and a shutdown
//! future, so tests bind port 0 and stop it cleanly.

use std::future::Future;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::wire::Handlers;

/// Serve PostgreSQL connections on `listener` until `shutdown` completes. Each
/// connection runs in its own task; a client that sends garbage only loses its own
/// connection. With `tls`, clients that ask for TLS get it.
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
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                            warn!(%peer, "connection ended with an error: {e}");
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
