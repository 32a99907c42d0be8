//! Alias attribution: which configurations (the default one and each tagged alias) a workspace
//! has, and which of them an event belongs to.
//!
//! [`variables`] derives configurations from HCP Terraform's dynamic-credentials variables,
//! [`inventory`] imports and versions them per workspace, [`attribute`] decides an event's alias
//! from the inventory at the event's time, [`reattribute`] applies a changed inventory to stored
//! events, [`trust`] reads trust policies for the rule that judges them, and [`Attribution`] is
//! the copy the pipeline uses.

pub mod attribute;
pub mod inventory;
pub mod reattribute;
pub mod trust;
pub mod variables;

use attribute::Attributor;
use std::sync::{Arc, RwLock};

/// The attributor the pipeline uses, replaced whole when the inventory is reloaded.
#[derive(Debug, Default)]
pub struct Attribution {
    current: RwLock<Arc<Attributor>>,
}

impl Attribution {
    /// The attributor in use now.
    pub fn current(&self) -> Arc<Attributor> {
        Arc::clone(&self.current.read().expect("attribution lock"))
    }

    /// Loads the stored inventory; returns how many configuration rows it holds.
    pub async fn reload(
        &self,
        store: &crate::store::Store,
    ) -> Result<usize, clickhouse::error::Error> {
        let rows = inventory::load(store).await?;
        let n = rows.len();
        *self.current.write().expect("attribution lock") = Arc::new(Attributor::new(rows));
        Ok(n)
    }
}
