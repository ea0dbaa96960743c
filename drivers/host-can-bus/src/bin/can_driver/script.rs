//! The driver's script: the bus and the other ECUs on it, from the host
//! resource `can_script` (a text file bound to `can_driver` in the
//! `.host.toml`, e.g. `[[disk]] name = "can_script" read_only = true`).
//! Without one: 500 kbit/s classic, 3 TX buffers, no other ECU.
//!
//! ```text
//! # comment
//! bitrate 500000                     classic bus at this rate
//! fd 500000 2000000                  or an FD bus: nominal and data rate
//! slots 3                            TX buffers announced (1..=8)
//! trace bus                          one line per frame on the bus
//! trace tx                           one line per frame this node sent
//! periodic NAME ID PERIOD_US OFFSET_US DATA [count]
//!                                    an ECU sending ID periodically
//!                                    (`count`: byte 0 is a wrapping counter)
//! flood NAME ID DEPTH DATA           an ECU keeping DEPTH copies pending
//! node NAME                          an ECU that only receives (and ACKs:
//!                                    a frame nobody acknowledges fails)
//! twin NAME ID DATA                  an ECU that offers ID with DATA
//!                                    whenever, and as long as, this node
//!                                    has a frame with ID: both start together, and the
//!                                    one sending recessive first at the
//!                                    differing bit sees a bit error — an id
//!                                    collision, which ends with one of
//!                                    them bus-off (error injection)
//! ```
//!
//! IDs are hex (`0x123`); above 0x7FF they are 29-bit. DATA is hex bytes
//! (`0102ff`) or `-` for none (8 bytes at most).

use drv_host_can_bus::bulkhead_can_frame::{CanId, Frame};
use drv_host_can_bus::{BusConfig, Traffic};

/// One scripted ECU.
pub struct Ecu {
    /// Its name in traces.
    pub name: String,
    /// What it sends (`None`: it only receives).
    pub traffic: Option<Traffic>,
}

/// The parsed script.
pub struct Script {
    /// The bus.
    pub bus: BusConfig,
    /// TX buffers to announce.
    pub slots: u32,
    /// Print every frame on the bus.
    pub trace_bus: bool,
    /// Print every frame this node sent.
    pub trace_tx: bool,
    /// The other ECUs.
    pub ecus: Vec<Ecu>,
    /// Twins: (name, the frame each offers when this node gets its id).
    pub twins: Vec<(String, Frame)>,
}

fn num(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("not a number: {s:?}"))
}

fn frame(id: &str, data: &str) -> Result<Frame, String> {
    let id = u32::try_from(num(id)?).map_err(|_| format!("id {id} too large"))?;
    let id = if id > 0x7ff {
        CanId::extended(id)
    } else {
        CanId::standard(u16::try_from(id).unwrap_or(0))
    }
    .map_err(|e| format!("{e}"))?;
    let mut bytes = Vec::new();
    if data != "-" {
        if data.len() % 2 != 0 || data.len() > 16 {
            return Err(format!("data {data:?}: up to 8 bytes of hex"));
        }
        for i in (0..data.len()).step_by(2) {
            let b = data.get(i..i + 2).ok_or("bad data")?;
            bytes.push(u8::from_str_radix(b, 16).map_err(|_| format!("bad hex {b:?}"))?);
        }
    }
    Frame::classic(id, &bytes).map_err(|e| format!("{e}"))
}

/// Parses `text`; an error names the line.
pub fn parse(text: &str) -> Result<Script, String> {
    let mut s = Script {
        bus: BusConfig::classic(500_000).map_err(|e| format!("{e}"))?,
        slots: 3,
        trace_bus: false,
        trace_tx: false,
        ecus: Vec::new(),
        twins: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let w: Vec<&str> = line.split_whitespace().collect();
        let err = |m: String| format!("can_script line {}: {m}", n + 1);
        let r: Result<(), String> = (|| {
            match w.as_slice() {
                [] => {}
                ["bitrate", r] => {
                    let r = u32::try_from(num(r)?).map_err(|_| "rate too large")?;
                    s.bus = BusConfig::classic(r).map_err(|e| format!("{e}"))?;
                }
                ["fd", a, d] => {
                    let a = u32::try_from(num(a)?).map_err(|_| "rate too large")?;
                    let d = u32::try_from(num(d)?).map_err(|_| "rate too large")?;
                    s.bus = BusConfig::fd(a, d).map_err(|e| format!("{e}"))?;
                }
                ["slots", k] => {
                    s.slots = u32::try_from(num(k)?).map_err(|_| "too many")?;
                    if !(1..=8).contains(&s.slots) {
                        return Err("slots must be 1..=8".into());
                    }
                }
                ["trace", "bus"] => s.trace_bus = true,
                ["trace", "tx"] => s.trace_tx = true,
                ["periodic", name, id, period, offset, data, more @ ..] => {
                    let counter_byte = match more {
                        [] => None,
                        ["count"] if *data != "-" => Some(0),
                        _ => return Err("after DATA only `count` (and DATA not `-`)".into()),
                    };
                    let period_ns = num(period)?.saturating_mul(1000);
                    if period_ns == 0 {
                        return Err("period must be non-zero".into());
                    }
                    s.ecus.push(Ecu {
                        name: (*name).to_string(),
                        traffic: Some(Traffic::Periodic {
                            frame: frame(id, data)?,
                            period_ns,
                            offset_ns: num(offset)?.saturating_mul(1000),
                            counter_byte,
                        }),
                    });
                }
                ["flood", name, id, depth, data] => {
                    let depth = usize::try_from(num(depth)?).map_err(|_| "depth too large")?;
                    s.ecus.push(Ecu {
                        name: (*name).to_string(),
                        traffic: Some(Traffic::Flood {
                            frame: frame(id, data)?,
                            depth: depth.clamp(1, 16),
                            counter_byte: None,
                        }),
                    });
                }
                ["twin", name, id, data] => s.twins.push(((*name).to_string(), frame(id, data)?)),
                ["node", name] => s.ecus.push(Ecu {
                    name: (*name).to_string(),
                    traffic: None,
                }),
                _ => return Err(format!("unknown line {line:?}")),
            }
            Ok(())
        })();
        r.map_err(err)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directive_parses_and_defaults_hold() {
        let d = parse("").unwrap();
        assert_eq!(
            (d.slots, d.trace_bus, d.trace_tx, d.ecus.len()),
            (3, false, false, 0)
        );
        assert!(!d.bus.fd);
        let s = parse(
            "# bus\nfd 500000 2000000\nslots 8\ntrace bus\ntrace tx\n\
             periodic body 0x110 20000 1000 0a0b count  # with a counter\n\
             flood noise 0x7ff 4 -\nnode gw\nperiodic ext 0x18daf110 1000 0 01\n",
        )
        .unwrap();
        assert!(s.bus.fd && s.trace_bus && s.trace_tx);
        assert_eq!(s.slots, 8);
        let names: Vec<&str> = s.ecus.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["body", "noise", "gw", "ext"]);
        match s.ecus[0].traffic {
            Some(Traffic::Periodic {
                frame,
                period_ns,
                offset_ns,
                counter_byte,
            }) => {
                assert_eq!((frame.id().raw(), frame.data()), (0x110, &[0x0a, 0x0b][..]));
                assert_eq!(
                    (period_ns, offset_ns, counter_byte),
                    (20_000_000, 1_000_000, Some(0))
                );
            }
            _ => panic!("periodic expected"),
        }
        assert!(s.ecus[2].traffic.is_none());
        match s.ecus[3].traffic {
            Some(Traffic::Periodic { frame, .. }) => assert!(frame.id().is_extended()),
            _ => panic!("periodic expected"),
        }
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        for (text, line) in [
            ("bitrate 0", 1),
            ("slots 9", 1),
            ("\nslots 0", 2),
            ("periodic a 0x800000000 1 0 -", 1),
            ("periodic a 0x1 0 0 -", 1),
            ("periodic a 0x1 1 0 123", 1),
            ("periodic a 0x1 1 0 001122334455667788", 1),
            ("periodic a 0x1 1 0 - count", 1),
            ("\n\nflood a 0x1 x -", 3),
            ("trace all", 1),
            ("node", 1),
        ] {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} accepted"));
            assert!(
                e.starts_with(&format!("can_script line {line}:")),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn any_text_is_refused_or_parsed_never_a_panic() {
        let words = [
            "bitrate", "fd", "slots", "trace", "periodic", "flood", "node", "0x7ff", "-", "count",
            "9", "ff", "#", "\n",
        ];
        let mut x = 0x2545_f491_u32;
        for _ in 0..3000 {
            let mut t = String::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                t.push_str(words[x as usize % words.len()]);
                t.push(' ');
            }
            let _ = parse(&t);
        }
    }
}
