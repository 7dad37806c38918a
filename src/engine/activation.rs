//! The engine's side of activation (`crate::activate`): creating and dropping webhook
//! destinations, which depend on their segments, and what their tasks ask the engine.

use super::catalog::RelationKind;
use super::error::{EngineError, Result};
use super::matview::Definition;
use super::Engine;
use crate::activate::{check_url, Activation, Destination, NewDestination};

impl Engine {
    /// The segments' webhook destinations and their deliveries.
    pub fn activation(&self) -> &Activation {
        &self.activation
    }

    /// Who consented to what (as `consent_allows` answers).
    pub fn consent_index(&self) -> &crate::access::consent::ConsentIndex {
        &self.consent
    }

    /// The identifiers of erased people (`forget_subject`).
    pub fn suppression(&self) -> &crate::access::erasure::Suppression {
        &self.suppression
    }

    /// `CREATE DESTINATION`: the destination, and the secret its requests are signed with.
    pub async fn create_destination(&self, new: NewDestination) -> Result<(Destination, String)> {
        // Held until the destination is stored, so that its segment cannot be dropped
        // meanwhile.
        let catalog = self.catalog.lock().await;
        {
            let entry = catalog
                .get(&new.segment)
                .ok_or_else(|| EngineError::UndefinedRelation(new.segment.clone()))?;
            let segment = entry.kind == RelationKind::MaterializedView
                && Definition::parse(&entry.sql).is_ok_and(|d| d.segment);
            if !segment {
                return Err(EngineError::WrongObjectType {
                    name: new.segment.clone(),
                    expected: "segment (a materialized view created WITH (segment = true))",
                    actual: Some(entry.kind),
                });
            }
        }
        check_url(&new.url)?;
        if new.purpose.trim().is_empty() {
            return Err(EngineError::InvalidParameter(
                "a destination needs a purpose: only people who consented to it are sent".into(),
            ));
        }
        let created = self
            .activation
            .destinations()
            .create(new, crate::activate::deliver::now_micros())?;
        drop(catalog);
        self.activation.changed();
        let secret = self.activation.destinations().secret(&created);
        Ok((created, secret))
    }

    /// `DROP DESTINATION`: its task stops; its deliveries stay in `tessera.deliveries`.
    pub fn drop_destination(&self, name: &str, if_exists: bool) -> Result<()> {
        if self
            .activation
            .destinations()
            .remove(name, if_exists)?
            .is_some()
        {
            self.activation.changed();
        }
        Ok(())
    }

    /// The destinations of the segments in `doomed`, which go with them under CASCADE
    /// (without it, 2BP01).
    pub(super) fn destinations_of(&self, doomed: &[String], cascade: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for segment in doomed {
            let names = self.activation.destinations().of_segment(segment);
            if !cascade && !names.is_empty() {
                return Err(EngineError::DependentObjects {
                    kind: "materialized view",
                    name: segment.clone(),
                    dependents: names.iter().map(|n| format!("destination {n}")).collect(),
                });
            }
            out.extend(names);
        }
        Ok(out)
    }
}
