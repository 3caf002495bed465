//! The conformance suite against the in-process bus.

use std::sync::Arc;

use async_trait::async_trait;
use fanfare_bus::conformance::BusFactory;
use fanfare_bus::{MemoryBus, UpdateBus};

/// A fresh in-process bus per test.
struct MemoryBusFactory;

#[async_trait]
impl BusFactory for MemoryBusFactory {
    async fn bus(&self, queue_capacity: usize) -> Arc<dyn UpdateBus> {
        Arc::new(MemoryBus::with_queue_capacity(queue_capacity))
    }
}

fanfare_bus::bus_conformance_tests!(MemoryBusFactory);
