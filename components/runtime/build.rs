//! Sets `cfg(sel4_sdk)` when the build was given a Microkit SDK, exactly as
//! `bulkhead-sel4-abi`'s build script decides (all of `MICROKIT_SDK`,
//! `MICROKIT_BOARD`, `MICROKIT_CONFIG` set and non-empty): the seL4 backend
//! then uses the event loop and invocations that only exist in that case.
//! That script fails the build when the SDK is not usable, so agreeing on
//! the variables is enough to agree on the cfg.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sel4_sdk)");
    let mut all = true;
    for var in ["MICROKIT_SDK", "MICROKIT_BOARD", "MICROKIT_CONFIG"] {
        println!("cargo::rerun-if-env-changed={var}");
        all &= std::env::var(var).is_ok_and(|v| !v.is_empty());
    }
    if all && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo::rustc-cfg=sel4_sdk");
    }
}
