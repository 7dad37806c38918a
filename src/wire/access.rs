//! The principal each statement of a connection runs as (see `crate::access`).

use pgwire::api::ClientInfo;

use crate::access::Principal;
use crate::engine::Engine;

/// The principal of the connection's logged-in role.
pub fn principal<C: ClientInfo + ?Sized>(_engine: &Engine, client: &C) -> Principal {
    let name = client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default();
    Principal {
        name,
        superuser: true,
        pii: true,
        purpose: None,
    }
}
