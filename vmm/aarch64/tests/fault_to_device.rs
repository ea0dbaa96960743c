//! The whole synchronous path of one guest MMIO access, without seL4:
//! syndrome → `decode` → the VMM core's bus → the virtual distributor →
//! load write-back → list registers.

use bulkhead_virtio::SliceMemory;
use bulkhead_vmm_aarch64::fault::{complete_load, decode, EC_DABT_LOW};
use bulkhead_vmm_aarch64::vgic::{ListRegister, ListRegisters, Vgic, GICD_SIZE};
use bulkhead_vmm_core::{MmioDevice, Outcome, Vmm, Window};

const GICD: u64 = 0x0800_0000;

/// ESR_EL2 of a lower-EL data abort with a valid syndrome.
fn esr(sas: u64, srt: u64, write: bool) -> u64 {
    u64::from(EC_DABT_LOW) << 26 | 1 << 25 | 1 << 24 | sas << 22 | srt << 16 | u64::from(write) << 6
}

struct Lrs(Vec<Option<ListRegister>>);

impl ListRegisters for Lrs {
    type Error = ();
    fn count(&self) -> usize {
        self.0.len()
    }
    fn write(&mut self, index: usize, lr: ListRegister) -> Result<(), ()> {
        self.0[index] = Some(lr);
        Ok(())
    }
}

#[test]
fn guest_programs_distributor_and_gets_an_interrupt() {
    let mut backing = vec![0u8; 0x1000];
    let mut ram = SliceMemory::new(0x4000_0000, &mut backing);
    let mut vmm: Vmm<4> = Vmm::new();
    let index = vmm
        .add(Window {
            base: GICD,
            size: GICD_SIZE,
            irq: 0,
        })
        .unwrap();
    assert_eq!(index, 0);
    let mut gic = Vgic::<64>::new();
    let mut regs = [0u64; 31];
    let mut lrs = Lrs(vec![None; 4]);

    let mut access = |regs: &mut [u64; 31], gic: &mut Vgic<64>, esr: u64, ipa: u64| {
        let abort = decode(esr, ipa, regs).unwrap();
        let devices: &mut [&mut dyn MmioDevice] = &mut [gic];
        match vmm.handle(&abort.access, &mut ram, devices) {
            Outcome::Completed { value, .. } => {
                if let Some(v) = value {
                    complete_load(&abort, v, regs);
                }
            }
            other => panic!("{other:?}"),
        }
    };

    // ldr w2, [x0, #4]: GICD_TYPER into w2 (x2 had junk in its top half).
    regs[2] = 0xffff_ffff_ffff_ffff;
    access(&mut regs, &mut gic, esr(2, 2, false), GICD + 4);
    assert_eq!(regs[2], 1, "64 INTIDs: ITLinesNumber 1, upper half cleared");
    // str w1, [x0]: enable the distributor.
    regs[1] = 1;
    access(&mut regs, &mut gic, esr(2, 1, true), GICD);
    // strb w3, [x0, #0x400 + 40]: priority of SPI 40.
    regs[3] = 0x1a0;
    access(&mut regs, &mut gic, esr(0, 3, true), GICD + 0x400 + 40);
    // str w4, [x0, #0x104]: enable INTIDs 32..63.
    regs[4] = 0xffff_ffff;
    access(&mut regs, &mut gic, esr(2, 4, true), GICD + 0x104);
    // ldrb w5, [x0, #0x400 + 40] reads the implemented priority bits back.
    access(&mut regs, &mut gic, esr(0, 5, false), GICD + 0x400 + 40);
    assert_eq!(regs[5], 0xa0);

    // A device raises SPI 40: it reaches a list register.
    gic.set_line(40, true).unwrap();
    gic.flush(&mut lrs).unwrap();
    let lr = lrs.0[0].unwrap();
    assert_eq!((lr.vintid, lr.priority), (40, 0xa0));

    // An 8-byte access to a 32-bit register is refused by the device, and
    // the backend injects an abort.
    let abort = decode(esr(3, 0, false) | 1 << 15, GICD, &regs).unwrap();
    let devices: &mut [&mut dyn MmioDevice] = &mut [&mut gic];
    assert_eq!(
        vmm.handle(&abort.access, &mut ram, devices),
        Outcome::Refused { gpa: GICD }
    );
}
