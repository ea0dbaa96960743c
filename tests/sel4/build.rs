//! Sets `cfg(microkit_sdk)` when MICROKIT_SDK is set for the build, so the
//! boot tests run then and are reported as ignored — with a `SKIPPED:`
//! reason — otherwise.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(microkit_sdk)");
    println!("cargo::rerun-if-env-changed=MICROKIT_SDK");
    if std::env::var("MICROKIT_SDK").is_ok_and(|s| !s.is_empty()) {
        println!("cargo::rustc-cfg=microkit_sdk");
    }
}
