//! The single-node broker: deliveries go straight to this process's hub.

use async_trait::async_trait;

use super::{Broker, BrokerError, Delivery};
use crate::hub::Hub;

/// Fan-out within one process; the default when no `broker` is configured.
pub struct MemoryBroker {
    hub: Hub,
}

impl MemoryBroker {
    pub fn new(hub: Hub) -> MemoryBroker {
        MemoryBroker { hub }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn publish(&self, deliveries: Vec<Delivery>) {
        self.hub.deliver(deliveries);
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}
