//! The bus as a dependency whose reachability decides a service's health: fanout's live
//! delivery waits while it is down, which an operator must see. (The messages service does
//! not use it: its sends keep committing while the bus is away.)

use std::sync::Arc;

use anyhow::Context;
use fanfare_core::health::DependencyProbe;

use crate::UpdateBus;

/// Health follows the bus: `PING` (Redis) or the in-process bus's own answer.
pub struct BusProbe(pub Arc<dyn UpdateBus>);

#[async_trait::async_trait]
impl DependencyProbe for BusProbe {
    fn name(&self) -> &'static str {
        "update bus"
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.0.ping().await.context("pinging the update bus")
    }
}
