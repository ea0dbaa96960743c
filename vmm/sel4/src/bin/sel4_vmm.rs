//! The VMM PD on seL4: loads its guest from the `guest_image` region into
//! `guest_ram`, starts vCPU 0, and serves the vCPU's faults — virtio-mmio
//! accesses through vmm/host's devices, the GIC distributor through the
//! virtual GIC, `smc` through PSCI — injecting a data abort into the guest
//! for an access no device answers. Console traffic goes to `serial_virt`
//! on channel 1; a virtio-blk disk, when the PD has a blk hop (compose's
//! `blk_<guest>_*` regions, found by name through the configuration's
//! `MAPS`), goes to `blk_virt` on channel 2. PSCI `SYSTEM_RESET` reloads
//! the guest and restarts it.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod pd {
    use bulkhead_runtime::vcpu_arm::{self, VcpuReg};
    use bulkhead_runtime::{
        debug_println, pd_name, Channel, ChannelSet, Child, FaultKind, Handler, MessageInfo,
        Region, RuntimeError, VmFaultInfo,
    };
    use bulkhead_vmm_aarch64::boot::load_from;
    use bulkhead_vmm_aarch64::elf::ImageSource;
    use bulkhead_vmm_aarch64::inject;
    use bulkhead_vmm_aarch64::psci::{Action, Psci};
    use bulkhead_vmm_aarch64::vgic::{ListRegister, ListRegisters, Vgic};
    use bulkhead_vmm_core::{AccessKind, GuestRam, IrqEdge, MmioAccess, MmioDevice, Outcome, Vmm};
    use bulkhead_vmm_host::{layout, windows, Class, Devices, RegionRam, CLASSES};
    use bulkhead_vmm_sel4::{
        dtb_len, gicd_window, linux_placement, load_guest, with_initrd, Prefix, RegionImage, Trap,
    };

    /// Largest guest device tree this VMM takes (compose's are ~2 KiB);
    /// two buffers of it live on the stack while a Linux guest loads.
    const DTB_MAX: usize = 16 * 1024;
    const SERIAL: Channel = Channel::new(1);
    /// The blk hop's channel to `blk_virt` (compose: class index + 1).
    const BLK: Channel = Class::Blk.channel();
    /// The guest's virtual timer (PPI 27), forwarded by the kernel.
    const VTIMER_PPI: u64 = 27;
    /// The one vCPU (`<vcpu id="0">`).
    const VCPU: u8 = 0;
    /// Bus windows: the class slots, then the distributor.
    const WINDOWS: usize = CLASSES + 1;
    /// INTIDs the virtual GIC models (SGIs, PPIs, 64 SPIs).
    const INTIDS: usize = 96;
    /// List registers of QEMU's GICv2 (GICH_VTR.ListRegs + 1).
    const LIST_REGISTERS: usize = 4;

    /// The vCPU's list registers, written with `ARM_VCPU_InjectIRQ`.
    struct Lrs;

    impl ListRegisters for Lrs {
        type Error = RuntimeError;
        fn count(&self) -> usize {
            LIST_REGISTERS
        }
        fn write(&mut self, index: usize, lr: ListRegister) -> Result<(), RuntimeError> {
            let index = u8::try_from(index).map_err(|_| RuntimeError::BadMessage)?;
            // seL4 takes GICH_LR's 5-bit priority field.
            vcpu_arm::inject_irq(VCPU, lr.vintid, lr.priority >> 3, index)
        }
    }

    struct VmmPd {
        bus: Vmm<WINDOWS>,
        ram: GuestRam<RegionRam>,
        devices: Devices,
        vgic: Vgic<INTIDS>,
        psci: Psci<1>,
        /// The guest image (reloaded on a reset).
        image: RegionImage,
        /// Guest RAM bytes.
        size: u64,
        /// `SCTLR_EL1` as the kernel set up the vCPU before its first boot
        /// (MMU and caches off): a reset puts it back.
        sctlr: u64,
        /// Boot milestones already reported ([`Milestone`] bits).
        seen: u8,
    }

    /// Firsts worth one line each: they show how far a guest got.
    #[derive(Clone, Copy)]
    enum Milestone {
        Psci = 1,
        Gicd = 2,
        Virtio = 4,
        Ppi = 8,
        Maintenance = 16,
    }

    fn stop(why: &str) -> ! {
        debug_println!("{}: {why}", pd_name());
        bulkhead_runtime::halt(1)
    }

    impl VmmPd {
        /// Reports `m` the first time it happens.
        fn first(&mut self, m: Milestone, what: core::fmt::Arguments<'_>) {
            if self.seen & m as u8 == 0 {
                self.seen |= m as u8;
                debug_println!("{}: first {what}", pd_name());
            }
        }

        fn raise(&mut self, irq: Option<IrqEdge>) {
            if let Some(IrqEdge { irq, level }) = irq {
                if self.vgic.set_line(irq, level).is_ok() {
                    if let Err(e) = self.vgic.flush(&mut Lrs) {
                        debug_println!("{}: injecting irq {irq}: {e}", pd_name());
                    }
                }
            }
        }

        /// Tells the virtualisers about what the devices queued for them.
        fn flush_console(&mut self) {
            if let Some(c) = self.devices.console.as_mut() {
                let backend = c.device_mut().backend_mut();
                if core::mem::take(&mut backend.notify) {
                    let _ = SERIAL.notify();
                }
            }
            if self.devices.blk.as_mut().is_some_and(|b| b.take_notify()) {
                let _ = BLK.notify();
            }
        }

        /// Polls class `c`'s slot (queues the guest filled, completions the
        /// backend delivered) and raises its interrupt if it changed.
        fn poll_slot(&mut self, c: Class) {
            let irq = {
                let [d0, d1, d2, d3, d4] = self.devices.bus();
                let mut devs: [&mut dyn MmioDevice; WINDOWS] = [d0, d1, d2, d3, d4, &mut self.vgic];
                self.bus.poll(c.index(), &mut self.ram, &mut devs)
            };
            self.raise(irq);
        }

        /// PSCI `SYSTEM_RESET`: the guest's images are loaded afresh, the
        /// virtual GIC and PSCI state start over, `SCTLR_EL1` is put back
        /// (MMU off, as the boot protocol wants) and the faulting vCPU
        /// resumes at the entry point with x0 = the device tree. The virtio
        /// devices stay: the new kernel resets each one when it probes it.
        /// Returns whether the vCPU may resume.
        fn reset(&mut self) -> bool {
            let (entry, x0) = if bulkhead_vmm_aarch64::elf::is_elf(&self.image) {
                match load_guest(&mut self.ram, &self.image) {
                    Ok(e) => (e, 0),
                    Err(e) => {
                        debug_println!("{}: guest image refused on reset: {e:?}", pd_name());
                        return false;
                    }
                }
            } else {
                load_linux(&mut self.ram, &self.image, self.size)
            };
            self.vgic = Vgic::new();
            self.psci = Psci::new(1, layout::RAM_BASE, self.size);
            self.seen = 0;
            // A timer interrupt the old kernel never EOId leaves the PPI
            // masked in the kernel until acked: ack it, or the new guest
            // never sees a tick (errors: the PPI was not pending).
            let _ = vcpu_arm::ack_vppi(VCPU, VTIMER_PPI);
            let regs = vcpu_arm::set_sysreg(VCPU, VcpuReg::Sctlr, self.sctlr)
                .and_then(|()| vcpu_arm::set_pc_pstate(VCPU, entry, vcpu_arm::PSTATE_EL1H_DAIF))
                .and_then(|()| {
                    (0..4).try_for_each(|n| vcpu_arm::set_gpr(VCPU, n, if n == 0 { x0 } else { 0 }))
                });
            match regs {
                Ok(()) => {
                    debug_println!(
                        "{}: guest reset (PSCI): reloaded, entry {entry:#x}",
                        pd_name()
                    );
                    true
                }
                Err(e) => {
                    debug_println!("{}: guest reset failed ({e}): guest stopped", pd_name());
                    false
                }
            }
        }

        fn bus_handle(&mut self, access: &MmioAccess) -> Outcome {
            let [d0, d1, d2, d3, d4] = self.devices.bus();
            let mut devs: [&mut dyn MmioDevice; WINDOWS] = [d0, d1, d2, d3, d4, &mut self.vgic];
            self.bus.handle(access, &mut self.ram, &mut devs)
        }

        /// Enters the guest's own synchronous-abort handler for `f`.
        fn inject_abort(&self, f: &VmFaultInfo) -> Result<(), RuntimeError> {
            let (pc, pstate) = vcpu_arm::pc_pstate(VCPU)?;
            let vbar = vcpu_arm::sysreg(VCPU, VcpuReg::Vbar)?;
            let e = inject::data_abort(pc, pstate, vbar, f.gpa, f.write);
            vcpu_arm::set_sysreg(VCPU, VcpuReg::Esr, e.esr)?;
            vcpu_arm::set_sysreg(VCPU, VcpuReg::Far, e.far)?;
            vcpu_arm::set_sysreg(VCPU, VcpuReg::ElrEl1, e.elr)?;
            vcpu_arm::set_sysreg(VCPU, VcpuReg::SpsrEl1, e.spsr)?;
            vcpu_arm::set_pc_pstate(VCPU, e.pc, e.pstate)
        }

        fn vm_fault(&mut self, msg: MessageInfo) -> bool {
            let Some(f) = VmFaultInfo::from_message(msg) else {
                let fi = bulkhead_runtime::FaultInfo::from_message(msg);
                debug_println!(
                    "{}: guest fault at {:#x} (pc {:#x}, syndrome {:#x}) cannot be emulated: guest stopped",
                    pd_name(),
                    fi.addr,
                    fi.pc,
                    fi.detail
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
            if f.gpa >= layout::MMIO_BASE && f.gpa < layout::MMIO_BASE + layout::MMIO_RANGE {
                self.first(
                    Milestone::Virtio,
                    format_args!("virtio-mmio access at {:#x}", f.gpa),
                );
            } else if gicd_window().base <= f.gpa && f.gpa < gicd_window().base + gicd_window().size
            {
                self.first(
                    Milestone::Gicd,
                    format_args!("GIC distributor access at {:#x}", f.gpa),
                );
            }
            let gicd = gicd_window();
            let to_gicd = gicd.base <= f.gpa && f.gpa < gicd.base + gicd.size;
            let resume = match self.bus_handle(&access) {
                Outcome::Completed { value, irq } => {
                    if let Some(v) = value {
                        if let Err(e) = bulkhead_runtime::VcpuOps::complete_load(
                            bulkhead_runtime::Vcpu::new(VCPU),
                            v,
                        ) {
                            debug_println!("{}: completing a load: {e}", pd_name());
                        }
                    }
                    self.raise(irq);
                    if to_gicd {
                        // An enable, priority or pending write may have
                        // made a queued interrupt deliverable.
                        let _ = self.vgic.flush(&mut Lrs);
                    }
                    true
                }
                Outcome::Unhandled { gpa } | Outcome::Refused { gpa } => {
                    let dir = if f.write { "write" } else { "read" };
                    match self.inject_abort(&f) {
                        Ok(()) => {
                            debug_println!(
                                "{}: guest {}-byte {dir} at {gpa:#x} (pc {:#x}) hits no device: data abort injected",
                                pd_name(),
                                f.width,
                                f.pc
                            );
                            true
                        }
                        Err(e) => {
                            debug_println!(
                                "{}: guest {dir} at {gpa:#x} hits no device; injecting the abort failed ({e}): guest stopped",
                                pd_name()
                            );
                            false
                        }
                    }
                }
            };
            self.flush_console();
            resume
        }

        fn trap(&mut self, esr: u64) -> bool {
            match Trap::from_esr(esr) {
                Trap::Wfx => true,
                Trap::Smc => {
                    let x = core::array::from_fn(|i| {
                        vcpu_arm::gpr(VCPU, u8::try_from(i).unwrap_or(0)).unwrap_or(0)
                    });
                    self.first(Milestone::Psci, format_args!("PSCI call {:#x}", x[0]));
                    let reply = self.psci.call(usize::from(VCPU), x);
                    match reply.action {
                        Action::Resume | Action::WaitForInterrupt => {
                            vcpu_arm::set_gpr(VCPU, 0, reply.x0).is_ok()
                        }
                        Action::SystemOff | Action::StopCpu { .. } => {
                            debug_println!("{}: guest powered off (PSCI)", pd_name());
                            false
                        }
                        Action::SystemReset => self.reset(),
                        Action::StartCpu { vcpu, .. } => {
                            debug_println!(
                                "{}: guest started vCPU {vcpu}, which this VM does not have",
                                pd_name()
                            );
                            vcpu_arm::set_gpr(VCPU, 0, reply.x0).is_ok()
                        }
                    }
                }
                Trap::Other(ec) => {
                    debug_println!(
                        "{}: guest instruction trapped with class {ec:#x} (syndrome {esr:#x}) cannot be emulated: guest stopped",
                        pd_name()
                    );
                    false
                }
            }
        }
    }

    impl Handler for VmmPd {
        fn init() -> Self {
            let ram = Region::get("guest_ram").unwrap_or_else(|_| stop("no guest_ram region"));
            let image =
                Region::get("guest_image").unwrap_or_else(|_| stop("no guest_image region"));
            let mut bus = Vmm::new();
            for w in windows().chain(core::iter::once(gicd_window())) {
                if bus.add(w).is_err() {
                    stop("device windows do not fit the bus");
                }
            }
            // Hops found by region name (this PD has no configuration
            // region).
            let present = bulkhead_vmm_host::hops::Present {
                on: Class::ALL.map(Class::present_by_name),
                ..Default::default()
            };
            let devices = Devices::attach(&present).unwrap_or_else(|e| stop(class_refused(e.0)));
            let size = ram.size() as u64;
            let mut ram = GuestRam::new(layout::RAM_BASE, RegionRam(ram));
            let image = RegionImage(image);
            let sctlr = vcpu_arm::sysreg(VCPU, VcpuReg::Sctlr).unwrap_or_else(|e| stop_with(e));
            let (entry, x0) = if bulkhead_vmm_aarch64::elf::is_elf(&image) {
                match load_guest(&mut ram, &image) {
                    Ok(e) => (e, 0),
                    Err(e) => {
                        debug_println!("{}: guest image refused: {e:?}", pd_name());
                        bulkhead_runtime::halt(1)
                    }
                }
            } else {
                load_linux(&mut ram, &image, size)
            };
            let mut me = VmmPd {
                bus,
                ram,
                devices,
                vgic: Vgic::new(),
                psci: Psci::new(1, layout::RAM_BASE, size),
                image,
                size,
                sctlr,
                seen: 0,
            };
            me.flush_console();
            debug_println!(
                "{}: guest loaded, entry {entry:#x}, RAM {size:#x} bytes at {:#x}",
                pd_name(),
                layout::RAM_BASE
            );
            if let Err(e) = vcpu_arm::boot(VCPU, entry, x0) {
                stop_with(e);
            }
            me
        }

        fn notified(&mut self, channels: ChannelSet) {
            if channels.contains(SERIAL) {
                if let Some(c) = self.devices.console.as_mut() {
                    c.device_mut().backend_mut().poll_input();
                }
                self.poll_slot(Class::Serial);
            }
            if channels.contains(BLK) {
                if let Some(b) = self.devices.blk.as_mut() {
                    // The device appears with blk_virt's info; completions.
                    b.completions();
                }
                self.poll_slot(Class::Blk);
            }
            self.flush_console();
        }

        fn fault(&mut self, child: Child, msg: MessageInfo) -> bool {
            if child.id() != VCPU {
                debug_println!("{}: fault of unknown child {}", pd_name(), child.id());
                return false;
            }
            let detail = bulkhead_runtime::FaultInfo::from_message(msg).detail;
            match FaultKind::from_label(msg.label()) {
                FaultKind::VmFault => self.vm_fault(msg),
                FaultKind::VcpuTrap => self.trap(detail),
                FaultKind::VgicMaintenance => {
                    self.first(
                        Milestone::Maintenance,
                        format_args!("vGIC maintenance (LR {detail})"),
                    );
                    if let Ok(index) = usize::try_from(detail) {
                        let intid = self.vgic.lr(index);
                        // A forwarded PPI (the timer): its line drops with
                        // the guest's EOI, and only now may the kernel
                        // unmask it again — acking earlier would storm.
                        let ppi = intid.filter(|i| (16..32).contains(i));
                        if let Some(i) = ppi {
                            let _ = self.vgic.set_line(u32::from(i), false);
                        }
                        let _ = self.vgic.eoi(index, &mut Lrs);
                        if let Some(i) = ppi {
                            let _ = vcpu_arm::ack_vppi(VCPU, u64::from(i));
                        }
                    }
                    let _ = self.vgic.flush(&mut Lrs);
                    true
                }
                FaultKind::VirtualPpi => {
                    // The kernel keeps the PPI masked until `ack_vppi`,
                    // which the guest's EOI (maintenance) triggers: the
                    // line stays high until then, so a PPI the guest has
                    // not enabled yet is injected once it does.
                    self.first(Milestone::Ppi, format_args!("virtual PPI {detail}"));
                    let irq = u32::try_from(detail).unwrap_or(u32::MAX);
                    if self.vgic.set_line(irq, true).is_ok() {
                        let _ = self.vgic.flush(&mut Lrs);
                    } else {
                        let _ = vcpu_arm::ack_vppi(VCPU, detail);
                    }
                    true
                }
                other => {
                    debug_println!(
                        "{}: guest fault '{}' cannot be handled: guest stopped",
                        pd_name(),
                        other.name()
                    );
                    false
                }
            }
        }
    }

    /// Loads an arm64 Linux `Image` (the `guest_image` region), its initrd
    /// (`guest_initrd`, optional) and device tree (`guest_dtb`) where
    /// compose placed them; returns the entry PC and x0 (the DTB).
    fn load_linux(ram: &mut GuestRam<RegionRam>, image: &RegionImage, size: u64) -> (u64, u64) {
        let dtb = Region::get("guest_dtb")
            .map(RegionImage)
            .unwrap_or_else(|_| stop("guest image is not an ELF, and no guest_dtb region"));
        let Some(dtb_len) = dtb_len(&dtb) else {
            stop("guest_dtb holds no flattened device tree")
        };
        let initrd = Region::get("guest_initrd").ok().map(RegionImage);
        let initrd_len = initrd.as_ref().map(|i| i.len());
        // The device tree, with /chosen naming the initrd where it goes.
        let mut src = [0u8; DTB_MAX];
        let mut tree = [0u8; DTB_MAX];
        let Some(src) = usize::try_from(dtb_len).ok().and_then(|n| src.get_mut(..n)) else {
            stop("guest_dtb is larger than this VMM takes (16 KiB)")
        };
        if !Prefix(&dtb, dtb_len).read_at(0, src) {
            stop("guest_dtb cannot be read")
        }
        let src = &*src;
        let tree_len = match linux_placement(layout::RAM_BASE, size, initrd_len, dtb_len).initrd {
            Some((start, n)) => match with_initrd(src, &mut tree, start, start + n) {
                Ok(n) => n,
                Err(e) => {
                    debug_println!("{}: guest_dtb refused: {e:?}", pd_name());
                    bulkhead_runtime::halt(1)
                }
            },
            None => {
                tree[..src.len()].copy_from_slice(src);
                src.len()
            }
        };
        let tree = &tree[..tree_len];
        let p = linux_placement(layout::RAM_BASE, size, initrd_len, tree.len() as u64);
        match load_from(ram, &p, image, initrd.as_ref(), tree) {
            Ok(plan) => {
                debug_println!(
                    "{}: Linux Image at {:#x} ({} bytes), initrd {:?}, DTB at {:#x}",
                    pd_name(),
                    plan.kernel,
                    image.len(),
                    p.initrd,
                    p.dtb.0
                );
                (plan.entry.pc, plan.entry.x0)
            }
            Err(e) => {
                debug_println!("{}: Linux boot images refused: {e:?}", pd_name());
                bulkhead_runtime::halt(1)
            }
        }
    }

    fn class_refused(c: Class) -> &'static str {
        match c {
            Class::Serial => "console device refused by the transport",
            _ => "a device class could not be attached",
        }
    }

    fn stop_with(e: RuntimeError) -> ! {
        debug_println!("{}: starting the vCPU failed: {e}", pd_name());
        bulkhead_runtime::halt(1)
    }

    bulkhead_runtime::protection_domain!(
        VmmPd,
        regions: [
            guest_ram: rw,
            guest_image: r,
            guest_initrd: r,
            guest_dtb: r,
            serial_tx: rw,
            serial_rx: rw,
        ]
    );
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("sel4_vmm is an seL4 PD: build it for aarch64-unknown-none with scripts/sdk.sh");
}
