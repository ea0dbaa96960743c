//! `imx_uart_driver`: the serial driver PD for the i.MX UART (UART2, the
//! i.MX8M Plus EVK's debug port): serves `serial_virt`'s driver hop —
//! console bytes from the `serial_drv_req` ring go out of the TX FIFO,
//! received bytes go up the `serial_drv_resp` ring. It is the
//! `serial_driver` program on the i.MX boards (a system's `.pd-aliases`
//! sidecar names it so for `scripts/sdk.sh`).
//!
//! Backpressure: when the 32-byte TX FIFO is full the rest of the chunk is
//! kept and the TX-ready interrupt is enabled; it is disabled again once
//! the ring is empty (it fires whenever the FIFO is below its trigger
//! level, so leaving it on would be an interrupt storm). After taking
//! chunks off the ring the driver notifies `serial_virt`, which keeps
//! output it could not push while the ring was full until a wake-up.
//!
//! Sharing with the kernel: in seL4 debug configurations the kernel prints
//! its own and `debug_println!` output on the same UART (polling UTS and
//! writing UTXD, nothing else). The driver waits for the transmitter to
//! drain before it resets the UART, so no kernel byte is lost, and after
//! that both only append to the FIFO: a kernel line may land between two
//! of the driver's bytes, never corrupt them. In release configurations
//! the driver is the UART's only user.
//!
//! What the description must give it (compose's names): `uart2_regs` (the
//! 64 KiB window, uncached), `serial_drv_req` / `serial_drv_resp`; channel
//! 0 = `serial_virt`, IRQ channel 1 = the UART's interrupt (UART2: INTID
//! 59, level). On seL4 each map needs `setvar_vaddr`/`setvar_size` named as
//! above.
#![no_std]
#![no_main]

use bulkhead_ring::{Armed, Consumer, Producer};
use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};
use bulkhead_virt_console_pd::{consumer, producer, push_bytes, Chunk, CHUNK_BYTES};
use drv_imx_uart::{regs::BLOCK_SIZE, Config, Uart, UartError, VolatileMmio};

const VIRT: Channel = Channel::new(0);
const IRQ: Channel = Channel::new(1);
/// The UART root clock on the i.MX8M Plus EVK: the 24 MHz oscillator, the
/// parent Linux's EVK device tree assigns to the UART clocks (QEMU ignores
/// the divider, so only a board checks this).
const REF_CLK_HZ: u32 = 24_000_000;
/// Polls of USR2.TXDC before the reset goes ahead anyway: at 115200 baud a
/// full 32-byte FIFO drains in under 3 ms, far fewer polls than this.
const DRAIN_POLLS: u32 = 1_000_000;

struct UartDriver {
    uart: Uart<VolatileMmio>,
    tx: Option<Consumer<'static, Chunk>>,
    rx: Option<Producer<'static, Chunk>>,
    /// A chunk the TX FIFO did not take all of, and how much it took.
    held: Option<(Chunk, usize)>,
    tx_irq: bool,
}

fn fail(what: &str) -> ! {
    debug_println!("imx_uart_driver: {}; stopping", what);
    halt(1)
}

impl UartDriver {
    /// Moves ring chunks into the TX FIFO until one of them runs dry.
    /// Returns whether any chunk left the ring.
    fn pump_tx(&mut self) -> bool {
        let mut took = false;
        loop {
            let (chunk, at) = match self.held.take() {
                Some(h) => h,
                None => {
                    let Some(rx) = self.tx.as_mut() else { break };
                    match rx.pop() {
                        Ok(Some(c)) => {
                            took = true;
                            (c, 0)
                        }
                        Ok(None) => match rx.arm_signal() {
                            // Something arrived while arming: go round.
                            Ok(Armed::Pending) => continue,
                            Ok(Armed::MaySleep) => break,
                            Err(_) => {
                                self.ring_corrupt();
                                break;
                            }
                        },
                        Err(_) => {
                            self.ring_corrupt();
                            break;
                        }
                    }
                }
            };
            let bytes = chunk.bytes().get(at..).unwrap_or(&[]);
            let n = self.uart.write(bytes);
            if n < bytes.len() {
                self.held = Some((chunk, at + n));
                self.set_tx_irq(true);
                return took;
            }
        }
        self.set_tx_irq(false);
        took
    }

    fn ring_corrupt(&mut self) {
        debug_println!("imx_uart_driver: serial_drv_req ring corrupt; stopped reading it");
        self.tx = None;
    }

    fn set_tx_irq(&mut self, on: bool) {
        if self.tx_irq != on {
            self.uart.set_tx_irq(on);
            self.tx_irq = on;
        }
    }

    /// Moves received bytes up to `serial_virt`; returns whether it asked
    /// to be notified. Bytes that find the ring full are dropped, as a
    /// UART drops them when nobody reads (the console is not a lossless
    /// channel; the mux's line editing copes).
    fn pump_rx(&mut self) -> bool {
        let mut wake = false;
        let mut buf = [0u8; CHUNK_BYTES];
        loop {
            let n = self.uart.read(&mut buf);
            if n == 0 {
                return wake;
            }
            if let Some(tx) = self.rx.as_mut() {
                match push_bytes(tx, &buf[..n]) {
                    Ok((_, w)) => wake |= w,
                    Err(_) => {
                        debug_println!("imx_uart_driver: serial_drv_resp ring corrupt");
                        self.rx = None;
                    }
                }
            }
        }
    }
}

impl Handler for UartDriver {
    fn init() -> Self {
        let regs = Region::get("uart2_regs").unwrap_or_else(|_| fail("no uart2_regs map"));
        if regs.size() < BLOCK_SIZE {
            fail("uart2_regs is smaller than the UART's registers");
        }
        // SAFETY: `uart2_regs` is the description's uncached device map of
        // UART2's registers for the life of this PD. The only other user is
        // the kernel's debug console, which only polls UTS and writes UTXD
        // (see the module doc), so neither breaks the other's invariants.
        let mmio = unsafe { VolatileMmio::new(regs.vaddr() as *mut u32, regs.size()) };
        let mut uart = Uart::new(mmio);
        // Let what the kernel or the loader queued leave before the reset.
        let mut polls = 0;
        while !uart.tx_done() && polls < DRAIN_POLLS {
            polls += 1;
        }
        if let Err(e) = uart.init(&Config::console(REF_CLK_HZ)) {
            fail(match e {
                UartError::ResetTimeout => "UART2 does not leave soft reset (clock gated?)",
                UartError::BaudUnreachable => "115200 baud not reachable from the root clock",
                UartError::BadTriggerLevel => "bad FIFO trigger levels",
            });
        }
        uart.set_rx_irq(true);
        let mut me = UartDriver {
            uart,
            tx: consumer("serial_drv_req").ok(),
            rx: producer("serial_drv_resp").ok(),
            held: None,
            tx_irq: false,
        };
        if me.tx.is_none() {
            debug_println!("imx_uart_driver: no serial_drv_req ring");
        }
        debug_println!("imx_uart_driver: UART2 up, 115200 8N1");
        // Arms the request ring, so serial_virt signals.
        me.notified(ChannelSet::empty());
        me
    }

    fn notified(&mut self, channels: ChannelSet) {
        let mut wake_virt = false;
        if channels.contains(IRQ) {
            // RRDY/TRDY are level conditions the pumps below clear; this
            // acknowledges overrun and break.
            let events = self.uart.handle_irq();
            if events.rx_ready || events.overrun {
                wake_virt |= self.pump_rx();
            }
        }
        // Room in the ring for serial_virt's held output, or new output.
        wake_virt |= self.pump_tx();
        if wake_virt {
            let _ = VIRT.notify();
        }
        if channels.contains(IRQ) {
            let _ = IRQ.irq_ack();
        }
    }
}

bulkhead_runtime::protection_domain!(
    UartDriver,
    regions: [uart2_regs: rw, serial_drv_req: rw, serial_drv_resp: rw]
);
