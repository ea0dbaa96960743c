//! The VMM PD: serves vCPU 0's VM faults against the device table and
//! forwards console traffic to `serial_virt` (channel 1).
#![no_std]
#![no_main]

use bulkhead_runtime::{
    debug_println, pd_name, Channel, ChannelSet, Child, Handler, MessageInfo, Region, Vcpu,
    VcpuOps, VmFaultInfo,
};
use bulkhead_vmm_core::{AccessKind, GuestRam, IrqEdge, MmioAccess, Outcome, Vmm};
use bulkhead_vmm_devices::console::VirtioConsole;
use bulkhead_vmm_host::{layout, windows, Devices, RegionRam, RingConsole, DEVICE_TABLE};

const SERIAL: Channel = Channel::new(1);
const VCPU: Vcpu = Vcpu::new(0);
const SLOTS: usize = 8;

struct VmmPd {
    bus: Vmm<SLOTS>,
    ram: GuestRam<RegionRam>,
    devices: Devices,
}

fn stop(why: &str) -> ! {
    debug_println!("{}: {why}", pd_name());
    bulkhead_runtime::halt(1)
}

impl VmmPd {
    fn raise(&self, irq: Option<IrqEdge>) {
        if let Some(IrqEdge { irq, level: true }) = irq {
            if let Err(e) = VCPU.inject_irq(u16::try_from(irq).unwrap_or(u16::MAX)) {
                debug_println!("{}: inject irq {irq}: {e}", pd_name());
            }
        }
    }

    fn flush_console(&mut self) {
        let backend = self.devices.console.device_mut().backend_mut();
        if core::mem::take(&mut backend.notify) {
            let _ = SERIAL.notify();
        }
    }
}

impl Handler for VmmPd {
    fn init() -> Self {
        let ram = Region::get("guest_ram").unwrap_or_else(|_| stop("no guest_ram region"));
        let mut bus = Vmm::new();
        for w in windows() {
            if bus.add(w).is_err() {
                stop("device table does not fit the bus");
            }
        }
        let console =
            bulkhead_vmm_core::VirtioMmio::new(VirtioConsole::new(RingConsole::attach(), 80, 25))
                .unwrap_or_else(|_| stop("console model refused by the transport"));
        debug_println!(
            "{}: {} device(s), RAM {:#x} bytes at {:#x}",
            pd_name(),
            DEVICE_TABLE.len(),
            ram.size(),
            layout::RAM_BASE
        );
        VmmPd {
            bus,
            ram: GuestRam::new(layout::RAM_BASE, RegionRam(ram)),
            devices: Devices { console },
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.iter().any(|c| c == SERIAL) {
            // Input arrived or output drained: let the console run again.
            self.devices.console.device_mut().backend_mut().poll_input();
            let irq = self.bus.poll(0, &mut self.ram, &mut self.devices.bus());
            self.raise(irq);
            self.flush_console();
        }
    }

    fn fault(&mut self, child: Child, msg: MessageInfo) -> bool {
        let Some(f) = VmFaultInfo::from_message(msg) else {
            debug_println!(
                "{}: child {} fault that is not a VM fault",
                pd_name(),
                child.id()
            );
            return false;
        };
        let access = MmioAccess {
            gpa: f.gpa,
            width: f.width,
            kind: if f.write {
                AccessKind::Write { value: f.value }
            } else {
                AccessKind::Read { reg: f.reg }
            },
        };
        let outcome = self
            .bus
            .handle(&access, &mut self.ram, &mut self.devices.bus());
        let resume = match outcome {
            Outcome::Completed { value, irq } => {
                if let Some(v) = value {
                    let _ = VCPU.complete_load(v);
                }
                self.raise(irq);
                true
            }
            Outcome::Unhandled { gpa } => {
                debug_println!(
                    "{}: no device at {gpa:#x} ({}-byte access, pc {:#x}): abort",
                    pd_name(),
                    f.width,
                    f.pc
                );
                false
            }
            Outcome::Refused { gpa } => {
                debug_println!(
                    "{}: device refused {}-byte access at {gpa:#x} (pc {:#x}): abort",
                    pd_name(),
                    f.width,
                    f.pc
                );
                false
            }
        };
        self.flush_console();
        resume
    }
}

bulkhead_runtime::protection_domain!(VmmPd);
