//! The VMM PD: serves vCPU 0's VM faults against the class slots and
//! forwards each present class's traffic to its virtualiser (channel =
//! class index + 1).
#![no_std]
#![no_main]

use bulkhead_runtime::{
    debug_println, pd_name, ChannelSet, Child, Handler, MessageInfo, Vcpu, VcpuOps, VmFaultInfo,
};
use bulkhead_vmm_core::{AccessKind, GuestRam, IrqEdge, MmioAccess, Outcome, Vmm};
use bulkhead_vmm_host::{hops, layout, windows, Class, Devices, RegionRam, CLASSES};

const VCPU: Vcpu = Vcpu::new(0);

struct VmmPd {
    bus: Vmm<CLASSES>,
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

    /// Signals each virtualiser whose backend asked for it.
    fn flush(&mut self) {
        if let Some(can) = self.devices.can.as_mut() {
            if core::mem::take(&mut can.backend_mut().notify) {
                let _ = Class::Can.channel().notify();
            }
        }
        if let Some(con) = self.devices.console.as_mut() {
            if core::mem::take(&mut con.device_mut().backend_mut().notify) {
                let _ = Class::Serial.channel().notify();
            }
        }
        if let Some(blk) = self.devices.blk.as_mut() {
            if blk.take_notify() {
                let _ = Class::Blk.channel().notify();
            }
        }
    }

    /// Backend work of `class` after its virtualiser signalled, then the
    /// device's own poll against guest RAM.
    fn serve(&mut self, class: Class) {
        match class {
            Class::Serial => {
                if let Some(con) = self.devices.console.as_mut() {
                    // Input arrived or output drained.
                    con.device_mut().backend_mut().poll_input();
                }
            }
            Class::Can => {
                if let Some(can) = self.devices.can.as_mut() {
                    // Answers or received frames arrived.
                    can.pump();
                }
            }
            Class::Blk => {
                if let Some(blk) = self.devices.blk.as_mut() {
                    // The device appears with blk_virt's info; completions.
                    blk.completions();
                }
            }
            Class::Eth | Class::Snd => {}
        }
        let irq = self
            .bus
            .poll(class.index(), &mut self.ram, &mut self.devices.bus());
        self.raise(irq);
    }
}

impl Handler for VmmPd {
    fn init() -> Self {
        let ram = hops::guest_ram().unwrap_or_else(|| stop("no guest RAM region"));
        let config = bulkhead_runtime::config().unwrap_or_else(|_| stop("unusable configuration"));
        let present = hops::present(config.as_ref())
            .unwrap_or_else(|_| stop("configuration's virtio section refused"));
        let devices = Devices::attach(&present).unwrap_or_else(|e| {
            debug_println!("{}: {} device not built", pd_name(), e.0.name());
            bulkhead_runtime::halt(1)
        });
        let mut bus = Vmm::new();
        for w in windows() {
            if bus.add(w).is_err() {
                stop("class slots do not fit the bus");
            }
        }
        let mut names = [""; CLASSES];
        for c in Class::ALL {
            if present.on[c.index()] {
                names[c.index()] = c.name();
            }
        }
        debug_println!(
            "{}: devices [{} {} {} {} {}], RAM {:#x} bytes at {:#x}",
            pd_name(),
            names[0],
            names[1],
            names[2],
            names[3],
            names[4],
            ram.size(),
            layout::RAM_BASE
        );
        VmmPd {
            bus,
            ram: GuestRam::new(layout::RAM_BASE, RegionRam(ram)),
            devices,
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        for ch in channels.iter() {
            match Class::from_channel_id(ch.id()) {
                Some(c) if self.devices.present()[c.index()] => self.serve(c),
                _ => {}
            }
        }
        self.flush();
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
        self.flush();
        resume
    }
}

bulkhead_runtime::protection_domain!(VmmPd);
