//! The uSDHC driver against the register-level controller + SD card model.

mod model;

use drv_imx_usdhc::regs::*;
use drv_imx_usdhc::{csd_blocks, ClockDiv, Mmio, SdError, Usdhc, BLOCK};
use model::{CardState, Faults, SdCard, UsdhcModel};

/// 200 MHz: the i.MX8MP usdhc root clock the EVK device tree assigns.
const BASE_HZ: u32 = 200_000_000;
/// 4 MiB card = 8192 blocks.
const CARD_BYTES: usize = 4 << 20;

fn with_card() -> Usdhc<UsdhcModel> {
    Usdhc::new(UsdhcModel::new(Some(SdCard::new(CARD_BYTES))), BASE_HZ)
}

fn ready() -> Usdhc<UsdhcModel> {
    let mut sd = with_card();
    sd.init().expect("init");
    sd
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    // Byte i of block b: distinct per block so misplaced blocks show.
    (0..len)
        .map(|i| (i.to_le_bytes()[0]).wrapping_mul(31) ^ (i / 512).to_le_bytes()[0] ^ seed)
        .collect()
}

#[test]
fn clock_dividers() {
    // 400 kHz from 200 MHz: /500 is not reachable exactly; the fastest
    // setting not above 400 kHz is 200e6/(32*16) = 390625 Hz.
    let d = ClockDiv::for_rate(BASE_HZ, 400_000).expect("div");
    assert_eq!(d.hz(BASE_HZ), 390_625);
    assert_eq!(d.sys_ctrl_bits(), (0x10 << 8) | (0xF << 4));
    let d = ClockDiv::for_rate(BASE_HZ, 25_000_000).expect("div");
    assert_eq!(d.hz(BASE_HZ), 25_000_000);
    let d = ClockDiv::for_rate(BASE_HZ, 50_000_000).expect("div");
    assert_eq!(d.hz(BASE_HZ), 50_000_000);
    // The SYS_CTRL fields decode back to the same rate.
    let bits = d.sys_ctrl_bits();
    let (fs, dvs) = ((bits >> 8) & 0xFF, (bits >> 4) & 0xF);
    let pre = if fs == 0 { 1 } else { fs * 2 };
    assert_eq!(BASE_HZ / (pre * (dvs + 1)), 50_000_000);
    assert_eq!(ClockDiv::for_rate(BASE_HZ, 10_000), None);
    // Never above the target, for any target.
    for t in (100_000..60_000_000).step_by(777_777) {
        let d = ClockDiv::for_rate(BASE_HZ, t).expect("div");
        assert!(d.hz(BASE_HZ) <= t);
    }
}

#[test]
fn csd_capacity_both_layouts() {
    // CSD 2.0: C_SIZE = 7 -> 8 * 512 KiB = 8192 blocks.
    assert_eq!(csd_blocks((1u128 << 126) | (7u128 << 48)), Some(8192));
    // 32 GiB SDHC: C_SIZE = 65535 -> 65536 * 1024 blocks.
    assert_eq!(
        csd_blocks((1u128 << 126) | (65535u128 << 48)),
        Some(64 << 20)
    );
    // CSD 1.0: C_SIZE 4095, C_SIZE_MULT 7, READ_BL_LEN 10 -> 2 GiB.
    let v1 = (10u128 << 80) | (4095u128 << 62) | (7u128 << 47);
    assert_eq!(csd_blocks(v1), Some(4 << 20));
    assert_eq!(csd_blocks(3u128 << 126), None);
}

#[test]
fn init_sequence_and_capacity() {
    let mut sd = ready();
    let card = sd.card().expect("card");
    assert!(card.high_capacity);
    assert_eq!(card.rca, 0x4567);
    assert_eq!(card.blocks, (CARD_BYTES / BLOCK) as u64);
    let m = sd.regs();
    let idx: Vec<u8> = m.cmds.iter().map(|c| c.0).collect();
    // CMD0, CMD8, 4 x (CMD55, ACMD41) (3 busy), CMD2, CMD3, CMD9, CMD7,
    // CMD55, ACMD6, CMD6 (high-speed switch).
    assert_eq!(
        idx,
        [0, 8, 55, 41, 55, 41, 55, 41, 55, 41, 2, 3, 9, 7, 55, 6, 6]
    );
    assert_eq!(m.cmds[16].1, 0x80FF_FFF1, "CMD6 switch to high speed");
    assert_eq!(m.cmds[1].1, 0x1AA, "CMD8 check pattern");
    assert_eq!(m.cmds[3].1 & (1 << 30), 1 << 30, "ACMD41 HCS");
    assert_eq!(m.cmds[12].1, 0x4567 << 16, "CMD9 addressed by RCA");
    assert_eq!(m.cmds[15].1, 2, "ACMD6 4-bit");
    let card = m.card.as_ref().expect("card");
    assert!(card.bus4);
    assert_eq!(card.state, CardState::Tran);
    assert!(card.hs);
    assert_eq!(
        (m.prot_ctrl >> PROT_DTW_SHIFT) & 3,
        1,
        "controller in 4-bit mode"
    );
    assert_eq!(m.prot_ctrl & (3 << 4), PROT_EMODE_LE);
    assert!(!m.glitched, "dividers changed only with the SD clock gated");
    assert_eq!(
        m.vend_spec & (VEND_CKEN | VEND_PEREN),
        VEND_CKEN | VEND_PEREN
    );
    // Transfer clock after the switch: any prescaler/divisor split giving 50 MHz.
    let fs = (m.sys_ctrl >> 8) & 0xFF;
    let dvs = (m.sys_ctrl >> 4) & 0xF;
    let pre = if fs == 0 { 1 } else { fs * 2 };
    assert_eq!(BASE_HZ / (pre * (dvs + 1)), 50_000_000);
}

#[test]
fn card_without_high_speed_stays_at_25_mhz() {
    let mut card = SdCard::new(CARD_BYTES);
    card.hs_capable = false;
    let mut sd = Usdhc::new(UsdhcModel::new(Some(card)), BASE_HZ);
    sd.init().expect("init");
    let m = sd.regs();
    assert!(!m.card.as_ref().expect("card").hs);
    assert_eq!(m.card.as_ref().expect("card").state, CardState::Tran);
    let fs = (m.sys_ctrl >> 8) & 0xFF;
    let dvs = (m.sys_ctrl >> 4) & 0xF;
    let pre = if fs == 0 { 1 } else { fs * 2 };
    assert_eq!(BASE_HZ / (pre * (dvs + 1)), 25_000_000);
    let mut buf = vec![0u8; 2 * BLOCK];
    sd.read_blocks(0, &mut buf).expect("read at 25 MHz");
}

#[test]
fn single_and_multi_block_read() {
    let mut sd = ready();
    let mut buf = vec![0u8; BLOCK];
    sd.read_blocks(5, &mut buf).expect("read");
    let expect = sd.regs().card.as_ref().expect("card").data[5 * BLOCK..6 * BLOCK].to_vec();
    assert_eq!(buf, expect);
    let mut buf = vec![0u8; 7 * BLOCK];
    sd.read_blocks(100, &mut buf).expect("read");
    let expect = sd.regs().card.as_ref().expect("card").data[100 * BLOCK..107 * BLOCK].to_vec();
    assert_eq!(buf, expect);
    let m = sd.regs();
    assert_eq!(
        m.cmds.iter().rev().take(2).map(|c| c.0).collect::<Vec<_>>(),
        [12, 18]
    );
    assert_eq!(m.card.as_ref().expect("card").state, CardState::Tran);
}

#[test]
fn single_and_multi_block_write() {
    let mut sd = ready();
    let one = pattern(1, BLOCK);
    sd.write_blocks(9, &one).expect("write");
    let many = pattern(2, 16 * BLOCK);
    sd.write_blocks(8000, &many).expect("write");
    let data = &sd.regs().card.as_ref().expect("card").data;
    assert_eq!(data[9 * BLOCK..10 * BLOCK], one[..]);
    assert_eq!(data[8000 * BLOCK..8016 * BLOCK], many[..]);
    // Read back through the driver too.
    let mut back = vec![0u8; 16 * BLOCK];
    sd.read_blocks(8000, &mut back).expect("read");
    assert_eq!(back, many);
}

#[test]
fn bad_requests_are_refused_before_the_bus() {
    let mut sd = ready();
    let n = sd.regs().cmds.len();
    let mut buf = vec![0u8; BLOCK];
    assert_eq!(sd.read_blocks(8192, &mut buf), Err(SdError::BadRequest));
    assert_eq!(sd.read_blocks(u64::MAX, &mut buf), Err(SdError::BadRequest));
    assert_eq!(sd.read_blocks(0, &mut buf[..100]), Err(SdError::BadRequest));
    assert_eq!(sd.write_blocks(0, &[]), Err(SdError::BadRequest));
    assert_eq!(sd.regs().cmds.len(), n);
    let mut fresh = with_card();
    assert_eq!(fresh.read_blocks(0, &mut buf), Err(SdError::NotInitialised));
}

#[test]
fn card_absent() {
    let mut sd = Usdhc::new(UsdhcModel::new(None), BASE_HZ);
    assert_eq!(sd.init(), Err(SdError::CardAbsent));
    assert!(sd.regs().cmds.is_empty());
}

#[test]
fn not_sd_v2() {
    let mut card = SdCard::new(CARD_BYTES);
    card.v2 = false;
    let mut sd = Usdhc::new(UsdhcModel::new(Some(card)), BASE_HZ);
    assert_eq!(sd.init(), Err(SdError::Unsupported));
}

#[test]
fn card_stays_busy() {
    let mut card = SdCard::new(CARD_BYTES);
    card.busy_polls = u32::MAX;
    let mut sd = Usdhc::new(UsdhcModel::new(Some(card)), BASE_HZ);
    assert_eq!(sd.init(), Err(SdError::CardBusy));
}

/// After an error the controller's lines are idle and no transfer is pending.
fn assert_clean(sd: &mut Usdhc<UsdhcModel>) {
    let p = sd.regs().read32(PRES_STATE);
    assert_eq!(p & (PRES_CIHB | PRES_CDIHB), 0);
    assert!(!sd.regs().data_busy());
    assert_eq!(sd.regs().read32(INT_STATUS), 0);
}

#[test]
fn command_timeout_and_crc_errors() {
    let mut sd = with_card();
    sd.regs().faults = Faults {
        cmd_timeout: Some(2),
        ..Faults::default()
    };
    assert_eq!(sd.init(), Err(SdError::CmdTimeout(2)));
    assert_clean(&mut sd);
    let mut sd = with_card();
    sd.regs().faults = Faults {
        cmd_crc: Some(3),
        ..Faults::default()
    };
    assert_eq!(sd.init(), Err(SdError::CmdCrc(3)));
    assert_clean(&mut sd);
    // On an initialised card: a CRC error on CMD17 leaves it usable.
    let mut sd = ready();
    sd.regs().faults.cmd_crc = Some(17);
    let mut buf = vec![0u8; BLOCK];
    assert_eq!(sd.read_blocks(1, &mut buf), Err(SdError::CmdCrc(17)));
    assert_clean(&mut sd);
    sd.regs().faults = Faults::default();
    sd.read_blocks(1, &mut buf).expect("read after error");
}

#[test]
fn data_crc_and_timeout_errors() {
    let mut sd = ready();
    sd.regs().faults.data_crc_block = Some(2);
    let mut buf = vec![0u8; 4 * BLOCK];
    assert_eq!(sd.read_blocks(0, &mut buf), Err(SdError::DataCrc));
    assert_clean(&mut sd);
    sd.regs().faults = Faults {
        data_timeout_block: Some(0),
        ..Faults::default()
    };
    assert_eq!(sd.read_blocks(0, &mut buf), Err(SdError::DataTimeout));
    assert_clean(&mut sd);
    sd.regs().faults = Faults {
        data_crc_block: Some(1),
        ..Faults::default()
    };
    assert_eq!(
        sd.write_blocks(0, &pattern(3, 4 * BLOCK)),
        Err(SdError::DataCrc)
    );
    assert_clean(&mut sd);
}

#[test]
fn card_removed_mid_transfer() {
    let mut sd = ready();
    // Out after 1.5 blocks of a 4-block read.
    sd.regs().faults.remove_after_words = Some(192);
    let mut buf = vec![0u8; 4 * BLOCK];
    assert_eq!(sd.read_blocks(0, &mut buf), Err(SdError::CardRemoved));
    assert_eq!(sd.card(), None, "the card is forgotten");
    assert_clean(&mut sd);
    assert_eq!(sd.read_blocks(0, &mut buf), Err(SdError::NotInitialised));
    assert_eq!(sd.init(), Err(SdError::CardAbsent));
    // A new card goes in: init and I/O work again.
    sd.regs().faults = Faults::default();
    sd.regs().card = Some(SdCard::new(CARD_BYTES));
    sd.init().expect("re-init");
    sd.read_blocks(0, &mut buf).expect("read");
}

#[test]
fn card_removed_mid_write() {
    let mut sd = ready();
    sd.regs().faults.remove_after_words = Some(130);
    assert_eq!(
        sd.write_blocks(10, &pattern(4, 3 * BLOCK)),
        Err(SdError::CardRemoved)
    );
    assert_clean(&mut sd);
    assert_eq!(sd.card(), None);
}

#[test]
fn card_status_error_is_typed() {
    let mut sd = ready();
    // Shrink the card under the driver: the card answers OUT_OF_RANGE.
    sd.regs()
        .card
        .as_mut()
        .expect("card")
        .data
        .truncate(BLOCK * 10);
    let mut buf = vec![0u8; BLOCK];
    match sd.read_blocks(20, &mut buf) {
        Err(SdError::CardStatus(s)) => assert_ne!(s & (1 << 31), 0),
        other => panic!("expected CardStatus, got {other:?}"),
    }
    assert_clean(&mut sd);
}

/// Every INT_STATUS error bit, latched by the controller on CMD17, comes
/// back as its own typed error and leaves the controller clean.
#[test]
fn every_int_status_error_bit_is_typed() {
    let cases = [
        (INT_CTOE, SdError::CmdTimeout(17)),
        (INT_CCE, SdError::CmdCrc(17)),
        (INT_CEBE, SdError::CmdEndBit(17)),
        (INT_CIE, SdError::CmdIndex(17)),
        (INT_DTOE, SdError::DataTimeout),
        (INT_DCE, SdError::DataCrc),
        (INT_DEBE, SdError::DataEndBit),
        (INT_AC12E, SdError::AutoCmd12),
        (INT_DMAE, SdError::Adma(0)),
        // CTOE with CCE is a CMD line conflict; reported as the timeout.
        (INT_CTOE | INT_CCE, SdError::CmdTimeout(17)),
    ];
    let mut sd = ready();
    let mut buf = vec![0u8; BLOCK];
    for (bits, want) in cases {
        sd.regs().faults.cmd_int = Some((17, bits));
        assert_eq!(sd.read_blocks(3, &mut buf), Err(want), "bits {bits:#x}");
        assert_clean(&mut sd);
        assert!(sd.card().is_some(), "an I/O error does not forget the card");
    }
    sd.regs().faults = Faults::default();
    sd.read_blocks(3, &mut buf).expect("still works");
}

#[test]
fn wedged_controller_is_a_typed_error() {
    let mut sd = ready();
    sd.regs().faults.stuck_cmd_line = true;
    let mut buf = vec![0u8; BLOCK];
    assert_eq!(sd.read_blocks(0, &mut buf), Err(SdError::ControllerTimeout));
}
