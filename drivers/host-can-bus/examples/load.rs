//! Full-load throughput of the simulated bus and the simulator's own speed.
//!
//! `cargo run --release -p drv-host-can-bus --example load` prints, for each
//! bus configuration, the frames per simulated second at 100 % load (one
//! flooding node and a periodic high-priority node, three listeners) and how
//! fast the simulation runs in wall time.

use bulkhead_can_frame::{CanId, Frame};
use drv_host_can_bus::{BusConfig, CanBus, NodeConfig, Traffic};
use std::time::Instant;

fn run(name: &str, cfg: BusConfig, flood: Frame) -> Result<(), Box<dyn std::error::Error>> {
    const SIM_NS: u64 = 1_000_000_000;
    let mut bus = CanBus::new(cfg);
    for k in 0..3 {
        bus.attach(NodeConfig::named(&format!("listener{k}")));
    }
    bus.attach_scripted(
        "flood",
        &[Traffic::Flood {
            frame: flood,
            depth: 1,
            counter_byte: Some(0),
        }],
    )?;
    let hp = Frame::classic(CanId::standard(0x010)?, &[0; 8])?;
    let cluster = bus.attach_scripted(
        "cluster",
        &[Traffic::Periodic {
            frame: hp,
            period_ns: 10_000_000,
            offset_ns: 1_234,
            counter_byte: Some(0),
        }],
    )?;
    let wall = Instant::now();
    let mut t = 0;
    while t < SIM_NS {
        t += 10_000_000;
        bus.run_until(t);
        // Drain the listeners as a driver would, so memory stays flat.
        for k in 0..3 {
            while bus.receive(drv_host_can_bus::NodeId(k)).is_some() {}
        }
    }
    let secs = wall.elapsed().as_secs_f64();
    let s = bus.bus_stats();
    let lat = bus.latency(cluster, hp.id()).unwrap_or_default();
    println!(
        "{name:<34} {:>6} frames/s simulated, busy {:>5.1} %, wall {:>6.3} s for 1 s simulated \
         ({:>5.1}× real time, {:>8.0} frames/s wall); 0x010 every 10 ms: max response {} ns",
        s.frames_ok,
        100.0 * s.busy_ok_ns as f64 / SIM_NS as f64,
        secs,
        1.0 / secs,
        s.frames_ok as f64 / secs,
        lat.max_response_ns,
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let std8 = Frame::classic(CanId::standard(0x700)?, &[0x55; 8])?;
    let ext8 = Frame::classic(CanId::extended(0x1abc_d000)?, &[0x55; 8])?;
    let fd64 = Frame::fd(CanId::standard(0x700)?, &[0x55; 64], true)?;
    run(
        "classic 500k, 11-bit 8 B",
        BusConfig::classic(500_000)?,
        std8,
    )?;
    run(
        "classic 1M, 11-bit 8 B",
        BusConfig::classic(1_000_000)?,
        std8,
    )?;
    run(
        "classic 500k, 29-bit 8 B",
        BusConfig::classic(500_000)?,
        ext8,
    )?;
    run(
        "classic 1M, 29-bit 8 B",
        BusConfig::classic(1_000_000)?,
        ext8,
    )?;
    run(
        "FD 500k/2M BRS, 11-bit 64 B",
        BusConfig::fd(500_000, 2_000_000)?,
        fd64,
    )?;
    run(
        "FD 1M/8M BRS, 11-bit 64 B",
        BusConfig::fd(1_000_000, 8_000_000)?,
        fd64,
    )?;
    Ok(())
}
