//! A virtio-mmio device on the bus.

use bulkhead_virtio::{GuestMemory, MmioTransport, TransportError, VirtioDevice, WriteEffect};

use crate::bus::MmioDevice;

/// A virtio device model behind its virtio-mmio transport, as a bus device.
pub struct VirtioMmio<D> {
    transport: MmioTransport<D>,
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// Put `device` behind a transport.
    ///
    /// # Errors
    /// [`TransportError`] when the model declares what no transport serves.
    pub fn new(device: D) -> Result<Self, TransportError> {
        Ok(VirtioMmio {
            transport: MmioTransport::new(device)?,
        })
    }

    /// The transport (status, stats).
    pub fn transport(&self) -> &MmioTransport<D> {
        &self.transport
    }

    /// The device model.
    pub fn device_mut(&mut self) -> &mut D {
        self.transport.device_mut()
    }
}

impl<D: VirtioDevice> MmioDevice for VirtioMmio<D> {
    fn read(&mut self, offset: u64, width: u8, _ram: &mut dyn GuestMemory) -> Result<u64, ()> {
        self.transport.read(offset, width).map_err(|_| ())
    }

    fn write(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        ram: &mut dyn GuestMemory,
    ) -> Result<(), ()> {
        match self.transport.write(offset, width, value) {
            Ok(WriteEffect::QueueNotify(q)) => {
                self.transport.process_queue(q, ram);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(_) => Err(()),
        }
    }

    fn irq_level(&self) -> bool {
        self.transport.interrupt_pending()
    }

    fn poll(&mut self, ram: &mut dyn GuestMemory) {
        let queues = self.transport.device().queue_max_sizes().len();
        for q in 0..queues {
            if let Ok(q) = u16::try_from(q) {
                self.transport.process_queue(q, ram);
            }
        }
    }
}
