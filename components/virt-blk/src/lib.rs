//! Block virtualiser logic (`blk_virt`): partition tables read from the
//! shared disk ([`table`]), per-client policy from the configuration region
//! ([`config`]), and the request state machine ([`virt`]) that translates,
//! bounds-checks, budgets, orders and — across driver restarts — replays
//! block requests between client VMMs and the block driver.
//!
//! `no_std`, no heap, `forbid(unsafe_code)`: the PD wires [`virt::Hops`] to
//! its rings and data regions.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod config;
pub mod crc32;
pub mod table;
pub mod virt;

pub use config::{BlkClients, Budget, ClientConfig, Selector};
pub use table::{read_table, Partition, PartitionTable, ReadError, SectorSource, TableError};
pub use virt::{ClientPolicy, Hops, Virtualiser};
